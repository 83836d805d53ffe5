"""Per-token KL divergence between two models' next-token distributions (SPEC §1.1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


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


@torch.no_grad()
def response_kl(model_p: Any, model_q: Any, prompts: Sequence[Sequence[int]],
                responses: Sequence[Sequence[int]], pad_id: int, batch_size: int = 32
                ) -> list[list[float]]:
    """KL(p ‖ q) at each response position, teacher-forced on the given responses.

    Both models see the same ids. Position t (0-based) is the distribution over response
    token t given the prompt and response tokens before it.

    Returns:
        One list per example, of length ``len(responses[i])``.
    """
    device = next(model_p.parameters()).device
    out: list[list[float]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = range(start, min(start + batch_size, len(prompts)))
        seqs = [list(prompts[i]) + list(responses[i]) for i in chunk]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, s in enumerate(seqs):  # right padding: positions stay aligned with tokens
            ids[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
        ids, mask = ids.to(device), mask.to(device)
        lp = model_p(input_ids=ids, attention_mask=mask).logits
        lq = model_q(input_ids=ids, attention_mask=mask).logits
        kl = per_token_kl(lp, lq).cpu()  # (batch, width)
        for j, i in enumerate(chunk):
            n_prompt, n_resp = len(prompts[i]), len(responses[i])
            out.append(kl[j, n_prompt - 1: n_prompt - 1 + n_resp].tolist())
    return out
