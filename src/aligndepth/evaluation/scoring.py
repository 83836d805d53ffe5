"""Per-item scores of the utility tasks: GSM8k answers, SQL queries, ROUGE.

- **GSM8k**: the final number. A reference answer ends ``#### 72``; a model's answer is
  read the same way when it has a ``####`` line, else its last number counts (how GSM8k
  accuracy of chat models is usually read). Numbers compare as values (``1,000`` =
  ``1000`` = ``1000.00``; ``$`` and a trailing ``.`` are dropped).
- **SQL** (SQL create-context): exact match after normalising both queries: a code fence
  and anything after the first statement are dropped, whitespace is collapsed and spaced
  evenly around punctuation and operators, the trailing ``;`` goes, double quotes become
  single quotes, and everything outside string literals is lower-cased (SQL keywords and
  unquoted identifiers are case-insensitive; literals are not).
- **ROUGE** (Samsum and other reference answers): ROUGE-1, ROUGE-2 and ROUGE-L F1 from
  the ``rouge-score`` package (Porter stemming, its default tokenizer), as fractions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from aligndepth.errors import AlignDepthError

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+")
_FINAL = re.compile(r"####\s*(.+)")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _as_number(text: str) -> Decimal | None:
    cleaned = text.replace(",", "").replace("$", "").rstrip(".")
    try:
        return Decimal(cleaned).normalize()
    except InvalidOperation:
        return None


def final_number(text: str) -> Decimal | None:
    """The answer's number: after ``####`` when there is such a line, else the last one."""
    marked = _FINAL.findall(text)
    if marked:
        numbers = _NUMBER.findall(marked[-1])
        return _as_number(numbers[0]) if numbers else None
    numbers = _NUMBER.findall(text)
    return _as_number(numbers[-1]) if numbers else None


def check_gsm8k_references(references: Sequence[tuple[str, str]], source: str) -> None:
    """Raise naming the first record whose reference answer has no final number.

    ``references`` holds ``(record id, reference answer)``.
    """
    for rid, answer in references:
        if final_number(answer) is None:
            raise AlignDepthError(
                f"{source}: record '{rid}' has no final answer (GSM8k answers end "
                "'#### <number>'): give the GSM8k file with its answers")


def gsm8k_correct(prediction: str, reference: str) -> bool:
    """Whether the prediction's final number equals the reference's."""
    want, got = final_number(reference), final_number(prediction)
    return want is not None and got is not None and want == got


_FENCE = re.compile(r"```(?:sql)?\s*(.*?)(?:```|$)", re.IGNORECASE | re.DOTALL)
_LITERAL = re.compile(r"('(?:[^']|'')*')")
_PUNCT = re.compile(r"\s*(<=|>=|<>|!=|[(),=<>*+/-])\s*")


def normalize_sql(query: str) -> str:
    """A canonical form of one SQL query (see the module docstring)."""
    fenced = _FENCE.search(query)
    text = fenced.group(1) if fenced else query
    text = text.strip().split(";")[0].replace('"', "'")
    parts = _LITERAL.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a string literal: kept as written
            out.append(part)
            continue
        part = _PUNCT.sub(lambda m: f" {m.group(1)} ", part.lower())
        out.append(" ".join(part.split()))
    return " ".join(p for p in out if p).strip()


def sql_exact_match(prediction: str, reference: str) -> bool:
    return normalize_sql(prediction) == normalize_sql(reference)


@lru_cache(maxsize=1)
def _scorer() -> Any:
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise AlignDepthError("ROUGE needs the rouge-score package: pip install "
                              "rouge-score") from None
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 (fractions) of one prediction."""
    scores = _scorer().score(reference, prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}
