"""Choosing the next token: per-row warping and per-row seeded sampling.

Warping follows the usual order: temperature, then top-k, then top-p. ``top_k = 0`` and
``top_p = 1`` mask nothing, whatever the logits' dtype or the vocabulary size (the mass
before each token is summed in float64, and rows that do not use a filter skip it).
Temperature 0 means greedy (argmax) for that row.

Sampling is **seeded per row**: row r draws its token at step t by inverting the
cumulative distribution at a uniform number that is a hash of (the row's seed, t). No
random state is shared across rows, so a row's output is the same whatever else is in
its batch, however large the batch is, whether finished rows were dropped, and whether
an out-of-memory back-off split the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from aligndepth.run_settings import SamplingParams

_MASK32 = 0xFFFFFFFF




def params_tensors(params: Sequence[SamplingParams], device: Any
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(batch,)`` temperature, top-k (long) and top-p tensors for per-row warping."""
    temp = torch.tensor([p.temperature for p in params], device=device, dtype=torch.float32)
    top_k = torch.tensor([p.top_k for p in params], device=device, dtype=torch.long)
    top_p = torch.tensor([p.top_p for p in params], device=device, dtype=torch.float64)
    return temp, top_k, top_p


def warp_logits(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
                top_p: torch.Tensor) -> torch.Tensor:
    """Apply per-row temperature, top-k and top-p.

    Args:
        logits: ``(batch, vocab)`` next-token logits (any float dtype).
        temperature: ``(batch,)``; rows with 0 are left unscaled (they decode greedily).
        top_k: ``(batch,)`` long; 0 disables.
        top_p: ``(batch,)``; 1.0 disables.

    Returns:
        ``(batch, vocab)`` float32 logits, ``-inf`` where a token is filtered out.
    """
    x = logits.float()
    temp = torch.where(temperature > 0, temperature, torch.ones_like(temperature)).float()
    x = x / temp[:, None]
    vocab = x.shape[-1]
    use_k = (top_k > 0) & (top_k < vocab)
    use_p = top_p < 1
    if not bool((use_k | use_p).any()):
        return x
    sorted_x, order = torch.sort(x, dim=-1, descending=True)
    ranks = torch.arange(vocab, device=x.device)[None, :]
    k = torch.where(use_k, top_k, torch.full_like(top_k, vocab))
    drop_sorted = ranks >= k[:, None]
    if bool(use_p.any()):
        probs = torch.softmax(sorted_x.masked_fill(drop_sorted, float("-inf")).double(), dim=-1)
        before = probs.cumsum(-1) - probs  # mass of strictly more likely tokens
        drop_sorted |= (before >= top_p.double()[:, None]) & (ranks > 0) & use_p[:, None]
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return x.masked_fill(drop, float("-inf"))


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for ``x < 2**32`` in int64 without overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply finaliser) of int64 tensors < 2**32."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def row_uniforms(seeds: torch.Tensor, step: int) -> torch.Tensor:
    """One uniform number in [0, 1) per row, a pure function of (seed, step).

    Args:
        seeds: ``(batch,)`` int64 row seeds (only the low 32 bits are used).
        step: the decoding step (0 for the first new token).

    Returns:
        ``(batch,)`` float64 with 53 random bits each.
    """
    s = _mix32(seeds & _MASK32)
    a = _mix32(s ^ _mix32(torch.full_like(s, (step * 2 + 1) & _MASK32)))
    b = _mix32(a ^ 0x9E3779B9)
    return ((a >> 5) * 67108864 + (b >> 6)).double() / 9007199254740992.0


def sample_from(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: ``probs`` ``(batch, vocab)``, ``uniforms`` ``(batch,)`` -> ``(batch,)``.

    A token of zero probability is never returned (the cumulative sum does not rise there).
    """
    cdf = probs.double().cumsum(-1)
    x = (uniforms * cdf[:, -1]).to(cdf.dtype)[:, None]
    index = torch.searchsorted(cdf, x, right=True).squeeze(-1)
    return index.clamp(max=probs.shape[-1] - 1)


def pick_tokens(scores: torch.Tensor, params: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                seeds: torch.Tensor, step: int) -> torch.Tensor:
    """Next token per row: ``scores`` ``(batch, vocab)`` -> ``(batch,)`` long.

    Greedy rows (temperature 0) take the argmax; the others sample the warped
    distribution with their own seeded uniform for this step.
    """
    temp, top_k, top_p = params
    greedy = scores.argmax(-1)
    sampled_rows = temp > 0
    if not bool(sampled_rows.any()):
        return greedy
    probs = torch.softmax(warp_logits(scores, temp, top_k, top_p), dim=-1)
    sampled = sample_from(probs, row_uniforms(seeds, step).to(probs.device))
    return torch.where(sampled_rows, sampled, greedy)
