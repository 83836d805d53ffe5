"""Run directories: a manifest plus append-only JSONL records, resumable after any crash.

Layout::

    RUN/manifest.json          what was run: config, models (with fingerprints), judge,
                               data (with a hash), seed, versions, prompt formats
    RUN/records/<exp>.jsonl    one JSON object per sample, each with a unique "key"
    RUN/summary.json, report.md, report.html, plots/   derived from records, re-renderable

Resume: work is split into units in a fixed order; a unit's records are appended in one
write and flushed to disk. Rerunning the same command skips units whose keys are all
present, so a run killed at any point (even ``kill -9``) completes with no lost and no
duplicated record. A torn last line (a write cut short) is dropped on reopen. Sampling
seeds derive from the run seed and the unit, never from what ran before, so a resumed
run produces the records an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: Manifest fields that must match for a run to be resumed rather than refused.
IDENTITY_FIELDS = ("experiments", "config", "models", "judge", "data", "seed")


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape results."""
    out = {"python": platform.python_version()}
    for name in ("aligndepth", "torch", "transformers"):
        mod = sys.modules.get(name)
        if mod is None:
            try:
                mod = __import__(name)
            except ImportError:
                continue
        out[name] = str(getattr(mod, "__version__", "?"))
    return out


def file_digest(path: str | Path) -> str:
    """sha256 of a file (datasets are small enough to hash whole)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]


def unit_seed(seed: int, key: str) -> int:
    """A per-unit seed that depends only on the run seed and the unit's key."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class Unit:
    """A piece of work whose records carry ``keys``; ``items`` are its inputs."""

    name: str
    keys: list[str]
    items: list[Any] = field(default_factory=list)


def chunked(items: Sequence[Any], size: int) -> list[list[Any]]:
    """Fixed-order chunks (the unit layout must not depend on what is already done)."""
    return [list(items[i:i + size]) for i in range(0, len(items), max(1, size))]


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f for f in IDENTITY_FIELDS if old.get(f) != new.get(f)]


class Run:
    """An open run directory."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._done: dict[str, set[str]] = {}

    # -- opening ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, manifest: dict[str, Any], overwrite: bool = False) -> Run:
        """Create a run, or reopen it to resume if its identity matches ``manifest``.

        Raises:
            AlignDepthError: the directory holds a different run (unless ``overwrite``),
                or holds files that are not a run.
        """
        root = Path(path).expanduser()
        manifest = json.loads(json.dumps(manifest, default=str))  # compare as stored
        old_path = root / MANIFEST
        if old_path.is_file():
            old = json.loads(old_path.read_text())
            diff = _differences(old, manifest)
            if diff and not overwrite:
                raise AlignDepthError(
                    f"'{root}' holds a run with a different {', '.join(diff)}: choose another "
                    "--out directory, rerun the original command to resume it, or pass "
                    "--overwrite to replace it")
            if not diff:
                log.info("resuming run in %s", root)
                return cls(root, old)
            shutil.rmtree(root)
        elif root.exists() and any(root.iterdir()):
            if not overwrite:
                raise AlignDepthError(f"'{root}' is not empty and holds no run: choose an empty "
                                      "or new --out directory, or pass --overwrite")
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        full = {**manifest, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "versions": versions(), "command": sys.argv}
        _atomic_write(root / MANIFEST, json.dumps(full, indent=2, default=str))
        return cls(root, full)

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Open an existing run read-only (for reports and re-judging)."""
        root = Path(path).expanduser()
        if not (root / MANIFEST).is_file():
            raise AlignDepthError(f"'{root}' is not a run directory (no {MANIFEST})")
        return cls(root, json.loads((root / MANIFEST).read_text()))

    # -- records ----------------------------------------------------------------------
    def records_path(self, experiment: str) -> Path:
        return self.path / "records" / f"{experiment}.jsonl"

    def records(self, experiment: str) -> list[dict[str, Any]]:
        """All complete records of ``experiment`` (a torn final line is ignored)."""
        path = self.records_path(experiment)
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def done_keys(self, experiment: str) -> set[str]:
        if experiment not in self._done:
            self._done[experiment] = {r["key"] for r in self.records(experiment)}
        return self._done[experiment]

    def _repair(self, path: Path) -> None:
        """Drop a torn last line left by a killed write."""
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with path.open("r+b") as fh:
                fh.truncate(cut)
            log.warning("dropped a torn record at the end of %s", path)

    def append(self, experiment: str, records: Sequence[dict[str, Any]]) -> None:
        """Append the records whose key is new, in one write, flushed to disk."""
        done = self.done_keys(experiment)
        records = [r for r in records if r["key"] not in done]
        if not records:
            return
        path = self.records_path(experiment)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            self._repair(path)
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        done.update(r["key"] for r in records)

    def pending(self, experiment: str, units: Iterable[Unit]) -> list[Unit]:
        """Units not yet complete, in their original order."""
        done = self.done_keys(experiment)
        return [u for u in units if not set(u.keys) <= done]

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path / name
        _atomic_write(path, json.dumps(obj, indent=2, default=str))
        return path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
