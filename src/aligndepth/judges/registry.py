"""Judges by name, with "did you mean" for typos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError, did_you_mean
from aligndepth.judges.base import Judge


def _keyword(organism: Path | None, **options: Any) -> Judge:
    from aligndepth.judges.keyword import KeywordJudge

    return KeywordJudge(options.get("phrases"))


def _organism(organism: Path | None, **options: Any) -> Judge:
    from aligndepth.organism.judge import OrganismJudge

    if organism is None:
        raise AlignDepthError("the 'organism' judge only knows the organism's world: run on "
                              "the organism (no --base/--aligned), or use --judge keyword")
    return OrganismJudge.from_dir(organism)


#: name -> factory(organism_dir, **options)
JUDGES: dict[str, Callable[..., Judge]] = {
    "keyword": _keyword,
    "organism": _organism,
}


def make_judge(name: str, organism: Path | None = None, **options: Any) -> Judge:
    """Build the judge registered as ``name``."""
    if name not in JUDGES:
        raise AlignDepthError(f"unknown judge '{name}'{did_you_mean(name, JUDGES)}; "
                              f"available: {', '.join(sorted(JUDGES))}")
    return JUDGES[name](organism, **options)
