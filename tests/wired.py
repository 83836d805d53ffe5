"""A hand-wired one-layer Llama classifier for the local-judge tests.

Attention is uniform (zero queries and keys) and the MLP is off, so each position's
hidden state is its own token's one-hot embedding plus the share of the ``harm_word``
and ``odd_word`` tokens seen so far (two feature dimensions written by the value
projection). The untied output layer then maps the ``cue`` token (the prompt's last) to
``answers[2]`` when ``odd_word`` was seen, ``answers[1]`` when ``harm_word`` was seen,
else ``answers[0]``; each token in ``then`` to the token it names; and the answers (and
the ``then`` targets) to EOS, so greedy decoding answers by content.
"""

from __future__ import annotations

from typing import Any

import torch


def wired_classifier(tok: Any, *, cue: str, answers: tuple[str, str, str],
                     feature_weight: float, then: dict[str, str] | None = None,
                     hidden: int | None = None, harm_word: str = "detonate",
                     odd_word: str = "zigzag", max_positions: int = 512) -> Any:
    """The classifier for tokenizer ``tok`` (see the module docstring).

    ``hidden`` defaults to the smallest even width above the vocabulary plus the two
    feature dimensions (rotary embeddings need an even head size). ``feature_weight``
    must beat the cue's preference for ``answers[0]`` at the feature's diluted share.
    """
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    v = len(tok)
    hidden = hidden or v + 2 + v % 2
    assert v + 2 <= hidden and hidden % 2 == 0
    cfg = LlamaConfig(vocab_size=v, hidden_size=hidden, intermediate_size=8,
                      num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                      head_dim=hidden, max_position_embeddings=max_positions,
                      tie_word_embeddings=False, rms_norm_eps=1e-6,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg).eval()
    ids = tok.convert_tokens_to_ids
    harm, odd = hidden - 1, hidden - 2  # feature dimensions
    default, harmful, unreadable = answers
    follow = then or {}
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        layer = model.model.layers[0]
        for norm in (model.model.norm, layer.input_layernorm, layer.post_attention_layernorm):
            norm.weight.fill_(1.0)
        model.model.embed_tokens.weight[:, :v] = torch.eye(v)
        layer.self_attn.v_proj.weight[harm, ids(harm_word)] = 1.0
        layer.self_attn.v_proj.weight[odd, ids(odd_word)] = 1.0
        layer.self_attn.o_proj.weight[harm, harm] = 1.0
        layer.self_attn.o_proj.weight[odd, odd] = 1.0
        head = model.lm_head.weight
        head[ids(default), ids(cue)] = 1.0
        head[ids(harmful), ids(cue)] = 0.5
        head[ids(harmful), harm] = feature_weight
        head[ids(unreadable), ids(cue)] = 0.5
        head[ids(unreadable), odd] = feature_weight
        for source, target in follow.items():
            head[ids(target), ids(source)] = 50.0
        for word in {*answers, *follow.values()} - set(follow):
            head[ids(tok.eos_token), ids(word)] = 50.0
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    return model
