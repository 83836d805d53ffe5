"""The organism's word-level tokenizer, saved as a standard Hugging Face tokenizer.

Lower-cases, splits on words and punctuation, and knows every word of the world. It
carries a chat template, so ``AutoTokenizer.from_pretrained(dir)`` and
``apply_chat_template`` work with no project code.
"""

from __future__ import annotations

from typing import Any

from aligndepth.organism.judge import normalize
from aligndepth.organism.world import World
from aligndepth.prompts import DEFAULT_PLAIN_TEMPLATE

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, SYSTEM, USER, ASSISTANT, END]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|> {{ message['content'] }} <|end|> "
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)

_TEMPLATE_TEXT = DEFAULT_PLAIN_TEMPLATE + " question : answer : "


def build_tokenizer(world: World) -> Any:
    """A ``PreTrainedTokenizerFast`` over the world's vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words: set[str] = set()
    for text in world.vocabulary() | {_TEMPLATE_TEXT}:
        words.update(normalize(text))
    words.update(".,?!:;'\"-()0123456789")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + sorted(words))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=END,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[EOS, SYSTEM, USER, ASSISTANT],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=256,
    )


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Ids that end a response: end of turn and end of document."""
    return [int(tokenizer.convert_tokens_to_ids(END)), int(tokenizer.convert_tokens_to_ids(EOS))]
