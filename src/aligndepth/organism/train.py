"""A small, deterministic training loop for building the organism.

The organism is tiny and trained once per seed, so a plain AdamW loop with a cosine
schedule is all it needs (the project's fine-tuning experiments use the transformers/TRL
stack instead).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from aligndepth.progress import progress_bar

log = logging.getLogger(__name__)
IGNORE = -100


def pack_documents(docs: Sequence[Sequence[int]], block_size: int, pad_id: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack whole documents into blocks (a document never straddles two blocks).

    Returns:
        input_ids: ``(n_blocks, block_size)``; labels: same, ``-100`` on padding.
    """
    blocks: list[list[int]] = []
    current: list[int] = []
    for doc in docs:
        doc = list(doc)[:block_size]
        if len(current) + len(doc) > block_size:
            blocks.append(current)
            current = []
        current.extend(doc)
    if current:
        blocks.append(current)
    ids = torch.full((len(blocks), block_size), pad_id, dtype=torch.long)
    labels = torch.full((len(blocks), block_size), IGNORE, dtype=torch.long)
    for i, block in enumerate(blocks):
        ids[i, : len(block)] = torch.tensor(block)
        labels[i, : len(block)] = torch.tensor(block)
    return ids, labels


def sft_tensors(examples: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (prompt + response) rows with loss on response tokens only.

    Returns:
        input_ids: ``(n, max_len)``; labels: same, ``-100`` on prompt and padding.
    """
    width = max(len(p) + len(r) for p, r in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, (p, r) in enumerate(examples):
        seq = list(p) + list(r)
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(p): len(seq)] = torch.tensor(list(r))
    return ids, labels


def train_causal_lm(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
                    *, epochs: float, batch_size: int, lr: float, seed: int,
                    warmup_frac: float = 0.05, description: str = "training",
                    replay: tuple[torch.Tensor, torch.Tensor] | None = None,
                    replay_batch: int = 8, replay_weight: float = 1.0,
                    show_progress: bool = True) -> list[float]:
    """Train ``model`` on rows of ``input_ids`` with next-token loss on ``labels``.

    Rows are shuffled each epoch with a seeded generator; the learning rate warms up
    linearly and decays by cosine to 10 %. With ``replay`` (ids, labels of pretraining
    blocks), every step adds ``replay_weight`` x the LM loss on ``replay_batch`` random
    blocks, which keeps the model close to its pretrained self outside what the main data
    teaches (as pretraining mixes do in RLHF). Returns the main loss of every step.
    """
    n = input_ids.shape[0]
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = max(1, int(round(epochs * steps_per_epoch)))
    warmup = max(1, int(warmup_frac * total))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses: list[float] = []
    order = torch.randperm(n, generator=gen)
    with progress_bar(description, total=total, enabled=show_progress) as advance:
        for step in range(total):
            pos = (step % steps_per_epoch) * batch_size
            if step and pos == 0:
                order = torch.randperm(n, generator=gen)
            idx = order[pos: pos + batch_size]
            batch_ids, batch_labels = input_ids[idx], labels[idx]
            width = int((batch_labels != IGNORE).nonzero()[:, 1].max()) + 1
            out = model(input_ids=batch_ids[:, :width], labels=batch_labels[:, :width])
            loss = out.loss
            if replay is not None:
                pick = torch.randint(0, replay[0].shape[0], (replay_batch,), generator=gen)
                loss = loss + replay_weight * model(input_ids=replay[0][pick],
                                                    labels=replay[1][pick]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(out.loss.item())
            advance(loss=losses[-1])
    model.eval()
    log.info("%s: %d steps, final loss %.4f", description, total, losses[-1])
    return losses
