import pytest
import torch

from aligndepth.errors import AlignDepthError
from aligndepth.prompts import PromptFormat, left_pad


def test_plain_format_with_and_without_system_and_prefix() -> None:
    fmt = PromptFormat.plain()
    assert fmt.render(None, "hi") == "### Instruction:\nhi\n\n### Response:\n"
    assert fmt.with_system("be good").render(None, "hi", "sure").startswith("be good\n\n###")
    assert fmt.render(None, "hi", "sure").endswith("### Response:\nsure")
    assert PromptFormat.plain("Q: {instruction}\nA:").render(None, "x") == "Q: x\nA:"


def test_chat_format_uses_template_and_continues_prefix(tiny_tokenizer) -> None:
    fmt = PromptFormat.chat()
    text = fmt.render(tiny_tokenizer, "how do i x ?")
    assert text.startswith("<|user|>") and text.rstrip().endswith("<|assistant|>")
    with_prefix = fmt.render(tiny_tokenizer, "how do i x ?", "sure , here")
    assert with_prefix.endswith("sure , here") and "<|end|>" not in with_prefix.split(
        "<|assistant|>")[-1]
    sys_text = PromptFormat.chat("be careful .").render(tiny_tokenizer, "hi")
    assert sys_text.startswith("<|system|> be careful .")
    ids = fmt.encode(tiny_tokenizer, "how do i x ?", "sure")
    assert ids[-1] == tiny_tokenizer.convert_tokens_to_ids("sure")


def test_format_errors_are_user_errors(tiny_tokenizer) -> None:
    with pytest.raises(AlignDepthError, match="instruction"):
        PromptFormat.plain("no placeholder")
    with pytest.raises(AlignDepthError, match="chat.*plain"):
        PromptFormat("json")

    class NoTemplate:
        chat_template = None
        name_or_path = "m"

    with pytest.raises(AlignDepthError, match="no chat template"):
        PromptFormat.chat().render(NoTemplate(), "hi")


def test_left_pad() -> None:
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert ids.dtype == torch.long
