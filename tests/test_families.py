"""Sanity checks of the family fixtures in tests/families.py: four tiny (base, aligned)
pairs that load like the real Llama-3.1, Gemma-2, Qwen2.5 and Mistral-v0.3 pairs."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from jinja2.exceptions import TemplateError

from aligndepth.models import LoadConfig, ModelPair, load_pair
from tests.conftest import one_torch_thread
from tests.families import (
    FAMILIES,
    LLAMA3_DEFAULT_SYSTEM,
    QWEN2_DEFAULT_SYSTEM,
    build_family_pair,
    family_tokenizer,
    special_token_ids,
)

EXPECTED_SPECIAL_IDS = {
    "llama3": {"<|begin_of_text|>": 512, "<|end_of_text|>": 513, "<|start_header_id|>": 514,
               "<|end_header_id|>": 515, "<|eom_id|>": 516, "<|eot_id|>": 517},
    "gemma2": {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<start_of_turn>": 512,
               "<end_of_turn>": 513},
    "qwen2": {"<|endoftext|>": 512, "<|im_start|>": 513, "<|im_end|>": 514},
    "mistral": {"<unk>": 0, "<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4},
}
# (base eos, aligned eos) of the tokenizers, and of generation_config.json
TOKENIZER_EOS = {
    "llama3": ("<|end_of_text|>", "<|eot_id|>"),
    "gemma2": ("<eos>", "<eos>"),
    "qwen2": ("<|endoftext|>", "<|im_end|>"),
    "mistral": ("</s>", "</s>"),
}
GENERATION_EOS = {
    "llama3": (513, [513, 516, 517]),
    "gemma2": (1, [1, 513]),
    "qwen2": (512, [514, 512]),
    "mistral": (2, 2),
}
BOS = {"llama3": 512, "gemma2": 2, "qwen2": None, "mistral": 1}
MODEL_CLASS = {"llama3": "LlamaForCausalLM", "gemma2": "Gemma2ForCausalLM",
               "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}

TEXTS = (
    "How to make a cake?",
    "Sure, here is how to make a paper plane. Step 1: fold it.",
    "### Instruction:\nSay hi.\n\n### Response:\n",
    "  leading and trailing spaces, \t tabs and\r\nwindows newlines  ",
    "Punctuation!? (brackets) [square] {curly} <angle> \"quotes\" 'single' `tick` ~@#$%^&*_+=|\\/",
    "Unicode: café, naïve, Straße, Ελληνικά, русский, 中文, 日本語, 한국어, emoji 😀🚀, 1,234.56",
    "",
)
SPECIAL_LOOKING = "Looks special: <|eot_id|> [INST] <start_of_turn> <|im_end|> </s>"
USER = {"role": "user", "content": "How to make a cake?"}
SYSTEM = {"role": "system", "content": "You are a pirate."}
PREFILL = {"role": "assistant", "content": "Sure, here is"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module", params=FAMILIES)
def family_dirs(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    family = str(request.param)
    base, aligned = build_family_pair(family, tmp_path_factory.mktemp("families"))
    return family, base, aligned


@pytest.fixture(scope="module")
def loaded(family_dirs: tuple[str, Path, Path]) -> tuple[str, ModelPair]:
    family, base, aligned = family_dirs
    return family, load_pair(base, aligned, LoadConfig(device="cpu", dtype="float32"))


def _chat(tok, messages, **kwargs) -> str:  # type: ignore[no-untyped-def]
    return str(tok.apply_chat_template(messages, tokenize=False, **kwargs))


def test_directories_hold_safetensors_and_tokenizer(family_dirs: tuple[str, Path, Path]) -> None:
    _, base, aligned = family_dirs
    for d in (base, aligned):
        names = {p.name for p in d.iterdir()}
        assert {"config.json", "model.safetensors", "generation_config.json",
                "tokenizer.json", "tokenizer_config.json"} <= names
        assert not any(n.endswith((".bin", ".pt")) for n in names)
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["tie_word_embeddings"] is False
        assert cfg["num_hidden_layers"] == 2 and cfg["max_position_embeddings"] == 512


def test_pair_loads_with_one_vocabulary(loaded: tuple[str, ModelPair]) -> None:
    family, pair = loaded
    assert type(pair.base.model).__name__ == MODEL_CLASS[family]
    assert type(pair.aligned.model).__name__ == MODEL_CLASS[family]
    assert pair.base.tokenizer.get_vocab() == pair.aligned.tokenizer.get_vocab()
    assert pair.base.fingerprint != pair.aligned.fingerprint
    vocab = len(pair.tokenizer)
    assert pair.base.model.config.vocab_size == pair.aligned.model.config.vocab_size == vocab
    assert 400 <= vocab <= 600
    base_w = pair.base.model.get_input_embeddings().weight
    aligned_w = pair.aligned.model.get_input_embeddings().weight
    assert not torch.equal(base_w, aligned_w)  # different seeds


def test_special_token_ids_and_eos(loaded: tuple[str, ModelPair]) -> None:
    family, pair = loaded
    assert special_token_ids(family) == EXPECTED_SPECIAL_IDS[family]
    for tok in (pair.base.tokenizer, pair.aligned.tokenizer):
        for token, idx in EXPECTED_SPECIAL_IDS[family].items():
            assert tok.convert_tokens_to_ids(token) == idx
    base_eos, aligned_eos = TOKENIZER_EOS[family]
    assert pair.base.tokenizer.eos_token == base_eos
    assert pair.aligned.tokenizer.eos_token == aligned_eos
    assert pair.base.tokenizer.bos_token_id == BOS[family]
    assert pair.base.model.config.bos_token_id == BOS[family]


def test_generation_config_eos(loaded: tuple[str, ModelPair]) -> None:
    family, pair = loaded
    base_eos, aligned_eos = GENERATION_EOS[family]
    assert pair.base.model.generation_config.eos_token_id == base_eos
    assert pair.aligned.model.generation_config.eos_token_id == aligned_eos


def test_in_process_tokenizer_matches_saved(loaded: tuple[str, ModelPair]) -> None:
    family, pair = loaded
    for aligned, saved in ((False, pair.base.tokenizer), (True, pair.aligned.tokenizer)):
        tok = family_tokenizer(family, aligned=aligned)
        assert tok.get_vocab() == saved.get_vocab()
        assert tok.eos_token == saved.eos_token
        for text in TEXTS:
            assert tok(text).input_ids == saved(text).input_ids


def test_roundtrip_and_bos(loaded: tuple[str, ModelPair]) -> None:
    family, pair = loaded
    for tok in (pair.base.tokenizer, pair.aligned.tokenizer):
        for text in TEXTS:
            plain = tok(text, add_special_tokens=False).input_ids
            assert tok.decode(plain) == text
            with_bos = tok(text).input_ids
            assert tok.decode(with_bos, skip_special_tokens=True) == text
            if BOS[family] is None:
                assert with_bos == plain
            else:
                assert with_bos == [BOS[family], *plain]
        # as with the real tokenizers, a special token's text in the input IS that token
        # (only the family's own ones); decoding without skipping gives the text back
        ids = tok(SPECIAL_LOOKING, add_special_tokens=False).input_ids
        assert tok.decode(ids) == SPECIAL_LOOKING
        found = {t for t, i in EXPECTED_SPECIAL_IDS[family].items() if i in ids}
        assert found == {t for t in EXPECTED_SPECIAL_IDS[family] if t in SPECIAL_LOOKING}
        # the corpus makes ordinary text compact
        short = tok("Sure, here is how to make a cake.", add_special_tokens=False).input_ids
        assert len(short) <= 12
    if family == "qwen2":  # Qwen NFC-normalises, so decomposed text comes back composed
        nfd = unicodedata.normalize("NFD", "café")
        assert tok.decode(tok(nfd).input_ids) == "café"


def test_chat_templates_render_family_markers(loaded: tuple[str, ModelPair]) -> None:
    family, pair = loaded
    tok = pair.aligned.tokenizer
    prompt = _chat(tok, [USER], add_generation_prompt=True)
    if family == "llama3":
        assert prompt == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                          + LLAMA3_DEFAULT_SYSTEM + "<|eot_id|>"
                          "<|start_header_id|>user<|end_header_id|>\n\nHow to make a cake?"
                          "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        with_system = _chat(tok, [SYSTEM, USER], add_generation_prompt=True)
        assert LLAMA3_DEFAULT_SYSTEM + "You are a pirate.<|eot_id|>" in with_system
    elif family == "gemma2":
        assert prompt == ("<bos><start_of_turn>user\nHow to make a cake?<end_of_turn>\n"
                          "<start_of_turn>model\n")
        with pytest.raises(TemplateError, match="System role not supported"):
            _chat(tok, [SYSTEM, USER], add_generation_prompt=True)
    elif family == "qwen2":
        assert prompt == (f"<|im_start|>system\n{QWEN2_DEFAULT_SYSTEM}<|im_end|>\n"
                          "<|im_start|>user\nHow to make a cake?<|im_end|>\n"
                          "<|im_start|>assistant\n")
        with_system = _chat(tok, [SYSTEM, USER], add_generation_prompt=True)
        assert with_system.startswith("<|im_start|>system\nYou are a pirate.<|im_end|>\n")
        assert QWEN2_DEFAULT_SYSTEM not in with_system
    else:
        assert prompt == "<s>[INST] How to make a cake?[/INST]"
        with_system = _chat(tok, [SYSTEM, USER], add_generation_prompt=True)
        assert with_system == "<s>[INST] You are a pirate.\n\nHow to make a cake?[/INST]"
    # the base tokenizer ships the same template
    assert pair.base.tokenizer.chat_template == tok.chat_template


def test_continue_final_message(loaded: tuple[str, ModelPair]) -> None:
    family, pair = loaded
    tok = pair.aligned.tokenizer
    prompt = _chat(tok, [USER], add_generation_prompt=True)
    prefilled = _chat(tok, [USER, PREFILL], continue_final_message=True)
    assert prefilled.endswith("Sure, here is")
    if family == "mistral":  # the assistant turn opens with a space, no header
        assert prefilled == prompt + " Sure, here is"
        # as in v0.3: the system text only joins a user message that is the last message,
        # so an assistant prefill drops it
        assert "pirate" not in _chat(tok, [SYSTEM, USER, PREFILL], continue_final_message=True)
    else:
        assert prefilled == prompt + "Sure, here is"
    if family in ("llama3", "qwen2"):
        assert "pirate" in _chat(tok, [SYSTEM, USER, PREFILL], continue_final_message=True)
    # a multi-turn conversation renders too
    turns = [USER, {"role": "assistant", "content": "No."}, USER]
    assert _chat(tok, turns, add_generation_prompt=True).count("How to make a cake?") == 2


def test_forward_logits_shape(loaded: tuple[str, ModelPair]) -> None:
    _, pair = loaded
    ids = pair.tokenizer(_chat(pair.tokenizer, [USER], add_generation_prompt=True),
                         add_special_tokens=False, return_tensors="pt").input_ids
    n, vocab = ids.shape[1], len(pair.tokenizer)
    with torch.no_grad():
        for model in (pair.base.model, pair.aligned.model):
            logits = model(ids).logits
            assert logits.shape == (1, n, vocab)
            assert torch.isfinite(logits).all()


def test_only_gemma_scales_embeddings_inside_the_embedding_module(
        loaded: tuple[str, ModelPair]) -> None:
    """Gemma multiplies embeddings by sqrt(hidden) inside its embedding module's forward,
    so ``get_input_embeddings()(ids)`` is already scaled and ``inputs_embeds`` built with it
    match ``input_ids``; the other families' embedding lookups are plain."""
    family, pair = loaded
    model = pair.aligned.model
    emb = model.get_input_embeddings()
    ids = torch.tensor([[5, 6, 7]])
    scale = model.config.hidden_size ** 0.5 if family == "gemma2" else 1.0
    with torch.no_grad():
        assert torch.allclose(emb(ids), emb.weight[ids] * scale)
        a = model(input_ids=ids).logits
        b = model(inputs_embeds=emb(ids)).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_unknown_family_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown family"):
        build_family_pair("gpt2", tmp_path)
