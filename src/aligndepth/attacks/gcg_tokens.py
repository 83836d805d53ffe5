"""Which tokens a GCG suffix may hold, and the suffix the search starts from.

The suffix is text at the end of the user's message, so it may hold only tokens a user
could type: never a control token of the tokenizer
(:func:`aligndepth.chat_markup.control_token_ids`: special tokens, added tokens flagged
special, added tokens of the chat template's markup), which could close the user's turn
and open the model's (``<|eot_id|><|start_header_id|>assistant``) and so fake a
jailbreak; never a token whose text is blank; and, unless ``allow_non_ascii``, only
printable ASCII.

The search starts from Zou et al.'s ``! ! ! ...`` (``suffix_length`` space-separated
``!``) when that text is ``suffix_length`` allowed tokens that re-encode to themselves;
else from one printable allowed token repeated, the nearest to ``!`` that re-encodes
(``!``, ``"``, ``#``, ...; then any printable allowed token). A user's ``init_suffix``
is checked with the tokenizer alone, so the CLI refuses a bad one before any weights load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from aligndepth.attacks.gcg_candidates import retokenizes
from aligndepth.chat_markup import control_token_ids
from aligndepth.errors import AlignDepthError
from aligndepth.experiment_configs import GCGConfig

FIX_RETOKENIZATION = ("pass a different --init-suffix, --allow-non-ascii, or turn off the "
                      "re-tokenisation filter (--no-filter-retokenization)")

#: Printable allowed tokens tried (in id order) after the ones nearest to ``!``.
FALLBACK_TOKENS = 200


def printable_ascii(text: str) -> bool:
    """Whether ``text`` is non-blank printable ASCII (what a user types on any keyboard)."""
    return bool(text.strip()) and text.isascii() and text.isprintable()


def typeable(text: str, allow_non_ascii: bool) -> bool:
    """Whether a (non-control) token's text may stand in a suffix: not blank, and
    printable ASCII unless ``allow_non_ascii``."""
    return printable_ascii(text) if not allow_non_ascii else bool(text.strip())


def allowed_token_mask(tokenizer: Any, vocab: int, allow_non_ascii: bool) -> torch.Tensor:
    """``(vocab,)`` bool: tokens a suffix may use (no control token, no blank text,
    printable ASCII unless ``allow_non_ascii``; ids past the tokenizer are never allowed)."""
    mask = torch.zeros(vocab, dtype=torch.bool)
    n = min(vocab, len(tokenizer))
    control = control_token_ids(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    for i, text in enumerate(texts):
        mask[i] = i not in control and typeable(text, allow_non_ascii)
    return mask


def _round_trips(tokenizer: Any, ids: list[int]) -> bool:
    return bool(retokenizes(tokenizer, torch.tensor([ids]))[0])


def user_suffix_ids(tokenizer: Any, config: GCGConfig) -> list[int]:
    """The ids of ``config.init_suffix``; raises :class:`AlignDepthError` when it encodes to
    nothing, holds a control token, holds a token that is not printable ASCII (unless
    ``allow_non_ascii``), or (with ``filter_retokenization``) does not re-encode to itself
    (the search could never move from it)."""
    text = config.init_suffix
    assert text is not None
    ids = [int(i) for i in tokenizer(text, add_special_tokens=False).input_ids]
    if not ids:
        raise AlignDepthError("the initial GCG suffix encodes to no tokens: give text")
    control = control_token_ids(tokenizer)
    for i in ids:
        if i in control:
            raise AlignDepthError(
                f"the initial GCG suffix {text!r} holds {str(tokenizer.decode([i]))!r}, a "
                "control token of the tokenizer that no user can type (it can end the user's "
                "turn): remove it from --init-suffix")
    for i in ids:
        token = str(tokenizer.decode([i]))
        if not config.allow_non_ascii and not (token.isascii() and token.isprintable()):
            raise AlignDepthError(
                f"the initial GCG suffix {text!r} holds the token {token!r}, which is not "
                "printable ASCII: remove it from --init-suffix or pass --allow-non-ascii")
    if config.filter_retokenization and not _round_trips(tokenizer, ids):
        raise AlignDepthError(
            f"the initial GCG suffix {text!r} does not survive decode -> re-encode (it "
            f"decodes to {tokenizer.decode(ids)!r}, which encodes to other tokens), so GCG "
            f"could never move from it: {FIX_RETOKENIZATION}")
    return ids


def check_init_suffix(tokenizer: Any, config: GCGConfig) -> None:
    """Refuse a bad ``config.init_suffix`` (see :func:`user_suffix_ids`) from the
    tokenizer alone; nothing to check without one."""
    if config.init_suffix is not None:
        user_suffix_ids(tokenizer, config)


def _single_token(tokenizer: Any, text: str) -> int | None:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return int(ids[0]) if len(ids) == 1 else None


def start_tokens(tokenizer: Any, allowed: torch.Tensor) -> list[int]:
    """Printable allowed tokens to repeat when Zou's text does not fit, nearest to ``!``
    first: each printable ASCII character (and its space-led form) by its distance to
    ``!``, then up to :data:`FALLBACK_TOKENS` other printable allowed tokens by id."""
    chars = sorted((chr(c) for c in range(33, 127)), key=lambda c: (abs(ord(c) - 33), c))
    near = [_single_token(tokenizer, t) for c in chars for t in (c, " " + c)]
    out = list(dict.fromkeys(i for i in near if i is not None and i < len(allowed)))
    rest: list[int] = []
    for i in allowed.nonzero()[:, 0].tolist():
        if len(rest) >= FALLBACK_TOKENS:
            break
        if int(i) not in out and printable_ascii(str(tokenizer.decode([int(i)]))):
            rest.append(int(i))
    return [i for i in out if bool(allowed[i])
            and printable_ascii(str(tokenizer.decode([i])))] + rest


def start_suffix(tokenizer: Any, allowed: torch.Tensor, length: int,
                 round_trips: Callable[[list[int]], bool], filter_retokenization: bool
                 ) -> list[int]:
    """The default starting suffix's ids ``(length,)`` (see the module docstring), all
    printable allowed tokens; ``round_trips(ids)`` says whether ``ids`` re-encode to
    themselves. Raises :class:`AlignDepthError` when none does while
    ``filter_retokenization`` is on (the search could never move from it)."""
    zou = [int(i) for i in tokenizer(" ".join(["!"] * length),
                                     add_special_tokens=False).input_ids]
    zou_fits = len(zou) == length and all(
        i < len(allowed) and bool(allowed[i]) and printable_ascii(str(tokenizer.decode([i])))
        for i in zou)
    if zou_fits and round_trips(zou):
        return zou
    options = start_tokens(tokenizer, allowed)
    for token in options:
        if round_trips([token] * length):
            return [token] * length
    if filter_retokenization or not (zou_fits or options):
        raise AlignDepthError(f"no allowed token repeated {length} times "
                              f"re-encodes to itself, so GCG cannot start: "
                              f"{FIX_RETOKENIZATION}")
    return zou if zou_fits else [options[0]] * length
