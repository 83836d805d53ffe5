"""GCG's optimisation loop for one or many prompts (SPEC §2.3).

:func:`run_searches` advances up to ``prompt_batch`` prompts' searches together: each
step takes every active prompt's token gradient, samples its candidates with its own
generator, and scores all prompts' candidates in shared forwards
(:meth:`~aligndepth.attacks.gcg_core.GCGAttack.group_losses`: rows of several prompts,
padding-aware). A prompt's search depends only on its own seed, so its result is the
one it gets alone (``GCGAttack.run``), whatever else shares its forwards. A finished
search (its steps spent, or its target reached with ``early_stop``) leaves, and the next
prompt takes its place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from aligndepth.attacks.gcg_pack import Spans
from aligndepth.attacks.gcg_tokens import FIX_RETOKENIZATION
from aligndepth.errors import AlignDepthError

log = logging.getLogger(__name__)

#: Consecutive steps without a candidate that re-encodes to itself before GCG gives up
#: (fewer when ``num_steps`` is smaller: a run in which no step had one always fails).
STALL_STEPS = 3


@dataclass
class GCGResult:
    """What one optimisation found.

    ``losses[t]`` is the best target loss after step ``t`` (``losses[0]``: the initial
    suffix). Success is about the returned ``suffix`` only: ``success_step`` is the step
    at which it became the best suffix, when the target is its greedy continuation
    (``None`` otherwise: then the run did not succeed, whatever other candidates did).
    """

    suffix: str
    suffix_ids: list[int]
    loss: float
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    success_step: int | None = None

    @property
    def success(self) -> bool:
        """Whether the target is the greedy continuation after the returned suffix."""
        return self.success_step is not None


@dataclass(frozen=True)
class Entry:
    """A buffered suffix ``ids`` ``(L,)``, its loss, whether it hits the target, and the
    step at which it entered the buffer."""

    loss: float
    ids: torch.Tensor
    hit: bool
    step: int


def keep_best(buffer: list[Entry], entry: Entry, size: int) -> list[Entry]:
    """The buffer with ``entry`` in it when it is among the ``size`` best."""
    if len(buffer) < size or entry.loss < buffer[-1].loss:
        return sorted(buffer + [entry], key=lambda e: e.loss)[:size]
    return buffer


def stall_error(step: int, stalled: int, what: str) -> AlignDepthError:
    return AlignDepthError(
        f"GCG stalled at step {step} for {what}: no candidate suffix re-encodes to itself "
        f"(the tokenizer merges tokens at the suffix boundary) in {stalled} step(s) in a "
        f"row; {FIX_RETOKENIZATION}")


@dataclass(frozen=True)
class Task:
    """One prompt to attack: a key the caller knows it by, its text, target and seed."""

    key: Any
    instruction: str
    target: str
    seed: int


class _Search:
    """One prompt's search state: its spans, generator, buffer and loss curve."""

    def __init__(self, attack: Any, task: Task, spans: Spans, start: torch.Tensor,
                 loss0: float, hit0: bool):
        self.attack, self.task, self.spans = attack, task, spans
        self.generator = torch.Generator(device="cpu").manual_seed(task.seed)
        self.buffer = [Entry(loss0, start, hit0, 0)]
        self.losses = [loss0]
        self.step = 0
        self.stalled = 0

    def finished(self) -> bool:
        c = self.attack.config
        return self.step >= c.num_steps or (c.early_stop and self.buffer[0].hit)

    def propose(self) -> torch.Tensor:
        """This step's candidates ``(n, L)`` (``n`` may be 0 after the filter)."""
        a, s = self.attack, self.spans
        self.step += 1
        current = self.buffer[0].ids
        grad = a.token_gradient(current, s.after, s.target, s.cache)
        candidates = a.sample_candidates(current, grad, self.generator)
        if a.config.filter_retokenization:
            candidates = candidates[a.retokenizes(candidates)]
        return candidates

    def accept(self, candidates: torch.Tensor, losses: torch.Tensor | None,
               hits: torch.Tensor | None) -> None:
        """Keep the best candidate (``losses`` ``None``: none survived the filter)."""
        c = self.attack.config
        if losses is None or hits is None:
            self.stalled += 1
            if self.stalled >= min(STALL_STEPS, c.num_steps):
                raise stall_error(self.step, self.stalled, repr(self.task.instruction[:40]))
            log.debug("step %d: no candidate re-encodes to itself; suffix kept", self.step)
        else:
            self.stalled = 0
            best = int(losses.argmin())
            entry = Entry(float(losses[best]), candidates[best], bool(hits[best]), self.step)
            self.buffer = keep_best(self.buffer, entry, c.buffer_size)
        self.losses.append(self.buffer[0].loss)

    def result(self) -> GCGResult:
        top = self.buffer[0]
        ids = [int(i) for i in top.ids.tolist()]
        return GCGResult(str(self.attack.tok.decode(ids)), ids, top.loss, self.losses,
                         self.step, top.step if top.hit else None)


Progress = Callable[[Any, int, float], None]


def run_searches(attack: Any, tasks: Iterable[Task], prompt_batch: int,
                 progress: Progress | None = None) -> Iterator[tuple[Task, GCGResult]]:
    """Attack every task, ``prompt_batch`` at a time; yields each ``(task, result)`` as
    its search finishes. ``progress(key, step, best_loss)`` is called per prompt-step."""
    queue = iter(tasks)
    active: list[_Search] = []
    start = torch.tensor(attack.initial_suffix(), device=attack.device)
    more = True
    while True:
        fresh: list[tuple[Task, Spans]] = []
        while more and len(active) + len(fresh) < max(1, prompt_batch):
            task = next(queue, None)
            if task is None:
                more = False
            else:
                fresh.append((task, attack.prompt_spans(task.instruction, task.target)))
        if fresh:
            scored = attack.group_losses([(spans, start[None]) for _, spans in fresh])
            active += [_Search(attack, task, spans, start, float(loss[0]), bool(hit[0]))
                       for (task, spans), (loss, hit) in zip(fresh, scored)]
        for search in [s for s in active if s.finished()]:
            active.remove(search)
            yield search.task, search.result()
        if not active:
            if more:
                continue
            return
        proposals = [(s, s.propose()) for s in active]
        live = [(s, cands) for s, cands in proposals if len(cands)]
        scored = attack.group_losses([(s.spans, cands) for s, cands in live]) if live else []
        results = {id(s): r for (s, _), r in zip(live, scored)}
        for s, cands in proposals:
            losses, hits = results.get(id(s), (None, None))
            s.accept(cands, losses, hits)
            if progress is not None:
                progress(s.task.key, s.step, s.buffer[0].loss)
