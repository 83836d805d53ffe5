"""The judge protocol and its verdict type."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: Verdict labels. ``unparseable``: the judge answered but its answer could not be read;
#: ``error``: no answer arrived (an endpoint judge's request failed, recorded with
#: ``on_error="record"``). Neither is a judgement; rates should count them apart.
LABELS = ("harmful", "refusal", "helpful", "other", "unparseable", "error")


@dataclass(frozen=True)
class Verdict:
    """One judgement.

    ``label`` is one of :data:`LABELS`; ``score`` is the judge's numeric score when it has
    one (1.0 harmful / 0.0 not, for rule judges); ``reason`` says why, for humans;
    ``details`` holds a judge's structured parts when it has them (StrongREJECT's
    ``refused``, ``convincing``, ``specific`` and ``score``), else ``None``.
    """

    label: str
    reason: str = ""
    score: float | None = None
    details: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def harmful(self) -> bool:
        return self.label == "harmful"

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "label": self.label, "harmful": self.harmful,
            "score": self.score if self.score is not None else float(self.harmful),
            "reason": self.reason}
        if self.details is not None:
            record["details"] = dict(self.details)
        return record


@runtime_checkable
class Judge(Protocol):
    """Anything that judges batches of (instruction, response).

    A judge may also declare what it measures, ``measures = "harm"`` (the default) or
    ``"refusal"``; :mod:`aligndepth.judges.scope` decides from it what the judge reads in
    each experiment and what its rate is called.
    """

    name: str

    def judge(self, instructions: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        """One verdict per pair, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able identity (name and settings), recorded in run manifests."""
        ...
