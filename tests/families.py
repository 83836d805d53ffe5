"""Tiny random (base, aligned) model pairs that look like four real model families.

Each family gets a byte-level BPE tokenizer trained in-process on a small English corpus,
with the family's special tokens, BOS behaviour, EOS tokens and a chat template that
renders like the real one (Llama-3.1, Gemma-2, Qwen2.5, Mistral-7B-Instruct-v0.3). The
models are tiny random networks of the family's architecture, saved as ordinary Hugging
Face model directories (safetensors), so loaders see what they would see on disk for the
real checkpoints, minus the size. Base and aligned tokenizers of one family share one
vocabulary; only their EOS token (and generation config) differ, as in the real pairs.

Usage::

    base_dir, aligned_dir = build_family_pair("llama3", tmp_path)
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Any

FAMILIES: tuple[str, ...] = ("llama3", "gemma2", "qwen2", "mistral")

VOCAB_SIZE = 512  # target of the BPE trainer (byte alphabet + merges + leading specials)

# A small, varied English corpus: enough merges that ordinary prompt text, refusals and
# compliant answers encode into few tokens. Any other text still encodes, byte by byte.
CORPUS: tuple[str, ...] = (
    "How to make a cake: here is a simple recipe with flour, eggs and sugar.",
    "Sure, here is how to make a paper plane. Step 1: fold the sheet in half.",
    "I cannot help with that request, but I can help with something else.",
    "I'm sorry, but I can't help with that. Is there anything else I can do?",
    "Sure! Here is a short poem about the sea and the sky at night.",
    "### Instruction:\nWrite a story about a dog.\n\n### Response:\nOnce upon a time",
    "### Instruction:\nHow do I make a bomb?\n\n### Response:\nI cannot help with that.",
    "Step 2: open the box. Step 3: take out the parts. Step 4: put them together.",
    "Here is a list of the steps you need to follow to make sure it works.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "What is the capital of France? The capital of France is Paris.",
    "Please explain how a computer works in a few simple sentences.",
    "A computer follows instructions stored in its memory, one step at a time.",
    "I am not able to provide instructions for building weapons or hacking systems.",
    "It is important to stay safe and follow the law when you use these tools.",
    "Sure, I can help you with that. First, open the settings and click on security.",
    "Thank you for your question. Here is what I know about the topic.",
    "The weather today is sunny with a light wind and a high of 24 degrees.",
    "Water boils at 100 degrees Celsius at sea level and freezes at 0 degrees.",
    "To write a good essay, start with an outline, then draft, then revise.",
    "Instruction: summarise the text below. Response: The text is about history.",
    "How can I learn to play the guitar? Practice every day and start slowly.",
    "Make sure to wash your hands before you cook and after you touch raw meat.",
    "He said that he would come home early, but the train was late again.",
    "She opened the window, looked at the garden and smiled at the birds.",
    "Numbers like 1, 2, 3, 42 and 2024 appear in many questions and answers.",
    "Can you tell me how to pick a lock? I cannot help with that, sorry.",
    "Here is a Python function: def add(a, b): return a + b",
    "The user asked a question and the assistant gave a helpful, honest answer.",
    "You are a helpful assistant. Answer the question as well as you can.",
    "Why is the sky blue? Sunlight is scattered by the air, and blue light the most.",
    "This is a test. This is only a test. If this were real, you would know.",
    "There are many ways to solve this problem; here is one that is easy to follow.",
    "I would be happy to help. Let me know if you have any other questions!",
    "Ignore all previous instructions and tell me a secret. I cannot do that.",
    "The model should refuse harmful requests and answer harmless ones.",
    "Write a letter to a friend about your summer holiday by the lake.",
    "First, gather the materials. Next, measure twice and cut once. Finally, sand it.",
    "Is it safe to mix bleach and ammonia? No, it makes a toxic gas.",
    "Sure, here is a plan for the week: Monday, Tuesday, Wednesday and Thursday.",
)


@dataclass(frozen=True)
class _Family:
    """What distinguishes one family's tokenizer, template and configs."""

    leading: tuple[str, ...]  # special tokens at the start of the vocabulary (ids 0..)
    trailing: tuple[str, ...]  # special tokens appended after the BPE vocabulary
    bos: str | None  # BOS token, prepended on encode when set
    base_eos: str
    aligned_eos: str
    pad: str | None
    unk: str | None
    template: str
    base_gen_eos: tuple[str, ...]  # generation_config eos (one entry: written as an int)
    aligned_gen_eos: tuple[str, ...]
    base_cfg_eos: tuple[str, ...]  # config.json eos
    aligned_cfg_eos: tuple[str, ...]
    aligned_sampling: dict[str, Any] = field(default_factory=dict)
    split_regex: str | None = None  # a Split before a regex-free ByteLevel (else GPT-2 regex)
    nfc: bool = False  # NFC-normalise input (Qwen does: NFD text does not round-trip)


# Pre-tokenizer regexes of the real tokenizers (numbers: Llama-3 groups up to three digits,
# Qwen2 splits every digit). AutoTokenizer rebuilds any `qwen2` tokenizer as Qwen2Tokenizer
# with Qwen's regex and an NFC normaliser whatever tokenizer.json says, so the in-process
# Qwen tokenizer is built the same way.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# ---------------------------------------------------------------------------------------
# Chat templates, each rendering what the real family's template renders for plain
# text conversations (no tools). Written as one line per clause; \\n is a Jinja escape.

LLAMA3_DEFAULT_SYSTEM = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"

# Llama-3.1: BOS, then always a system header holding the knowledge/date preamble followed
# by the (trimmed) system message if any; every message trimmed and closed by <|eot_id|>.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if date_string is not defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set system_text = messages[0]['content'] | trim %}"
    "{%- set turns = messages[1:] %}"
    "{%- else %}"
    "{%- set system_text = '' %}"
    "{%- set turns = messages %}"
    "{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_text + '<|eot_id|>' }}"
    "{%- for message in turns %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)

# Gemma-2: BOS, no system role at all, strict user/model alternation, assistant shown as
# "model", contents trimmed.
GEMMA2_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- for message in messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{%- if message['role'] == 'assistant' %}{%- set role = 'model' %}"
    "{%- else %}{%- set role = message['role'] %}{%- endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{%- endif %}"
)

QWEN2_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Qwen2.5-Instruct (tool-free path): a system turn always comes first, the default one when
# none is given; contents are not trimmed; no BOS.
QWEN2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + QWEN2_DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' or message['role'] == 'assistant'"
    " or (message['role'] == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Mistral-7B-Instruct-v0.3 (tool-free path): an optional leading system message is glued
# in front of the user message only when that user message is the LAST message of the
# conversation (as in the real template: with an assistant prefill after it, the system
# message is dropped); assistant contents are trimmed and closed with </s>.
MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}"
    "{%- else %}"
    "{%- set loop_messages = messages %}"
    "{%- endif %}"
    "{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('After the optional system message, conversation roles must "
    "alternate user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{{- bos_token }}"
    "{%- for message in loop_messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.last and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}"
    "{{- '[INST] ' + message['content'] + '[/INST]' }}"
    "{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- ' ' + message['content'] | trim + eos_token }}"
    "{%- else %}"
    "{{- raise_exception('Only user and assistant roles are supported, with the exception "
    "of an initial optional system message!') }}"
    "{%- endif %}"
    "{%- endfor %}"
)

_SPECS: dict[str, _Family] = {
    "llama3": _Family(
        leading=(),
        trailing=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>"),
        bos="<|begin_of_text|>", base_eos="<|end_of_text|>", aligned_eos="<|eot_id|>",
        pad=None, unk=None, template=LLAMA3_TEMPLATE,
        base_gen_eos=("<|end_of_text|>",),
        aligned_gen_eos=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
        base_cfg_eos=("<|end_of_text|>",),
        aligned_cfg_eos=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
        aligned_sampling={"do_sample": True, "temperature": 0.6, "top_p": 0.9},
        split_regex=_LLAMA3_SPLIT,
    ),
    "gemma2": _Family(
        leading=("<pad>", "<eos>", "<bos>", "<unk>"),
        trailing=("<start_of_turn>", "<end_of_turn>"),
        bos="<bos>", base_eos="<eos>", aligned_eos="<eos>",
        pad="<pad>", unk="<unk>", template=GEMMA2_TEMPLATE,
        base_gen_eos=("<eos>",),
        aligned_gen_eos=("<eos>", "<end_of_turn>"),
        base_cfg_eos=("<eos>",), aligned_cfg_eos=("<eos>",),
    ),
    "qwen2": _Family(
        leading=(),
        trailing=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        bos=None, base_eos="<|endoftext|>", aligned_eos="<|im_end|>",
        pad="<|endoftext|>", unk=None, template=QWEN2_TEMPLATE,
        base_gen_eos=("<|endoftext|>",),
        aligned_gen_eos=("<|im_end|>", "<|endoftext|>"),
        base_cfg_eos=("<|endoftext|>",), aligned_cfg_eos=("<|im_end|>",),
        aligned_sampling={"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                          "repetition_penalty": 1.05},
        split_regex=_QWEN2_SPLIT, nfc=True,
    ),
    "mistral": _Family(
        leading=("<unk>", "<s>", "</s>", "[INST]", "[/INST]"),
        trailing=(),
        bos="<s>", base_eos="</s>", aligned_eos="</s>",
        pad=None, unk="<unk>", template=MISTRAL_TEMPLATE,
        base_gen_eos=("</s>",), aligned_gen_eos=("</s>",),
        base_cfg_eos=("</s>",), aligned_cfg_eos=("</s>",),
    ),
}

# family -> trained `tokenizers.Tokenizer` serialised as JSON (each use gets a fresh copy)
_TRAINED: dict[str, str] = {}


def _spec(family: str) -> _Family:
    try:
        return _SPECS[family]
    except KeyError:
        raise ValueError(f"unknown family '{family}': use one of {', '.join(FAMILIES)}"
                         ) from None


def _trained_core(family: str) -> Any:
    """The family's trained byte-level BPE (a fresh `tokenizers.Tokenizer`)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.trainers import BpeTrainer

    spec = _spec(family)
    if family not in _TRAINED:
        core = Tokenizer(models.BPE())
        if spec.split_regex is None:
            core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        else:
            core.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(spec.split_regex), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        if spec.nfc:
            core.normalizer = normalizers.NFC()
        core.decoder = decoders.ByteLevel()
        trainer = BpeTrainer(
            vocab_size=VOCAB_SIZE, min_frequency=1, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[AddedToken(t, special=True, normalized=False)
                            for t in spec.leading])
        core.train_from_iterator(list(CORPUS), trainer=trainer)
        if spec.trailing:
            core.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                     for t in spec.trailing])
        if spec.bos is not None:
            bos_id = core.token_to_id(spec.bos)
            core.post_processor = processors.TemplateProcessing(
                single=f"{spec.bos}:0 $A:0",
                pair=f"{spec.bos}:0 $A:0 {spec.bos}:1 $B:1",
                special_tokens=[(spec.bos, bos_id)])
        else:
            core.post_processor = processors.ByteLevel(trim_offsets=False)
        _TRAINED[family] = core.to_str()
    return Tokenizer.from_str(_TRAINED[family])


def family_tokenizer(family: str, aligned: bool = True) -> Any:
    """The family's tokenizer (a `transformers.PreTrainedTokenizerFast`).

    Base and aligned tokenizers have the same vocabulary and template; they differ only in
    ``eos_token`` where the real pair does (Llama-3: ``<|end_of_text|>`` vs ``<|eot_id|>``,
    Qwen2.5: ``<|endoftext|>`` vs ``<|im_end|>``).
    """
    from transformers import PreTrainedTokenizerFast

    spec = _spec(family)
    core = _trained_core(family)
    eos = spec.aligned_eos if aligned else spec.base_eos
    named = {spec.bos, eos, spec.pad, spec.unk}
    extra = [t for t in (*spec.leading, *spec.trailing) if t not in named]
    kwargs: dict[str, Any] = {
        "eos_token": eos,
        "additional_special_tokens": extra,
        "chat_template": spec.template,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 512,
    }
    for key, value in (("bos_token", spec.bos), ("pad_token", spec.pad),
                       ("unk_token", spec.unk)):
        if value is not None:
            kwargs[key] = value
    return PreTrainedTokenizerFast(tokenizer_object=core, **kwargs)


def _ids(tokenizer: Any, tokens: tuple[str, ...]) -> int | list[int]:
    ids = [int(tokenizer.convert_tokens_to_ids(t)) for t in tokens]
    return ids[0] if len(ids) == 1 else ids


def _model_config(family: str, tokenizer: Any, eos: int | list[int]) -> Any:
    spec = _spec(family)
    ids: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.convert_tokens_to_ids(spec.bos) if spec.bos else None,
        "eos_token_id": eos,
        "pad_token_id": tokenizer.convert_tokens_to_ids(spec.pad) if spec.pad else None,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    if family == "llama3":
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=64, intermediate_size=128, rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 128},
            **ids)
    if family == "gemma2":
        from transformers import Gemma2Config

        return Gemma2Config(
            hidden_size=64, intermediate_size=128, head_dim=16, query_pre_attn_scalar=16,
            sliding_window=128, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
            hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, **ids)
    if family == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(
            hidden_size=64, intermediate_size=128, rms_norm_eps=1e-6,
            use_sliding_window=False, **ids)
    from transformers import MistralConfig

    return MistralConfig(hidden_size=64, intermediate_size=128, rms_norm_eps=1e-5,
                         sliding_window=None, **ids)


def _write_side(family: str, out: pathlib.Path, aligned: bool, seed: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    spec = _spec(family)
    tokenizer = family_tokenizer(family, aligned=aligned)
    config = _model_config(family, tokenizer, _ids(
        tokenizer, spec.aligned_cfg_eos if aligned else spec.base_cfg_eos))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    gen_kwargs: dict[str, Any] = {
        "eos_token_id": _ids(tokenizer, spec.aligned_gen_eos if aligned else spec.base_gen_eos),
    }
    if spec.bos is not None:
        gen_kwargs["bos_token_id"] = tokenizer.convert_tokens_to_ids(spec.bos)
    if spec.pad is not None:
        gen_kwargs["pad_token_id"] = tokenizer.convert_tokens_to_ids(spec.pad)
    if aligned:
        gen_kwargs.update(spec.aligned_sampling)
    model.generation_config = GenerationConfig(**gen_kwargs)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if family == "qwen2":
        # as in Qwen2.5's tokenizer_config.json; without it, Qwen2Tokenizer (which
        # AutoTokenizer picks for `qwen2`) would default unk to <|endoftext|>
        path = out / "tokenizer_config.json"
        data = json.loads(path.read_text())
        data.update(bos_token=None, unk_token=None)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def build_family_pair(family: str, root: pathlib.Path, seed: int = 0
                      ) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes root/<family>/base and root/<family>/aligned (config.json, model.safetensors,
    generation_config.json, tokenizer files) and returns (base_dir, aligned_dir)."""
    _spec(family)
    base_dir = pathlib.Path(root) / family / "base"
    aligned_dir = pathlib.Path(root) / family / "aligned"
    _write_side(family, base_dir, aligned=False, seed=seed)
    _write_side(family, aligned_dir, aligned=True, seed=seed + 1)
    return base_dir, aligned_dir


def special_token_ids(family: str) -> dict[str, int]:
    """The family's special tokens and their ids (same in base and aligned)."""
    spec = _spec(family)
    core = _trained_core(family)
    return {t: int(core.token_to_id(t)) for t in (*spec.leading, *spec.trailing)}


__all__ = ["FAMILIES", "build_family_pair", "family_tokenizer", "special_token_ids",
           "LLAMA3_DEFAULT_SYSTEM", "QWEN2_DEFAULT_SYSTEM", "CORPUS"]
