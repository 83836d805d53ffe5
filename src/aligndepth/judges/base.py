"""The judge protocol and its verdict type."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

LABELS = ("harmful", "refusal", "helpful", "other", "unparseable")


@dataclass(frozen=True)
class Verdict:
    """One judgement.

    ``label`` is one of :data:`LABELS`; ``score`` is the judge's numeric score when it has
    one (1.0 harmful / 0.0 not, for rule judges); ``reason`` says why, for humans.
    """

    label: str
    reason: str = ""
    score: float | None = None

    @property
    def harmful(self) -> bool:
        return self.label == "harmful"

    def to_record(self) -> dict[str, Any]:
        return {"label": self.label, "harmful": self.harmful,
                "score": self.score if self.score is not None else float(self.harmful),
                "reason": self.reason}


@runtime_checkable
class Judge(Protocol):
    """Anything that judges batches of (instruction, response)."""

    name: str

    def judge(self, instructions: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        """One verdict per pair, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able identity (name and settings), recorded in run manifests."""
        ...
