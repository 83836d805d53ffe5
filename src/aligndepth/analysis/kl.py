"""Per-token KL divergence between two models' next-token distributions (SPEC §1.1).

:func:`response_kl` scores only response positions: sequences are left-padded so that
every row ends at the same column, and each model is asked (``logits_to_keep``) for the
logits of the last ``R + 1`` columns only, ``R`` being the longest response in the batch.
Memory for logits therefore grows with response length × vocabulary, not with the prompt,
and the float32 KL is computed over bounded chunks of positions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from aligndepth.devices import input_device, logits_to_keep

log = logging.getLogger(__name__)

#: Default number of (position) rows per float32 KL chunk: bounds the float32
#: intermediates to about ``4 × max_rows × vocab`` floats per model.
DEFAULT_MAX_ROWS = 1024


def per_token_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) at every position, computed in float32.

    Args:
        logits_p: ``(..., vocab)`` logits of p (e.g. the aligned model).
        logits_q: ``(..., vocab)`` logits of q (e.g. the base model), same shape.

    Returns:
        ``(...)`` float32 KL divergences in nats.
    """
    logp = torch.log_softmax(logits_p.float(), dim=-1)
    logq = torch.log_softmax(logits_q.float(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1).clamp_min(0.0)


def chunked_kl(logits_p: torch.Tensor, logits_q: torch.Tensor,
               max_rows: int = DEFAULT_MAX_ROWS) -> torch.Tensor:
    """:func:`per_token_kl` over ``(rows, vocab)`` logits, ``max_rows`` rows at a time.

    Args:
        logits_p: ``(rows, vocab)`` logits of p, any float dtype.
        logits_q: ``(rows, vocab)`` logits of q, on the same device as ``logits_p``.
        max_rows: rows converted to float32 at once (bounds the float32 intermediates).

    Returns:
        ``(rows,)`` float32 KL divergences in nats, on ``logits_p``'s device.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    parts = [per_token_kl(logits_p[i:i + max_rows], logits_q[i:i + max_rows])
             for i in range(0, logits_p.shape[0], max_rows)]
    if not parts:
        return torch.zeros(0, dtype=torch.float32, device=logits_p.device)
    return torch.cat(parts)


def last_logits(model: Any, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    """Logits of the last ``keep`` columns of a left-padded batch.

    Args:
        model: a causal LM.
        ids: ``(batch, width)`` left-padded token ids (any device).
        mask: ``(batch, width)`` attention mask, 0 on padding.
        keep: number of final columns wanted (``1 <= keep <= width``).

    Returns:
        ``(batch, keep, vocab)`` logits, on the model's output device.
    """
    device = input_device(model)
    ids, mask = ids.to(device), mask.to(device)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                   use_cache=False, **logits_to_keep(model, keep)).logits
    return logits[:, -keep:]


@torch.no_grad()
def response_kl(model_p: Any, model_q: Any, prompts: Sequence[Sequence[int]],
                responses: Sequence[Sequence[int]], pad_id: int, batch_size: int = 32,
                max_rows: int = DEFAULT_MAX_ROWS) -> list[list[float]]:
    """KL(p ‖ q) at each response position, teacher-forced on the given responses.

    Both models see the same ids. Position t (0-based) is the distribution over response
    token t given the prompt and response tokens before it. Each batch is left-padded to
    ``(batch, width)`` so that all rows end at column ``width - 1``; with ``R`` the longest
    response in the batch, each model returns only ``(batch, R + 1, vocab)`` logits, of
    which the first ``R`` columns predict response tokens. The two models may sit on
    different devices: each gets its inputs on its own input device, and q's logits are
    moved to p's device for the KL.

    Args:
        model_p: p, e.g. the aligned model.
        model_q: q, e.g. the base model (same vocabulary).
        prompts: token ids of each prompt (at least one token each).
        responses: token ids of each response (may be empty).
        pad_id: id used for padding (masked out; its value does not matter).
        batch_size: examples per forward pass.
        max_rows: response positions per float32 KL chunk (see :func:`chunked_kl`).

    Returns:
        One list of floats per example, of length ``len(responses[i])``.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (the first response "
                         "token is predicted from the last prompt token)")
    out: list[list[float]] = []
    for start in range(0, len(prompts), max(1, batch_size)):
        chunk = range(start, min(start + max(1, batch_size), len(prompts)))
        lengths = [len(responses[i]) for i in chunk]
        longest = max(lengths)
        if longest == 0:
            out.extend([] for _ in chunk)
            continue
        seqs = [list(prompts[i]) + list(responses[i]) for i in chunk]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, s in enumerate(seqs):  # left padding: every row ends at column width - 1
            ids[j, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[j, width - len(s):] = 1
        # columns width-R-1 .. width-1; column width-R-1+k predicts the token at width-R+k
        lp = last_logits(model_p, ids, mask, longest + 1)[:, :-1]  # (batch, R, vocab)
        lq = last_logits(model_q, ids, mask, longest + 1)[:, :-1]
        lq = lq.to(lp.device)
        # response token t of row j sits at column width-r_j+t, i.e. k = R - r_j + t;
        # per-row views (no copies), converted to float32 max_rows positions at a time
        for j, n in enumerate(lengths):
            kl = chunked_kl(lp[j, longest - n:], lq[j, longest - n:], max_rows)  # (n,)
            out.append(kl.tolist())
    return out
