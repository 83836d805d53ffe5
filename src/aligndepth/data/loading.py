"""Where an experiment's data comes from: a user file, or the organism's held-out set.

A user file is read as the project's JSONL schema when it is one (``.jsonl`` whose first
record has an ``instruction``), else through :mod:`aligndepth.data.formats` (HEx-PHI,
AdvBench, HarmBench, HH-RLHF, ToxicChat, ...; detected, or named with ``data_format``).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, TypeVar

from aligndepth.data.schemas import HarmfulPair, InstructionPair, PromptRecord, read_jsonl
from aligndepth.errors import AlignDepthError

log = logging.getLogger(__name__)

R = TypeVar("R", PromptRecord, HarmfulPair, InstructionPair)

ORGANISM_FILES = {PromptRecord: "harmful_prompts.jsonl", HarmfulPair: "harmful_pairs.jsonl"}
#: A data file is read whole (then limited or sampled): far above any prompt set (HEx-PHI
#: is 330 rows; large ones are tens of thousands, tens of MB), so that a wrong file (a
#: corpus, a dump) is refused at once instead of filling memory.
MAX_DATA_BYTES = 512 << 20


def check_size(path: Path) -> None:
    """A user error when the file ``path`` is over :data:`MAX_DATA_BYTES`."""
    size = path.stat().st_size if path.is_file() else 0
    if size > MAX_DATA_BYTES:
        raise AlignDepthError(
            f"dataset file '{path}' is {size / 2**20:,.1f} MiB, over the {MAX_DATA_BYTES >> 20} "
            "MiB aligndepth reads whole (--limit still reads it all): keep the rows you need "
            f"in a smaller file, e.g. head -n 10000 {path.name} > part{path.suffix}")


def is_project_jsonl(path: Path) -> bool:
    """Whether ``path`` is JSONL in the project's schemas (first record has ``instruction``)."""
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    first = json.loads(line)
                    return isinstance(first, dict) and "instruction" in first
    except (UnicodeDecodeError, json.JSONDecodeError):
        return True  # let the schema reader name the exact problem
    return True  # empty: the schema reader says so


def _from_format(schema: type[R], path: Path, data_format: str | None,
                 subset: str | None, data_split: str | None = None) -> list[R]:
    """Records of a published dataset format, converted to ``schema``."""
    from aligndepth.data.formats import detect_format, format_by_name, load_dataset_file

    spec = format_by_name(data_format) if data_format else format_by_name(detect_format(path))
    name, records = load_dataset_file(path, spec.name, subset if spec.subsets else None,
                                      split=data_split)
    out: list[R] = []
    for r in records:
        if isinstance(r, schema):
            out.append(r)
        elif schema is PromptRecord and isinstance(r, HarmfulPair):
            out.append(PromptRecord(r.instruction, id=r.id, category=r.category,  # type: ignore[arg-type]
                                    split=r.split, target=r.target))
        elif schema is HarmfulPair:
            raise AlignDepthError(f"{path}: {name} has no harmful responses (missing field "
                                  "'harmful_response'): give harmful pairs")
        elif schema is InstructionPair:
            raise AlignDepthError(f"{path}: {name} holds {type(r).__name__} records, which "
                                  "have no reference answers: give instruction/response pairs")
        else:
            raise AlignDepthError(f"{path}: {name} holds {type(r).__name__} records, not "
                                  "prompts: give a prompt dataset")
    return out


def sample_records(records: list[R], n: int, seed: int = 0, source: str | Path = "") -> list[R]:
    """A seeded random subset of ``n`` records, in the records' original order.

    The same ``(records, n, seed)`` always gives the same subset (Python's ``random``
    with its own generator, so global random state is neither used nor changed).

    Raises:
        AlignDepthError: ``n`` below 1, or larger than ``len(records)``.
    """
    if n < 1:
        raise AlignDepthError(f"--sample must be at least 1, got {n}")
    if n > len(records):
        raise AlignDepthError(f"--sample {n} is larger than the dataset ({len(records)} "
                              f"records in {source}): use at most {len(records)}, or --limit")
    keep = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in keep]


def resolve_data(schema: type[R], path: str | Path | None, organism: Path | None,
                 split: str | None = "test", limit: int | None = None,
                 organism_file: str | None = None, data_format: str | None = None,
                 subset: str | None = None, *, sample: int | None = None,
                 sample_seed: int = 0, provenance: dict[str, Any] | None = None,
                 data_split: str | None = None) -> tuple[list[R], Path]:
    """Records of ``schema`` from ``path``, or from the organism when ``path`` is None
    (its file for the schema, or ``organism_file`` in its ``data/`` directory).

    ``split`` filters by the records' split (``None``: keep all); a user file whose
    records carry no split keeps them all. ``limit`` keeps the first N; ``sample`` instead
    keeps a random subset of N (seeded by ``sample_seed``, in the file's order), drawn
    after the split filter; the two are mutually exclusive. ``data_format`` names a
    published format (default: the project's JSONL, else detected); ``subset`` picks
    harmful or safe rows of formats that label both (ToxicChat, OpenAI moderation).

    ``data_split`` picks the split of a dataset directory (``save_to_disk`` or a hub
    snapshot; default ``train`` when there is one).

    ``provenance``, when given, is updated with what was selected: ``path``, ``n``, and
    ``sample``/``sample_seed`` when sampling (``limit`` when limiting), for run manifests.

    Raises:
        AlignDepthError: no such data, no records, ``limit`` and ``sample`` both given,
            ``sample`` larger than the dataset.
    """
    if sample is not None and limit is not None:
        raise AlignDepthError(f"--sample {sample} and --limit {limit} both given: use "
                              "--sample N for a random subset, or --limit N for the first N")
    if path is None:
        if organism is None:
            raise AlignDepthError("no dataset given: pass --data FILE")
        path = organism / "data" / (organism_file or ORGANISM_FILES[schema])
    path = Path(path)
    check_size(path)
    if data_format is None and is_project_jsonl(path):
        records = read_jsonl(path, schema)
    else:
        if not path.exists():
            raise AlignDepthError(f"dataset '{path}' does not exist")
        records = _from_format(schema, path, data_format, subset, data_split)
    if split is not None and any(r.split == split for r in records):
        records = [r for r in records if r.split == split]
    elif split is not None and path.parent.name == "data" and organism is not None \
            and path.parent.parent == organism:
        raise AlignDepthError(f"{path} has no records with split '{split}'")
    if limit is not None:
        if limit < 1:
            raise AlignDepthError(f"--limit must be at least 1, got {limit}")
        records = records[:limit]
    if not records:
        raise AlignDepthError(f"{path} holds no records: give a file with at least one")
    if sample is not None:
        records = sample_records(records, sample, sample_seed, path)
        log.info("sampled %d records of %s (seed %d)", sample, path, sample_seed)
    if provenance is not None:
        provenance.update({"path": str(path), "n": len(records)})
        if sample is not None:
            provenance.update({"sample": sample, "sample_seed": sample_seed})
        if limit is not None:
            provenance["limit"] = limit
    return records, path
