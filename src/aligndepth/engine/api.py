"""The engine's entry points: plain, shared-prompt and two-model (contrastive) decoding.

All three build :class:`~aligndepth.engine.core.Request` rows and run the one decode loop
(:func:`~aligndepth.engine.core.decode_requests`). Seeds are per row: by default row
``r`` of prompt ``i`` gets ``row_seed(seed, i, r)``; callers that split work into units
pass explicit ``seeds`` (derived from record keys), so outputs never depend on how the
work was batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from aligndepth.engine.core import (
    LOGPROB_FLOOR,
    Request,
    Side,
    decode_requests,
    input_device,
)
from aligndepth.engine.stopping import Completion, StopRule
from aligndepth.errors import AlignDepthError
from aligndepth.run_settings import GREEDY, SamplingParams
from aligndepth.runs import unit_seed


def row_seed(seed: int, *parts: object) -> int:
    """The seed of one row, from the call's seed and the row's identity."""
    return unit_seed(seed, "/".join(str(p) for p in parts))


def as_stop_rule(stop: StopRule | Sequence[int]) -> StopRule:
    return stop if isinstance(stop, StopRule) else StopRule(frozenset(int(i) for i in stop))


def check_context(model: Any, prompt_lengths: Sequence[int], max_new_tokens: int,
                  role: str = "model") -> None:
    """Raise a user error when a prompt plus ``max_new_tokens`` exceeds the context."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int) or not prompt_lengths:
        return
    longest = max(prompt_lengths)
    if longest + max_new_tokens > limit:
        index = list(prompt_lengths).index(longest)
        raise AlignDepthError(
            f"prompt {index} is {longest} tokens; with {max_new_tokens} new tokens it exceeds "
            f"the {role}'s context of {limit}: shorten the prompt or lower --max-new-tokens")


def _check_prompts(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                   role: str = "model") -> None:
    if any(len(p) == 0 for p in prompts):
        raise AlignDepthError(f"an empty {role} prompt cannot be continued: give at least "
                              "one token")
    check_context(model, [len(p) for p in prompts], max_new_tokens, role)


def output_width(model: Any) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def generate(model: Any, prompts: Sequence[Sequence[int]],
             params: SamplingParams | Sequence[SamplingParams] = GREEDY, *,
             max_new_tokens: int, stop: StopRule | Sequence[int], pad_id: int, seed: int = 0,
             seeds: Sequence[int] | None = None, batch_size: int = 32, repeats: int = 1,
             tokenizer: Any = None, show_progress: bool = False) -> list[Completion]:
    """Continue every prompt ``repeats`` times (rows may differ in ``params``).

    Args:
        params: one configuration for all prompts, or one per prompt.
        stop: a :class:`StopRule` (stop strings need ``tokenizer``) or plain stop ids.
        seeds: one seed per prompt (row ``r`` of prompt ``i`` uses ``row_seed(seeds[i],
            r)``); default ``row_seed(seed, i)``.
        batch_size: rows decoded together.

    Returns:
        ``len(prompts) * repeats`` completions, the repeats of a prompt consecutive.
    """
    if not prompts:
        return []
    if repeats < 1:
        raise AlignDepthError(f"repeats must be at least 1, got {repeats}")
    plist = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
    if len(plist) != len(prompts):
        raise ValueError(f"{len(plist)} sampling configurations for {len(prompts)} prompts")
    base_seeds = list(seeds) if seeds is not None else [row_seed(seed, i)
                                                        for i in range(len(prompts))]
    _check_prompts(model, prompts, max_new_tokens)
    requests = [Request(i, plist[i], base_seeds[i] if repeats == 1 else
                        row_seed(base_seeds[i], r))
                for i in range(len(prompts)) for r in range(repeats)]
    return decode_requests([Side(model, prompts, pad_id)], requests,
                           max_new_tokens=max_new_tokens, stop=as_stop_rule(stop),
                           width=output_width(model), tokenizer=tokenizer,
                           batch_size=batch_size, show_progress=show_progress)


def generate_shared(model: Any, prompt: Sequence[int], params: Sequence[SamplingParams], *,
                    max_new_tokens: int, stop: StopRule | Sequence[int], pad_id: int,
                    seed: int = 0, seeds: Sequence[int] | None = None, batch_size: int = 64,
                    tokenizer: Any = None) -> list[Completion]:
    """Many rows continuing one prompt (encoded once per batch, its cache shared).

    Row ``j`` uses ``params[j]`` and ``seeds[j]`` (default ``row_seed(seed, j)``).
    """
    _check_prompts(model, [prompt], max_new_tokens)
    row_seeds = list(seeds) if seeds is not None else [row_seed(seed, j)
                                                       for j in range(len(params))]
    requests = [Request(0, p, s) for p, s in zip(params, row_seeds)]
    return decode_requests([Side(model, [prompt], pad_id)], requests,
                           max_new_tokens=max_new_tokens, stop=as_stop_rule(stop),
                           width=output_width(model), tokenizer=tokenizer,
                           batch_size=batch_size)


@dataclass(frozen=True)
class ContrastRow:
    """One decoding row of a query: the weight ``alpha`` and how to pick tokens."""

    alpha: float
    params: SamplingParams = GREEDY

    def __post_init__(self) -> None:
        if not 0 <= self.alpha < float("inf"):  # also rejects NaN
            raise AlignDepthError(f"alpha must be a finite number >= 0 (0 is plain base "
                                  f"decoding), got {self.alpha}")


def shared_width(base: Any, aligned: Any, vocab_size: int | None) -> int:
    """How many logits columns the two models share (the tokenizer's vocabulary)."""
    width = min(output_width(base), output_width(aligned))
    if vocab_size is not None:
        if vocab_size > width:
            raise AlignDepthError(
                f"the tokenizer has {vocab_size} tokens but a model scores only {width}: "
                "the two models do not share the tokenizer's vocabulary")
        width = vocab_size
    return width


def contrastive_generate(base: Any, aligned: Any, base_prompts: Sequence[Sequence[int]],
                         aligned_prompts: Sequence[Sequence[int]],
                         rows: Sequence[ContrastRow], *, max_new_tokens: int,
                         stop: StopRule | Sequence[int], pad_id: int, seed: int = 0,
                         seeds: Sequence[int] | None = None, batch_size: int = 32,
                         vocab_size: int | None = None, aligned_pad_id: int | None = None,
                         tokenizer: Any = None, show_progress: bool = False
                         ) -> list[list[Completion]]:
    """Decode every query under every row of ``rows`` with ED's combined distribution.

    Args:
        base: the model raised to the power ``α+1`` (a transformers causal LM).
        aligned: the model divided out (``α``); may be the same object as ``base`` (then
            the two prompts differ, as in the ED_base baseline).
        base_prompts: token ids of each query as the base model sees it.
        aligned_prompts: token ids of the same queries as the aligned model sees them.
        rows: the decodings to run for every query (e.g. α sweep × samples).
        stop: what ends a row (the union of both models' stop rules).
        seeds: one seed per query (row ``r`` uses ``row_seed(seeds[q], r)``); default
            ``row_seed(seed, q)``.
        batch_size: rows decoded together.
        vocab_size: the shared tokenizer's size; logits beyond it are ignored.

    Returns:
        ``out[q][r]``: the completion of query ``q`` under ``rows[r]``.
    """
    if len(base_prompts) != len(aligned_prompts):
        raise AlignDepthError(f"{len(base_prompts)} base prompts but {len(aligned_prompts)} "
                              "aligned prompts: give both models the same queries")
    if not rows:
        raise AlignDepthError("no decoding rows: give at least one alpha")
    if not base_prompts:
        return []
    _check_prompts(base, base_prompts, max_new_tokens, "base")
    _check_prompts(aligned, aligned_prompts, max_new_tokens, "aligned")
    width = shared_width(base, aligned, vocab_size)
    query_seeds = list(seeds) if seeds is not None else [row_seed(seed, q)
                                                         for q in range(len(base_prompts))]
    requests = [Request(q, row.params, row_seed(query_seeds[q], r), row.alpha)
                for q in range(len(base_prompts)) for r, row in enumerate(rows)]
    sides = [Side(base, base_prompts, pad_id),
             Side(aligned, aligned_prompts, pad_id if aligned_pad_id is None else aligned_pad_id)]
    flat = decode_requests(sides, requests, max_new_tokens=max_new_tokens,
                           stop=as_stop_rule(stop), width=width, tokenizer=tokenizer,
                           batch_size=batch_size, show_progress=show_progress,
                           description="contrastive decoding")
    k = len(rows)
    return [flat[q * k:(q + 1) * k] for q in range(len(base_prompts))]


@torch.no_grad()
def reference_contrastive_greedy(base: Any, aligned: Any, base_prompt: Sequence[int],
                                 aligned_prompt: Sequence[int], alpha: float, *,
                                 max_new_tokens: int, stop_ids: Sequence[int],
                                 vocab_size: int | None = None) -> list[int]:
    """The definition, slowly: one query, no cache, both sequences recomputed every step."""
    width = shared_width(base, aligned, vocab_size)
    new: list[int] = []
    for _ in range(max_new_tokens):
        zb = base(input_ids=torch.tensor([list(base_prompt) + new],
                                         device=input_device(base))).logits
        za = aligned(input_ids=torch.tensor([list(aligned_prompt) + new],
                                            device=input_device(aligned))).logits
        lb = torch.log_softmax(zb[0, -1, :width].float(), -1).clamp(min=LOGPROB_FLOOR)
        la = torch.log_softmax(za[0, -1, :width].float().to(lb.device), -1
                               ).clamp(min=LOGPROB_FLOOR)
        token = int(((alpha + 1) * lb - alpha * la).argmax())
        if token in stop_ids:
            break
        new.append(token)
    return new
