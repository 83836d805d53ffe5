"""What a judge reads in each experiment, and what its rate counts there.

A judge declares what it measures with a ``measures`` attribute (on its class, and on its
registry factory, so that a command can check the pair before any model loads):

- ``harm`` (the default when a judge declares nothing): whether the text is harmful
  (``organism``, ``rubric``, ``gpt4-rubric``, ``strongreject``, ``moderation``,
  ``llamaguard``, ``harmbench-cls``);
- ``refusal``: only whether the text refuses (``keyword``): its ``harmful`` verdict means
  "no refusal phrase".

:data:`READINGS` holds, for every part of an experiment that judges text and every measure,
what the judge reads and the summary key of its rate: each experiment's registry entry
declares its own (``Experiment.readings``; the default: the response, under either
measure). The rule is data: a pair missing from the table is refused before anything
loads (:func:`check_judging`), naming the judges that work. docs/judges.md shows the
table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from aligndepth.errors import AlignDepthError
from aligndepth.experiments_registry import HARM, REFUSAL, RESPONSE, Reading, experiments

__all__ = ["HARM", "READINGS", "REFUSAL", "RESPONSE", "Reading", "check_judging",
           "judge_reading", "measures", "part_of", "parts", "reading", "record_measures"]


class _Readings(Mapping[str, Mapping[str, Reading]]):
    """``{experiment part: {measure: Reading}}`` over every registered experiment, read
    from the registry each time (an experiment registered later is in it)."""

    def _table(self) -> dict[str, Mapping[str, Reading]]:
        return {part: by for e in experiments() for part, by in e.judge_readings().items()}

    def __getitem__(self, part: str) -> Mapping[str, Reading]:
        return self._table()[part]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


#: {experiment part: {measure: Reading}}; ED's parts are its query sets (``ed:harmful``,
#: ``ed:safe``). A (part, measure) missing here is refused.
READINGS: Mapping[str, Mapping[str, Reading]] = _Readings()


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
