"""``kill -9`` at a chosen record count: the one way the tests interrupt a run.

:func:`killed_at` runs ``aligndepth ARGV`` in a forked copy of the test process (the
libraries already imported, so it starts at once) and sends it ``SIGKILL`` when the
records it has written reach ``count``: before the write that reaches it (``before``: the
unit's work is lost), halfway through that write's first record (``torn``: a record cut
short, as a kill during ``write`` leaves it), or just after the write (``after``). The
process gets no chance to clean up: no ``finally``, no ``atexit``, no flush; the OS
releases its lock. :func:`kill_point` draws a seeded count and moment, and
:func:`all_records` reads what a run directory (or a recipe's, with a run per step)
recorded, for comparing a resumed run with an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import random
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aligndepth.runs import Run

MOMENTS = ("before", "torn", "after")


def kill_point(name: str, total: int) -> tuple[int, str]:
    """A record count in ``[1, total - 1]`` and a moment, drawn from a seed named ``name``."""
    assert total >= 2, f"{name}: {total} record(s) leave no point to kill at"
    rng = random.Random(f"kill -9 {name}")
    return rng.randint(1, total - 1), rng.choice(MOMENTS)


def die_at(count: int, moment: str) -> None:
    """Make this process SIGKILL itself when its records reach ``count`` (see the module)."""
    append = Run.append
    written = 0

    def dying_append(run: Run, experiment: str, records: Sequence[dict[str, Any]]) -> None:
        nonlocal written
        done = run.done_keys(experiment)
        new = [r for r in records if r["key"] not in done]
        if new and written + len(new) >= count:
            if moment == "torn":
                path = run.records_path(experiment)
                path.parent.mkdir(parents=True, exist_ok=True)
                line = json.dumps(new[0], ensure_ascii=False).encode("utf-8")
                with path.open("ab") as fh:
                    fh.write(line[:len(line) // 2])
                    fh.flush()
                    os.fsync(fh.fileno())
            elif moment == "after":
                append(run, experiment, records)
            os.kill(os.getpid(), signal.SIGKILL)
        append(run, experiment, records)
        written += len(new)

    Run.append = dying_append  # type: ignore[method-assign]


def killed_at(argv: Sequence[str], count: int, moment: str) -> None:
    """Run ``aligndepth ARGV`` until its records reach ``count``, then ``kill -9`` it;
    fails when the command ends before that."""
    assert moment in MOMENTS, moment
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test process
        try:
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            die_at(count, moment)
            from aligndepth.cli import main

            main(list(argv))
        except BaseException:
            os._exit(3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"aligndepth {' '.join(argv[:1])} ended (status {status}) before {count} records")


def all_records(root: Path) -> dict[str, list[dict[str, Any]]]:
    """Every records file under ``root`` (a run, or a recipe's runs) -> its records as
    parsed, sorted by key; a torn last line is left out, as a resumed run leaves it."""
    out = {}
    for path in sorted(root.rglob("records/*.jsonl")):
        lines = path.read_bytes().split(b"\n")
        records = [json.loads(line) for line in lines[:-1] if line.strip()]  # [-1]: torn
        out[str(path.relative_to(root))] = sorted(records, key=lambda r: r["key"])
    return out
