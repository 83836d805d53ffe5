"""GCG's token-level pieces (SPEC §2.3): how the model embeds a one-hot suffix, how
candidates are sampled from the token gradient, and which candidates survive decode →
re-encode (which tokens a suffix may use: :mod:`aligndepth.attacks.gcg_tokens`).

Used by :class:`aligndepth.attacks.gcg_core.GCGAttack`; pure tensor/tokenizer functions.
"""

from __future__ import annotations

from typing import Any

import torch

from aligndepth.errors import AlignDepthError


def sample_candidates(suffix: torch.Tensor, grad: torch.Tensor, allowed: torch.Tensor,
                      topk: int, search_width: int, n_replace: int,
                      generator: torch.Generator) -> torch.Tensor:
    """``(search_width, L)`` candidates from ``suffix`` ``(L,)``, each with ``n_replace``
    random positions set to random tokens among each position's ``topk`` most negative
    entries of ``grad`` ``(L, vocab)``; only tokens where ``allowed`` ``(vocab,)`` is true."""
    length = len(suffix)
    device = suffix.device
    scores = (-grad).masked_fill(~allowed[None, :], float("-inf"))
    k = min(topk, int(allowed.sum()))
    top = scores.topk(k, dim=1).indices  # (L, k)
    n = min(n_replace, length)
    rand = torch.rand(search_width, length, generator=generator, device=generator.device)
    positions = rand.argsort(dim=1)[:, :n].to(device)  # (W, n)
    picks = torch.randint(0, k, (search_width, n), generator=generator,
                          device=generator.device).to(device)  # (W, n)
    new = top[positions, picks]  # (W, n)
    return suffix.repeat(search_width, 1).scatter(1, positions, new)


def retokenizes(tokenizer: Any, candidates: torch.Tensor) -> torch.Tensor:
    """``(W,)`` bool on ``candidates``' device: decoding each row of ``candidates``
    ``(W, L)`` then re-encoding it (no special tokens added) gives the same ids."""
    rows = candidates.tolist()
    texts = tokenizer.batch_decode(rows)
    again = tokenizer(texts, add_special_tokens=False).input_ids
    return torch.tensor([list(a) == r for a, r in zip(again, rows)], dtype=torch.bool,
                        device=candidates.device)


def embedding_scale(embed: Any, vocab: int) -> torch.Tensor:
    """The scalar ``s`` (0-d, the weight's dtype and device) with
    ``embed(ids) == s * embed.weight[ids]`` for ids ``(n,)`` -> ``(n, hidden)``.

    Measured on ids spread over the vocabulary (least squares, then checked to the
    weight's precision), so any linear embedding module works: ``s = sqrt(hidden_size)``
    for Gemma's scaled embeddings, 1 for a plain ``nn.Embedding``. Raises
    :class:`AlignDepthError` when the module is not of that form.
    """
    weight = embed.weight
    if not weight.is_floating_point():
        raise AlignDepthError(f"GCG needs a floating-point embedding matrix, the model's is "
                              f"{weight.dtype}: load the model unquantised")
    ids = torch.linspace(0, vocab - 1, steps=min(vocab, 64), device=weight.device).long()
    with torch.no_grad():
        out, rows = embed(ids), weight[ids]
    if out.shape != rows.shape:
        raise AlignDepthError(f"the model's input embedding ({type(embed).__name__}) gives "
                              f"{tuple(out.shape)} for {len(ids)} tokens, not {tuple(rows.shape)}"
                              ": GCG cannot embed a one-hot suffix for this model")
    out, rows = out.double(), rows.double()
    norm = float((rows * rows).sum())
    s = float((out * rows).sum()) / norm if norm > 0 else float("nan")
    scale = torch.tensor(s, dtype=weight.dtype, device=weight.device)
    tol = 8 * torch.finfo(weight.dtype).eps
    if not (norm > 0 and torch.allclose(rows * scale.double(), out, rtol=tol,
                                        atol=tol * float(out.abs().max()))):
        raise AlignDepthError(f"the model's input embedding ({type(embed).__name__}) is not "
                              "a scaled lookup of its weight (embed(ids) != s * weight[ids]): "
                              "GCG cannot embed a one-hot suffix for this model")
    return scale
