"""A universal GCG suffix: one suffix optimised over many prompts (Zou et al. 2023, §2.3
"multiple behaviors"; HarmBench's GCG-Multi), then judged on training and held-out prompts.

The loss of a suffix is the mean over the included training prompts of each prompt's
mean target loss (the sum ranks candidates the same). Prompts are added progressively:
the search starts on the first training prompt and adds the next one whenever the best
suffix makes every included prompt's target its greedy continuation (the buffer is then
re-scored on the larger set). Each step's gradient is the sum of the included prompts'
unit-row token gradients, as in Zou et al.'s code; every candidate is scored on every
included prompt in shared forwards (:meth:`~aligndepth.attacks.gcg_core.GCGAttack.group_losses`).
With ``early_stop`` the search ends once all training prompts are included and hit.

Records: the optimisation in ``records/gcg_universal.jsonl`` (one line: the suffix, the
loss curve and how many prompts were included at each step; an interrupted optimisation
starts again), then one ``gcg`` record per prompt, training and held out (``split``),
with the prompt's target loss under the universal suffix and under the initial one, and
the judged answer; ``gcg-transfer`` replays them like individual suffixes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from aligndepth.attacks.gcg_pack import Spans
from aligndepth.attacks.gcg_search import STALL_STEPS, Entry, keep_best, stall_error
from aligndepth.data.schemas import HarmfulPair, PromptRecord
from aligndepth.experiment import Setup
from aligndepth.experiment_configs import GCGConfig
from aligndepth.progress import progress_bar
from aligndepth.runs import Run, Unit, chunked, unit_seed

OPTIMISATION = "gcg_universal"


@dataclass
class UniversalResult:
    """One suffix for many prompts. ``losses[t]``: the best suffix's mean loss over the
    prompts included after step ``t`` (``included[t]`` of them; it jumps when one is
    added); ``success_step``: when the returned suffix became best, if it hits every
    training prompt's target (``None`` otherwise)."""

    suffix: str
    suffix_ids: list[int]
    loss: float
    losses: list[float] = field(default_factory=list)
    included: list[int] = field(default_factory=list)
    steps: int = 0
    best_step: int = 0
    success_step: int | None = None


def split_prompts(items: Sequence[Any], config: GCGConfig) -> tuple[list[Any], list[Any]]:
    """The training prompts (the first :meth:`GCGConfig.train_count`) and the held-out
    rest."""
    n = config.train_count(len(items))
    return list(items[:n]), list(items[n:])


def optimise_universal(attack: Any, prompts: Sequence[tuple[str, str]], seed: int,
                       progress: Callable[[int, float, int], None] | None = None
                       ) -> UniversalResult:
    """One suffix over ``prompts`` (instruction, target), added progressively;
    ``progress(step, best_loss, included)`` is called per step."""
    c = attack.config
    spans = [attack.prompt_spans(text, target) for text, target in prompts]
    generator = torch.Generator(device="cpu").manual_seed(seed)

    def score(cands: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        scored = attack.group_losses([(s, cands) for s in spans[:n]])
        return (torch.stack([loss for loss, _ in scored]).mean(0),
                torch.stack([hit for _, hit in scored]).all(0))

    start = torch.tensor(attack.initial_suffix(), device=attack.device)
    n = 1
    loss0, hit0 = score(start[None], n)
    buffer = [Entry(float(loss0[0]), start, bool(hit0[0]), 0)]
    result = UniversalResult("", [], buffer[0].loss, [buffer[0].loss], [n])
    stalled = 0
    for step in range(1, c.num_steps + 1):
        while buffer[0].hit and n < len(spans):  # Zou et al.: add the next prompt
            n += 1
            losses, hits = score(torch.stack([e.ids for e in buffer]), n)
            buffer = sorted((Entry(float(loss), e.ids, bool(hit), e.step)
                             for e, loss, hit in zip(buffer, losses, hits)),
                            key=lambda e: e.loss)
        if c.early_stop and buffer[0].hit:
            break
        current = buffer[0].ids
        grad = sum(attack.token_gradient(current, s.after, s.target, s.cache)
                   for s in spans[:n])
        assert isinstance(grad, torch.Tensor)
        candidates = attack.sample_candidates(current, grad, generator)
        if c.filter_retokenization:
            candidates = candidates[attack.retokenizes(candidates)]
        if len(candidates):
            stalled = 0
            losses, hits = score(candidates, n)
            best = int(losses.argmin())
            buffer = keep_best(buffer, Entry(float(losses[best]), candidates[best],
                                             bool(hits[best]), step), c.buffer_size)
        else:
            stalled += 1
            if stalled >= min(STALL_STEPS, c.num_steps):
                raise stall_error(step, stalled, f"the universal suffix ({n} prompts)")
        result.losses.append(buffer[0].loss)
        result.included.append(n)
        result.steps = step
        if progress is not None:
            progress(step, buffer[0].loss, n)
    top = buffer[0]
    result.loss = top.loss
    result.suffix_ids = [int(i) for i in top.ids.tolist()]
    result.suffix = str(attack.tok.decode(result.suffix_ids))
    result.best_step = top.step
    result.success_step = top.step if top.hit and n == len(spans) else None
    return result


def suffix_losses(attack: Any, spans: Sequence[Spans], suffixes: torch.Tensor
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per prompt, the losses ``(k,)`` and hits ``(k,)`` of ``suffixes`` ``(k, L)``."""
    return attack.group_losses([(s, suffixes) for s in spans])


def run_universal(setup: Setup, run: Run, prompts: Sequence[PromptRecord],
                  pairs: Sequence[HarmfulPair] | None, config: GCGConfig,
                  target_model: str = "aligned") -> dict[str, Any]:
    """Optimise the universal suffix on the training prompts (once: a finished
    optimisation is read back on resume), then answer and judge every prompt with it;
    returns the summary."""
    from aligndepth.attacks.gcg import NAME, check_gcg, gcg_targets, summarize_gcg

    if not run.owns(NAME, "universal"):  # one search over all prompts: one worker's
        return summarize_gcg(run.records(NAME))
    model, _ = setup.role(target_model)
    items = gcg_targets(prompts, pairs, model.tokenizer, config)
    train, heldout = split_prompts(items, config)
    attack = check_gcg(setup, prompts, pairs, config, target_model)
    done = run.records(OPTIMISATION)
    if done:
        found = done[-1]
    else:
        with progress_bar("GCG universal steps", config.num_steps,
                          setup.show_progress) as advance:
            def step_done(step: int, loss: float, included: int) -> None:
                advance(prompts=f"{included}/{len(train)}", best_loss=loss)

            result = optimise_universal(attack, [(p.instruction, t) for p, t in train],
                                        unit_seed(setup.seed, "universal"), step_done)
            if result.steps < config.num_steps:
                advance(config.num_steps - result.steps)
        found = {"key": "suffix", "model": target_model, "suffix": result.suffix,
                 "suffix_ids": result.suffix_ids, "loss": result.loss,
                 "losses": result.losses, "included": result.included,
                 "steps": result.steps, "best_step": result.best_step,
                 "success_step": result.success_step, "train": [p.id for p, _ in train],
                 "heldout": [p.id for p, _ in heldout]}
        run.append(OPTIMISATION, [found])
    _judge_all(setup, run, attack, [(p, t, "train") for p, t in train] +
               [(p, t, "heldout") for p, t in heldout], found, target_model)
    return summarize_gcg(run.records(NAME))


def _judge_all(setup: Setup, run: Run, attack: Any,
               items: Sequence[tuple[PromptRecord, str, str]], found: dict[str, Any],
               target_model: str) -> None:
    """One ``gcg`` record per prompt under the universal suffix (resumable, by batch)."""
    from aligndepth.attacks.gcg import NAME, answer

    model, fmt = setup.role(target_model)
    suffix_ids = [int(i) for i in found["suffix_ids"]]
    units = [Unit(f"gcg-universal#{b}", [f"gcg|{p.id}" for p, _, _ in chunk], chunk)
             for b, chunk in enumerate(chunked(items, setup.batch_size))]
    todo = run.pending(NAME, units, group="universal")
    pair = torch.tensor([attack.initial_suffix(), suffix_ids], device=attack.device)
    with progress_bar("GCG universal answers", len(todo), setup.show_progress) as advance:
        for unit in todo:
            spans = [attack.prompt_spans(p.instruction, t) for p, t, _ in unit.items]
            scored = suffix_losses(attack, spans, pair)
            judged_answers = answer(setup, model, fmt, [(p, suffix_ids) for p, _, _ in
                                                        unit.items])
            run.append(NAME, [{
                "key": key, "id": p.id, "model": target_model, "instruction": p.instruction,
                "target": target, "suffix": found["suffix"], "suffix_ids": suffix_ids,
                "loss": float(losses[1]), "initial_loss": float(losses[0]),
                "losses": found["losses"], "steps": found["steps"],
                "success_step": found["best_step"] if bool(hits[1]) else None,
                "universal": True, "split": split, **judged}
                for key, (p, target, split), (losses, hits), judged
                in zip(unit.keys, unit.items, scored, judged_answers)])
            advance()
