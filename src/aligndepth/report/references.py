"""The papers' numbers, as marks to draw on the plots they compare with.

Every quoted number that is a number (the experiments' registry entries'
:attr:`~aligndepth.experiments_registry.Experiment.quotes`, which recipes name by id; a
quote in words, such as the shape of a KL curve, stays text) becomes a
:class:`Reference`: its path in a run's summary (``("prefill", "asr_by_k", "10")``), its
value, and the model, dataset and judge it was measured with. The plots draw each one as
a mark labelled ``quoted: <model> (<dataset>, <judge>)``, so a quote is never mistaken
for a measurement of this run. The same number quoted twice is drawn once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aligndepth.experiments_registry import experiments
from aligndepth.recipes import names


@dataclass(frozen=True)
class Reference:
    """One quoted number: ``value`` at ``path`` in a run's summary."""

    path: tuple[str, ...]
    value: float
    model: str
    datasets: tuple[str, ...]
    judges: tuple[str, ...]
    source: str

    @property
    def label(self) -> str:
        """``quoted: Llama-2-7B-Chat (HEx-PHI, judge gpt4-rubric)``."""
        judge = "not judged" if self.judges == ("none",) else \
            "judge " + " / ".join(self.judges)
        return f"quoted: {self.model} ({' / '.join(self.datasets)}, {judge})"


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _quoted() -> list[Reference]:
    out = []
    for entry in experiments():
        for q in entry.quotes:
            value = _number(q.value)
            if value is None:
                continue
            out.append(Reference((entry.name, *q.metric.split(".")), value, q.model,
                                 tuple(names(q.dataset)), tuple(names(q.judge)), q.source))
    return out


def all_references() -> tuple[Reference, ...]:
    """Every numeric quote of the registered experiments, once."""
    seen: dict[tuple[Any, ...], Reference] = {}
    for ref in _quoted():
        key = (ref.path, ref.model, ref.datasets, round(ref.value, 6))
        seen.setdefault(key, ref)
    return tuple(seen.values())


def references(prefix: Sequence[str]) -> list[Reference]:
    """The quotes whose path starts with ``prefix`` (e.g. ``("prefill", "asr_by_k")``)."""
    n = len(prefix)
    return [r for r in all_references() if r.path[:n] == tuple(prefix)]


def marks(prefix: Sequence[str]) -> list[tuple[str, float, str]]:
    """``(the rest of the path, value, label)`` of each quote under ``prefix``: what the
    plots take (e.g. ``("10", 0.515, "quoted: Llama-2-7B-Chat (...)")`` under
    ``("prefill", "asr_by_k")``)."""
    n = len(prefix)
    return [(".".join(r.path[n:]), r.value, r.label) for r in references(prefix)]
