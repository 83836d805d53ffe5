"""Judges by name, with "did you mean" for typos."""

from __future__ import annotations

import inspect
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


def _checked(name: str, factory: Callable[..., Judge], options: dict[str, Any]) -> Judge:
    """Call ``factory(**options)``, naming unknown options as a user error."""
    params = inspect.signature(factory).parameters
    unknown = sorted(o for o in options if o not in params)
    if unknown:
        known = [p for p in params if p not in ("self", "cls")]
        raise AlignDepthError(f"unknown option(s) {', '.join(unknown)} for the '{name}' judge"
                              f"{did_you_mean(unknown[0], known)}; available: "
                              f"{', '.join(known)}")
    return factory(**options)


def _rubric(organism: Path | None, **options: Any) -> Judge:
    from aligndepth.judges.rubric import RubricJudge

    return _checked("rubric", RubricJudge, options)


def _gpt4_rubric(organism: Path | None, **options: Any) -> Judge:
    from aligndepth.judges.gpt4_rubric import GptRubricJudge

    return _checked("gpt4-rubric", GptRubricJudge, options)


def _strongreject(organism: Path | None, **options: Any) -> Judge:
    from aligndepth.judges.strongreject import StrongRejectJudge

    return _checked("strongreject", StrongRejectJudge, options)


def _harmbench(organism: Path | None, **options: Any) -> Judge:
    from aligndepth.judges.harmbench import HarmBenchJudge

    return _checked("harmbench-cls", HarmBenchJudge.from_pretrained, options)


def _moderation(organism: Path | None, **options: Any) -> Judge:
    from aligndepth.judges.moderation import ModerationJudge

    return _checked("moderation", ModerationJudge, options)


def _llamaguard(organism: Path | None, **options: Any) -> Judge:
    from aligndepth.judges.llamaguard import LlamaGuardJudge

    return _checked("llamaguard", LlamaGuardJudge.from_pretrained, options)


#: name -> factory(organism_dir, **options)
JUDGES: dict[str, Callable[..., Judge]] = {
    "gpt4-rubric": _gpt4_rubric,
    "harmbench-cls": _harmbench,
    "keyword": _keyword,
    "llamaguard": _llamaguard,
    "moderation": _moderation,
    "organism": _organism,
    "rubric": _rubric,
    "strongreject": _strongreject,
}


def make_judge(name: str, organism: Path | None = None, **options: Any) -> Judge:
    """Build the judge registered as ``name``."""
    if name not in JUDGES:
        raise AlignDepthError(f"unknown judge '{name}'{did_you_mean(name, JUDGES)}; "
                              f"available: {', '.join(sorted(JUDGES))}")
    return JUDGES[name](organism, **options)


def make_pairwise_judge(**options: Any) -> Any:
    """The preference judge of pairwise evaluations (``evaluate --task alpaca``); it is not
    a harm judge, so it is not among :data:`JUDGES`."""
    from aligndepth.judges.pairwise import PairwiseJudge

    return _checked("pairwise", PairwiseJudge, options)
