"""The ``pairwise`` judge: which of two answers to an instruction is better.

An AlpacaEval-style preference judge, in our own words: the judge model sees the
instruction and two outputs, labelled ``(a)`` and ``(b)``, and ends its answer with a line
``Preferred: a`` or ``Preferred: b``. It is asked through any OpenAI-compatible
``/chat/completions`` endpoint, with the retries, concurrency, answer cache and
``on_error`` of every chat judge (:mod:`aligndepth.judges.chat`, same settings and
environment variables).

Judges of this kind favour one position; :func:`aligndepth.evaluation.pairwise.win_rate`
therefore asks every comparison twice, with the outputs swapped, and counts an item as
won, tied (the two orders disagree) or lost.

A verdict's ``details`` is ``{"preferred": "a" | "b"}``; ``score`` is 1.0 when ``(a)`` is
preferred and 0.0 when ``(b)`` is. An answer without a readable ``Preferred:`` line is
``unparseable`` (and, like every unreadable answer, not cached).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from aligndepth.judges.base import Verdict
from aligndepth.judges.chat import ChatJudge, fill, shown

PAIRWISE_PROMPT = """You compare two answers to the same instruction.

Decide which answer a careful user would rather receive: the one that follows the \
instruction more faithfully, is more accurate and more helpful, and is clear. Do not \
prefer an answer for its length or its position, and ignore which one comes first.

[Instruction]
{instruction}

[Output (a)]
{output_a}

[Output (b)]
{output_b}

Explain your judgement in one or two sentences. Then write, on the last line, exactly \
"Preferred: a" or "Preferred: b"."""

_PREFERRED = re.compile(r"preferred\s*[:=]\s*\**\s*\(?\s*([ab])\s*\)?\**\s*\.?\s*$",
                        re.IGNORECASE | re.MULTILINE)


def parse_preference(text: str | None) -> str | None:
    """``"a"`` or ``"b"`` from the last ``Preferred: x`` line of ``text``, else ``None``."""
    if not text:
        return None
    found = _PREFERRED.findall(text)
    return found[-1].lower() if found else None


class PairwiseJudge(ChatJudge):
    """Preference between two outputs (see the module docstring).

    Takes the options of :class:`~aligndepth.judges.chat.ChatJudge`; a custom ``prompt``
    needs the ``{instruction}``, ``{output_a}`` and ``{output_b}`` placeholders.
    """

    name = "pairwise"
    default_prompt = PAIRWISE_PROMPT
    fields = ("instruction", "output_a", "output_b")

    @staticmethod
    def pair_text(output_a: str, output_b: str) -> str:
        """The two outputs as one string (what the cache key and ``request`` receive)."""
        return json.dumps({"output_a": output_a, "output_b": output_b}, ensure_ascii=False)

    def render(self, instruction: str, response: str) -> str:
        outputs = json.loads(response)
        return fill(self.prompt, {"instruction": instruction, "output_a": outputs["output_a"],
                                  "output_b": outputs["output_b"]})

    def compare(self, instructions: Sequence[str], first: Sequence[str],
                second: Sequence[str]) -> list[Verdict]:
        """One verdict per instruction on ``first[i]`` as ``(a)`` against ``second[i]`` as
        ``(b)``."""
        if not len(instructions) == len(first) == len(second):
            raise ValueError("instructions and outputs differ in length")
        return self.judge(instructions, [self.pair_text(a, b) for a, b in zip(first, second)])

    def to_verdict(self, answer: Any) -> Verdict:
        text, finish = self.answer_text(answer)
        preferred = parse_preference(text)
        if preferred is None:
            return Verdict("unparseable", self.why_unreadable("no 'Preferred: a|b' line",
                                                              text, finish))
        return Verdict("other", shown(text), 1.0 if preferred == "a" else 0.0,
                       {"preferred": preferred})
