"""Prompt formats: how an instruction (and an optional response prefix) becomes text.

Every experiment records the format of each model in its run manifest, because the
papers leave it unstated and results depend on it.

- ``chat``: the tokenizer's own chat template. The system prompt is optional (none by
  default). A response prefix continues the assistant turn (``continue_final_message``),
  which is how prefilling works on any chat model.
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

    def __post_init__(self) -> None:
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

    def with_system(self, system: str | None) -> PromptFormat:
        return PromptFormat(self.kind, self.template, system)

    @property
    def adds_special_tokens(self) -> bool:
        """Plain text gets the tokenizer's BOS; a chat template writes its own."""
        return self.kind == "plain"

    def describe(self) -> dict[str, Any]:
        """A JSON-able description, recorded in run manifests."""
        out: dict[str, Any] = {"kind": self.kind, "system": self.system}
        if self.kind == "plain":
            out["template"] = self.template
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
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": instruction})
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, continue_final_message=True)
        else:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True)
        return str(text)

    def encode(self, tokenizer: Any, instruction: str, prefix: str = "") -> list[int]:
        """Token ids of the rendered prompt."""
        text = self.render(tokenizer, instruction, prefix)
        return list(tokenizer(text, add_special_tokens=self.adds_special_tokens).input_ids)


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
