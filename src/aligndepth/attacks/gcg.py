"""Experiment: the GCG adversarial-suffix attack (SPEC §2.3), one record per prompt.

Each prompt gets its own suffix (seeded per prompt) toward its target: the dataset's
``target`` field (AdvBench's "Sure, here is ...", the organism's compliant intro), else
the first ``target_tokens`` tokens of its harmful response. Several prompts' searches
advance together (``prompt_batch``), each with the result it gets alone. The final suffix
is then placed in the user turn, the model answers greedily, and the judge scores the answer. With
``universal``, one suffix is optimised over the training prompts and judged on all
(:mod:`aligndepth.attacks.gcg_universal`). The optimiser lives in
:mod:`aligndepth.attacks.gcg_core`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aligndepth.attacks.gcg_core import GCGAttack, Task, split_prompt
from aligndepth.attacks.gcg_pack import auto_prompt_batch
from aligndepth.data.schemas import HarmfulPair, PromptRecord
from aligndepth.engine import GREEDY
from aligndepth.errors import AlignDepthError
from aligndepth.experiment import Setup, complete, decode, decode_raw
from aligndepth.experiment_configs import GCGConfig
from aligndepth.metrics import Units, judged, proportion, rate_stats
from aligndepth.progress import progress_bar
from aligndepth.runs import Run, Unit, unit_seed

NAME = "gcg"
log = logging.getLogger(__name__)

def gcg_targets(prompts: Sequence[PromptRecord], pairs: Sequence[HarmfulPair] | None,
                tokenizer: Any, config: GCGConfig) -> list[tuple[PromptRecord, str]]:
    """Each prompt with its target (its own, else its harmful pair's ``target``, else the
    first ``target_tokens`` tokens of the pair's harmful response)."""
    responses = {p.id: p.harmful_response for p in pairs or ()}
    given = {p.id: p.target for p in pairs or () if p.target}
    out: list[tuple[PromptRecord, str]] = []
    for p in prompts:
        target = p.target or given.get(p.id)
        if not target and p.id in responses:
            ids = tokenizer(responses[p.id], add_special_tokens=False).input_ids
            target = str(tokenizer.decode(ids[:config.target_tokens]))
        if not target or not target.strip():
            raise AlignDepthError(
                f"prompt '{p.id}' has no GCG target: give prompts with a 'target' field "
                "(e.g. AdvBench's goal/target) or harmful pairs, whose response start is used")
        out.append((p, target))
    if config.max_prompts is not None:
        out = out[:config.max_prompts]
    return out


def check_gcg(setup: Setup, prompts: Sequence[PromptRecord],
              pairs: Sequence[HarmfulPair] | None, config: GCGConfig,
              target_model: str = "aligned") -> GCGAttack:
    """The attack, after checking every prompt has a target, the initial suffix survives
    re-encoding and everything fits the context: fails before any compute is spent."""
    model, fmt = setup.role(target_model)
    attack = GCGAttack(model.model, model.tokenizer, fmt, config)
    for p, target in gcg_targets(prompts, pairs, model.tokenizer, config):
        attack.spans(p.instruction, target, setup.max_new_tokens)
    return attack


def gcg_provenance(setup: Setup, prompts: Sequence[PromptRecord],
                   pairs: Sequence[HarmfulPair] | None, config: GCGConfig,
                   target_model: str = "aligned") -> dict[str, Any]:
    """What the manifest records about GCG (after :func:`check_gcg`): the search space
    and start, and with ``universal`` the training and held-out prompts' ids."""
    out = check_gcg(setup, prompts, pairs, config, target_model).provenance()
    if config.universal:
        from aligndepth.attacks.gcg_universal import split_prompts

        tok = setup.role(target_model)[0].tokenizer
        train, heldout = split_prompts(gcg_targets(prompts, pairs, tok, config), config)
        out["universal"] = {"train": [p.id for p, _ in train],
                            "heldout": [p.id for p, _ in heldout]}
    return out


def prompt_batch(attack: GCGAttack, todo: Sequence[tuple[PromptRecord, str]],
                 config: GCGConfig) -> int:
    """``config.prompt_batch``, else as many prompts as fit in memory
    (:func:`~aligndepth.attacks.gcg_pack.auto_prompt_batch`, sized by the longest)."""
    if config.prompt_batch is not None or not todo:
        return config.prompt_batch or 1
    suffix = len(attack.initial_suffix())
    spans = [attack.spans(p.instruction, t) for p, t in todo]
    return auto_prompt_batch(attack, len(todo), max(len(b) for b, _, _ in spans),
                             suffix + max(len(a) + len(t) for _, a, t in spans),
                             max(len(t) for _, _, t in spans))


def answer(setup: Setup, model: Any, fmt: Any, items: Sequence[tuple[PromptRecord,
                                                                     list[int]]]
           ) -> list[dict[str, Any]]:
    """Each prompt's greedy answer with its suffix ids in the user turn, judged: the
    record fields ``output``, ``stop_reason``, ``output_raw``, ``judge``, ``verdict``."""
    tok = model.tokenizer
    ids = []
    for p, suffix_ids in items:
        before, after = split_prompt(tok, fmt, p.instruction)
        ids.append(before + list(suffix_ids) + after)
    done = complete(setup, model, fmt, ids, GREEDY, seeds=[0] * len(ids))
    texts = [decode(model, c.ids) for c in done]
    verdicts = setup.judge.judge([p.instruction for p, _ in items], texts)
    return [{"output": text, "stop_reason": c.stop_reason,
             "output_raw": decode_raw(model, c.ids), "judge": setup.judge.name,
             "verdict": v.to_record()} for text, c, v in zip(texts, done, verdicts)]


def run_gcg(setup: Setup, run: Run, prompts: Sequence[PromptRecord],
            pairs: Sequence[HarmfulPair] | None, config: GCGConfig,
            target_model: str = "aligned") -> dict[str, Any]:
    """Attack each prompt; one record per prompt (resumable); returns the summary.

    ``prompt_batch`` prompts' searches advance together (their candidates share
    forwards); each record is written when its prompt's search ends, and equals the one
    a search of that prompt alone gives. With ``universal``, one suffix for all prompts
    (:func:`~aligndepth.attacks.gcg_universal.run_universal`). Progress counts
    optimisation steps (a prompt that reaches its target early counts the steps it
    skipped) and shows the prompt and its best loss so far."""
    if config.universal:
        from aligndepth.attacks.gcg_universal import run_universal

        return run_universal(setup, run, prompts, pairs, config, target_model)
    model, fmt = setup.role(target_model)
    tok = model.tokenizer
    todo = [u.items[0] for u in run.pending(NAME, [
        Unit(p.id, [f"gcg|{p.id}"], [(p, t)]) for p, t in gcg_targets(prompts, pairs, tok,
                                                                       config)])]
    attack = check_gcg(setup, prompts, pairs, config, target_model)
    steps = config.num_steps
    batch = prompt_batch(attack, todo, config)
    if len(todo) > 1:
        log.info("GCG: %d prompts' searches at a time", batch)
    tasks = [Task(number, p.instruction, target, unit_seed(setup.seed, p.id))
             for number, (p, target) in enumerate(todo, 1)]
    with progress_bar("GCG steps", len(todo) * steps, setup.show_progress) as advance:
        def step_done(number: int, step: int, loss: float) -> None:
            advance(prompt=f"{number}/{len(todo)}", best_loss=loss)

        for task, result in attack.run_many(tasks, batch, step_done):
            p, target = todo[task.key - 1]
            [judged_answer] = answer(setup, model, fmt, [(p, result.suffix_ids)])
            run.append(NAME, [{
                "key": f"gcg|{p.id}", "id": p.id, "model": target_model,
                "instruction": p.instruction, "target": target, "suffix": result.suffix,
                "suffix_ids": result.suffix_ids, "loss": result.loss, "losses": result.losses,
                "steps": result.steps, "success_step": result.success_step,
                **judged_answer}])
            if result.steps < steps:  # it stopped early: count the steps it skipped
                advance(steps - result.steps, prompt=f"{task.key}/{len(todo)}",
                        best_loss=result.loss)
    return summarize_gcg(run.records(NAME))


def gcg_units(records: Sequence[dict[str, Any]]) -> Units:
    """ASR: one unit per prompt (its answer under the returned suffix)."""
    return {(NAME, "asr"): {r["id"]: judged(r) for r in records}} if records else {}


def summarize_gcg(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """ASR (judged answers), target hits and steps; mean loss per step for the plot."""
    n = len(records)
    hits = [r["success_step"] for r in records if r["success_step"] is not None]
    longest = max((len(r["losses"]) for r in records), default=0)
    curve = []
    for t in range(longest):  # a stopped run keeps its last loss
        curve.append(sum(r["losses"][min(t, len(r["losses"]) - 1)] for r in records) / n)
    out = {
        "asr": rate_stats(gcg_units(records).get((NAME, "asr"), {}).values()),
        "target_hit_rate": proportion(len(hits), n),
        "mean_steps_to_success": sum(hits) / len(hits) if hits else None,
        "mean_final_loss": sum(r["loss"] for r in records) / n if n else None,
        "mean_loss_by_step": curve,
        "n_prompts": n,
    }
    if any(r.get("universal") for r in records):
        out["universal"] = summarize_universal(records)
    return out


def summarize_universal(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A universal suffix on its training and held-out prompts: ASR, target hits, and
    the mean target loss under it beside under the initial suffix."""
    out: dict[str, Any] = {"suffix": records[0]["suffix"],
                           "suffix_ids": records[0]["suffix_ids"],
                           "steps": records[0]["steps"]}
    for split in ("train", "heldout"):
        part = [r for r in records if r.get("split") == split]
        n = len(part)
        out[split] = {
            "n_prompts": n,
            "asr": rate_stats(judged(r) for r in part),
            "target_hit_rate": proportion(sum(r["success_step"] is not None for r in part),
                                          n),
            "mean_loss": sum(r["loss"] for r in part) / n if n else None,
            "mean_initial_loss": sum(r["initial_loss"] for r in part) / n if n else None,
        }
    return out
