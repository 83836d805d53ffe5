"""Rows as read from a dataset file, and reading their fields."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aligndepth.data.schemas import HarmfulPair, InstructionPair, PromptRecord
from aligndepth.errors import AlignDepthError

log = logging.getLogger(__name__)


_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".txt": "text"}
_UNSUPPORTED = {".xlsx", ".xls", ".tsv", ".zip"}
_MODERATION_FLAGS = ("s", "h", "v", "hr", "sh", "s3", "h2", "v2")
_CATEGORY_STEM = re.compile(r"^category_\d+$", re.IGNORECASE)
_HEADER_WORDS = {"instruction", "instructions", "prompt", "goal", "behavior", "text", "query"}
_EXAMPLE_CHARS = 200

Record = PromptRecord | HarmfulPair | InstructionPair


@dataclass(frozen=True)
class _Row:
    """One raw record: ``values`` is a dict with lower-cased keys or, for chat-style JSONL,
    a list of messages. ``where`` locates it for messages; ``prefix``-``n`` is its id."""

    where: str
    n: int
    values: Any
    source: Path
    fmt: str = ""
    prefix: str = ""

    @property
    def default_id(self) -> str:
        return f"{self.prefix}-{self.n}"




def _keys(row: _Row) -> str:
    if isinstance(row.values, dict):
        return ", ".join(row.values) or "none"
    return type(row.values).__name__


def _obj(row: _Row) -> dict[str, Any]:
    if not isinstance(row.values, dict):
        raise AlignDepthError(f"{row.where}: expected a JSON object, got "
                              f"{type(row.values).__name__}: is this the right format?")
    return row.values


def _field(row: _Row, *names: str, required: bool = True) -> str:
    """The text of the first of ``names`` present in the row ("" when absent and optional)."""
    values = _obj(row)
    for name in names:
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise AlignDepthError(f"{row.where}: field '{name}' must be text, "
                                  f"got {type(value).__name__}")
        return value
    if required:
        from aligndepth.data.formats.families import FORMATS

        spec = FORMATS.get(row.fmt)
        needs = f"{spec.name} needs: {spec.needs()}; " if spec else ""
        raise AlignDepthError(f"{row.where}: missing field '{names[0]}' ({needs}this record has: "
                              f"{_keys(row)}): fix the file or name the right format")
    return ""


def _flag(row: _Row, name: str) -> int | None:
    """A 0/1 label (int, bool or text); ``None`` when absent."""
    value = _obj(row).get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip() in ("0", "1", "0.0", "1.0"):
        return int(float(value))
    raise AlignDepthError(f"{row.where}: field '{name}' must be 0 or 1, got {value!r}")


def _join(*parts: str) -> str:
    return "\n\n".join(p.strip() for p in parts if p.strip())


# --------------------------------------------------------------------------- converters
