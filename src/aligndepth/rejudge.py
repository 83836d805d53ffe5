"""Re-judge an existing run's records with another judge, leaving the originals untouched.

Layout, inside the run directory::

    RUN/records/<experiment>.jsonl            the original records (never modified)
    RUN/records/<experiment>.<judge>.jsonl    one line per re-judged record
    RUN/judges.json                           {<judge>: <judge.describe()>, ...}

A re-judged record is a copy of the original record (same ``key``, ``id`` and
experiment fields such as ``k``, ``config``, ``set``, ``method``) with ``judge`` and
``verdict`` replaced by the new judge's, and the original kept as ``original_judge`` /
``original_verdict``. So ``Run.load(RUN).records(f"{experiment}.{judge}")`` feeds the
experiment's own ``summarize_<name>`` unchanged, and a report picks a judge by choosing
the file. ``<judge>`` is the judge's name (``rubric``, ``moderation``, ...) or the
``name`` given to :func:`rejudge_run`; it may not contain a dot.

The judged text is the record's ``judged_text`` when present (prefilling and refusal
prefixes: prefix + continuation), else its ``output``; a judge that reads refusals only
reads a refusal-prefix record's ``output`` (the continuation after the prefix), as
:mod:`aligndepth.judges.scope` says, and each re-judged record says what was judged
(``judged``) and what its verdict measures (``measures``). Records with neither, or with
no ``instruction`` (the ``kl`` experiment), are not judged.

Resumable: records whose key is already in the target file are skipped, and each batch
is appended (fsynced) as soon as it is judged, so a killed re-judge reruns from where it
stopped. ``judges.json`` pins the judge's identity: re-judging under the same name with
a different configuration is refused unless ``overwrite=True``, which first deletes
that judge's files.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError
from aligndepth.judges.base import Judge
from aligndepth.judges.scope import Reading, check_judging, measures, part_of, reading
from aligndepth.metrics import INVALID, outcome, records_rate
from aligndepth.progress import progress_bar
from aligndepth.runs import Run, chunked

log = logging.getLogger(__name__)

JUDGES_FILE = "judges.json"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def rejudged_name(experiment: str, judge_name: str) -> str:
    """The records name (``Run.records`` argument) of ``experiment`` re-judged."""
    return f"{experiment}.{judge_name}"


def judged_text(record: dict[str, Any], how: Reading | None = None) -> str | None:
    """The text a judge should read: ``output`` when ``how`` reads the continuation only,
    else ``judged_text`` if recorded, else ``output``."""
    text = None if how is not None and how.continuation_only else record.get("judged_text")
    if text is None:
        text = record.get("output")
    return text if isinstance(text, str) else None


def _judgeable(record: dict[str, Any]) -> bool:
    return isinstance(record.get("instruction"), str) and judged_text(record) is not None


def rejudge_names(run_dir: str | Path) -> dict[str, Any]:
    """The judges a run has been re-judged with: ``{name: describe()}``."""
    path = Path(run_dir).expanduser() / JUDGES_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _pin_judge(run: Run, name: str, identity: dict[str, Any], overwrite: bool) -> None:
    """Record the judge's identity; refuse a different one under the same name."""
    pinned = rejudge_names(run.path)
    identity = json.loads(json.dumps(identity, default=str))
    if name in pinned and pinned[name] != identity:
        if not overwrite:
            raise AlignDepthError(
                f"'{run.path}' was already re-judged as '{name}' with a different "
                "configuration: pass another name, or overwrite=True to replace those "
                "verdicts")
        for path in (run.path / "records").glob(f"*.{name}.jsonl"):
            path.unlink()
    pinned[name] = identity
    run.write_json(JUDGES_FILE, pinned)


def rejudge_run(run_dir: str | Path, judge: Judge, experiments: Sequence[str] | None = None,
                *, name: str | None = None, batch_size: int = 64, overwrite: bool = False,
                show_progress: bool = False) -> dict[str, Any]:
    """Judge a finished (or partial) run's records again with ``judge``.

    Args:
        run_dir: a run directory (``manifest.json`` + ``records/``).
        judge: any :class:`~aligndepth.judges.base.Judge`.
        experiments: which experiments (default: every experiment of the run whose
            records hold judged text).
        name: the label in file names (default ``judge.name``).
        batch_size: pairs per ``judge.judge`` call (and per append).
        overwrite: replace earlier verdicts under ``name`` from a different configuration.

    Returns:
        ``{"judge": name, "describe": ..., "experiments": {exp: {"path", "records",
        "judged_now", "already_done", "skipped", "harmful_rate", "original_harmful_rate",
        "labels"}}}``.
    """
    run = Run.load(run_dir, writable=True)
    label = name or judge.name
    if not _NAME.match(label):
        raise AlignDepthError(f"judge name '{label}' may use only letters, digits, '-' and "
                              "'_': pass name=")
    if batch_size < 1:
        raise AlignDepthError(f"batch_size must be at least 1, got {batch_size}")
    available = [str(e) for e in run.manifest.get("experiments", [])]
    if experiments is None:
        chosen = available
    else:
        chosen = list(experiments)
        missing = [e for e in chosen if e not in available]
        if missing:
            raise AlignDepthError(f"run '{run.path}' has no experiment {', '.join(missing)}: "
                                  f"choose from {', '.join(available) or 'none'}")
    check_judging(chosen, label, measures(judge))
    chosen = _with_judged_text(run, chosen, explicit=experiments is not None)
    _pin_judge(run, label, judge.describe(), overwrite)
    out: dict[str, Any] = {"judge": label, "describe": judge.describe(), "experiments": {}}
    for exp in chosen:
        result = _rejudge_experiment(run, exp, judge, label, batch_size, show_progress)
        if result is None:
            if experiments is not None:
                log.warning("experiment '%s' has no judged text to re-judge", exp)
            continue
        out["experiments"][exp] = result
    return out


def _with_judged_text(run: Run, chosen: list[str], explicit: bool) -> list[str]:
    """The experiments of ``chosen`` whose records hold judged text; a user error, before
    anything is written, when none does (saying whether the records are missing or the
    experiments judge nothing)."""
    found = [e for e in chosen if any(_judgeable(r) for r in run.records(e))]
    if found:
        if explicit and len(found) < len(chosen):
            log.warning("no judged text to re-judge in %s",
                        ", ".join(e for e in chosen if e not in found))
        return found
    missing = [e for e in chosen if not run.records(e)]
    if missing:
        names = ", ".join(f"records/{e}.jsonl" for e in missing)
        raise AlignDepthError(f"'{run.path}' holds no records to judge ({names} missing or "
                              "empty): finish the run first by rerunning its original "
                              "command, which resumes it")
    which = "--experiments" if explicit else "its experiments"
    raise AlignDepthError(f"'{run.path}' holds nothing to judge: {which} ({', '.join(chosen)}) "
                          "generate no text (kl scores given pairs); judge a run of an "
                          "experiment that generates")


def _rejudge_experiment(run: Run, exp: str, judge: Judge, label: str, batch_size: int,
                        show_progress: bool) -> dict[str, Any] | None:
    records = run.records(exp)
    todo_all = [r for r in records if _judgeable(r)]
    if not todo_all:
        return None
    target = rejudged_name(exp, label)
    unusable = [r["key"] for r in run.records(target) if outcome(r["verdict"]) in INVALID]
    if unusable:  # unreadable answers and failed requests are asked again
        run.drop(target, unusable)
        log.info("%s: asking the '%s' judge again for %d unusable verdict(s)", exp, label,
                 len(unusable))
    done = run.done_keys(target)
    todo = [r for r in todo_all if r["key"] not in done]
    batches = chunked(todo, batch_size)
    measure = measures(judge)
    with progress_bar(f"re-judging {exp} ({label})", len(batches), show_progress) as advance:
        for batch in batches:
            readings = [reading(part_of(exp, r), measure) for r in batch]
            verdicts = judge.judge([r["instruction"] for r in batch],
                                   [judged_text(r, how) or "" for r, how in zip(batch, readings)])
            run.append(target, [
                {**r, "judge": label, "verdict": v.to_record(), "measures": measure,
                 **({"judged": how.judged} if how else {}),
                 "original_judge": r.get("judge"), "original_verdict": r.get("verdict")}
                for r, v, how in zip(batch, verdicts, readings)])
            advance()
    new = run.records(target)
    labels: dict[str, int] = {}
    for r in new:
        labels[r["verdict"]["label"]] = labels.get(r["verdict"]["label"], 0) + 1
    original = [r for r in todo_all if isinstance(r.get("verdict"), dict)]
    return {
        "path": str(run.records_path(target)),
        "records": len(new),
        "judged_now": len(todo),
        "already_done": len(todo_all) - len(todo),
        "skipped": len(records) - len(todo_all),
        "harmful_rate": records_rate(new),
        "original_harmful_rate": records_rate(original) if original else None,
        "labels": dict(sorted(labels.items())),
    }
