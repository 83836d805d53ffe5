"""Shards of one run: several workers (torchrun ranks, job-array tasks) write one run
directory, each its share of every experiment's units.

A unit belongs to shard ``sha256("<experiment>|<unit name>") mod N`` (:func:`owner`): the
split depends only on the unit and the shard count, never on positions or on what is done,
so a rerun with the same count gives every worker the same units and redoes nothing. Each
worker appends to ``records/<exp>.shard-I-of-N.jsonl`` and plans (every unit, as an
unsharded run does) into ``records/<exp>.shard-I-of-N.plan.json``; readers take all files
of an experiment as one, in the plan's order (:mod:`aligndepth.run_files`), so a sharded
run's records and summary equal an unsharded run's. A run is complete when every planned
unit is recorded, whoever recorded it.

Locks: the workers hold the run's writer lock shared (a lone writer, or ``aligndepth
judge``, is refused while any worker runs, and the workers while it runs), each its own
shard lock (``records/.shard-I-of-N.lock``: a second worker of the same shard is
refused), and, for a moment, the setup lock (``.aligndepth.setup.lock``, waited for): the
first worker writes the manifest and ``records/shards.json`` under it; the others find the
manifest the same and resume. Summary and report are rendered under it too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError
from aligndepth.locking import lock_directory
from aligndepth.outdir import TEMP_SUFFIX, atomic_write, directory_kind, is_leftover
from aligndepth.run_files import shard_counts, shard_tag
from aligndepth.runs import Run, check_out

log = logging.getLogger(__name__)

#: The run's shard count, in ``records/``.
SHARDS_FILE = "shards.json"
#: Held while a worker writes the manifest or renders the report.
SETUP_LOCK = ".aligndepth.setup.lock"


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count`` (``0 <= index < count``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise AlignDepthError(
                f"--shard {self}: give I/N with 0 <= I < N (N workers are 0/N, 1/N, ... "
                "(N-1)/N, each run once, into the same --out)")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """``shard-I-of-N``, in its file names."""
        return shard_tag(self.index, self.count)


def parse_shard(text: str | Shard | None) -> Shard | None:
    """``"I/N"`` as a :class:`Shard` (``None`` stays ``None``).

    Raises:
        AlignDepthError: not two whole numbers, or ``I`` outside ``[0, N)``.
    """
    if text is None or isinstance(text, Shard):
        return text
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if found is None:
        raise AlignDepthError(f"--shard '{text}' is not I/N: give this worker's index and the "
                              "worker count, e.g. --shard 0/4 (indices 0 to N-1)")
    return Shard(int(found[1]), int(found[2]))


def world(environ: Mapping[str, str]) -> tuple[int, int, int] | None:
    """``(rank, world size, local rank)`` under torchrun or accelerate launch with more than
    one process, else ``None``."""
    try:
        size = int(environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return None
        rank = int(environ["RANK"])
        return rank, size, int(environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise AlignDepthError(
            f"WORLD_SIZE={environ.get('WORLD_SIZE')} and RANK={environ.get('RANK')} do not "
            "name a worker: launch with torchrun or accelerate launch, or unset them") from None


def worker_shard(given: Shard | None, environ: Mapping[str, str]) -> Shard | None:
    """This worker's shard: ``--shard``, or RANK/WORLD_SIZE under torchrun; not both."""
    ranks = world(environ)
    if ranks is None:
        return given
    if given is not None:
        raise AlignDepthError(
            f"--shard {given} and torchrun's WORLD_SIZE={ranks[1]} both split the run: drop "
            "--shard under torchrun or accelerate launch (each rank takes RANK/WORLD_SIZE)")
    return Shard(ranks[0], ranks[1])


def owner(experiment: str, unit: str, count: int) -> int:
    """The shard that runs ``unit`` of ``experiment`` among ``count``."""
    digest = hashlib.sha256(f"{experiment}|{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % count


@contextmanager
def setup_lock(root: Path) -> Iterator[None]:
    """Hold ``root``'s setup lock (waiting for it) for the block."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with (root / SETUP_LOCK).open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def run_count(root: Path) -> int | None:
    """The shard count ``root``'s run was started with: ``records/shards.json``, else 1
    when it holds records or plans of one writer, else ``None`` (nothing started)."""
    records = root / "records"
    path = records / SHARDS_FILE
    if path.is_file():
        try:
            return int(json.loads(path.read_text(encoding="utf-8"))["count"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s is damaged; the shard count is read from the file names", path)
    counts = shard_counts(records)
    if counts:
        return max(counts)
    if records.is_dir() and any(p.suffix in (".jsonl", ".json") for p in records.iterdir()):
        return 1
    return None


def progress(run: Run) -> tuple[bool, dict[int, tuple[int, int]]]:
    """Whether every experiment the manifest names has a plan whose units are all
    recorded, and per shard of the run's count ``(units done, units planned)``."""
    count = run_count(run.path) or 1
    shards = {i: [0, 0] for i in range(count)}
    complete = True
    for name in run.manifest.get("experiments") or []:
        plan = run.planned(name)
        if plan is None:
            complete = False
            continue
        done = run.done_keys(name)
        for unit, keys in plan.items():
            finished = set(keys) <= done
            complete &= finished
            tally = shards[owner(name, unit, count)]
            tally[0] += finished
            tally[1] += 1
    return complete, {i: (d, p) for i, (d, p) in shards.items()}


def missing_shards(run: Run) -> str | None:
    """``None`` for a complete run, else a sentence naming the shards with units left
    (units done / planned each) and the experiments not started."""
    complete, tallies = progress(run)
    if complete:
        return None
    count = len(tallies)
    left = [f"{i}/{count} ({d} of {p} units done)" for i, (d, p) in tallies.items() if d < p]
    unplanned = [n for n in run.manifest.get("experiments") or [] if run.planned(n) is None]
    parts = ([f"shards {', '.join(left)}"] if left else []) + (
        [f"{', '.join(unplanned)} not started by any shard"] if unplanned else [])
    return "; ".join(parts)


def require_complete(root: Path) -> None:
    """Refuse to render a sharded run (one with ``records/shards.json``) with units left,
    naming the shards that have them."""
    if not (root / "records" / SHARDS_FILE).is_file():
        return
    missing = missing_shards(Run.load(root))
    if missing is not None:
        raise AlignDepthError(
            f"'{root}' is a sharded run, not done: {missing}; run those shards (the same "
            "command with their --shard I/N, into the same --out), then report again")


def check_count(root: Path, shard: Shard) -> None:
    """Refuse a shard count other than the run's (unless the run is complete): needs no
    model, so the command line calls it before any loads."""
    if directory_kind(root) != "run":
        return
    count = run_count(root)
    if count is None or count == shard.count:
        return
    if missing_shards(Run.load(root)) is not None:
        raise AlignDepthError(
            f"'{root}' is a run split into {count} shard(s), not {shard.count}: give "
            f"--shard I/{count} (or run it without --shard to finish it in one process)")


class ShardedRun(Run):
    """A run directory opened by one worker of a sharded run (see the module)."""

    def __init__(self, path: Path, manifest: dict[str, Any], shard: Shard) -> None:
        super().__init__(path, manifest, writable=True)
        self.shard = shard

    @classmethod
    def open_shard(cls, path: str | Path, manifest: dict[str, Any], shard: Shard,
                   overwrite: bool = False) -> ShardedRun:
        """Open ``path`` as ``shard``'s worker: create the run (the first worker) or
        resume it, as :meth:`Run.open`.

        Raises:
            AlignDepthError: as :meth:`Run.open`; also when another process writes the
                same shard, a lone writer holds the run, or the shard count differs
                from the run's while it is incomplete.
        """
        root = Path(path).expanduser()
        manifest = json.loads(json.dumps(manifest, default=str))  # compare as stored
        check_out(root, overwrite)
        try:
            (root / "records").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AlignDepthError(f"cannot create the run directory '{root}' "
                                  f"({exc.strerror}): choose a writable --out") from None
        lock_directory(root, shared=True, advice="wait for it to finish, then start the "
                       "shards (or choose another --out directory)")
        with setup_lock(root):
            _remove_leftovers(root, shard)
            full, resumed = cls.create_or_resume(root, manifest, directory_kind(root),
                                                 overwrite)
            check_count(root, shard)
            records = root / "records"
            records.mkdir(exist_ok=True)
            if run_count(root) != shard.count or not (records / SHARDS_FILE).is_file():
                atomic_write(records / SHARDS_FILE, json.dumps({"count": shard.count}))
            lock_directory(records, name=f".{shard.tag}.lock", advice=(
                f"shard {shard} of this run is already running; start another shard, or "
                "wait for it to finish"))
        run = cls(root, full, shard)
        run.resumed = resumed
        log.info("%s: shard %s (%s)", root, shard, "resumed" if resumed else "new run")
        return run

    def records_path(self, experiment: str) -> Path:
        return self.path / "records" / f"{experiment}.{self.shard.tag}.jsonl"

    def plan_path(self, experiment: str) -> Path:
        return self.path / "records" / f"{experiment}.{self.shard.tag}.plan.json"

    def may_heal(self, path: Path) -> bool:
        """Only this worker's own files (the others may be writing theirs)."""
        return f".{self.shard.tag}." in path.name

    def owns(self, experiment: str, unit: str) -> bool:
        return owner(experiment, unit, self.shard.count) == self.shard.index


def _remove_leftovers(root: Path, shard: Shard) -> None:
    """Delete the temporary files that interrupted writes of the run's own files (written
    under the setup lock) and of this shard's files left; another worker's are its own."""
    mine = (f".{shard.tag}.", SHARDS_FILE)
    leftovers = [p for p in root.iterdir() if is_leftover(p)]
    if (root / "records").is_dir():
        leftovers += [p for p in (root / "records").iterdir() if p.is_file()
                      and p.name.endswith(TEMP_SUFFIX) and any(m in p.name for m in mine)]
    for entry in leftovers:
        entry.unlink(missing_ok=True)
