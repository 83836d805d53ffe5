"""Read the papers' benchmark datasets (SPEC §5) from local files in their published formats.

Each format turns its rows into one of the project's record types:

==================  =================  ==================================================
format              record             published layout
==================  =================  ==================================================
hexphi              PromptRecord       directory of ``category_N.csv`` (no header, one
                                       instruction per row) or one such CSV, or JSONL
                                       with ``instruction`` (and ``category``)
harmful_hexphi      HarmfulPair        JSONL: ``[{"role": "user", ...}, {"role":
                                       "assistant", ...}]`` per line, ``{"messages":
                                       [...]}``, or instruction/prompt + harmful_response
advbench            PromptRecord       ``harmful_behaviors.csv``: ``goal,target``
malicious_instruct  PromptRecord       text, one instruction per line
harmbench           PromptRecord       behaviours CSV: Behavior, FunctionalCategory,
                                       SemanticCategory, Tags, ContextString, BehaviorID
hh_rlhf             PromptRecord       JSONL(.gz) with ``chosen``/``rejected`` transcripts;
                                       the first human turn
toxicchat           PromptRecord       CSV/JSONL: conv_id, user_input, toxicity, ...
openai_moderation   PromptRecord       JSONL(.gz): ``prompt`` + flags S, H, V, HR, SH, S3,
                                       H2, V2
alpaca              InstructionPair    JSON list of {instruction, input, output}
samsum              InstructionPair    JSON list or JSONL of {id, dialogue, summary}
gsm8k               InstructionPair    JSONL of {question, answer}
sql_create_context  InstructionPair    JSON/JSONL of {question, context, answer}
==================  =================  ==================================================

``load_dataset_file(path)`` detects the format when none is named (file extension, CSV
header, keys of the first JSON record); ``inspect_dataset(path)`` summarises a file as a
JSON-able dict. Files may be gzipped (``.jsonl.gz``); CSV and JSON may start with a BOM.
Rows whose text field is empty are skipped (with a warning); every structural problem
raises :class:`AlignDepthError` naming the file, the line when known, and the fix.
Categories: toxicchat gives ``toxic``/``safe``, openai_moderation ``harmful``/``safe``;
pick one side with ``subset="harmful"`` or ``subset="safe"`` (``"all"``: both).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aligndepth.data.formats.families import (
    _SCHEMA_NAMES,
    FORMATS,
    FormatSpec,
    format_by_name,
)
from aligndepth.data.formats.readers import (
    _dir_rows,
    _file_rows,
    _hub_rows,
    _Loaded,
    _natural,
    _unique,
)
from aligndepth.data.formats.rows import (
    _EXAMPLE_CHARS,
    Record,
    _Row,
)
from aligndepth.errors import AlignDepthError, did_you_mean

__all__ = ["FORMATS", "FormatSpec", "Record", "detect_format", "format_by_name",
           "inspect_dataset", "load_dataset_file"]

log = logging.getLogger(__name__)


def _load(path: Path, format: str | None, split: str | None = None) -> _Loaded:
    from aligndepth.data.hub import is_hub_dataset

    spec = format_by_name(format) if format is not None else None
    if is_hub_dataset(path):
        spec, rows = _hub_rows(path, spec, split)
    elif split is not None:
        raise AlignDepthError(f"--split {split}: '{path}' is not a dataset with splits (a "
                              "parquet file, a save_to_disk directory or a hub snapshot)")
    elif path.is_dir():
        spec, rows = _dir_rows(path, spec)
    else:
        spec, rows = _file_rows(path, spec)
    kept: list[Record] = []
    kept_rows: list[_Row] = []
    for row in rows:
        rec = spec.convert(row)
        if rec is not None:
            kept.append(rec)
            kept_rows.append(row)
    skipped = len(rows) - len(kept)
    if not kept:
        raise AlignDepthError(f"dataset file '{path}' holds no {spec.name} records with text: "
                              "every row is empty")
    if skipped:
        log.warning("%s: skipped %d %s row(s) with an empty text field", path, skipped,
                    spec.name)
    return _Loaded(spec, _unique(kept, kept_rows), skipped)


def _select(spec: FormatSpec, records: list[Record], subset: str) -> list[Record]:
    key = subset.strip().lower()
    if not spec.subsets:
        raise AlignDepthError(f"format '{spec.name}' has no subsets (got '{subset}'); subsets "
                              "exist for: " + ", ".join(n for n, s in FORMATS.items()
                                                        if s.subsets))
    if key not in spec.subsets:
        raise AlignDepthError(f"unknown subset '{subset}' for format '{spec.name}'"
                              f"{did_you_mean(key, spec.subsets)}; choose one of "
                              f"{', '.join(spec.subsets)}")
    keep = spec.subsets[key]
    return records if keep is None else [r for r in records if r.category in keep]


def detect_format(path: str | Path) -> str:
    """The registered format name of a dataset file or HEx-PHI directory.

    Rules: a directory of ``.csv`` files is ``hexphi``; ``.txt`` is
    ``malicious_instruct``; otherwise the CSV header or the first JSON record's keys decide
    (see ``_RULES``), and a headerless ``category_N.csv`` is ``hexphi``.
    """
    return _load(Path(path), None).spec.name


def load_dataset_file(path: str | Path, format: str | None = None, subset: str | None = None,
                      limit: int | None = None, split: str | None = None
                      ) -> tuple[str, list[Record]]:
    """Read a benchmark dataset file (or HEx-PHI directory) into the project's records.

    Args:
        path: the file or directory, in its published format.
        format: a name in :data:`FORMATS`; ``None`` detects it.
        subset: for formats with harmful/safe labels: ``"harmful"``, ``"safe"`` or
            ``"all"`` (toxicchat also takes ``"toxic"``).
        limit: keep the first N records (after the subset).
        split: the split of a dataset directory (save_to_disk or hub snapshot); default
            ``train`` when there is one, else the only split.

    Returns:
        (format name, records): ``PromptRecord``, ``HarmfulPair`` or ``InstructionPair``.

    Raises:
        AlignDepthError: missing/empty/non-UTF-8 file, malformed CSV or JSON, missing
            column, unknown format or subset, undetectable format.
    """
    if limit is not None and limit < 1:
        raise AlignDepthError(f"limit must be at least 1, got {limit}")
    loaded = _load(Path(path), format, split)
    records = loaded.records
    if subset is not None:
        records = _select(loaded.spec, records, subset)
        if not records:
            raise AlignDepthError(f"{path}: no records in subset '{subset}'")
    if limit is not None:
        records = records[:limit]
    return loaded.spec.name, records


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _EXAMPLE_CHARS:
        return value[:_EXAMPLE_CHARS] + "…"
    return value


def inspect_dataset(path: str | Path, format: str | None = None, rows: int = 3,
                    split: str | None = None) -> dict[str, Any]:
    """What a dataset file holds, as a JSON-able dict: format (and whether detected),
    record schema, record count, rows skipped, categories with counts, subsets, and the
    first ``rows`` records (long texts shortened to 200 characters)."""
    if rows < 0:
        raise AlignDepthError(f"rows must be at least 0, got {rows}")
    loaded = _load(Path(path), format, split)
    spec, records = loaded.spec, loaded.records
    counts = Counter(r.category or "(none)" for r in records)
    examples = [{k: _shorten(v) for k, v in asdict(r).items() if v is not None}
                for r in records[:rows]]
    return {
        "path": str(path),
        "format": spec.name,
        "detected": format is None,
        "description": spec.description,
        "schema": _SCHEMA_NAMES[spec.schema],
        "record_type": spec.schema.__name__,
        "records": len(records),
        "skipped_empty": loaded.skipped,
        "categories": {k: counts[k] for k in sorted(counts, key=_natural)},
        "subsets": list(spec.subsets),
        "examples": examples,
    }
