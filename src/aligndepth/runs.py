"""Run directories: a manifest plus append-only JSONL records, resumable after any crash.

Layout::

    RUN/manifest.json          what was run: config, models (with fingerprints), judge,
                               data (with a hash), seed, versions, prompt formats
    RUN/records/<exp>.jsonl    one JSON object per sample, each with a unique "key"
    RUN/records/<exp>.plan.json  every unit the experiment plans (name -> record keys)
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
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError
from aligndepth.locking import lock_directory
from aligndepth.outdir import (
    MANIFEST,
    atomic_write,
    clear_directory,
    directory_kind,
    listing,
    remove_leftovers,
)
from aligndepth.run_files import (
    append_whole,
    in_plan_order,
    parse_lines,
    plan_files,
    record_files,
)

log = logging.getLogger(__name__)

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
    """sha256 of a file, or of a dataset directory's files (each relative path and its
    bytes, in sorted order; datasets are small enough to hash whole)."""
    root = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        if root.is_dir():
            h.update(str(file.relative_to(root)).encode() + b"\0")
        with file.open("rb") as fh:
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


def _identity(manifest: dict[str, Any], field_name: str, roles: Any = None) -> Any:
    """A manifest field as compared on resume: where a model sits (``placement``) is not
    part of what a run is, so a run started on one device may resume on another; only
    the models of ``roles`` (all when ``None``) count."""
    value = manifest.get(field_name)
    if field_name == "models" and isinstance(value, dict):
        return {role: {k: v for k, v in m.items() if k != "placement"}
                if isinstance(m, dict) else m for role, m in value.items()
                if roles is None or role in roles}
    return value


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The identity fields that differ; a model the new run does not load (the base of
    an aligned-only experiment, in a run that loaded both) is not compared."""
    roles = new.get("models")
    return [f for f in IDENTITY_FIELDS if _identity(old, f, roles) != _identity(new, f)]


class Run:
    """An open run directory."""

    def __init__(self, path: Path, manifest: dict[str, Any], writable: bool = False) -> None:
        self.path = path
        self.manifest = manifest
        self.writable = writable
        self.resumed = False
        self._done: dict[str, set[str]] = {}

    # -- opening ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, manifest: dict[str, Any], overwrite: bool = False) -> Run:
        """Create a run, or reopen it to resume if its identity matches ``manifest``.

        The directory is locked for this process's life (one writer per run). With
        ``overwrite`` a directory holding another run (or a training output, or a corrupted
        manifest) is emptied first; a directory holding anything else is never touched.

        Raises:
            AlignDepthError: the directory holds a different run (unless ``overwrite``),
                holds files that are not a run, is locked by another process, or cannot
                be written.
        """
        root = Path(path).expanduser()
        manifest = json.loads(json.dumps(manifest, default=str))  # compare as stored
        kind = check_out(root, overwrite)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AlignDepthError(f"cannot create the run directory '{root}' "
                                  f"({exc.strerror}): choose a writable --out") from None
        lock_directory(root)
        remove_leftovers(root)
        full, resumed = cls.create_or_resume(root, manifest, kind, overwrite)
        run = cls(root, full, writable=True)
        run.resumed = resumed
        return run

    @staticmethod
    def create_or_resume(root: Path, manifest: dict[str, Any], kind: str, overwrite: bool
                         ) -> tuple[dict[str, Any], bool]:
        """The manifest of the locked directory ``root`` (see :meth:`open`): the one
        there if it matches ``manifest`` (then ``True``: a resume), else ``manifest``,
        written after the directory is cleared."""
        old = _read_manifest(root, overwrite)
        if old is not None:
            diff = _differences(old, manifest)
            if not diff:
                return old, True
            if not overwrite:
                raise AlignDepthError(
                    f"'{root}' holds a run with a different {', '.join(diff)}: choose another "
                    "--out directory, rerun the original command to resume it, or pass "
                    f"--overwrite to replace it (deletes {listing(root, ours=True)})")
        elif kind == "training" and not overwrite:
            raise AlignDepthError(f"'{root}' holds a training output: choose another --out "
                                  f"directory, or pass --overwrite to replace it (deletes "
                                  f"{listing(root, ours=True)})")
        kept = clear_directory(root)
        if kept:
            log.warning("%s: replaced the run but kept %s (not written by aligndepth)", root,
                        ", ".join(kept))
        full = {**manifest, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "versions": versions(), "command": sys.argv}
        try:
            atomic_write(root / MANIFEST, json.dumps(full, indent=2, default=str))
        except OSError as exc:
            raise AlignDepthError(f"could not write '{root / MANIFEST}' ({exc.strerror}): "
                                  "free space or fix the directory, then rerun the same "
                                  "command") from None
        return full, False

    @classmethod
    def load(cls, path: str | Path, writable: bool = False) -> Run:
        """Open an existing run: read-only (reports), or ``writable`` (re-judging: the
        directory is then locked for this process's life, like :meth:`open`).

        A damaged manifest (unreadable, or without its list of experiments) is an error
        naming the damage; nothing is written then.
        """
        root = Path(path).expanduser()
        if not (root / MANIFEST).is_file():
            raise AlignDepthError(f"'{root}' is not a run directory (no {MANIFEST})")
        if writable:
            lock_directory(root, advice="wait for it to finish, then try again")
        manifest = _read_manifest(root, overwrite=False, fix=REMAKE)
        assert manifest is not None
        experiments = manifest.get("experiments")
        if not (isinstance(experiments, list) and experiments
                and all(isinstance(e, str) for e in experiments)):
            raise AlignDepthError(f"'{root / MANIFEST}' is damaged (it names no list of "
                                  f"experiments): {REMAKE}")
        if writable:
            remove_leftovers(root)
        return cls(root, manifest, writable=writable)

    # -- records ----------------------------------------------------------------------
    def records_path(self, experiment: str) -> Path:
        return self.path / "records" / f"{experiment}.jsonl"

    def records(self, experiment: str) -> list[dict[str, Any]]:
        """All complete records of ``experiment``.

        A torn final line (a write cut short) is ignored. Any other line that does not
        parse is reported; in a run opened for writing it is moved to
        ``records/<experiment>.rejected.jsonl`` (see :meth:`_heal`).
        """
        files = record_files(self.path / "records", experiment)
        out = [r for path in files for r in self._read(path)]
        return in_plan_order(out, self.planned(experiment)) if len(files) > 1 else out

    def may_heal(self, path: Path) -> bool:
        """Whether this run may rewrite the records file ``path`` (see :meth:`_heal`)."""
        return self.writable

    def owns(self, experiment: str, unit: str) -> bool:
        """Whether this process runs the unit ``unit`` of ``experiment`` (a sharded run's
        worker runs its share: :class:`aligndepth.shards.ShardedRun`)."""
        return True

    def _read(self, path: Path) -> list[dict[str, Any]]:
        """The complete records of one records file (see :meth:`records`)."""
        good, bad = parse_lines(path.read_bytes())
        if bad:
            lines = ", ".join(str(n) for n, _ in bad[:10]) + (" ..." if len(bad) > 10 else "")
            if self.may_heal(path):
                self._heal(path, good, bad)
                log.warning("%s: %d unreadable line(s) (line %s) moved to %s", path, len(bad),
                            lines, path.with_suffix(".rejected.jsonl").name)
            else:
                log.warning("%s: %d unreadable line(s) skipped (line %s); rerun the command "
                            "to move them aside", path, len(bad), lines)
        return [r for _, r in good]

    def _heal(self, path: Path, good: list[tuple[bytes, dict[str, Any]]],
              bad: list[tuple[int, bytes]]) -> None:
        """Move unreadable lines to the rejected file and rewrite the records without them."""
        rejected = path.with_suffix(".rejected.jsonl")
        with rejected.open("ab") as fh:
            fh.write(b"".join(raw.rstrip(b"\n") + b"\n" for _, raw in bad))
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write(path, b"".join(raw for raw, _ in good))

    def done_keys(self, experiment: str) -> set[str]:
        if experiment not in self._done:
            self._done[experiment] = {r["key"] for r in self.records(experiment)}
        return self._done[experiment]

    def append(self, experiment: str, records: Sequence[dict[str, Any]]) -> None:
        """Append the records whose key is new, in one write, flushed to disk.

        A failed write (disk full, say) leaves the file exactly as it was.
        """
        done = self.done_keys(experiment)
        records = [r for r in records if r["key"] not in done]
        if not records:
            return
        path = self.records_path(experiment)
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            append_whole(path, payload.encode("utf-8"))
        except OSError as exc:
            raise AlignDepthError(f"could not write records to '{path}' ({exc.strerror}): "
                                  "free space or fix the directory, then rerun the same "
                                  "command to resume") from None
        done.update(r["key"] for r in records)

    def drop(self, experiment: str, keys: Iterable[str]) -> int:
        """Remove the records of ``keys`` (so they are made again), in one atomic rewrite;
        returns how many were removed. Only for derived records (re-judged verdicts)."""
        if not self.writable:
            raise RuntimeError("drop() needs a run opened for writing")
        gone = set(keys)
        path = self.records_path(experiment)
        if not gone or not path.is_file():
            return 0
        good, _ = parse_lines(path.read_bytes())
        kept = [raw for raw, r in good if r["key"] not in gone]
        atomic_write(path, b"".join(kept))
        self._done.pop(experiment, None)
        return len(good) - len(kept)

    def plan_path(self, experiment: str) -> Path:
        return self.path / "records" / f"{experiment}.plan.json"

    def planned(self, experiment: str) -> dict[str, list[str]] | None:
        """Unit name -> record keys of every unit ``experiment`` planned (``None``: it
        never started), as :meth:`pending` saw them."""
        files = plan_files(self.path / "records", experiment)
        if not files:
            return None
        plan: dict[str, list[str]] = {}
        for path in files:  # a sharded run's workers each plan every unit
            plan.update(json.loads(path.read_text(encoding="utf-8")))
        return plan

    def pending(self, experiment: str, units: Iterable[Unit], group: str | None = None
                ) -> list[Unit]:
        """Units not yet complete, in their original order (a resumed run says how many
        were already done). The units are added to the experiment's plan first, so a
        report knows what an interrupted run left undone. A sharded run's worker gets
        only its own units; ``group`` names units that are one piece of work (a search
        over them all), which the worker that owns ``group`` takes whole."""
        done = self.done_keys(experiment)
        units = list(units)
        plan = self.planned(experiment) or {}
        if self.writable and any(plan.get(u.name) != u.keys for u in units):
            plan.update({u.name: list(u.keys) for u in units})
            self.plan_path(experiment).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.plan_path(experiment), json.dumps(plan))
        mine = [u for u in units if self.owns(experiment, group or u.name)]
        todo = [u for u in mine if not set(u.keys) <= done]
        if self.resumed and len(todo) < len(mine):
            log.warning("%s: resuming, %d of %d units already done", experiment,
                        len(mine) - len(todo), len(mine))
        return todo

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path / name
        atomic_write(path, json.dumps(obj, indent=2, default=str))
        return path


def check_out(root: Path, overwrite: bool) -> str:
    """Classify ``--out`` (:func:`~aligndepth.outdir.directory_kind`) and refuse what no
    command may write into: a directory of the user's own files, or (unless
    ``overwrite``) a run whose manifest is corrupted. Needs no model, so commands call it
    before loading any."""
    kind = directory_kind(root)
    if kind == "other":
        raise AlignDepthError(
            f"'{root}' holds files that are not an aligndepth run ({listing(root)}): "
            "choose an empty or new --out directory (--overwrite only replaces runs)")
    if kind == "run":
        _read_manifest(root, overwrite)
    return kind


#: What to do about a run whose manifest is damaged, when the run is read (not made).
REMAKE = ("the run cannot be read; restore the file from a copy, or make the run again "
          "(its original command with --overwrite)")


def _read_manifest(root: Path, overwrite: bool, fix: str | None = None
                   ) -> dict[str, Any] | None:
    """The manifest in ``root`` (None if none). A corrupted one is an error (saying
    ``fix``, by default how to replace the run) unless ``overwrite`` (then it counts as a
    different run)."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (ValueError, UnicodeDecodeError) as exc:
        if overwrite:
            return {"corrupted": True}
        fix = fix or f"pass --overwrite to replace the run, or remove '{root}'"
        raise AlignDepthError(f"'{path}' is corrupted ({type(exc).__name__}): {fix}") from None
