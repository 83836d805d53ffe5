"""Many prompts' GCG candidates in one forward (SPEC §2.3).

Each prompt keeps its own cache of the text before the suffix (``before``, ``B_i``
positions). A forward over candidates of several prompts stacks their rows:

    cache columns : [pad x (Bmax - B_i)] [before_i]            left-padded, masked
    input columns : [suffix (L)] [after_i] [target_i] [pad]     right-padded, masked

Left padding keeps every real key's distance to every real query as without padding, so
sliding-window layers see the same window; right padding comes after every real token,
which causal attention never reads. Positions are given per row (``B_i + t``), so rotary
embeddings see the unpadded positions. The output layer runs on the last ``K`` columns
only (``logits_to_keep``), ``K`` the most any row needs to reach back to its target.
When all rows share ``B`` and ``A + T``, nothing is padded and the forward is exactly the
single-prompt one (:meth:`~aligndepth.attacks.gcg_core.GCGAttack.target_logits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from aligndepth.devices import logits_to_keep, with_cache


@dataclass(frozen=True)
class Spans:
    """One prompt's fixed spans around the suffix: ``after`` ``(A,)``, ``target``
    ``(T,)``, and ``cache``, the model's cache of ``before`` (one row, ``before_len``
    positions in every layer)."""

    after: torch.Tensor
    target: torch.Tensor
    cache: Any
    before_len: int

    def length(self, suffix_len: int) -> int:
        """Tokens after ``before``: suffix, after and target."""
        return suffix_len + len(self.after) + len(self.target)


#: One prompt's candidates: its spans and the candidate suffixes ``(n, L)``.
Group = tuple[Spans, torch.Tensor]


#: Logits per cross-entropy call (256 MiB in float32): the loss's float32 copy and
#: log-softmax then stay small beside the logits themselves.
LOSS_CHUNK = 1 << 26


def target_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per row, in at least float32: ``(b, T, V)``, ``(T,)`` -> ``(b,)``.

    Computed over rows laid out as ``(rows * T, V)`` (on the CPU a cross-entropy over a
    transposed ``(b, V, T)`` view takes twice as long), :data:`LOSS_CHUNK` logits at a
    time."""
    b, t, v = logits.shape
    dtype = torch.promote_types(logits.dtype, torch.float32)
    out = []
    for part in logits.split(max(1, LOSS_CHUNK // (t * v))):
        ce = torch.nn.functional.cross_entropy(part.reshape(-1, v).to(dtype),
                                               target.repeat(len(part)), reduction="none")
        out.append(ce.view(len(part), t).mean(-1))
    return torch.cat(out)


def losses_and_hits(logits: torch.Tensor, target: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b,)`` mean target loss and ``(b,)`` whether the target is the greedy
    continuation (at every position the target token's logit is the largest), from the
    target's logits ``(b, T, V)``."""
    picked = logits.gather(-1, target.expand(len(logits), -1)[..., None])[..., 0]
    return target_loss(logits, target), (picked >= logits.amax(-1)).all(-1)


def _padded_cache(model: Any, groups: Sequence[Group], bmax: int) -> Any:
    """A cache of the model's own layer types whose row ``r`` holds its prompt's
    ``before`` left-padded with zeros to ``bmax`` positions."""
    from transformers import DynamicCache

    layers = []
    per_group = [list(spans.cache) for spans, _ in groups]
    for depth in range(len(per_group[0])):
        keys, values = [], []
        for (spans, cands), layer in zip(groups, per_group):
            k, v = layer[depth][0], layer[depth][1]
            pad = bmax - spans.before_len
            keys.append(torch.nn.functional.pad(k, (0, 0, pad, 0)).expand(len(cands), -1, -1,
                                                                            -1))
            values.append(torch.nn.functional.pad(v, (0, 0, pad, 0)).expand(len(cands), -1,
                                                                              -1, -1))
        layers.append((torch.cat(keys), torch.cat(values)))
    return DynamicCache(ddp_cache_data=layers, config=model.config)


def packed_target_logits(attack: Any, groups: Sequence[Group]) -> list[torch.Tensor]:
    """For each group's candidates ``(n_g, L)``, the logits ``(n_g, T_g, vocab)`` that
    predict its target, from one forward over all rows (``attack``: a
    :class:`~aligndepth.attacks.gcg_core.GCGAttack`)."""
    model = attack.model
    suffix_len = int(groups[0][1].shape[1])
    lengths = [spans.length(suffix_len) for spans, _ in groups]
    befores = [spans.before_len for spans, _ in groups]
    if len(groups) == 1:
        spans, cands = groups[0]
        ids = _rows(spans, cands)
        return [attack.target_logits({"input_ids": ids}, spans.cache, len(spans.target))]
    n, bmax = max(lengths), max(befores)
    device = groups[0][1].device
    ids = torch.cat([torch.nn.functional.pad(_rows(spans, cands), (0, n - width))
                     for (spans, cands), width in zip(groups, lengths)])
    kwargs: dict[str, Any] = {}
    if len(set(lengths)) > 1 or len(set(befores)) > 1:
        mask, positions = [], []
        for (spans, cands), width in zip(groups, lengths):
            row = torch.zeros(bmax + n, dtype=torch.long, device=device)
            row[bmax - spans.before_len:bmax + width] = 1
            mask.append(row.expand(len(cands), -1))
            pos = spans.before_len + torch.arange(n, device=device)
            positions.append(pos.expand(len(cands), -1))
        kwargs = {"attention_mask": torch.cat(mask), "position_ids": torch.cat(positions)}
    keep = max(n - width + len(spans.target) + 1 for (spans, _), width in zip(groups, lengths))
    with torch.no_grad():
        logits = model(input_ids=ids, **kwargs,
                       **with_cache(model, _padded_cache(model, groups, bmax)),
                       use_cache=True, **logits_to_keep(model, keep)).logits
    logits = logits[:, -keep:]  # a model without logits_to_keep returns every column
    out, start = [], 0
    for (spans, cands), width in zip(groups, lengths):
        end = keep - (n - width)  # the row's last real column, exclusive
        t = len(spans.target)
        out.append(logits[start:start + len(cands), end - t - 1:end - 1])
        start += len(cands)
    return out


def _rows(spans: Spans, cands: torch.Tensor) -> torch.Tensor:
    """``(n, L + A + T)`` input ids: each candidate, then after and target."""
    b = len(cands)
    return torch.cat([cands, spans.after.expand(b, -1), spans.target.expand(b, -1)], dim=1)


def chunks(groups: Sequence[Group], rows: int) -> list[list[tuple[int, Group]]]:
    """The groups' candidates cut into forwards of at most ``rows`` rows, in order, each
    piece with its group's index (a prompt's candidates may span two forwards)."""
    out: list[list[tuple[int, Group]]] = [[]]
    room = rows
    for g, (spans, cands) in enumerate(groups):
        i = 0
        while i < len(cands):
            if room == 0:
                out.append([])
                room = rows
            take = cands[i:i + room]
            out[-1].append((g, (spans, take)))
            i += len(take)
            room -= len(take)
    return [c for c in out if c]


@torch.no_grad()
def packed_losses(attack: Any, groups: Sequence[Group], rows: int
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per group, the ``(n_g,)`` losses and hits of its candidates, in forwards of at most
    ``rows`` rows that mix prompts."""
    parts: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in groups]
    for chunk in chunks(groups, rows):
        pieces = [group for _, group in chunk]
        for (g, (spans, _)), logits in zip(chunk, packed_target_logits(attack, pieces)):
            parts[g].append(losses_and_hits(logits, spans.target))
    return [(torch.cat([p[0] for p in part]), torch.cat([p[1] for p in part]))
            for part in parts]


def row_bytes(model: Any, before_len: int, length: int, target_len: int) -> int:
    """About the memory one candidate row of a no-grad forward holds at its peak: its KV
    cache over ``before_len + length`` positions in every layer, one layer's activations
    over ``length`` positions, and ``target_len + 1`` rows of logits (in the model's dtype,
    then float32 for the loss and its log-softmax)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    elem = next(model.parameters()).element_size()
    hidden = int(config.hidden_size)
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    layers = int(config.num_hidden_layers)
    inter = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    cache = 2 * layers * kv_heads * head_dim * (before_len + length) * elem
    activations = length * (6 * hidden + 3 * inter + 2 * heads * (before_len + length)) * elem
    logits = (target_len + 1) * vocab * (elem + 8)
    return cache + activations + logits


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: the CUDA allocator's view, else the system's available
    memory (Linux ``MemAvailable``; 4 GiB when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free) + int(torch.cuda.memory_reserved(device) -
                               torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def auto_prompt_batch(attack: Any, prompts: int, before_len: int, length: int,
                      target_len: int) -> int:
    """How many prompts' searches to advance together: on an accelerator, as many as fill
    forwards of ``candidate_batch`` rows when it is set, else as many whose
    ``search_width`` rows each fit in half the free memory (by :func:`row_bytes` of the
    longest prompt), at least 1 and at most ``prompts``; forwards still halve on
    out-of-memory. On the CPU, 1: a forward of one prompt's candidates already keeps the
    cores busy, and larger ones ran slower (BENCHMARKS.md)."""
    if attack.device.type == "cpu":
        return 1
    width = attack.config.search_width
    if attack.batch:
        rows = attack.batch
    else:
        per_row = row_bytes(attack.model, before_len, length, target_len)
        rows = free_memory(attack.device) // 2 // max(1, per_row)
    return max(1, min(prompts, rows // width))
