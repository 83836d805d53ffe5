"""The files of a run's ``records/`` folder: reading and appending JSONL records, and
the names of the files one experiment's records and plan may span.

An unsharded run keeps ``records/<exp>.jsonl`` and ``records/<exp>.plan.json``; each
worker of a sharded run (:mod:`aligndepth.shards`) appends to its own
``records/<exp>.shard-I-of-N.jsonl`` and plans into ``records/<exp>.shard-I-of-N.plan.json``.
Readers take all of them as one (:func:`record_files`, :func:`plan_files`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def shard_tag(index: int, count: int) -> str:
    """The part of a shard's file names that names it: ``shard-I-of-N``."""
    return f"shard-{index}-of-{count}"


def _shard_files(folder: Path, stem: str, suffix: str) -> list[tuple[int, int, Path]]:
    """``(index, count, path)`` of every shard file ``<stem>.shard-I-of-N<suffix>``,
    by count then index."""
    if not folder.is_dir():
        return []
    pattern = re.compile(re.escape(stem) + r"\.shard-(\d+)-of-(\d+)" + re.escape(suffix))
    found = [(int(m[1]), int(m[2]), p) for p in folder.iterdir()
             if (m := pattern.fullmatch(p.name)) and p.is_file()]
    return sorted(found, key=lambda t: (t[1], t[0]))


def record_files(folder: Path, experiment: str) -> list[Path]:
    """The records files of ``experiment`` that exist: the unsharded one, then each shard's."""
    main = folder / f"{experiment}.jsonl"
    return ([main] if main.is_file() else []) + [
        p for _, _, p in _shard_files(folder, experiment, ".jsonl")]


def records_label(folder: Path, experiment: str) -> str:
    """Where ``experiment``'s records are, for a reader: ``records/<experiment>.jsonl``, or
    its shards' files (``records/<experiment>.shard-*-of-N.jsonl``) when it has those."""
    shards = _shard_files(folder, experiment, ".jsonl")
    whole = f"{folder.name}/{experiment}.jsonl"
    if not shards:
        return whole
    counts = sorted({count for _, count, _ in shards})
    names = [f"{folder.name}/{experiment}.shard-*-of-{count}.jsonl" for count in counts]
    return " and ".join(([whole] if (folder / f"{experiment}.jsonl").is_file() else []) + names)


def plan_files(folder: Path, experiment: str) -> list[Path]:
    """The plan files of ``experiment`` that exist, the unsharded one first."""
    main = folder / f"{experiment}.plan.json"
    return ([main] if main.is_file() else []) + [
        p for _, _, p in _shard_files(folder, experiment, ".plan.json")]


def shard_counts(folder: Path) -> set[int]:
    """The shard counts named by the records and plan files in ``folder``."""
    if not folder.is_dir():
        return set()
    pattern = re.compile(r".+\.shard-(\d+)-of-(\d+)\.(jsonl|plan\.json)")
    return {int(m[2]) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))}


def in_plan_order(records: list[dict[str, Any]], plan: dict[str, list[str]] | None
                  ) -> list[dict[str, Any]]:
    """Records read from several files, in the order of the plan's units and keys (the
    order one writer appends them in); records the plan does not name keep their order,
    after the others."""
    if not plan:
        return records
    rank = {key: i for i, key in enumerate(k for keys in plan.values() for k in keys)}
    last = len(rank)
    return sorted(records, key=lambda r: rank.get(r["key"], last))


def parse_lines(data: bytes) -> tuple[list[tuple[bytes, dict[str, Any]]],
                                       list[tuple[int, bytes]]]:
    """Split a records file into parsed records (with their raw line) and unreadable
    lines (1-based line number, raw); an unterminated last line is a torn write, dropped."""
    good: list[tuple[bytes, dict[str, Any]]] = []
    bad: list[tuple[int, bytes]] = []
    lines = data.splitlines(keepends=True)
    for n, raw in enumerate(lines, 1):
        if not raw.endswith(b"\n"):
            break  # torn last line
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if isinstance(record, dict) and "key" in record:
            good.append((raw, record))
        else:
            bad.append((n, raw))
    return good, bad


def append_whole(path: Path, payload: bytes) -> None:
    """Append ``payload`` in one write; on failure the file is cut back to its old size."""
    size = path.stat().st_size if path.exists() else 0
    if size:
        with path.open("rb") as fh:
            fh.seek(size - 1)
            torn = fh.read(1) != b"\n"
        if torn:  # a record cut short by a killed write
            data = path.read_bytes()
            size = data.rfind(b"\n") + 1
            os.truncate(path, size)
            log.warning("dropped a torn record at the end of %s", path)
    with path.open("ab") as fh:
        try:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        except OSError:
            fh.truncate(size)
            raise
