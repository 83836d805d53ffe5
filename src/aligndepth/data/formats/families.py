"""The published dataset families: one converter per family, and their registry."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aligndepth.data.formats.rows import (
    _CATEGORY_STEM,
    _MODERATION_FLAGS,
    Record,
    _field,
    _flag,
    _join,
    _keys,
    _Row,
)
from aligndepth.data.schemas import SCHEMAS, HarmfulPair, InstructionPair, PromptRecord
from aligndepth.errors import AlignDepthError, did_you_mean

log = logging.getLogger(__name__)


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
    return InstructionPair(SAMSUM_PROMPT.format(dialogue=dialogue), summary, id=rid)


#: The prompts of the utility tasks (training and evaluation alike; docs/evaluation.md).
SAMSUM_PROMPT = "Summarize this dialogue:\n{dialogue}"
GSM8K_PROMPT = ("{question}\n\nSolve the problem step by step, then give the final answer "
                "as a number on the last line, after '####'.")
SQL_PROMPT = ("Write the SQL query that answers the question, using the tables created "
              "below. Answer with the query only.\n\nTables:\n{context}\n\n"
              "Question: {question}")


def _gsm8k(row: _Row) -> InstructionPair | None:
    question, answer = _field(row, "question"), _field(row, "answer")
    if not question.strip() or not answer.strip():
        return None
    return InstructionPair(GSM8K_PROMPT.format(question=question.strip()), answer,
                           id=row.default_id)


def _sql_create_context(row: _Row) -> InstructionPair | None:
    question, context = _field(row, "question"), _field(row, "context")
    answer = _field(row, "answer")
    if not question.strip() or not answer.strip():
        return None
    instruction = SQL_PROMPT.format(context=context.strip() or "(none given)",
                                    question=question.strip())
    return InstructionPair(instruction, answer, id=row.default_id)


def _pairs(row: _Row) -> InstructionPair | None:
    instruction = _field(row, "prompt", "instruction", "question")
    response = _field(row, "response", "output", "completion")
    if not instruction.strip() or not response.strip():
        return None
    rid = _field(row, "id", required=False).strip() or row.default_id
    return InstructionPair(instruction.strip(), response, id=rid)


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
    FormatSpec("pairs", InstructionPair, "prompt/response pairs of your own",
               ("json", "csv"), _pairs, ("prompt|instruction|question",
                                         "response|output|completion"), ("id",)),
    FormatSpec("prompts", PromptRecord, "prompts of your own, one per row", ("json", "csv"),
               _hexphi, ("prompt|instruction|text",), ("category",)),
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
