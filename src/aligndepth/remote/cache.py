"""A persistent, append-only cache of endpoint answers, so a rerun never pays twice.

One JSONL file per judge or served model (``<cache_dir>/<name>.jsonl``), one line per
answer::

    {"key": "<sha256>", "value": <the endpoint's answer, JSON-able>}

The key is the sha256 of the judge's result-affecting identity (endpoint, model, prompt;
never the API key), the instruction and the response (:func:`cache_key`). What is stored
is the endpoint's *answer* (the rubric judge's completion text, the moderation judge's
flags), not the verdict, so changing a threshold needs no new requests. Only answers the
judge can read are stored: an answer that parses as ``unparseable`` and a request that
failed are never written, and an entry that a judge can no longer read counts as absent,
so a rerun asks the endpoint again for exactly those pairs (see
:mod:`aligndepth.judges.api`). Served engines (:mod:`aligndepth.engine.served`) keep
completions the same way, keyed by the request.

Writes are serialised by a lock (the judges write from a thread pool), appended in one
``write`` and flushed with ``fsync``. A torn last line (a process killed mid-write) is
skipped on load, and the next write starts on a fresh line, so the fragment never
swallows a good entry. Several processes may share the file: each appends whole lines.
A cache made without a path keeps its answers in memory only (for one process's life).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def default_cache_dir(kind: str = "judges") -> Path:
    """``$ALIGNDEPTH_CACHE/<kind>`` or the platform user cache's ``<kind>`` folder."""
    from aligndepth.paths import cache_root

    return cache_root() / kind


def cache_key(identity: Mapping[str, Any], instruction: str, response: str) -> str:
    """sha256 over the judge identity and the pair (canonical JSON, so order-free)."""
    return digest({"judge": identity, "instruction": instruction, "response": response})


def digest(value: Any) -> str:
    """sha256 of a JSON-able value in canonical form (key order does not matter)."""
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JsonlCache:
    """Key -> JSON value, loaded once, appended to as answers arrive (``path=None``: kept
    in memory only, nothing is read or written)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        bad = 0
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    self._data[str(entry["key"])] = entry["value"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    bad += 1
        if bad:
            log.warning("skipped %d unreadable line(s) in the answer cache %s", bad, self.path)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str) -> Any | None:
        """The stored value, or ``None`` when absent."""
        return self._data.get(key)

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-able) under ``key``, durably."""
        line = json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n"
        with self._lock:
            if self.path is None:
                self._data[key] = value
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a+b") as fh:
                if fh.tell() > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":  # a torn line: start ours on a fresh one
                        line = "\n" + line
                fh.write(line.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            self._data[key] = value
