"""Progress of long work on stderr, silenced when not wanted: a rich bar on a terminal,
plain lines (step, total, elapsed, remaining and the caller's fields, such as a loss)
every :data:`LINE_EVERY_S` seconds anywhere else, so a batch job's log shows where it is."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: Seconds between two progress lines when stderr is not a terminal (the first advance
#: and the end always write one).
LINE_EVERY_S = 30.0


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True
                 ) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **fields)``; when ``enabled``, shows a rich bar on stderr, or
    writes progress lines to stderr when it is not a terminal (nor a notebook)."""
    if not enabled:
        yield lambda n=1, **_: None
        return
    from rich.console import Console

    console = Console(stderr=True)
    if not (console.is_terminal or console.is_jupyter):
        with progress_lines(description, total) as advance:
            yield advance
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields: Any) -> None:
            bar.update(task, advance=n, info=_info(fields))

        yield advance


@contextmanager
def progress_lines(description: str, total: int) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **fields)`` that writes ``description: done/total (pct%),
    elapsed H:MM:SS, remaining H:MM:SS, fields`` to stderr at the first advance, then
    at most every :data:`LINE_EVERY_S` seconds, and once more at the end if work was done
    since the last line."""
    lines = _Lines(description, total)
    yield lines.advance
    if lines.done != lines.written:
        lines.write()


class _Lines:
    """The state of :func:`progress_lines`: work done, and when the last line was."""

    def __init__(self, description: str, total: int) -> None:
        self.description, self.total = description, total
        self.start = time.monotonic()
        self.last = -float("inf")
        self.done = self.written = 0
        self.info = ""

    def advance(self, n: int = 1, **fields: Any) -> None:
        first = self.done == 0
        self.done += n
        self.info = _info(fields) or self.info
        if first or time.monotonic() - self.last >= LINE_EVERY_S:
            self.write()

    def write(self) -> None:
        done, total, elapsed = self.done, self.total, time.monotonic() - self.start
        parts = [f"{self.description}: {done}/{total}"
                 + (f" ({100 * done / total:.0f}%)" if total else ""),
                 f"elapsed {_clock(elapsed)}"]
        if 0 < done < total:
            parts.append(f"remaining {_clock(elapsed * (total - done) / done)}")
        if self.info:
            parts.append(self.info)
        print(", ".join(parts), file=sys.stderr, flush=True)
        self.written, self.last = done, time.monotonic()


def _info(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in fields.items())


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
