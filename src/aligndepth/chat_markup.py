"""What a tokenizer's chat template writes around the messages, and which tokens control it.

A probe conversation (a system message where the template takes one, a user message, an
assistant answer) is rendered through the tokenizer's chat template; the text outside
the probe's contents is the template's **markup** (turn headers, end-of-turn marks,
BOS). From it come:

- the end-of-turn tokens the decoding engine stops at (``engine.stopping``), and
- the **control tokens**: ids a user cannot type but that steer the conversation, so an
  attack that writes text into the user's turn (GCG's suffix) must never use them. They
  are every id in ``all_special_ids``, every added token flagged ``special`` (Gemma-3
  flags its turn marks and thousands of image/unused tokens so without listing them as
  special tokens), and every added token the template's markup uses, flagged or not (a
  fine-tune that adds ``<|im_start|>`` as an ordinary added token).

Ordinary vocabulary tokens inside the markup (``user``, ``\\n\\n``, a default system text
such as Llama-3.1's date preamble) are text a user can type; they are not control tokens.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

PROBE_SYSTEM, PROBE_USER, PROBE_ANSWER = "Zyx-5519", "Ping?", "Pong-7341"


def render_probe(tokenizer: Any, system: bool = False) -> str | None:
    """The chat template's text for the probe conversation (with a system message when
    ``system``), or ``None`` when the tokenizer has no template or the template rejects
    the conversation (Gemma's rejects a system role)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": PROBE_USER},
                {"role": "assistant", "content": PROBE_ANSWER}]
    if system:
        messages.insert(0, {"role": "system", "content": PROBE_SYSTEM})
    try:
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    except Exception as exc:  # a template may reject the probe; callers fall back
        log.debug("chat template probe failed: %s", exc)
        return None


def answer_tail(tokenizer: Any) -> str | None:
    """The text the chat template writes right after an assistant message (its end of
    turn, e.g. ``<|eot_id|>`` or ``<end_of_turn>\\n``), or ``None`` without a template."""
    text = render_probe(tokenizer)
    if text is None or text.count(PROBE_ANSWER) != 1:
        return None
    return text.split(PROBE_ANSWER, 1)[1]


def end_of_turn(tokenizer: Any) -> list[int]:
    """Token ids of what the chat template writes right after an assistant message (its
    end of turn, e.g. ``<|eot_id|>`` or ``<end_of_turn>`` and a newline); empty without a
    template or when it writes only whitespace there. The one end-of-turn probe: the
    engine stops on its special tokens, training teaches a response to end with it."""
    tail = answer_tail(tokenizer)
    if tail is None or not tail.strip():
        return []
    return [int(i) for i in tokenizer(tail, add_special_tokens=False).input_ids]


def markup(tokenizer: Any) -> list[str]:
    """The pieces of text the chat template writes around the probe's contents (in the
    order rendered, from the probe with and without a system message); empty without a
    chat template."""
    pieces: list[str] = []
    for system in (True, False):
        text = render_probe(tokenizer, system)
        if text is None:
            continue
        for content in (PROBE_SYSTEM, PROBE_USER, PROBE_ANSWER):
            text = text.replace(content, "\0")
        pieces += [p for p in text.split("\0") if p]
    return pieces


def special_ids(tokenizer: Any) -> set[int]:
    """``all_special_ids`` and every added token flagged ``special``."""
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or []}
    for i, added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(i))
    return ids


def control_token_ids(tokenizer: Any) -> set[int]:
    """Ids a user cannot type (see the module docstring): the special ids and every added
    token the chat template's markup holds."""
    ids = special_ids(tokenizer)
    added = {int(i) for i in (getattr(tokenizer, "added_tokens_decoder", {}) or {})}
    for piece in markup(tokenizer):
        ids.update(int(t) for t in tokenizer(piece, add_special_tokens=False).input_ids
                   if int(t) in added)
    return ids
