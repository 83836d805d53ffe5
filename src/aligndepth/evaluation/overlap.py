"""Evaluation data that a model was trained on: found by content hash, refused unless
allowed.

``train`` writes ``training_prompts.sha256`` into its output: the sha256 of every training
prompt (whitespace collapsed), one per line, sorted. ``evaluate`` on that output compares
each task's prompts with it, so an evaluation never scores a model on what it learned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError

#: The file of a training output that lists its training prompts' hashes.
DIGESTS_FILE = "training_prompts.sha256"


def prompt_digest(text: str) -> str:
    """sha256 of ``text`` with its whitespace collapsed (a re-wrapped prompt is the same)."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def write_training_digests(out: Path, prompts: Iterable[str]) -> Path:
    """Record the training prompts' hashes in ``out`` (see the module docstring)."""
    path = out / DIGESTS_FILE
    path.write_text("".join(f"{d}\n" for d in sorted({prompt_digest(p) for p in prompts})),
                    encoding="utf-8")
    return path


def training_digests(model: str | Path | None) -> set[str]:
    """The training prompts' hashes of a ``train`` output (empty for any other model)."""
    if model is None:
        return set()
    path = Path(model) / DIGESTS_FILE
    if not path.is_file():
        return set()
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()}


def check_overlap(model: str | Path | None, datasets: Mapping[str, Sequence[Any]],
                  allow: bool) -> dict[str, int]:
    """Per task, how many evaluation prompts ``model`` was trained on.

    Raises:
        AlignDepthError: some task's prompts overlap the training data and ``allow`` is
            false.
    """
    trained = training_digests(model)
    found = {task: sum(prompt_digest(r.instruction) in trained for r in records)
             for task, records in datasets.items()} if trained else {}
    found = {task: n for task, n in found.items() if n}
    if found and not allow:
        task, n = next(iter(found.items()))
        raise AlignDepthError(f"{n} of the {len(datasets[task])} prompts of --task {task} are "
                              f"in the training data of '{model}': evaluate on held-out data "
                              "(e.g. the test split), or pass --allow-overlap")
    return found
