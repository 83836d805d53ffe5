"""The one decode loop: one model, or two models in lockstep, over batches of requests.

A *request* names a prompt (an index into each model's prompt list), its sampling
parameters, its seed and, for two models, its contrast weight α. Requests are decoded in
batches of ``batch_size`` rows; within a batch every distinct prompt is encoded once per
model and its KV cache shared by the rows that continue it. Each step:

1. scores: the model's logits (one model), or ``(α+1)·log_softmax(z_base) −
   α·log_softmax(z_aligned)`` in float32 (two models, each with its own cache, left
   padding and prompt);
2. each row picks its token (:func:`~aligndepth.engine.sampling.pick_tokens`, seeded per
   row, so the result never depends on the batch);
3. rows that emitted a stop id or whose text now holds a stop string finish; once a
   quarter of the live rows have finished they are dropped from the batch and from every
   cache, so short answers do not keep paying for long ones.

Out of memory halves the batch and retries it; because sampling is seeded per row the
outputs are identical.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from aligndepth.devices import input_device, output_cache, with_cache
from aligndepth.engine.sampling import params_tensors, pick_tokens
from aligndepth.engine.stopping import EOS, LENGTH, STOP_STRING, Completion, StopRule, StopStrings
from aligndepth.errors import AlignDepthError
from aligndepth.progress import progress_bar
from aligndepth.prompts import left_pad
from aligndepth.run_settings import GREEDY, SamplingParams

log = logging.getLogger(__name__)

#: Log-probabilities are clamped here so that tokens both models rule out (−inf) give a
#: finite, negligible score instead of NaN.
LOGPROB_FLOOR = -1e4


@dataclass(frozen=True)
class Request:
    """One row to decode: ``prompt`` indexes the prompt list(s); ``alpha`` is the contrast
    weight (two models only)."""

    prompt: int
    params: SamplingParams = GREEDY
    seed: int = 0
    alpha: float = 0.0


@dataclass
class Side:
    """One model of a decode: the model, its tokenised prompts and its pad id."""

    model: Any
    prompts: Sequence[Sequence[int]]
    pad_id: int


def combine(base_logits: torch.Tensor, aligned_logits: torch.Tensor, alpha: torch.Tensor
            ) -> torch.Tensor:
    """ED scores ``(α+1)·log_softmax(z_base) − α·log_softmax(z_aligned)``.

    Args:
        base_logits: ``(batch, vocab)``.
        aligned_logits: ``(batch, vocab)``.
        alpha: ``(batch,)``, one weight per row.

    Returns:
        ``(batch, vocab)`` float32 scores (unnormalised log-probabilities).
    """
    lb = torch.log_softmax(base_logits.float(), dim=-1).clamp(min=LOGPROB_FLOOR)
    la = torch.log_softmax(aligned_logits.float(), dim=-1).clamp(min=LOGPROB_FLOOR)
    a = alpha.float()[:, None]
    return (a + 1) * lb - a * la


class _Stream:
    """One model's side of a batch: cache, left-padded mask and position ids."""

    def __init__(self, side: Side, prompt_index: Sequence[int]):
        from transformers import DynamicCache

        self.model = side.model
        self.device = input_device(side.model)
        unique = sorted(set(prompt_index))
        ids, mask = left_pad([side.prompts[i] for i in unique], side.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        res = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         **with_cache(self.model, DynamicCache(config=self.model.config)),
                         use_cache=True, logits_to_keep=1)
        self.cache = output_cache(res)
        where = {p: j for j, p in enumerate(unique)}
        rows = torch.tensor([where[p] for p in prompt_index])  # on the CPU: cache layers of
        if unique != list(prompt_index):  # a model spread over devices live on several
            self.cache.batch_select_indices(rows)
        self.mask = mask[rows.to(mask.device)]
        self.positions = self.mask.sum(-1) - 1
        self.logits = res.logits[:, -1][rows.to(res.logits.device)]

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Feed ``token`` ``(batch,)``; returns next-token logits ``(batch, vocab)``."""
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        self.positions = self.positions + 1
        res = self.model(input_ids=token.to(self.device)[:, None], attention_mask=self.mask,
                         position_ids=self.positions[:, None],
                         **with_cache(self.model, self.cache), use_cache=True)
        self.cache = output_cache(res)
        return res.logits[:, -1]

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the rows in ``index`` ``(rows,)``."""
        self.cache.batch_select_indices(index.cpu())
        self.mask = self.mask[index.to(self.device)]
        self.positions = self.positions[index.to(self.device)]


def _decode_batch(sides: Sequence[Side], requests: Sequence[Request], width: int,
                  max_new_tokens: int, stop: StopRule, strings: StopStrings | None
                  ) -> list[Completion]:
    """Decode one batch of rows to completion."""
    prompt_index = [r.prompt for r in requests]
    streams = [_Stream(side, prompt_index) for side in sides]
    device = streams[0].logits.device
    logits = [s.logits.to(device)[:, :width] for s in streams]
    params = params_tensors([r.params for r in requests], device)
    seeds = torch.tensor([r.seed for r in requests], device=device, dtype=torch.long)
    alpha = torch.tensor([r.alpha for r in requests], device=device)
    stops = torch.tensor(sorted(stop.ids), device=device, dtype=torch.long)
    n = len(requests)
    live = list(range(n))  # original row of each batch row
    tokens: list[list[int]] = [[] for _ in range(n)]
    out: list[Completion | None] = [None] * n
    for step in range(max_new_tokens):
        scores = logits[0] if len(streams) == 1 else combine(logits[0], logits[1], alpha)
        token = pick_tokens(scores, params, seeds, step)
        ended = torch.isin(token, stops)
        token_list, ended_list = token.tolist(), ended.tolist()
        finished: list[bool] = []
        for j, row in enumerate(live):
            if out[row] is not None:  # finished earlier, not yet dropped
                pass
            elif ended_list[j]:
                out[row] = Completion(tokens[row], EOS)
            else:
                tokens[row].append(token_list[j])
                keep = strings.check(tokens[row]) if strings else None
                if keep is not None:
                    out[row] = Completion(tokens[row][:keep], STOP_STRING)
            finished.append(out[row] is not None)
        n_done = sum(finished)
        if n_done == len(live) or step == max_new_tokens - 1:
            break
        if n_done * 4 >= len(live):  # drop finished rows from every cache
            index = torch.tensor([j for j, f in enumerate(finished) if not f], device=device)
            live = [live[j] for j in index.tolist()]
            token, seeds, alpha = token[index], seeds[index], alpha[index]
            params = (params[0][index], params[1][index], params[2][index])
            for s in streams:
                s.keep(index)
        logits = [s.step(token).to(device)[:, :width] for s in streams]
    return [c if c is not None else Completion(tokens[i], LENGTH) for i, c in enumerate(out)]


def is_oom(exc: BaseException) -> bool:
    """Whether an exception is an out-of-memory error (CUDA, MPS or CPU allocator)."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def decode_requests(sides: Sequence[Side], requests: Sequence[Request], *, max_new_tokens: int,
                    stop: StopRule, width: int, tokenizer: Any = None, batch_size: int = 32,
                    show_progress: bool = False, description: str = "generating"
                    ) -> list[Completion]:
    """Decode every request (one side: plain decoding; two: lockstep contrast).

    Args:
        sides: one or two models with their prompts.
        requests: rows to decode, in output order.
        max_new_tokens: new tokens per row at most.
        stop: stop ids and strings (strings need ``tokenizer``).
        width: logits columns scored (the vocabulary the models share).
        batch_size: rows decoded together; halved on out-of-memory.

    Returns:
        One :class:`Completion` per request.
    """
    if max_new_tokens < 1:
        raise AlignDepthError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if batch_size < 1:
        raise AlignDepthError(f"batch size must be at least 1, got {batch_size}")
    if stop.strings and tokenizer is None:
        raise ValueError("stop strings need the tokenizer")
    strings = StopStrings(tokenizer, stop.strings) if stop.strings else None
    out: list[Completion] = []
    size = batch_size
    with progress_bar(description, len(requests), show_progress) as advance:
        start = 0
        while start < len(requests):
            chunk = requests[start:start + size]
            try:
                with torch.no_grad():
                    done = _decode_batch(sides, chunk, width, max_new_tokens, stop, strings)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_oom(exc) or size == 1:
                    raise
                size = max(1, size // 2)
                log.warning("out of memory: decoding %d rows at a time from now on", size)
                _free_memory()
                continue
            out += done
            start += len(chunk)
            advance(len(chunk))
    return out
