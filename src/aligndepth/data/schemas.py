"""The project's own JSONL formats, one JSON object per line.

=================  ===========================================================
schema             fields (``?`` = optional)
=================  ===========================================================
prompts            id?, instruction, category?, split?, target?, system?
harmful_pairs      id?, instruction, harmful_response, category?, split?, target?
safety_triples     id?, instruction, harmful_response, refusal, category?, split?
instruction_pairs  id?, instruction, response, category?, split?, system?
=================  ===========================================================

A missing ``id`` becomes ``<file stem>-<line>``. Extra fields are ignored. Every error
names the file, the line and the field, and says what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from aligndepth.errors import AlignDepthError, did_you_mean


@dataclass(frozen=True)
class PromptRecord:
    """An instruction to attack or evaluate with. ``target`` is an affirmative response
    start for optimisation attacks (e.g. AdvBench's "Sure, here is ...")."""

    instruction: str
    id: str = ""
    category: str = ""
    split: str = "test"
    target: str | None = None
    system: str | None = None


@dataclass(frozen=True)
class HarmfulPair:
    """(x, h): a harmful instruction and a harmful response. ``target``, when given, is
    the affirmative start an optimisation attack aims for (GCG); without it GCG aims for
    the response's first tokens."""

    instruction: str
    harmful_response: str
    id: str = ""
    category: str = ""
    split: str = "train"
    target: str | None = None


@dataclass(frozen=True)
class SafetyTriple:
    """(x, h, r): instruction, harmful response, refusal (safety-recovery data)."""

    instruction: str
    harmful_response: str
    refusal: str
    id: str = ""
    category: str = ""
    split: str = "train"


@dataclass(frozen=True)
class InstructionPair:
    """(x, y): an instruction and its response (benign data, fine-tuning sets)."""

    instruction: str
    response: str
    id: str = ""
    category: str = ""
    split: str = "train"
    system: str | None = None


SCHEMAS: dict[str, type] = {
    "prompts": PromptRecord,
    "harmful_pairs": HarmfulPair,
    "safety_triples": SafetyTriple,
    "instruction_pairs": InstructionPair,
}

R = TypeVar("R")
_REQUIRED_TEXT = ("instruction", "harmful_response", "refusal", "response")


def schema_by_name(name: str) -> type:
    if name not in SCHEMAS:
        raise AlignDepthError(f"unknown dataset schema '{name}'{did_you_mean(name, SCHEMAS)}; "
                              f"choose one of {', '.join(SCHEMAS)}")
    return SCHEMAS[name]


def _record(schema: type[R], obj: Any, where: str, default_id: str) -> R:
    if not isinstance(obj, dict):
        raise AlignDepthError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    values: dict[str, Any] = {}
    for f in fields(schema):  # type: ignore[arg-type]
        required = f.name in _REQUIRED_TEXT
        if f.name not in obj or obj[f.name] is None:
            if required:
                need = ", ".join(x.name for x in fields(schema)  # type: ignore[arg-type]
                                 if x.name in _REQUIRED_TEXT)
                raise AlignDepthError(f"{where}: missing field '{f.name}' "
                                      f"({schema.__name__} records need: {need})")
            continue
        value = obj[f.name]
        if f.name == "id" and isinstance(value, int):
            value = str(value)
        if not isinstance(value, str):
            raise AlignDepthError(f"{where}: field '{f.name}' must be a string, "
                                  f"got {type(value).__name__}")
        if required and not value.strip():
            raise AlignDepthError(f"{where}: field '{f.name}' is empty")
        values[f.name] = value
    values.setdefault("id", default_id)
    if not values["id"]:
        values["id"] = default_id
    return schema(**values)


def read_jsonl(path: str | Path, schema: type[R]) -> list[R]:
    """Read and validate a JSONL file of ``schema`` records.

    Raises:
        AlignDepthError: missing or empty file, bad JSON, missing/ill-typed field,
            duplicate id, naming file, line and field.
    """
    path = Path(path)
    if not path.is_file():
        raise AlignDepthError(f"dataset file '{path}' does not exist")
    records: list[R] = []
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise AlignDepthError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}): "
                              "re-save it as UTF-8") from exc
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AlignDepthError(f"{where}: not valid JSON ({exc.msg}): fix or remove the line"
                                  ) from exc
        rec = _record(schema, obj, where, f"{path.stem}-{lineno}")
        rid = rec.id  # type: ignore[attr-defined]
        if rid in seen:
            raise AlignDepthError(f"{where}: duplicate id '{rid}' (first on line {seen[rid]})")
        seen[rid] = lineno
        records.append(rec)
    if not records:
        raise AlignDepthError(f"dataset file '{path}' holds no records")
    return records


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Write dataclass records as JSONL (``None`` fields omitted); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            obj = {k: v for k, v in asdict(rec).items() if v is not None}
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    return n
