"""Greedy Coordinate Gradient (GCG) suffix optimisation (Zou et al. 2023; SPEC §2.3).

Goal: a suffix ``s`` appended to the user's instruction such that the model's response
starts with ``target``. The prompt is split into three token spans around the suffix:

    before = template head + instruction + " "      (fixed: encoded once, KV cached)
    suffix = L optimised tokens
    after  = rest of the template (end of user turn, assistant header)
    target = the response start the loss asks for

Each step:

1. the gradient of the target loss w.r.t. the one-hot suffix ``(L, vocab)``; the suffix
   is embedded as ``s * (one_hot @ W)`` where ``s`` is the embedding module's own scale
   (``sqrt(hidden_size)`` in Gemma models, 1 in most others), measured once, so the
   hand-built ``inputs_embeds`` equal what ``embed(ids)`` gives;
2. for each position the ``topk`` tokens with the most negative gradient among the
   allowed ones (tokens a user could type: no control token, printable ASCII unless
   ``allow_non_ascii``; :mod:`aligndepth.attacks.gcg_tokens`), and ``search_width``
   candidates, each replacing ``n_replace`` random positions with random top-k tokens
   (one tensor operation, no Python loop);
3. candidates that do not survive decode → re-encode are dropped (no survivor for
   :data:`STALL_STEPS` steps in a row is an error);
4. every candidate's target loss from one batched forward that reuses the cached
   ``before`` span (candidate batches shrink automatically on out-of-memory);
   this forward and the gradient's compute the output layer only where the loss is,
   at the target's positions (:meth:`GCGAttack.target_logits`), not over the suffix and
   template;
5. the best candidate joins a buffer of the best suffixes seen; the next step starts
   from the buffer's best. With ``early_stop`` the search ends once the target is the
   model's greedy continuation after the buffer's best suffix.

The loop lives in :mod:`aligndepth.attacks.gcg_search`, which advances several prompts'
searches together (:meth:`GCGAttack.run_many`), their candidates scored in shared
forwards (:mod:`aligndepth.attacks.gcg_pack`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from aligndepth.attacks import gcg_candidates
from aligndepth.attacks.gcg_candidates import embedding_scale
from aligndepth.attacks.gcg_pack import Group, Spans, losses_and_hits, packed_losses, target_loss
from aligndepth.attacks.gcg_search import STALL_STEPS, GCGResult, Task, run_searches
from aligndepth.attacks.gcg_tokens import (
    allowed_token_mask,
    start_suffix,
    user_suffix_ids,
)
from aligndepth.chat_markup import control_token_ids
from aligndepth.devices import logits_to_keep, output_cache, with_cache
from aligndepth.engine import is_oom
from aligndepth.errors import AlignDepthError
from aligndepth.experiment_configs import GCGConfig
from aligndepth.prompts import PromptFormat

log = logging.getLogger(__name__)

#: Marks where the suffix goes while the chat template is rendered.
PLACEHOLDER = "\u27e6aligndepth-suffix\u27e7"

__all__ = ["STALL_STEPS", "GCGAttack", "GCGConfig", "GCGResult", "Spans", "Task",
           "allowed_token_mask", "embedding_scale", "split_prompt"]


def split_prompt(tokenizer: Any, fmt: PromptFormat, instruction: str) -> tuple[list[int],
                                                                              list[int]]:
    """Token ids before and after the suffix (the suffix ends the user's message)."""
    text = fmt.render(tokenizer, f"{instruction} {PLACEHOLDER}")
    if text.count(PLACEHOLDER) != 1:
        raise AlignDepthError("the prompt template does not keep the user's message intact, "
                              "so the GCG suffix cannot be placed: use another prompt format")
    before, after = text.split(PLACEHOLDER)
    before_ids = tokenizer(before, add_special_tokens=fmt.adds_special_tokens).input_ids
    after_ids = tokenizer(after, add_special_tokens=False).input_ids
    return list(before_ids), list(after_ids)


def _takes_kept_indices(model: Any) -> bool:
    """Whether ``model``'s forward takes ``logits_to_keep`` as a tensor of positions (the
    transformers models do: ``int | torch.Tensor``), not only as a count."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        param = inspect.signature(inner.forward).parameters.get("logits_to_keep")
    except (TypeError, ValueError):
        return False
    return param is not None and "Tensor" in str(param.annotation)


class GCGAttack:
    """GCG against one model in one prompt format; :meth:`run` attacks one prompt."""

    def __init__(self, model: Any, tokenizer: Any, fmt: PromptFormat, config: GCGConfig):
        self.model, self.tok, self.fmt, self.config = model, tokenizer, fmt, config
        self.device = next(model.parameters()).device
        self.embed = model.get_input_embeddings()
        self.vocab = int(self.embed.weight.shape[0])
        self.scale = embedding_scale(self.embed, self.vocab)
        self.allowed = allowed_token_mask(tokenizer, self.vocab, config.allow_non_ascii)
        if not bool(self.allowed.any()):
            raise AlignDepthError("no tokens are left for the GCG suffix after filtering: "
                                  "pass --allow-non-ascii or check the tokenizer")
        self.allowed = self.allowed.to(self.device)
        self.batch = config.candidate_batch
        self._keep_indices = _takes_kept_indices(model)

    # -- setup ----------------------------------------------------------------------
    def initial_suffix(self) -> list[int]:
        """The starting suffix's ids ``(L,)``: ``init_suffix`` (refused when it holds a
        control token, a token that is not printable ASCII without ``allow_non_ascii``, or,
        with ``filter_retokenization``, does not re-encode to itself), else Zou et al.'s
        ``! ! ! ...`` or the nearest printable allowed token repeated
        (:func:`~aligndepth.attacks.gcg_tokens.start_suffix`)."""
        c = self.config
        if c.init_suffix is not None:
            return user_suffix_ids(self.tok, c)
        return start_suffix(self.tok, self.allowed, c.suffix_length, self._round_trips,
                            c.filter_retokenization)

    def provenance(self) -> dict[str, Any]:
        """What the run manifest records about the search space: the vocabulary, how many
        tokens a suffix may use, how many control tokens are excluded, and the initial
        suffix (text and ids)."""
        ids = self.initial_suffix()
        control = control_token_ids(self.tok)
        return {"vocab": self.vocab, "allowed_tokens": int(self.allowed.sum()),
                "control_tokens": len([i for i in control if i < self.vocab]),
                "allow_non_ascii": self.config.allow_non_ascii,
                "initial_suffix": str(self.tok.decode(ids)), "initial_suffix_ids": ids}

    def _round_trips(self, ids: list[int]) -> bool:
        return bool(self.retokenizes(torch.tensor([ids], device=self.device))[0])

    def spans(self, instruction: str, target: str, max_new_tokens: int = 0
              ) -> tuple[list[int], list[int], list[int]]:
        """Token ids before and after the suffix, and of the target; raises when they,
        the suffix and ``max_new_tokens`` do not fit the model's context."""
        if not target.strip():
            raise AlignDepthError("the GCG target is empty: give each prompt a target "
                                  "(e.g. 'Sure, here is ...')")
        before, after = split_prompt(self.tok, self.fmt, instruction)
        target_ids = list(self.tok(target, add_special_tokens=False).input_ids)
        suffix_len = len(self.initial_suffix())
        total = len(before) + suffix_len + len(after) + len(target_ids) + max_new_tokens
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and total > limit:
            raise AlignDepthError(
                f"prompt ({len(before) + len(after)} tokens) + suffix ({suffix_len}) + target "
                f"({len(target_ids)}) + {max_new_tokens} new tokens exceed the model's context "
                f"of {limit}: use a shorter suffix, target or --max-new-tokens")
        return before, after, target_ids

    def prepare(self, instruction: str, target: str
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """Ids ``before`` (1, B), ``after`` (A,), ``target`` (T,) and the cache of before.

        The cache keeps all ``B`` positions in every layer (a plain ``DynamicCache``): a
        sliding-window layer's own cache would keep only its window, and :meth:`_prefix`
        would then place the suffix at the wrong positions."""
        from transformers import DynamicCache

        before, after, target_ids = self.spans(instruction, target)
        t = torch.tensor
        before_t = t([before], device=self.device)
        with torch.no_grad():
            cache = output_cache(self.model(input_ids=before_t,
                                            **with_cache(self.model, DynamicCache()),
                                            use_cache=True))
        return (before_t, t(after, device=self.device), t(target_ids, device=self.device),
                cache)

    def _prefix(self, cache: Any, batch: int) -> Any:
        """A fresh cache of the model's own layer types holding the ``before`` span for
        ``batch`` rows (``(batch, heads, B, head_dim)`` per layer; sliding layers keep their
        window but count all ``B`` positions)."""
        from transformers import DynamicCache

        data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))
                for k, v, *_ in cache]
        return DynamicCache(ddp_cache_data=data, config=self.model.config)

    # -- one step's pieces ------------------------------------------------------------
    def gradient_embeds(self, one_hot: torch.Tensor, after: torch.Tensor,
                        target: torch.Tensor) -> torch.Tensor:
        """``(1, L + A + T, hidden)`` inputs after ``before``: the suffix as
        ``scale * (one_hot @ W)`` from ``one_hot`` ``(L, vocab)``, then ``embed(after,
        target)``; for a one-hot input this equals ``embed(suffix, after, target)``."""
        suffix = (one_hot @ self.embed.weight) * self.scale  # (L, hidden)
        rest = self.embed(torch.cat([after, target]))  # (A + T, hidden)
        return torch.cat([suffix, rest.to(suffix.dtype)])[None]

    def one_hot_loss(self, one_hot: torch.Tensor, after: torch.Tensor, target: torch.Tensor,
                     cache: Any) -> torch.Tensor:
        """0-d mean target loss for a (relaxed) one-hot suffix ``(L, vocab)``."""
        embeds = self.gradient_embeds(one_hot, after, target)
        logits = self.target_logits({"inputs_embeds": embeds}, cache, len(target))
        return _target_loss(logits, target)[0]

    def target_logits(self, inputs: dict[str, torch.Tensor], cache: Any, length: int
                      ) -> torch.Tensor:
        """``(b, T, vocab)`` logits that predict the target, the last ``T = length`` of the
        ``(b, n)`` inputs after ``before`` (``input_ids`` or ``inputs_embeds``): the row at
        position ``n - T - 1 + t`` predicts target token ``t``. The model's output layer
        runs on those ``T`` positions only (``logits_to_keep`` as their indices, so the
        logits come out contiguous; the last ``T + 1`` positions where the model takes
        only a count), not on the suffix and template: the candidate losses and the
        gradient both come from here."""
        batch, n = next(iter(inputs.values())).shape[:2]
        keep = logits_to_keep(self.model, length + 1)
        if self._keep_indices and keep:
            keep = {"logits_to_keep": torch.arange(n - length - 1, n - 1, device=self.device)}
        logits = self.model(**inputs, **with_cache(self.model, self._prefix(cache, batch)),
                            use_cache=True, **keep).logits
        return logits if logits.shape[1] == length and "logits_to_keep" in keep \
            else logits[:, -length - 1:-1]

    def token_gradient(self, suffix: torch.Tensor, after: torch.Tensor, target: torch.Tensor,
                       cache: Any, normalize: bool = True) -> torch.Tensor:
        """``(L, vocab)`` gradient of the target loss w.r.t. the one-hot suffix ``(L,)``;
        rows scaled to unit norm unless ``normalize`` is false (then the raw gradient)."""
        weight = self.embed.weight
        one_hot = torch.zeros(len(suffix), self.vocab, device=self.device, dtype=weight.dtype)
        one_hot.scatter_(1, suffix[:, None], 1.0)
        one_hot.requires_grad_(True)
        loss = self.one_hot_loss(one_hot, after, target, cache)
        (grad,) = torch.autograd.grad(loss, one_hot)
        if not normalize:
            return grad
        return grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def sample_candidates(self, suffix: torch.Tensor, grad: torch.Tensor,
                          generator: torch.Generator) -> torch.Tensor:
        """``(search_width, L)`` candidates, each with ``n_replace`` positions swapped."""
        c = self.config
        return gcg_candidates.sample_candidates(suffix, grad, self.allowed, c.topk,
                                                c.search_width, c.n_replace, generator)

    def retokenizes(self, candidates: torch.Tensor) -> torch.Tensor:
        """``(W,)`` bool: decoding then re-encoding ``candidates`` ``(W, L)`` gives the
        same ids."""
        return gcg_candidates.retokenizes(self.tok, candidates)

    @torch.no_grad()
    def candidate_losses(self, candidates: torch.Tensor, after: torch.Tensor,
                         target: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean target loss ``(W,)`` of each candidate, and whether the target is its greedy
        continuation ``(W,)``; one forward per batch of candidates, ``before`` from cache."""
        width = len(candidates)
        batch = self.batch or width
        while True:
            try:
                return self._losses(candidates, after, target, cache, batch)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_oom(exc) or batch == 1:
                    raise
                batch = max(1, batch // 2)
                self.batch = batch
                log.info("GCG candidate batch reduced to %d after running out of memory",
                         batch)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    def _losses(self, candidates: torch.Tensor, after: torch.Tensor, target: torch.Tensor,
                cache: Any, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        losses, hits = [], []
        for i in range(0, len(candidates), batch):
            chunk = candidates[i:i + batch]
            b = len(chunk)
            ids = torch.cat([chunk, after.expand(b, -1), target.expand(b, -1)], dim=1)
            logits = self.target_logits({"input_ids": ids}, cache, len(target))
            loss, hit = losses_and_hits(logits, target)
            losses.append(loss)
            hits.append(hit)
        return torch.cat(losses), torch.cat(hits)

    def prompt_spans(self, instruction: str, target: str) -> Spans:
        """The prompt's fixed spans and its ``before`` cache (:meth:`prepare`)."""
        before, after, target_ids, cache = self.prepare(instruction, target)
        return Spans(after, target_ids, cache, int(before.shape[1]))

    def group_losses(self, groups: Sequence[Group]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per prompt, the losses ``(n,)`` and hits ``(n,)`` of its candidates ``(n, L)``;
        several prompts' rows share forwards (:mod:`~aligndepth.attacks.gcg_pack`) of at
        most ``candidate_batch`` rows (all, when unset), halved on out-of-memory."""
        if len(groups) == 1:
            spans, cands = groups[0]
            return [self.candidate_losses(cands, spans.after, spans.target, spans.cache)]
        rows = self.batch or sum(len(c) for _, c in groups)
        while True:
            try:
                return packed_losses(self, groups, rows)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_oom(exc) or rows == 1:
                    raise
                rows = self.batch = max(1, rows // 2)
                log.info("GCG candidate batch reduced to %d after running out of memory", rows)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    # -- the loop ---------------------------------------------------------------------
    def run(self, instruction: str, target: str, seed: int = 0,
            progress: Callable[[int, float], None] | None = None) -> GCGResult:
        """Optimise a suffix for one prompt; ``progress(step, loss)`` is called per step.

        Raises :class:`AlignDepthError` when no sampled candidate re-encodes to itself for
        :data:`STALL_STEPS` consecutive steps (or for all ``num_steps`` when fewer): the
        suffix could not move, and the result would silently be the initial suffix.
        """
        def report(key: Any, step: int, loss: float) -> None:
            if progress is not None:
                progress(step, loss)

        [(_, result)] = run_searches(self, [Task(0, instruction, target, seed)], 1, report)
        return result

    def run_many(self, tasks: Iterable[Task], prompt_batch: int = 1,
                 progress: Callable[[Any, int, float], None] | None = None
                 ) -> Iterator[tuple[Task, GCGResult]]:
        """Optimise a suffix per task, ``prompt_batch`` prompts' searches at a time, their
        candidates scored together; yields ``(task, result)`` as each search finishes,
        every result the one :meth:`run` gives for the task alone (same seed)."""
        return run_searches(self, tasks, prompt_batch, progress)

    def reference_losses(self, instruction: str, target: str, candidates: torch.Tensor
                         ) -> torch.Tensor:
        """Candidate losses by full recomputation (no cache): the slow definition."""
        before, after, target_ids, _ = self.prepare(instruction, target)
        out = []
        with torch.no_grad():
            for cand in candidates:
                ids = torch.cat([before[0], cand, after, target_ids])[None]
                start = before.shape[1] + len(cand) + len(after) - 1
                logits = self.model(input_ids=ids).logits[:, start:start + len(target_ids)]
                out.append(_target_loss(logits, target_ids))
        return torch.cat(out)


_target_loss = target_loss
