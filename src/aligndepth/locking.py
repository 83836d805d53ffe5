"""One writer per output directory: an exclusive lock held for the process's life.

The lock is ``flock`` on ``DIR/.aligndepth.lock``: the operating system releases it when
the process ends in any way, ``kill -9`` included, so a crashed run never leaves a stale
lock behind. A second process that wants to write the same directory gets a one-line
error naming the process that holds it. Re-locking a directory this process already
holds is a no-op. On systems without ``fcntl`` (Windows) directories are not locked.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError

log = logging.getLogger(__name__)

LOCK_NAME = ".aligndepth.lock"
_HELD: dict[str, Any] = {}


def is_lock_name(name: str) -> bool:
    """Whether ``name`` is one of the lock files aligndepth keeps in an output directory
    (the writer lock, and the sharded runs' setup lock)."""
    return name.startswith(".aligndepth.") and name.endswith(".lock")


#: What the user of a command that writes into ``--out`` can do about a held lock.
OUT_ADVICE = "wait for it to finish, or choose another --out directory"


def lock_directory(path: str | Path, advice: str = OUT_ADVICE, *, name: str = LOCK_NAME,
                   shared: bool = False) -> None:
    """Take the writer lock of the existing directory ``path`` (see the module docstring);
    ``advice`` ends the error a held lock gives. ``name``: another lock file of the
    directory; ``shared``: a shared lock (the workers of a sharded run hold the writer
    lock together, which keeps any lone writer out while they run, and them out while
    one runs).

    Raises:
        AlignDepthError: another process holds it, or the lock file cannot be written.
    """
    root = Path(path)
    key = str((root / name).resolve())
    if key in _HELD:
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        log.warning("directories cannot be locked on this system: run one writer per --out")
        return
    try:
        handle = (root / name).open("a+", encoding="utf-8")
    except OSError as exc:
        raise AlignDepthError(f"cannot write in '{root}' ({exc.strerror}): choose a writable "
                              "--out directory") from None
    try:
        fcntl.flock(handle.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                    | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AlignDepthError(f"'{root}' is being written by another aligndepth process "
                              f"(pid {holder}): {advice}") from None
    if not shared:  # a shared lock's holders are many: the file names none
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
    _HELD[key] = handle


def release_directory(path: str | Path, name: str = LOCK_NAME) -> None:
    """Give the lock back before the process ends (tests; long-lived Python sessions)."""
    handle = _HELD.pop(str((Path(path) / name).resolve()), None)
    if handle is not None:
        handle.close()
