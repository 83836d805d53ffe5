"""Datasets the way the hub ships them, read through the ``datasets`` library.

- a ``.parquet`` file (how GSM8k, Alpaca, ToxicChat and most hub datasets ship) or an
  ``.arrow`` file;
- a directory written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``;
- a hub snapshot: a directory from ``huggingface-cli download --repo-type dataset`` or
  the hub cache's ``datasets--org--name`` folder (its newest ``snapshots/<revision>``),
  whose data files are named by split (``data/train-00000-of-00001.parquet``, ...).

Each row becomes a plain dict and then goes through the same format detection and
converters as a JSONL record (:mod:`aligndepth.data.formats`). A directory with several
splits is read at ``split`` (default ``train`` when there is one, else the only split).
Nothing is written to the user's ``datasets`` cache: loading goes through a temporary
cache that is removed once the rows are read.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError, did_you_mean

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".parquet", ".arrow")
_DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".csv")


def is_hub_dataset(path: Path) -> bool:
    """Whether ``path`` is a parquet/arrow file, a ``save_to_disk`` directory or a hub
    snapshot (a directory holding parquet or arrow files)."""
    if path.is_file():
        return path.suffix.lower() in FILE_SUFFIXES
    if not path.is_dir():
        return False
    if _saved_to_disk(path) or (path / "snapshots").is_dir():
        return True
    return any(p.suffix.lower() in FILE_SUFFIXES for p in path.rglob("*") if p.is_file())


def _saved_to_disk(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _snapshot(path: Path) -> Path:
    """The newest revision of a hub cache folder (``datasets--org--name``), else ``path``."""
    snapshots = path / "snapshots"
    if not snapshots.is_dir():
        return path
    revisions = sorted((p for p in snapshots.iterdir() if p.is_dir()),
                       key=lambda p: p.stat().st_mtime)
    if not revisions:
        raise AlignDepthError(f"'{path}' is a hub cache folder with no snapshot: download "
                              "the dataset again")
    return revisions[-1]


def _pick_split(splits: list[str], split: str | None, path: Path) -> str:
    if split is not None:
        if split not in splits:
            raise AlignDepthError(f"{path}: no split '{split}'{did_you_mean(split, splits)}; "
                                  f"the dataset has {', '.join(splits)}")
        return split
    if "train" in splits:
        return "train"
    if len(splits) == 1:
        return splits[0]
    raise AlignDepthError(f"{path}: the dataset has several splits ({', '.join(splits)}): "
                          "choose one with --split")


def _load(path: Path, cache: str) -> Any:
    """A ``Dataset`` or ``DatasetDict`` for ``path``."""
    import datasets

    if path.is_file():
        if path.suffix.lower() == ".arrow":
            return datasets.Dataset.from_file(str(path), in_memory=True)
        return datasets.load_dataset("parquet", data_files={"data": str(path)}, split="data",
                                     cache_dir=cache)
    if _saved_to_disk(path):
        return datasets.load_from_disk(str(path), keep_in_memory=True)
    root = _snapshot(path)
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES
             and not p.name.startswith(".")]
    kinds = {p.suffix.lower().lstrip(".") for p in files}
    if not files:
        raise AlignDepthError(f"'{root}' holds no data files (.parquet, .arrow, .jsonl, .csv)")
    if len(kinds) > 1 and "parquet" in kinds:
        kinds = {"parquet"}  # the hub's parquet conversion beside the original files
    return datasets.load_dataset(str(root), cache_dir=cache,
                                 data_files=None if len(kinds) == 1 else
                                 [str(p) for p in files if p.suffix.lower() == ".parquet"])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars or card warnings from datasets/huggingface_hub while loading
    (the command's own output stays one line per fact); restored afterwards."""
    import datasets
    from datasets.utils import logging as ds_logging

    bars_were_off = datasets.are_progress_bars_disabled()
    verbosity = ds_logging.get_verbosity()
    card_log = logging.getLogger("huggingface_hub.repocard")
    card_level = card_log.level
    datasets.disable_progress_bars()
    ds_logging.set_verbosity_error()
    card_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        if not bars_were_off:
            datasets.enable_progress_bars()
        ds_logging.set_verbosity(verbosity)
        card_log.setLevel(card_level)


def hub_rows(path: Path, split: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The rows of the dataset at ``path`` as dicts, and the split they came from (None
    for a single file, which is one split).

    Raises:
        AlignDepthError: an unreadable file or directory, an unknown or ambiguous split,
            or ``split`` given for a single file.
    """
    import datasets

    if path.is_file() and split is not None:
        raise AlignDepthError(f"{path} is one file, so one split: drop --split (it picks a "
                              "split of a dataset directory)")
    with tempfile.TemporaryDirectory(prefix="aligndepth-datasets-") as cache, _quiet():
        try:
            loaded = _load(path, cache)
        except AlignDepthError:
            raise
        except Exception as exc:  # noqa: BLE001 - datasets/pyarrow raise many types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise AlignDepthError(f"could not read the dataset '{path}' with the datasets "
                                  f"library: {first}") from None
        chosen: str | None = None
        if isinstance(loaded, datasets.DatasetDict):
            chosen = _pick_split(list(loaded), split, path)
            loaded = loaded[chosen]
        elif split is not None and loaded.split is not None and str(loaded.split) != split:
            raise AlignDepthError(f"{path} holds one split, '{loaded.split}': drop --split "
                                  f"{split}")
        rows = loaded.to_list()
    log.info("%s: %d rows%s", path, len(rows), f" (split {chosen})" if chosen else "")
    return rows, chosen
