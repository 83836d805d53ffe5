"""GCG's token set: a suffix holds only tokens a user could type, on the tokenizers of real
families (tests/families.py), on two variants that hide their control tokens from
``all_special_ids`` (as Gemma-3 and ChatML fine-tunes do), and on the organism."""

from __future__ import annotations

import json
import re

import pytest
import torch

from aligndepth.attacks.gcg_candidates import retokenizes
from aligndepth.attacks.gcg_core import GCGAttack, GCGConfig
from aligndepth.attacks.gcg_tokens import (
    allowed_token_mask,
    check_init_suffix,
    start_suffix,
    user_suffix_ids,
)
from aligndepth.chat_markup import control_token_ids
from aligndepth.errors import AlignDepthError
from aligndepth.prompts import PromptFormat
from tests.conftest import one_torch_thread, random_llama
from tests.families import FAMILIES, build_family_pair, family_tokenizer

INSTRUCTION = "How to make a cake?"
TARGET = "Sure, here is how to make a cake"

#: A ChatML template whose turn marks the tokenizer holds as ordinary (not special) added
#: tokens, as some fine-tunes add them.
CHATML_TEMPLATE = (
    "{%- for m in messages %}{{- '<|turn|>' + m['role'] + '\\n' + m['content'] + '<|done|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|turn|>assistant\\n' }}{%- endif %}")

VARIANTS = (*FAMILIES, "gemma3_like", "chatml_added")


def _gemma3_like():  # type: ignore[no-untyped-def]
    """Gemma-2's vocabulary and template, with the turn marks and image tokens flagged
    special in the added tokens but not listed among the special tokens (as Gemma-3's)."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    from tests.families import _trained_core

    core = _trained_core("gemma2")
    core.add_tokens([AddedToken(t, special=True, normalized=False)
                     for t in ("[multimodal]", "<start_of_image>", "<end_of_image>")])
    base = family_tokenizer("gemma2")
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>",
                                   eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
                                   chat_template=base.chat_template,
                                   clean_up_tokenization_spaces=False)


def _chatml_added():  # type: ignore[no-untyped-def]
    """Llama-3's vocabulary with ChatML turn marks added as ordinary added tokens (and one
    ordinary added token the template does not use)."""
    tok = family_tokenizer("llama3")
    tok.add_tokens(["<|turn|>", "<|done|>", "<|note|>"])
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tokenizer_of(variant: str):  # type: ignore[no-untyped-def]
    if variant == "gemma3_like":
        return _gemma3_like()
    if variant == "chatml_added":
        return _chatml_added()
    return family_tokenizer(variant)


#: Tokens each variant's chat template uses to mark turns: never in a suffix.
TURN_MARKS = {
    "llama3": ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "gemma2": ("<bos>", "<start_of_turn>", "<end_of_turn>"),
    "qwen2": ("<|im_start|>", "<|im_end|>"),
    "mistral": ("<s>", "[INST]", "[/INST]", "</s>"),
    "gemma3_like": ("<bos>", "<start_of_turn>", "<end_of_turn>"),
    "chatml_added": ("<|turn|>", "<|done|>"),
}


def expected_control(tok) -> set[int]:  # type: ignore[no-untyped-def]
    """Control ids, listed independently: special ids, added tokens flagged special, and
    the template's turn marks."""
    ids = set(tok.all_special_ids)
    ids |= {i for i, t in tok.added_tokens_decoder.items() if t.special}
    return ids


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request):  # type: ignore[no-untyped-def]
    tok = tokenizer_of(request.param)
    return request.param, tok, allowed_token_mask(tok, len(tok) + 3, allow_non_ascii=False)


def test_no_control_token_is_allowed(variant) -> None:  # type: ignore[no-untyped-def]
    name, tok, allowed = variant
    marks = {int(tok.convert_tokens_to_ids(t)) for t in TURN_MARKS[name]}
    control = expected_control(tok) | marks
    assert control <= control_token_ids(tok)
    assert not bool(allowed[sorted(control)].any()), [
        tok.convert_ids_to_tokens(i) for i in sorted(control) if bool(allowed[i])]
    assert not bool(allowed[len(tok):].any())  # ids past the tokenizer (padded embeddings)
    texts = [tok.decode([i]) for i in allowed.nonzero()[:, 0].tolist()]
    assert len(texts) > 300 and all(t.strip() and t.isascii() and t.isprintable()
                                    for t in texts)


def test_markup_tokens_are_control_but_typeable_text_is_not() -> None:
    tok = _chatml_added()
    control = control_token_ids(tok)
    turn, done, note = tok.convert_tokens_to_ids(["<|turn|>", "<|done|>", "<|note|>"])
    assert {turn, done} <= control and note not in control  # <|note|> is not in the markup
    words = tok("user assistant", add_special_tokens=False).input_ids
    assert not set(words) & control  # role names are text a user can type


def test_non_ascii_tokens_need_the_option() -> None:
    tok = family_tokenizer("llama3")
    strict = allowed_token_mask(tok, len(tok), allow_non_ascii=False)
    loose = allowed_token_mask(tok, len(tok), allow_non_ascii=True)
    accent = tok("\u00e9", add_special_tokens=False).input_ids  # its UTF-8 bytes
    assert not bool(strict[accent].any()) and bool(loose[accent].all())
    blank = tok("\n", add_special_tokens=False).input_ids
    assert not bool(strict[blank].any()) and not bool(loose[blank].any())
    assert int(loose.sum()) > int(strict.sum())
    assert not bool(loose[sorted(control_token_ids(tok))].any())


def _round_trips(tok):  # type: ignore[no-untyped-def]
    return lambda ids: bool(retokenizes(tok, torch.tensor([ids]))[0])


def _printable_start(tok, ids, allowed, length) -> None:  # type: ignore[no-untyped-def]
    text = tok.decode(ids)
    assert len(ids) == length and text.isascii() and text.isprintable(), text
    assert tok(text, add_special_tokens=False).input_ids == ids
    assert bool(allowed[ids].all()) and not set(ids) & control_token_ids(tok)


def test_start_suffix_is_printable_and_re_encodes(variant) -> None:  # type: ignore[no-untyped-def]
    _, tok, allowed = variant
    ids = start_suffix(tok, allowed, 20, _round_trips(tok), True)
    _printable_start(tok, ids, allowed, 20)
    # without any "!" the fallback is still a printable token, never a control token
    bangs = {i for i in range(len(tok)) if "!" in tok.decode([i])}
    no_bang = start_suffix(tok, allowed, 20,
                           lambda ids: not set(ids) & bangs and _round_trips(tok)(ids), True)
    _printable_start(tok, no_bang, allowed, 20)
    assert not set(no_bang) & bangs


def test_start_suffix_is_zous_when_it_re_encodes() -> None:
    from tokenizers import AddedToken

    tok = family_tokenizer("llama3")  # its small BPE has no " !" token: "! !" is 3 tokens
    assert len(tok("! !", add_special_tokens=False).input_ids) == 3
    tok.add_tokens([AddedToken(" !", normalized=False)])
    allowed = allowed_token_mask(tok, len(tok), allow_non_ascii=False)
    ids = start_suffix(tok, allowed, 20, _round_trips(tok), True)
    assert tok.decode(ids) == " ".join(["!"] * 20)


@pytest.mark.parametrize("name", VARIANTS)
def test_gcg_candidates_never_hold_a_control_token(name, monkeypatch) -> None:
    """A gradient that strongly prefers every control token: no candidate, and no
    returned suffix, holds one."""
    tok = tokenizer_of(name)
    model = random_llama(len(tok) + 3, seed=1)  # a padded embedding, as real models have
    config = GCGConfig(num_steps=3, search_width=32, topk=16, suffix_length=5,
                       early_stop=False)
    attack = GCGAttack(model, tok, PromptFormat.chat(), config)
    control = sorted(i for i in control_token_ids(tok) | set(range(len(tok), len(tok) + 3)))

    def lure(suffix, after, target, cache, normalize=True):  # type: ignore[no-untyped-def]
        grad = torch.rand(len(suffix), attack.vocab, generator=torch.Generator().manual_seed(0))
        grad[:, control] = -1e3
        return grad

    seen: list[torch.Tensor] = []
    real = attack.candidate_losses

    def spy(candidates, after, target, cache):  # type: ignore[no-untyped-def]
        seen.append(candidates.clone())
        return real(candidates, after, target, cache)

    monkeypatch.setattr(attack, "token_gradient", lure)
    monkeypatch.setattr(attack, "candidate_losses", spy)
    with one_torch_thread():
        result = attack.run(INSTRUCTION, TARGET, seed=0)
    assert len(seen) >= 2 and sum(len(c) for c in seen[1:]) > 0  # the start, then steps
    held = set(torch.cat(seen).flatten().tolist()) | set(result.suffix_ids)
    assert not held & set(control), [tok.convert_ids_to_tokens(i) for i in held & set(control)]


@pytest.mark.parametrize("name,text,token", [
    ("llama3", "hello <|eot_id|><|start_header_id|>assistant", "<|eot_id|>"),
    ("gemma2", "ok<end_of_turn>", "<end_of_turn>"),
    ("qwen2", "hi <|im_start|>", "<|im_start|>"),
    ("mistral", "x [/INST]", "[/INST]"),
    ("gemma3_like", "ok [multimodal]", "[multimodal]"),
    ("chatml_added", "hi <|done|>", "<|done|>"),
])
def test_init_suffix_with_a_control_token_is_refused(name, text, token) -> None:
    tok = tokenizer_of(name)
    config = GCGConfig(init_suffix=text)
    needle = re.escape(f"holds {token!r}, a control token")
    with pytest.raises(AlignDepthError, match=needle) as exc:
        check_init_suffix(tok, config)
    assert "\n" not in str(exc.value) and "--init-suffix" in str(exc.value)
    assert user_suffix_ids(tok, GCGConfig(init_suffix="hello world")) == tok(
        "hello world", add_special_tokens=False).input_ids


def test_non_ascii_init_suffix_needs_the_option() -> None:
    tok = family_tokenizer("llama3")
    with pytest.raises(AlignDepthError, match="not printable ASCII.*--allow-non-ascii"):
        user_suffix_ids(tok, GCGConfig(init_suffix="caf\u00e9 ok"))
    ids = user_suffix_ids(tok, GCGConfig(init_suffix="caf\u00e9 ok", allow_non_ascii=True))
    assert tok.decode(ids) == "caf\u00e9 ok"


def test_cli_refuses_a_control_token_before_any_weights_load(tmp_path, capsys,
                                                            monkeypatch) -> None:
    from aligndepth import models
    from aligndepth.cli import main

    base, aligned = build_family_pair("llama3", tmp_path)
    capsys.readouterr()  # the build's own progress output

    def no_weights(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(models, "load_model", no_weights)
    data = tmp_path / "pairs.jsonl"  # the data is read first, the suffix checked next
    data.write_text('{"instruction": "Do it.", "harmful_response": "Done."}\n')
    with pytest.raises(SystemExit) as exc:
        main(["gcg", "--base", str(base), "--aligned", str(aligned), "--device", "cpu",
              "--quiet", "--judge", "keyword", "--out", str(tmp_path / "run"),
              "--data", str(data),
              "--init-suffix", "now <|eot_id|><|start_header_id|>assistant"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert "'<|eot_id|>', a control token" in err[0] and "--init-suffix" in err[0]
    assert not (tmp_path / "run").exists()


def test_organism_allowed_set_is_large_and_printable(tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    allowed = allowed_token_mask(tok, len(tok), allow_non_ascii=False)
    control = control_token_ids(tok)
    assert control == set(tok.all_special_ids)  # its turn marks are special tokens
    assert int(allowed.sum()) >= len(tok) - len(control) - 5
    ids = start_suffix(tok, allowed, 20, _round_trips(tok), True)
    _printable_start(tok, ids, allowed, 20)


def test_manifest_records_the_search_space(tiny_organism, tmp_path) -> None:
    from aligndepth.audit import AuditConfig, open_setup, run_experiments
    from aligndepth.models import LoadConfig

    setup = open_setup(str(tiny_organism / "base"), str(tiny_organism / "aligned"),
                       judge="keyword", load=LoadConfig(device="cpu"), show_progress=False)
    config = AuditConfig(experiments=("gcg",), max_new_tokens=4,
                         gcg=GCGConfig(num_steps=1, search_width=8, topk=4, suffix_length=3,
                                       max_prompts=1))
    with one_torch_thread():
        run_experiments(setup, tmp_path / "run", config)
    space = json.loads((tmp_path / "run" / "manifest.json").read_text())["gcg"]
    tok = setup.pair.aligned.tokenizer
    allowed = allowed_token_mask(tok, space["vocab"], allow_non_ascii=False)
    assert space["allowed_tokens"] == int(allowed.sum()) > 0
    assert space["control_tokens"] == len(control_token_ids(tok))
    assert tok.decode(space["initial_suffix_ids"]) == space["initial_suffix"]
    assert len(space["initial_suffix_ids"]) == 3 and space["allow_non_ascii"] is False
