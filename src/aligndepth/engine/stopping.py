"""When a row stops: each model's own stop ids, stop strings, and why a row ended.

A model's stop ids are the union of its tokenizer's EOS, every id in its
``generation_config.eos_token_id`` (often a list: Llama-3 instruct ends turns with
``<|eot_id|>`` but its base with ``<|end_of_text|>``), and the end-of-turn tokens its
chat template writes after an assistant message (``<|im_end|>``, ``<end_of_turn>``, ...).
Stop strings cut a row when its decoded text contains one (a base model on the plain
template otherwise runs on into an invented ``### Instruction:`` turn); the tokens from
the one in which the stop string begins are removed from the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aligndepth.chat_markup import end_of_turn, special_ids
from aligndepth.errors import AlignDepthError

EOS, STOP_STRING, LENGTH = "eos", "stop_string", "length"


@dataclass(frozen=True)
class StopRule:
    """Token ids and strings that end a row.

    Args:
        ids: token ids that end a row (the id itself is not part of the output).
        strings: texts that end a row once the decoded output contains one.
    """

    ids: frozenset[int] = frozenset()
    strings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for s in self.strings:
            if not s:
                raise AlignDepthError("a stop string is empty: give --stop some text, or drop "
                                      "the option")

    def union(self, other: StopRule) -> StopRule:
        """Stop at whatever either rule stops at."""
        strings = tuple(dict.fromkeys(self.strings + other.strings))
        return StopRule(self.ids | other.ids, strings)


@dataclass
class Completion:
    """One generated row: new token ids (stop id or stop string removed) and the reason
    generation ended: ``eos`` (a stop id), ``stop_string`` or ``length``."""

    ids: list[int]
    stop_reason: str = LENGTH


def template_end_ids(tokenizer: Any) -> set[int]:
    """The special tokens that open the chat template's end of turn
    (:func:`~aligndepth.chat_markup.end_of_turn`)."""
    special = special_ids(tokenizer)
    out: set[int] = set()
    for token in end_of_turn(tokenizer):
        if token not in special:
            break
        out.add(token)
    return out


def model_stop_ids(tokenizer: Any, model: Any = None) -> set[int]:
    """The stop ids of one model (see the module docstring)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, Sequence):
        ids.update(int(i) for i in eos)
    return ids | template_end_ids(tokenizer)


class StopStrings:
    """Watches rows' decoded tails for stop strings.

    ``check(row, ids)`` is called after each new token with the row's ids so far and
    returns how many ids to keep when a stop string has appeared (else ``None``).
    """

    def __init__(self, tokenizer: Any, strings: Sequence[str]):
        self.tok, self.strings = tokenizer, tuple(strings)
        self.window = max((len(s) for s in self.strings), default=0) + 8

    def __bool__(self) -> bool:
        return bool(self.strings)

    def _text(self, ids: Sequence[int]) -> str:
        return str(self.tok.decode(list(ids), skip_special_tokens=True))

    def _found(self, text: str) -> bool:
        return any(s in text for s in self.strings)

    def check(self, ids: Sequence[int]) -> int | None:
        """Ids to keep if ``ids`` (ending with the newest token) now hold a stop string."""
        if not self._found(self._text(ids[-self.window:])):
            return None
        start = len(ids) - 1
        while start > 0 and not self._found(self._text(ids[start:])):
            start -= 1  # the token in which the stop string begins
        return start
