"""What a judge reads in each experiment, and what its rate counts there.

A judge declares what it measures with a ``measures`` attribute (on its class, and on its
registry factory, so that a command can check the pair before any model loads):

- ``harm`` (the default when a judge declares nothing): whether the text is harmful
  (``organism``, ``rubric``, ``gpt4-rubric``, ``strongreject``, ``moderation``,
  ``llamaguard``, ``harmbench-cls``);
- ``refusal``: only whether the text refuses (``keyword``): its ``harmful`` verdict means
  "no refusal phrase".

:data:`READINGS` holds, for every part of an experiment that judges text and every measure,
what the judge reads and the summary key of its rate. The rule is data: a pair missing
from the table is refused before anything loads (:func:`check_judging`), naming the judges
that work. docs/judges.md shows the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aligndepth.errors import AlignDepthError

HARM, REFUSAL = "harm", "refusal"


@dataclass(frozen=True)
class Reading:
    """What a judge reads in one part of an experiment.

    ``judged`` says it in words (records keep it as ``judged``); ``continuation_only``:
    the judge reads only what the model generated (the record's ``output``), not the text
    forced before it; ``rate``: the summary key its rate is written under.
    """

    judged: str
    continuation_only: bool = False
    rate: str = "harmful_rate"


_RESPONSE = Reading("the response")

#: {experiment part: {measure: Reading}}; ED's parts are its query sets (``ed:harmful``,
#: ``ed:safe``). A (part, measure) missing here is refused.
READINGS: dict[str, dict[str, Reading]] = {
    "refusal_prefix": {
        HARM: Reading("refusal prefix + continuation"),
        # the prefix itself is a refusal phrase: read with it, every answer is a refusal
        REFUSAL: Reading("the continuation after the refusal prefix", continuation_only=True),
    },
    "prefill": {
        HARM: Reading("harmful prefix + continuation"),
        REFUSAL: Reading("harmful prefix + continuation (the prefix is the data's harmful "
                         "answer, so a refusal phrase is normally the continuation's)"),
    },
    "decoding": {HARM: _RESPONSE, REFUSAL: _RESPONSE},
    "ed:harmful": {HARM: _RESPONSE, REFUSAL: _RESPONSE},
    "ed:safe": {
        HARM: _RESPONSE,
        # no refusal phrase in an answer to a safe query is compliance, not harm
        REFUSAL: Reading("the response (no refusal phrase: compliance, not harm)",
                         rate="compliance_rate"),
    },
    "gcg": {HARM: _RESPONSE, REFUSAL: _RESPONSE},
    "gcg_transfer": {HARM: _RESPONSE, REFUSAL: _RESPONSE},
}


def measures(judge: Any) -> str:
    """What a judge (or its registry factory) measures: its ``measures``, else harm."""
    return str(getattr(judge, "measures", HARM))


def parts(experiment: str) -> list[str]:
    """The parts of ``experiment`` that judge text (none for ``kl``)."""
    return [p for p in READINGS if p == experiment or p.startswith(experiment + ":")]


def part_of(experiment: str, record: Mapping[str, Any]) -> str:
    """The part a record belongs to (ED's records: their query set)."""
    split = f"{experiment}:{record.get('set')}"
    return split if split in READINGS else experiment


def reading(part: str, measure: str) -> Reading | None:
    """What a judge measuring ``measure`` reads in ``part`` (``None``: the part judges
    nothing, or the pair is not in the table)."""
    return READINGS.get(part, {}).get(measure)


def record_measures(record: Mapping[str, Any]) -> str:
    """What a record's verdict measures: its ``measures``, else (records written before
    the field) what the built-in judge it names measures."""
    if "measures" in record:
        return str(record["measures"])
    from aligndepth.judges.registry import JUDGES

    return measures(JUDGES.get(str(record.get("judge")))) if record.get("judge") else HARM


def _refused(part: str, judge_name: str, measure: str) -> AlignDepthError:
    from aligndepth.judges.registry import JUDGES

    usable = set(READINGS[part])
    names = sorted(n for n, f in JUDGES.items() if measures(f) in usable)
    return AlignDepthError(f"the '{judge_name}' judge measures {measure}, which {part} "
                           f"cannot count: use a judge that measures "
                           f"{' or '.join(sorted(usable))} ({', '.join(names)})")


def judge_reading(part: str, judge: Any) -> Reading:
    """What ``judge`` reads in ``part``; a user error when the pair is not sound."""
    found = reading(part, measures(judge))
    if found is None:
        raise _refused(part, str(getattr(judge, "name", "?")), measures(judge))
    return found


def check_judging(experiments: Iterable[str], judge_name: str, measure: str) -> None:
    """A user error when the judge ``judge_name`` (measuring ``measure``) has no sound
    reading in one of ``experiments``, naming the judges that have one."""
    for experiment in experiments:
        for part in parts(experiment):
            if reading(part, measure) is None:
                raise _refused(part, judge_name, measure)
