"""Output directories: what aligndepth writes into one, crash-safe writes, and telling a
run or a training output from a directory of the user's own files.

Every file aligndepth writes whole (a manifest, a summary, a config, a rewritten records
file) goes through :func:`atomic_write`: the bytes go to ``NAME.tmp`` beside the target,
are flushed to disk, and replace the target in one rename, so a reader sees the old file
or the new one, never half of one. A write that fails (disk full) removes its temporary
file; one cut short by a crash leaves it behind, and such leftovers are ignored when a
directory is classified and removed when it is opened again (:func:`remove_leftovers`).

:func:`clear_directory` removes only what aligndepth writes (:func:`is_ours`); any other
entry is kept, and its name returned so that the caller can say so.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from pathlib import Path

from aligndepth.errors import AlignDepthError
from aligndepth.locking import is_lock_name

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: The suffix of a file being written by :func:`atomic_write`.
TEMP_SUFFIX = ".tmp"
#: Files that mark a directory as a training output of this tool.
TRAINING_MARKERS = {"train_config.json", "training_log.json", "checkpoints"}
#: Files aligndepth writes at the top of a run or a training output.
OWN_FILES = {
    MANIFEST, "summary.json", "report.md", "report.html", "config.yaml", "judges.json",
    "agreement.json", "eval.json", "metrics.png",
    # training outputs: logs, the saved model (or adapter) and its tokenizer
    "train_config.json", "training_log.json", "dynamics.json", "dynamics.png",
    "config.json", "generation_config.json", "adapter_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "chat_template.jinja", "chat_template.json", "tokenizer.model",
    "vocab.json", "merges.txt",
}
#: Shapes of the saved weights' file names (one file, shards, their index, an adapter).
OWN_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors",
                "model.safetensors.index.json", "adapter_model.safetensors")
#: Folders aligndepth writes (records, plots, re-judged reports, checkpoints, the
#: evaluation run a training output holds).
OWN_FOLDERS = {"records", "plots", "judged", "checkpoints", "eval"}


def is_ours(entry: Path) -> bool:
    """Whether aligndepth writes ``entry`` (a direct child of an output directory);
    a temporary file is ours when the file it stands for is."""
    name = entry.name
    if entry.is_dir() and not entry.is_symlink():
        return name in OWN_FOLDERS
    if is_lock_name(name):
        return True
    if name.endswith(TEMP_SUFFIX):
        name = name.removesuffix(TEMP_SUFFIX)
    return name in OWN_FILES or any(fnmatch.fnmatchcase(name, p) for p in OWN_PATTERNS)


def is_leftover(entry: Path) -> bool:
    """A temporary file of ours that an interrupted :func:`atomic_write` left behind."""
    return entry.name.endswith(TEMP_SUFFIX) and entry.is_file() and is_ours(entry)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) in one rename, after the
    bytes are on disk; on failure ``path`` is unchanged and no temporary file remains.

    Raises:
        OSError: the write failed (the CLI names a full disk or a read-only directory).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    try:
        with tmp.open("wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_leftovers(root: Path) -> list[str]:
    """Delete the temporary files interrupted writes left in ``root`` and its
    ``records/`` folder; returns their names (relative to ``root``)."""
    gone = []
    for folder in (root, root / "records"):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if is_leftover(entry) or (folder != root and entry.name.endswith(TEMP_SUFFIX)
                                      and entry.is_file()):
                entry.unlink(missing_ok=True)
                gone.append(str(entry.relative_to(root)))
    if gone:
        log.info("removed %s, left by an interrupted write", ", ".join(sorted(gone)))
    return gone


def directory_kind(root: Path) -> str:
    """``missing``, ``empty``, ``run`` (a manifest), ``training`` (a training output) or
    ``other``; the lock and leftovers of interrupted writes do not count. A path that is
    a file is an error."""
    if not root.exists():
        return "missing"
    if not root.is_dir():
        raise AlignDepthError(f"--out '{root}' is a file, not a directory: choose a directory")
    names = {p.name for p in root.iterdir() if not is_lock_name(p.name) and not is_leftover(p)}
    if not names:
        return "empty"
    if MANIFEST in names:
        return "run"
    if names & TRAINING_MARKERS:
        return "training"
    return "other"


def clear_directory(root: Path) -> list[str]:
    """Delete what aligndepth wrote in ``root`` (a run or training output being replaced)
    but its lock; returns the names of the entries kept because aligndepth did not write
    them (a user's notes, say)."""
    kept = []
    for entry in sorted(root.iterdir()):
        if is_lock_name(entry.name):
            continue
        if not is_ours(entry):
            kept.append(entry.name + ("/" if entry.is_dir() else ""))
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return kept


def listing(root: Path, most: int = 4, ours: bool = False) -> str:
    """The first ``most`` entries of ``root`` (folders with a slash; only those aligndepth
    wrote when ``ours``), and how many more."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir()
                   if not is_lock_name(p.name) and not is_leftover(p)
                   and (is_ours(p) or not ours))
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
