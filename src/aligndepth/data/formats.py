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

import codecs
import csv
import gzip
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from aligndepth.data.schemas import SCHEMAS, HarmfulPair, InstructionPair, PromptRecord
from aligndepth.errors import AlignDepthError, did_you_mean

log = logging.getLogger(__name__)

Record = PromptRecord | HarmfulPair | InstructionPair

_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".txt": "text"}
_UNSUPPORTED = {".xlsx", ".xls", ".tsv", ".zip"}
_MODERATION_FLAGS = ("s", "h", "v", "hr", "sh", "s3", "h2", "v2")
_CATEGORY_STEM = re.compile(r"^category_\d+$", re.IGNORECASE)
_HEADER_WORDS = {"instruction", "instructions", "prompt", "goal", "behavior", "text", "query"}
_EXAMPLE_CHARS = 200


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


@dataclass(frozen=True)
class FormatSpec:
    """A published dataset format and how to read it.

    ``columns`` are the fields every record needs (``"a|b"``: either); ``subsets`` maps a
    subset name to the categories it keeps (``None``: all).
    """

    name: str
    schema: type
    description: str
    containers: tuple[str, ...]
    convert: Callable[[_Row], Record | None]
    columns: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    subsets: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    headerless: bool = False

    def needs(self) -> str:
        """Human-readable list of the fields this format reads."""
        needs = ", ".join(c if "|" not in c else "one of " + "/".join(c.split("|"))
                          for c in self.columns) or "one instruction per row"
        if self.optional:
            needs += f" (optional: {', '.join(self.optional)})"
        return needs


# --------------------------------------------------------------------------- fields


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


def _hexphi(row: _Row) -> PromptRecord | None:
    text = _field(row, "instruction", "prompt", "goal", "text")
    if not text.strip():
        return None
    category = _field(row, "category", required=False)
    if not category and _CATEGORY_STEM.match(row.source.name.split(".")[0]):
        category = row.source.name.split(".")[0]
    return PromptRecord(text.strip(), id=row.default_id, category=category)


def _chat_pair(row: _Row, messages: Any) -> tuple[str, str]:
    """(first user turn, first assistant turn after it) of a chat transcript."""
    shape = 'expected chat messages [{"role": "user", ...}, {"role": "assistant", ...}]'
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise AlignDepthError(f"{row.where}: {shape}")
    user: str | None = None
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, str):
            raise AlignDepthError(f"{row.where}: a '{role}' message has no text 'content'")
        if role == "user" and user is None:
            user = content
        elif role == "assistant" and user is not None:
            return user, content
    raise AlignDepthError(f"{row.where}: {shape}; this record has no "
                          f"{'user' if user is None else 'assistant'} turn")


def _harmful_hexphi(row: _Row) -> HarmfulPair | None:
    values = row.values
    category = ""
    if isinstance(values, dict) and "messages" in values:
        category = _field(row, "category", required=False)
        values = values["messages"]
    if isinstance(values, list):
        instruction, response = _chat_pair(row, values)
    else:
        instruction = _field(row, "instruction", "prompt", "question")
        response = _field(row, "harmful_response", "response", "output", "completion")
        category = _field(row, "category", required=False)
    if not instruction.strip() or not response.strip():
        return None
    return HarmfulPair(instruction.strip(), response, id=row.default_id, category=category)


def _advbench(row: _Row) -> PromptRecord | None:
    goal, target = _field(row, "goal"), _field(row, "target", required=False)
    if not goal.strip():
        return None
    return PromptRecord(goal.strip(), id=row.default_id, target=target.strip() or None)


def _harmbench(row: _Row) -> PromptRecord | None:
    behavior = _field(row, "behavior")
    if not behavior.strip():
        return None
    context = _field(row, "contextstring", required=False)
    instruction = f"{context.strip()}\n\n---\n\n{behavior.strip()}" if context.strip() \
        else behavior.strip()
    rid = _field(row, "behaviorid", required=False).strip() or row.default_id
    return PromptRecord(instruction, id=rid,
                        category=_field(row, "semanticcategory", required=False).strip())


_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")


def _first_human_turn(row: _Row, transcript: str) -> str:
    """The text of the first ``Human:`` turn of an HH-RLHF transcript."""
    turns = list(_TURN.finditer(transcript))
    for i, turn in enumerate(turns):
        if turn.group(1) == "Human":
            end = turns[i + 1].start() if i + 1 < len(turns) else len(transcript)
            return transcript[turn.end():end].strip()
    raise AlignDepthError(f"{row.where}: transcript has no 'Human:' turn (HH-RLHF transcripts "
                          "read '\\n\\nHuman: ... \\n\\nAssistant: ...')")


def _hh_rlhf(row: _Row) -> PromptRecord | None:
    text = _first_human_turn(row, _field(row, "chosen", "rejected"))
    if not text:
        return None
    parent = row.source.parent.name
    category = parent if parent.startswith(("harmless", "helpful", "red-team")) else ""
    return PromptRecord(text, id=row.default_id, category=category)


def _toxicchat(row: _Row) -> PromptRecord | None:
    text = _field(row, "user_input")
    toxicity = _flag(row, "toxicity")
    if toxicity is None:
        raise AlignDepthError(f"{row.where}: missing 'toxicity' label (0 or 1)")
    if not text.strip():
        return None
    rid = _field(row, "conv_id", required=False).strip() or row.default_id
    return PromptRecord(text.strip(), id=rid, category="toxic" if toxicity else "safe")


def _openai_moderation(row: _Row) -> PromptRecord | None:
    text = _field(row, "prompt")
    flags = [_flag(row, f) for f in _MODERATION_FLAGS]
    if all(f is None for f in flags):
        raise AlignDepthError(f"{row.where}: none of the category flags "
                              f"{', '.join(f.upper() for f in _MODERATION_FLAGS)} is set "
                              f"(this record has: {_keys(row)})")
    if not text.strip():
        return None
    category = "harmful" if any(flags) else "safe"
    return PromptRecord(text.strip(), id=row.default_id, category=category)


def _alpaca(row: _Row) -> InstructionPair | None:
    instruction = _join(_field(row, "instruction"), _field(row, "input", required=False))
    output = _field(row, "output")
    if not instruction or not output.strip():
        return None
    return InstructionPair(instruction, output, id=row.default_id)


def _samsum(row: _Row) -> InstructionPair | None:
    dialogue = _field(row, "dialogue").replace("\r\n", "\n").strip()
    summary = _field(row, "summary")
    if not dialogue or not summary.strip():
        return None
    rid = _field(row, "id", required=False).strip() or row.default_id
    return InstructionPair("Summarize this dialogue:\n" + dialogue, summary, id=rid)


def _gsm8k(row: _Row) -> InstructionPair | None:
    question, answer = _field(row, "question"), _field(row, "answer")
    if not question.strip() or not answer.strip():
        return None
    return InstructionPair(question.strip(), answer, id=row.default_id)


def _sql_create_context(row: _Row) -> InstructionPair | None:
    question, context = _field(row, "question"), _field(row, "context")
    answer = _field(row, "answer")
    if not question.strip() or not answer.strip():
        return None
    instruction = question.strip()
    if context.strip():
        instruction += "\n\nDatabase schema:\n" + context.strip()
    return InstructionPair(instruction, answer, id=row.default_id)


_HARM_SUBSETS: dict[str, frozenset[str] | None] = {
    "harmful": frozenset({"harmful", "toxic"}), "toxic": frozenset({"harmful", "toxic"}),
    "safe": frozenset({"safe"}), "all": None}

FORMATS: dict[str, FormatSpec] = {spec.name: spec for spec in (
    FormatSpec("hexphi", PromptRecord, "HEx-PHI harmful instructions (11 categories)",
               ("dir", "csv", "json", "text"), _hexphi, headerless=True),
    FormatSpec("harmful_hexphi", HarmfulPair, "Harmful HEx-PHI (instruction, harmful response)",
               ("json", "csv"), _harmful_hexphi,
               ("instruction|prompt|question|messages",
                "harmful_response|response|output|completion|messages"),
               ("category",)),
    FormatSpec("advbench", PromptRecord, "AdvBench harmful behaviours with targets",
               ("csv", "json"), _advbench, ("goal",), ("target",)),
    FormatSpec("malicious_instruct", PromptRecord, "MaliciousInstruct, one per line",
               ("text",), _hexphi),
    FormatSpec("harmbench", PromptRecord, "HarmBench behaviours", ("csv", "json"), _harmbench,
               ("behavior",), ("contextstring", "semanticcategory", "behaviorid")),
    FormatSpec("hh_rlhf", PromptRecord, "Anthropic HH-RLHF (first human turn)", ("json",),
               _hh_rlhf, ("chosen|rejected",)),
    FormatSpec("toxicchat", PromptRecord, "ToxicChat user inputs (toxic / safe)",
               ("csv", "json"), _toxicchat, ("user_input", "toxicity"), ("conv_id",),
               _HARM_SUBSETS),
    FormatSpec("openai_moderation", PromptRecord, "OpenAI moderation eval (harmful / safe)",
               ("json", "csv"), _openai_moderation, ("prompt", "|".join(_MODERATION_FLAGS)),
               subsets=_HARM_SUBSETS),
    FormatSpec("alpaca", InstructionPair, "Alpaca instruction following", ("json", "csv"),
               _alpaca, ("instruction", "output"), ("input",)),
    FormatSpec("samsum", InstructionPair, "SAMSum dialogue summarisation", ("json", "csv"),
               _samsum, ("dialogue", "summary"), ("id",)),
    FormatSpec("gsm8k", InstructionPair, "GSM8k grade-school maths", ("json", "csv"), _gsm8k,
               ("question", "answer")),
    FormatSpec("sql_create_context", InstructionPair, "SQL create-context text-to-SQL",
               ("json", "csv"), _sql_create_context, ("question", "context", "answer")),
)}

_ALIASES = {"hex_phi": "hexphi", "harmful_hex_phi": "harmful_hexphi", "hh": "hh_rlhf",
            "toxic_chat": "toxicchat", "moderation": "openai_moderation",
            "maliciousinstruct": "malicious_instruct", "sql": "sql_create_context"}
_SCHEMA_NAMES = {schema: name for name, schema in SCHEMAS.items()}


def format_by_name(name: str) -> FormatSpec:
    """The registered format ``name`` (case and ``-``/``_`` do not matter)."""
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise AlignDepthError(f"unknown dataset format '{name}'{did_you_mean(key, FORMATS)}; "
                              f"choose one of {', '.join(FORMATS)}")
    return FORMATS[key]


# --------------------------------------------------------------------------- reading


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
    return AlignDepthError(f"cannot tell the dataset format of '{path}' ({what}): name it "
                           f"explicitly, one of: {', '.join(FORMATS)}")


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
