"""Judges by name, with "did you mean" for typos.

The built-in judges are listed here; other packages add theirs through the
``aligndepth.judges`` entry-point group, which is how the organism registers its exact
judge without the judges importing the organism.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError, did_you_mean
from aligndepth.judges.base import Judge
from aligndepth.judges.keyword import KeywordJudge


def _keyword(organism: Path | None, **options: Any) -> Judge:
    return KeywordJudge(options.get("phrases"))


_keyword.measures = KeywordJudge.measures  # type: ignore[attr-defined]


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
    "rubric": _rubric,
    "strongreject": _strongreject,
}


#: Entry-point group through which packages add judges (the organism's exact judge is
#: one): ``name = "module:factory"``, the factory taking ``(organism_dir, **options)``.
ENTRY_POINTS = "aligndepth.judges"


def available_judges() -> dict[str, Callable[..., Judge]]:
    """The built-in judges and those that installed packages register as entry points."""
    from importlib.metadata import entry_points

    found = dict(JUDGES)
    for point in entry_points(group=ENTRY_POINTS):
        found.setdefault(point.name, point.load())
    return found


def judge_factory(name: str) -> Callable[..., Judge]:
    """The factory registered as ``name``: what it measures (its ``measures`` attribute,
    see :mod:`aligndepth.judges.scope`) is known before the judge is built."""
    judges = JUDGES if name in JUDGES else available_judges()
    if name not in judges:
        raise AlignDepthError(f"unknown judge '{name}'{did_you_mean(name, judges)}; "
                              f"available: {', '.join(sorted(judges))}")
    return judges[name]


def make_judge(name: str, organism: Path | None = None, **options: Any) -> Judge:
    """Build the judge registered as ``name``."""
    return judge_factory(name)(organism, **options)


def make_pairwise_judge(**options: Any) -> Any:
    """The preference judge of pairwise evaluations (``evaluate --task alpaca``); it is not
    a harm judge, so it is not among :data:`JUDGES`."""
    from aligndepth.judges.pairwise import PairwiseJudge

    return _checked("pairwise", PairwiseJudge, options)
