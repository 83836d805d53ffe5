"""Reading a file, a directory or a hub dataset into rows, and detecting its format."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aligndepth.data.formats.families import (
    FORMATS,
    FormatSpec,
)
from aligndepth.data.formats.rows import (
    _CATEGORY_STEM,
    _EXTENSIONS,
    _HEADER_WORDS,
    _MODERATION_FLAGS,
    _UNSUPPORTED,
    Record,
    _Row,
)
from aligndepth.errors import AlignDepthError

log = logging.getLogger(__name__)


def _container(path: Path) -> str | None:
    """'csv', 'json' or 'text' from the extension (looking through ``.gz``), else None."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        suffix = Path(path.stem).suffix.lower()
    if suffix in _UNSUPPORTED:
        raise AlignDepthError(f"{path}: {suffix} files are not read; convert it to JSONL or "
                              "CSV first (e.g. with pandas: read it, then to_json(lines=True, "
                              "orient='records'))")
    return _EXTENSIONS.get(suffix)


def _read_text(path: Path) -> str:
    """The file's text: checks existence, gunzips ``.gz``, decodes UTF-8 (BOM allowed)."""
    if not path.exists():
        raise AlignDepthError(f"dataset file '{path}' does not exist: check the path")
    if not path.is_file():
        raise AlignDepthError(f"'{path}' is not a file: pass a dataset file")
    data = path.read_bytes()
    if path.suffix.lower() == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise AlignDepthError(f"{path}: not a valid gzip file ({exc}): download it again "
                                  "or decompress it and pass the plain file") from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise AlignDepthError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}): "
                              "re-save the file as UTF-8") from exc
    if not text.strip():
        raise AlignDepthError(f"dataset file '{path}' is empty: pass a file with records")
    return text


def _csv_table(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank CSV row."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, 2**31 - 1))
    table: list[tuple[int, list[str]]] = []
    try:
        start = 1
        for cells in reader:
            if any(c.strip() for c in cells):
                table.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise AlignDepthError(f"{path}:{reader.line_num}: malformed CSV ({exc}): check the "
                              "quoting on that line") from exc
    finally:
        csv.field_size_limit(limit)
    return table


def _header_rows(path: Path, table: list[tuple[int, list[str]]], fmt: str, prefix: str
                 ) -> tuple[list[str], list[_Row]]:
    """A CSV with a header row: its column names and one dict row per data row."""
    header = [h.strip() for h in table[0][1]]
    keys = [h.lower() for h in header]
    rows = []
    for n, (line, cells) in enumerate(table[1:], start=1):
        values = {k: (cells[i] if i < len(cells) else "") for i, k in enumerate(keys) if k}
        rows.append(_Row(f"{path}:{line}", n, values, path, fmt, prefix))
    return header, rows


def _headerless_rows(path: Path, table: list[tuple[int, list[str]]], fmt: str, prefix: str
                     ) -> list[_Row]:
    """A one-instruction-per-row CSV (HEx-PHI); a header cell like 'prompt' is dropped, and
    a row split by an unquoted comma is joined back."""
    if table[0][1][0].strip().lower() in _HEADER_WORDS:
        table = table[1:]
    rows = []
    for n, (line, cells) in enumerate(table, start=1):
        while len(cells) > 1 and not cells[-1].strip():
            cells = cells[:-1]
        rows.append(_Row(f"{path}:{line}", n, {"instruction": ",".join(cells)}, path, fmt,
                         prefix))
    return rows


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).strip().lower(): v for k, v in value.items()}
    return value


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and "role" in m for m in value)


def _json_document_rows(path: Path, text: str, data: Any = None) -> list[_Row]:
    """A whole-file JSON list (Alpaca, SAMSum, SQL create-context)."""
    if data is None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AlignDepthError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column "
                                  f"{exc.colno}): fix the file") from exc
    if not isinstance(data, list):
        raise AlignDepthError(f"{path}: expected a JSON list of records or one JSON object per "
                              f"line (JSONL), got a JSON {type(data).__name__}")
    return [_Row(f"{path} (item {n})", n, _lower_keys(v), path)
            for n, v in enumerate(data, start=1)]


def _try_json(text: str) -> Any:
    """The parsed document, or None when ``text`` is not one JSON value."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _json_rows(path: Path, text: str) -> list[_Row]:
    """Rows of a JSONL file (objects or chat-message lists), or of a whole-file JSON list."""
    rows: list[_Row] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if not rows and text.lstrip().startswith("["):
                return _json_document_rows(path, text)
            if not rows and text.lstrip().startswith("{"):
                document = _try_json(text)
                if document is not None:
                    return _json_document_rows(path, text, document)
            raise AlignDepthError(f"{path}:{lineno}: not valid JSON ({exc.msg}, column "
                                  f"{exc.colno}): fix the line (JSONL holds one complete "
                                  "object per line)") from exc
        rows.append(_Row(f"{path}:{lineno}", len(rows) + 1, _lower_keys(value), path))
    if len(rows) == 1 and isinstance(rows[0].values, list) and not _is_chat(rows[0].values):
        return _json_document_rows(path, text)
    return rows


def _text_rows(path: Path, text: str) -> list[_Row]:
    """One instruction per non-blank line."""
    rows: list[_Row] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            rows.append(_Row(f"{path}:{lineno}", len(rows) + 1, {"instruction": line}, path))
    return rows


# --------------------------------------------------------------------------- detection

_RULES: tuple[tuple[str, Callable[[set[str]], bool]], ...] = (
    ("hh_rlhf", lambda k: {"chosen", "rejected"} <= k),
    ("toxicchat", lambda k: {"user_input", "toxicity"} <= k),
    ("openai_moderation", lambda k: "prompt" in k and bool(k & set(_MODERATION_FLAGS))),
    ("harmbench", lambda k: "behavior" in k),
    ("advbench", lambda k: {"goal", "target"} <= k),
    ("harmful_hexphi", lambda k: "messages" in k or "harmful_response" in k),
    ("samsum", lambda k: {"dialogue", "summary"} <= k),
    ("sql_create_context", lambda k: {"question", "context", "answer"} <= k),
    ("gsm8k", lambda k: {"question", "answer"} <= k),
    ("alpaca", lambda k: {"instruction", "output"} <= k),
    ("hexphi", lambda k: "instruction" in k and not k & {"response", "harmful_response"}),
    ("pairs", lambda k: bool(k & {"prompt", "instruction", "question"})
     and bool(k & {"response", "output", "completion"})),
    ("prompts", lambda k: bool(k & {"prompt", "text"}) and not k & {"response",
                                                                    "completion"}),
)


def _detect_keys(path: Path, keys: list[str]) -> str | None:
    found = {k.strip().lower() for k in keys}
    for name, rule in _RULES:
        if rule(found):
            return name
    if _CATEGORY_STEM.match(path.name.split(".")[0]):
        return "hexphi"
    return None


def _undetected(path: Path, what: str) -> AlignDepthError:
    return AlignDepthError(f"cannot tell the dataset format of '{path}' ({what}): pairs need "
                           "prompt (or instruction) and response (or output), or messages; "
                           "prompts a prompt column; or name the format with --format, one "
                           f"of: {', '.join(FORMATS)}")


def _detect_rows(path: Path, container: str, table: Any) -> str:
    """The format of parsed content: CSV header row, or the first JSON record."""
    if container == "text":
        return "malicious_instruct"
    if container == "csv":
        header = [c.strip() for c in table[0][1]]
        name = _detect_keys(path, header)
        if name is None:
            raise _undetected(path, f"columns: {', '.join(header)}")
        return name
    first = table[0].values
    if isinstance(first, list):
        return "harmful_hexphi"
    if not isinstance(first, dict):
        raise _undetected(path, f"records are JSON {type(first).__name__}s, not objects")
    name = _detect_keys(path, list(first))
    if name is None:
        raise _undetected(path, f"fields: {', '.join(first) or 'none'}")
    return name


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class _Loaded:
    spec: FormatSpec
    records: list[Record]
    skipped: int


def _check_container(spec: FormatSpec, container: str, path: Path) -> None:
    if container not in spec.containers:
        kinds = ", ".join("a directory" if c == "dir" else f"{c} files" for c in spec.containers)
        what = "a directory" if container == "dir" else f"a {container} file"
        raise AlignDepthError(f"{path}: format '{spec.name}' reads {kinds}, not {what}: "
                              "pass the right file or format")


def _check_columns(spec: FormatSpec, path: Path, header: list[str]) -> None:
    have = {h.lower() for h in header}
    for need in spec.columns:
        options = need.split("|")
        if not have & set(options):
            raise AlignDepthError(f"{path}: missing column '{options[0]}' for format "
                                  f"'{spec.name}' (needs {spec.needs()}; the file has columns: "
                                  f"{', '.join(header)}): fix the header or name the right "
                                  "format")


def _sniff(path: Path, text: str, spec: FormatSpec | None) -> str:
    """Container of a file whose extension says nothing."""
    if spec is None:
        raise AlignDepthError(f"cannot tell the dataset format of '{path}' from its extension: "
                              "use .csv, .json, .jsonl or .txt (optionally .gz), or name the "
                              "format")
    if len(spec.containers) == 1:
        return spec.containers[0]
    if text.lstrip().startswith(("[", "{")) and "json" in spec.containers:
        return "json"
    return "csv" if "csv" in spec.containers else spec.containers[-1]


def _file_rows(path: Path, spec: FormatSpec | None, prefix: str | None = None
               ) -> tuple[FormatSpec, list[_Row]]:
    """Parse one file and (if ``spec`` is None) detect its format."""
    container = _container(path)
    if spec is not None and container is not None:
        _check_container(spec, container, path)
    text = _read_text(path)
    if container is None:
        container = _sniff(path, text, spec)
    table: Any
    if container == "csv":
        table = _csv_table(path, text)
    elif container == "json":
        table = _json_rows(path, text)
    else:
        table = _text_rows(path, text)
    if not table:
        raise AlignDepthError(f"dataset file '{path}' holds no records")
    spec = spec or FORMATS[_detect_rows(path, container, table)]
    _check_container(spec, container, path)
    prefix = prefix or spec.name
    if container != "csv":
        return spec, [replace(r, fmt=spec.name, prefix=prefix) for r in table]
    if spec.headerless:
        return spec, _headerless_rows(path, table, spec.name, prefix)
    header, rows = _header_rows(path, table, spec.name, prefix)
    _check_columns(spec, path, header)
    return spec, rows


def _natural(name: str) -> tuple[Any, ...]:
    """Sort key that puts category_2 before category_10."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                 for p in re.split(r"(\d+)", name.lower()))


def _dir_rows(path: Path, spec: FormatSpec | None) -> tuple[FormatSpec, list[_Row]]:
    """A directory of per-category CSV files (HEx-PHI)."""
    spec = spec or FORMATS["hexphi"]
    _check_container(spec, "dir", path)
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv"),
                   key=lambda p: _natural(p.name))
    if not files:
        raise AlignDepthError(f"directory '{path}' holds no .csv files: HEx-PHI is read from "
                              "category_1.csv ... category_11.csv")
    rows: list[_Row] = []
    for file in files:
        rows += _file_rows(file, spec, prefix=f"{spec.name}-{file.stem}")[1]
    return spec, rows


def _unique(records: list[Record], rows: list[_Row]) -> list[Record]:
    """Make ids unique: a repeated id gets ``-<row>`` appended."""
    seen: set[str] = set()
    out: list[Record] = []
    for rec, row in zip(records, rows):
        rid = rec.id
        while rid in seen:
            rid = f"{rid}-{row.n}"
        if rid != rec.id:
            log.warning("%s: repeated id '%s' renamed '%s'", row.where, rec.id, rid)
            rec = replace(rec, id=rid)
        seen.add(rid)
        out.append(rec)
    return out


def _hub_rows(path: Path, spec: FormatSpec | None, split: str | None
              ) -> tuple[FormatSpec, list[_Row]]:
    """A parquet/arrow file, ``save_to_disk`` directory or hub snapshot: its rows are read
    like JSON records (:mod:`aligndepth.data.hub`)."""
    from aligndepth.data.hub import hub_rows

    raw, chosen = hub_rows(path, split)
    where = f"{path} [{chosen}]" if chosen else str(path)
    table = [_Row(f"{where} (row {n})", n, _lower_keys(v), path)
             for n, v in enumerate(raw, start=1)]
    if not table:
        raise AlignDepthError(f"dataset '{where}' holds no records")
    spec = spec or FORMATS[_detect_rows(path, "json", table)]
    if spec.headerless or not {"json", "csv"} & set(spec.containers):
        raise AlignDepthError(f"{path}: format '{spec.name}' is not read from a table of "
                              "named columns: pass the file it is published as")
    return spec, [replace(r, fmt=spec.name, prefix=spec.name) for r in table]
