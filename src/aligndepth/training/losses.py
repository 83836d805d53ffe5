"""Training losses as small pure functions over per-token log-probabilities (SPEC §3).

Every loss is computed in three steps, so each piece can be tested on its own:

1. :func:`token_logprobs` — ``log π_θ(y_t | x, y_<t)`` of every next token;
2. a **token loss** ``(batch, T)``: ``sft`` is ``−log π_θ``; ``constrained`` (Eq. 3) is
   ``−(2/β_t)·log σ(β_t·(log π_θ − log π_aligned))``, whose gradient is
   ``2σ(β_t·Δ_t)·(−∇log π_θ)`` with ``Δ_t = log π_aligned − log π_θ``: tokens the model
   already pushes below the aligned model get small weight, so the first response tokens
   (large β) are held near the aligned model while later ones (small β) train like SFT;
3. :func:`reduce_loss` — the mean over each example's response tokens, then the
   weighted mean over examples (weights default to 1; safety-recovery augmentation uses
   them to apply its α explicitly).

Losses are chosen by name from :data:`LOSSES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aligndepth.errors import AlignDepthError, did_you_mean
from aligndepth.training.config import BetaSchedule  # defined with the config (no torch)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """``log π(input_ids[:, t] | input_ids[:, <t])`` for t ≥ 1, in float32.

    Args:
        logits: ``(batch, T, vocab)``.
        input_ids: ``(batch, T)``.

    Returns:
        ``(batch, T-1)``: entry ``t-1`` scores token ``t``.
    """
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def response_positions(mask: torch.Tensor) -> torch.Tensor:
    """1-based position of each response token within its response (0 elsewhere).

    ``mask``: ``(batch, T)`` 0/1, marking response tokens.
    """
    m = mask.long()
    return m.cumsum(-1) * m


def sft_token_loss(logp: torch.Tensor, *_: object, **__: object) -> torch.Tensor:
    """``−log π_θ(y_t)`` per token: ``(batch, T)``."""
    return -logp


def constrained_token_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: torch.Tensor
                           ) -> torch.Tensor:
    """Eq. 3 per token: ``−(2/β_t)·log σ(β_t·(log π_θ − log π_aligned))``.

    Args:
        logp: ``(batch, T)`` log-probs under the model being trained.
        ref_logp: ``(batch, T)`` log-probs under the aligned model (constants).
        beta: ``(batch, T)`` β per token.
    """
    return -(2.0 / beta) * F.logsigmoid(beta * (logp - ref_logp.detach()))


def reduce_loss(token_loss: torch.Tensor, mask: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over each example's masked tokens, then weighted mean over examples.

    Args:
        token_loss: ``(batch, T)``.
        mask: ``(batch, T)`` 0/1: tokens that count.
        weights: ``(batch,)`` example weights (default 1).
    """
    m = mask.float()
    per_example = (token_loss * m).sum(-1) / m.sum(-1).clamp(min=1)
    if weights is None:
        return per_example.mean()
    return (per_example * weights.float()).mean()


@dataclass(frozen=True)
class LossInputs:
    """What a loss needs from one batch (all ``(batch, T-1)``, aligned with the scored
    tokens ``input_ids[:, 1:]``), plus optional example weights ``(batch,)``."""

    logp: torch.Tensor
    mask: torch.Tensor
    ref_logp: torch.Tensor | None = None
    weights: torch.Tensor | None = None


def sft_loss(batch: LossInputs, schedule: BetaSchedule | None = None) -> torch.Tensor:
    """Plain fine-tuning on the response tokens."""
    return reduce_loss(sft_token_loss(batch.logp), batch.mask, batch.weights)


def constrained_loss(batch: LossInputs, schedule: BetaSchedule | None = None) -> torch.Tensor:
    """Token-wise constrained fine-tuning (SPEC §3.2)."""
    if batch.ref_logp is None:
        raise AlignDepthError("the constrained loss needs the aligned model's log-probs of the "
                              "targets: compute them before training (reference pass)")
    beta = (schedule or BetaSchedule()).at(response_positions(batch.mask))
    return reduce_loss(constrained_token_loss(batch.logp, batch.ref_logp, beta), batch.mask,
                       batch.weights)


#: name -> loss(batch, schedule)
LOSSES: dict[str, Callable[[LossInputs, BetaSchedule | None], torch.Tensor]] = {
    "sft": sft_loss,
    "constrained": constrained_loss,
}

#: Losses that need the aligned model's per-token log-probs of the targets.
NEEDS_REFERENCE = {"constrained"}


def loss_by_name(name: str) -> Callable[[LossInputs, BetaSchedule | None], torch.Tensor]:
    if name not in LOSSES:
        raise AlignDepthError(f"unknown loss '{name}'{did_you_mean(name, LOSSES)}; choose from "
                              f"{', '.join(LOSSES)}")
    return LOSSES[name]
