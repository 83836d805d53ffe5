"""Prompt formats: how an instruction (and an optional response prefix) becomes text.

Every experiment records the format of each model in its run manifest, because the
papers leave it unstated and results depend on it.

- ``chat``: the tokenizer's own chat template. ``system`` is ``None`` (``default``: no
  system message is passed, so whatever the template injects is used, e.g. Qwen2.5's
  and Llama-3.1's default system text), ``""`` (``none``: an empty system message where
  the template takes one, which suppresses an injected default; no message otherwise) or
  a text. ``placement="user"`` puts the system text at the start of the user's message
  instead (for templates that reject a system role, such as Gemma's). A response prefix
  continues the assistant turn (``continue_final_message``), which is how prefilling
  works on any chat model. A template error is a user error naming the model.
- ``plain``: a completion template for base models, ``### Instruction: ... ### Response:``
  by default and configurable; ``{instruction}`` is required in a custom template. A
  system prompt, when given, goes first followed by a blank line.

Batches are encoded with **left padding** so that all rows end where generation starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from aligndepth.errors import AlignDepthError

DEFAULT_PLAIN_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"


@dataclass(frozen=True)
class PromptFormat:
    """How one model sees a prompt.

    Args:
        kind: ``"chat"`` (the tokenizer's chat template) or ``"plain"`` (``template``).
        template: plain-completion template containing ``{instruction}``.
        system: system prompt, or ``None`` for none.
    """

    kind: str = "chat"
    template: str = DEFAULT_PLAIN_TEMPLATE
    system: str | None = None
    placement: str = "system"

    def __post_init__(self) -> None:
        if self.placement not in ("system", "user"):
            raise AlignDepthError(f"unknown system prompt placement '{self.placement}': use "
                                  "'system' or 'user'")
        if self.kind not in ("chat", "plain"):
            raise AlignDepthError(
                f"unknown prompt format '{self.kind}': use 'chat' or 'plain'")
        if self.kind == "plain" and "{instruction}" not in self.template:
            raise AlignDepthError(
                "the plain prompt template has no '{instruction}' placeholder: add it")

    @classmethod
    def chat(cls, system: str | None = None) -> PromptFormat:
        return cls("chat", system=system)

    @classmethod
    def plain(cls, template: str = DEFAULT_PLAIN_TEMPLATE, system: str | None = None
              ) -> PromptFormat:
        return cls("plain", template=template, system=system)

    def with_system(self, system: str | None, placement: str | None = None) -> PromptFormat:
        return PromptFormat(self.kind, self.template, system, placement or self.placement)

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Default stop strings: a plain template's instruction marker (a base model would
        otherwise run on into an invented next turn); none for chat templates."""
        if self.kind != "plain":
            return ()
        marker = self.template.split("{instruction}", 1)[0].strip()
        return (marker,) if marker else ()

    @property
    def adds_special_tokens(self) -> bool:
        """Plain text gets the tokenizer's BOS; a chat template writes its own."""
        return self.kind == "plain"

    def describe(self) -> dict[str, Any]:
        """A JSON-able description, recorded in run manifests."""
        out: dict[str, Any] = {"kind": self.kind, "system": self.system}
        if self.kind == "plain":
            out["template"] = self.template
        else:
            out["system_mode"] = system_mode(self.system)
            if self.placement != "system":
                out["placement"] = self.placement
        return out

    def render(self, tokenizer: Any, instruction: str, prefix: str = "") -> str:
        """Return the prompt text; generation continues right after ``prefix``."""
        if self.kind == "plain":
            head = f"{self.system}\n\n" if self.system else ""
            return head + self.template.format(instruction=instruction) + prefix
        if not getattr(tokenizer, "chat_template", None):
            raise AlignDepthError(
                f"tokenizer '{getattr(tokenizer, 'name_or_path', '?')}' has no chat template: "
                "use the plain prompt format for this model")
        messages: list[dict[str, str]] = []
        user = instruction
        if self.system is not None and self.placement == "user":
            user = f"{self.system}\n\n{instruction}" if self.system else instruction
        elif self.system is not None:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": user})
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
        try:
            text = _apply(tokenizer, messages, bool(prefix))
        except AlignDepthError:
            raise
        except Exception as exc:
            if self.system == "" and messages[0]["role"] == "system":
                # ``none`` on a template without a system role: no message at all
                return PromptFormat(self.kind, self.template, None).render(
                    tokenizer, instruction, prefix)
            raise _template_error(tokenizer, exc, bool(self.system) and
                                  self.placement == "system") from None
        return text

    def encode(self, tokenizer: Any, instruction: str, prefix: str = "") -> list[int]:
        """Token ids of the rendered prompt."""
        text = self.render(tokenizer, instruction, prefix)
        return list(tokenizer(text, add_special_tokens=self.adds_special_tokens).input_ids)

    def fed(self, tokenizer: Any, instruction: str, prefix: str = "") -> str:
        """The prompt exactly as the model is fed it (:meth:`encode`, decoded with its
        special tokens, so a BOS the tokenizer adds shows): what manifests record."""
        return verbatim(tokenizer, self.encode(tokenizer, instruction, prefix))


def verbatim(tokenizer: Any, ids: Sequence[int]) -> str:
    """The text of ``ids`` with every special token kept (BOS, turn markers) and no
    clean-up of spaces: a prompt as fed, or an output as generated (records'
    ``output_raw``, beside the clean ``output``)."""
    return str(tokenizer.decode(list(ids), skip_special_tokens=False,
                                clean_up_tokenization_spaces=False))


def _apply(tokenizer: Any, messages: list[dict[str, str]], continue_final: bool) -> str:
    if continue_final:
        return str(tokenizer.apply_chat_template(messages, tokenize=False,
                                                 continue_final_message=True))
    return str(tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=True))


def _template_error(tokenizer: Any, exc: Exception, with_system: bool) -> AlignDepthError:
    name = getattr(tokenizer, "name_or_path", "?")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if with_system:
        return AlignDepthError(
            f"the chat template of '{name}' rejects the system prompt ({first}): run without "
            "one (--aligned-system default) or put it in the user's turn "
            "(--system-placement user)")
    return AlignDepthError(f"the chat template of '{name}' failed ({first}): use the plain "
                           "prompt format for this model (--base-format plain) or fix its "
                           "tokenizer_config.json")


def accepts_system(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a system message."""
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    try:
        _apply(tokenizer, messages, False)
    except Exception:
        return False
    return True


def system_mode(system: str | None) -> str:
    """``default`` (no message: the template's own), ``none`` (empty) or ``text``."""
    return "default" if system is None else ("none" if system == "" else "text")


def parse_system(value: str | None) -> str | None:
    """The ``--aligned-system`` option: ``default`` -> None, ``none`` -> "", else the text."""
    if value is None or value == "default":
        return None
    if value == "none":
        return ""
    return value


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack id lists with left padding.

    Returns:
        input_ids: ``(batch, max_len)`` long, ``pad_id`` on the left.
        attention_mask: ``(batch, max_len)`` long, 0 on padding.
    """
    if not sequences:
        raise ValueError("left_pad needs at least one sequence")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if len(seq):
            ids[i, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
            mask[i, width - len(seq):] = 1
    return ids, mask


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's pad id, falling back to EOS (common for base models)."""
    pid = tokenizer.pad_token_id
    if pid is None:
        pid = tokenizer.eos_token_id
    if pid is None:
        raise AlignDepthError(
            f"tokenizer '{getattr(tokenizer, 'name_or_path', '?')}' has neither a pad nor an "
            "EOS token: set one in its tokenizer_config.json")
    return int(pid)
