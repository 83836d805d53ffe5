"""Experiment: the GCG adversarial-suffix attack (SPEC §2.3), one record per prompt.

Each prompt is attacked on its own (individual suffixes, seeded per prompt) toward its
target: the dataset's ``target`` field (AdvBench's "Sure, here is ..."), else the first
``target_tokens`` tokens of its harmful response. The final suffix is then placed in the
user turn, the model answers greedily, and the judge scores the answer. The optimiser
lives in :mod:`aligndepth.attacks.gcg_core`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aligndepth.attacks.gcg_core import GCGAttack, split_prompt
from aligndepth.data.schemas import HarmfulPair, PromptRecord
from aligndepth.engine import GREEDY
from aligndepth.errors import AlignDepthError
from aligndepth.experiment import Setup, complete, decode, decode_raw
from aligndepth.experiment_configs import GCGConfig
from aligndepth.metrics import Units, judged, proportion, rate_stats
from aligndepth.progress import progress_bar
from aligndepth.runs import Run, Unit, unit_seed

NAME = "gcg"

def gcg_targets(prompts: Sequence[PromptRecord], pairs: Sequence[HarmfulPair] | None,
                tokenizer: Any, config: GCGConfig) -> list[tuple[PromptRecord, str]]:
    """Each prompt with its target (its own, else its harmful response's first tokens)."""
    responses = {p.id: p.harmful_response for p in pairs or ()}
    out: list[tuple[PromptRecord, str]] = []
    for p in prompts:
        target = p.target
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


def run_gcg(setup: Setup, run: Run, prompts: Sequence[PromptRecord],
            pairs: Sequence[HarmfulPair] | None, config: GCGConfig,
            target_model: str = "aligned") -> dict[str, Any]:
    """Attack each prompt; one record per prompt (resumable); returns the summary.
    Progress counts optimisation steps (a prompt that reaches its target early counts
    the steps it skipped) and shows the prompt and its best loss so far."""
    model, fmt = setup.role(target_model)
    tok = model.tokenizer
    todo = [u.items[0] for u in run.pending(NAME, [
        Unit(p.id, [f"gcg|{p.id}"], [(p, t)]) for p, t in gcg_targets(prompts, pairs, tok,
                                                                       config)])]
    attack = check_gcg(setup, prompts, pairs, config, target_model)
    steps = config.num_steps
    with progress_bar("GCG steps", len(todo) * steps, setup.show_progress) as advance:
        for number, (p, target) in enumerate(todo, 1):
            where = f"{number}/{len(todo)}"

            def step_done(step: int, loss: float, where: str = where) -> None:
                advance(prompt=where, best_loss=loss)

            result = attack.run(p.instruction, target, seed=unit_seed(setup.seed, p.id),
                                progress=step_done)
            before, after = split_prompt(tok, fmt, p.instruction)
            [done] = complete(setup, model, fmt, [before + result.suffix_ids + after], GREEDY,
                              seeds=[0])
            text = decode(model, done.ids)
            [verdict] = setup.judge.judge([p.instruction], [text])
            run.append(NAME, [{
                "key": f"gcg|{p.id}", "id": p.id, "model": target_model,
                "instruction": p.instruction, "target": target, "suffix": result.suffix,
                "suffix_ids": result.suffix_ids, "loss": result.loss, "losses": result.losses,
                "steps": result.steps, "success_step": result.success_step, "output": text,
                "stop_reason": done.stop_reason, "output_raw": decode_raw(model, done.ids),
                "judge": setup.judge.name, "verdict": verdict.to_record()}])
            if result.steps < steps:  # it stopped early: count the steps it skipped
                advance(steps - result.steps, prompt=where, best_loss=result.loss)
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
    return {
        "asr": rate_stats(gcg_units(records).get((NAME, "asr"), {}).values()),
        "target_hit_rate": proportion(len(hits), n),
        "mean_steps_to_success": sum(hits) / len(hits) if hits else None,
        "mean_final_loss": sum(r["loss"] for r in records) / n if n else None,
        "mean_loss_by_step": curve,
        "n_prompts": n,
    }
