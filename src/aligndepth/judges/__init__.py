"""Judges: decide whether a response is harmful. A registry by name.

Every judge implements :class:`~aligndepth.judges.base.Judge`: ``judge(instructions,
responses) -> list[Verdict]`` on a batch, and ``describe()`` for run manifests.
"""

from aligndepth.judges.base import Judge, Verdict
from aligndepth.judges.registry import JUDGES, make_judge

__all__ = ["JUDGES", "Judge", "Verdict", "make_judge"]
