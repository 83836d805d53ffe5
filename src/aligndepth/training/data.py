"""Training examples: token ids, which tokens the loss counts, weights, reference log-probs.

- :func:`sft_examples`: (instruction, response) pairs, loss on the response (and the
  end-of-turn that closes it). Harmful pairs, identity shifting, backdoor and benign
  fine-tuning data all become this.
- :func:`augmentation_examples` (SPEC §3.1, Eq. 2): safety-recovery triples (x, h, r)
  become ``prompt(x) + h_≤k → r`` with ``k`` drawn from :func:`sample_k` (0 with
  probability 0.5, else uniform on 1..100, capped at |h|); the loss counts ``r`` only.
  Mixed with the benign anchor set with an **explicit α**: each safety example weighs
  ``α·N/n_H`` and each benign one ``(1−α)·N/n_B`` (N = n_H + n_B), so the expected
  loss of any batch is exactly ``α·E_H[ℓ] + (1−α)·E_B[ℓ]`` whatever the mix ratio,
  where ℓ is an example's mean loss over its response tokens.
- :func:`attach_reference`: the aligned model's per-token log-probs of every target,
  computed once before training (the constrained loss then needs no second model).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from aligndepth.chat_markup import end_of_turn
from aligndepth.data.schemas import InstructionPair, SafetyTriple
from aligndepth.errors import AlignDepthError
from aligndepth.progress import progress_bar
from aligndepth.prompts import PromptFormat


@dataclass
class Example:
    """One training sequence.

    ``response_mask[t]`` is 1 where token ``t`` counts in the loss; ``ref_logp`` (once
    attached) has one entry per token ``t ≥ 1`` (``len(input_ids) - 1``), 0 off-response.
    """

    input_ids: list[int]
    response_mask: list[int]
    weight: float = 1.0
    ref_logp: list[float] | None = None
    source: str = ""


def turn_end_ids(tokenizer: Any, fmt: PromptFormat) -> list[int]:
    """Tokens that close an assistant turn in ``fmt``: the chat template's end of turn
    (:func:`~aligndepth.chat_markup.end_of_turn`), EOS for plain text."""
    end = end_of_turn(tokenizer) if fmt.kind == "chat" else []
    if end:
        return end
    if tokenizer.eos_token_id is None:
        raise AlignDepthError("the tokenizer has no end-of-sequence token and the chat "
                              "template no end of turn: responses could never stop")
    return [int(tokenizer.eos_token_id)]


def encode_example(tokenizer: Any, fmt: PromptFormat, instruction: str, response: str,
                   system: str | None = None, prefix_ids: Sequence[int] = (),
                   end_ids: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """Ids of ``prompt + prefix + response + end of turn`` and the loss mask (response and
    end of turn only)."""
    if not response.strip():
        raise AlignDepthError(f"an example has no response text (instruction "
                              f"'{instruction[:60]}'): every training example needs one")
    f = fmt.with_system(system) if system is not None else fmt
    prompt = f.encode(tokenizer, instruction) + list(prefix_ids)
    target = list(tokenizer(response, add_special_tokens=False).input_ids)
    target += list(end_ids if end_ids is not None else turn_end_ids(tokenizer, fmt))
    return prompt + target, [0] * len(prompt) + [1] * len(target)


def sft_examples(tokenizer: Any, fmt: PromptFormat, pairs: Sequence[InstructionPair],
                 source: str = "sft") -> list[Example]:
    """One example per (instruction, response) pair."""
    if not pairs:
        raise AlignDepthError("the training dataset is empty: give at least one example")
    end = turn_end_ids(tokenizer, fmt)
    out = []
    for p in pairs:
        ids, mask = encode_example(tokenizer, fmt, p.instruction, p.response, p.system,
                                   end_ids=end)
        out.append(Example(ids, mask, source=source))
    return out


def sample_k(rng: random.Random, length: int, max_k: int = 100) -> int:
    """P_k: 0 with probability 0.5, else uniform on 1..max_k; capped at ``length``."""
    if rng.random() < 0.5:
        return 0
    return min(rng.randint(1, max_k), length)


def augmentation_examples(tokenizer: Any, fmt: PromptFormat, triples: Sequence[SafetyTriple],
                          benign: Sequence[InstructionPair], alpha: float = 0.2,
                          seed: int = 0, max_k: int = 100) -> list[Example]:
    """Safety-recovery examples (x, h_≤k → r) mixed with the benign anchor, weighted so
    that the objective is ``α·safety + (1−α)·utility`` (see the module docstring)."""
    if not 0 <= alpha <= 1:
        raise AlignDepthError(f"the augmentation weight α must be in [0, 1], got {alpha}")
    if not triples:
        raise AlignDepthError("no safety-recovery triples: give (instruction, "
                              "harmful_response, refusal) records")
    if alpha < 1 and not benign:
        raise AlignDepthError("no benign anchor examples: give instruction/response pairs, "
                              "or set α = 1")
    rng = random.Random(seed)
    end = turn_end_ids(tokenizer, fmt)
    safety = []
    for t in triples:
        h_ids = list(tokenizer(t.harmful_response, add_special_tokens=False).input_ids)
        k = sample_k(rng, len(h_ids), max_k)
        ids, mask = encode_example(tokenizer, fmt, t.instruction, t.refusal,
                                   prefix_ids=h_ids[:k], end_ids=end)
        safety.append(Example(ids, mask, source=f"safety:k={k}"))
    anchor = [Example(*encode_example(tokenizer, fmt, p.instruction, p.response, p.system,
                                      end_ids=end), source="benign") for p in benign]
    n = len(safety) + len(anchor)
    for e in safety:
        e.weight = alpha * n / len(safety)
    for e in anchor:
        e.weight = (1 - alpha) * n / len(anchor) if anchor else 0.0
    return safety + anchor


def truncate_examples(examples: Sequence[Example], max_length: int | None
                      ) -> tuple[list[Example], int, int]:
    """Cut every example to ``max_length`` tokens.

    The response's tail goes first; an example whose prompt alone fills ``max_length``
    (no response token left to learn) is dropped. Returns ``(kept, n_cut, n_dropped)``.

    Raises:
        AlignDepthError: every example was dropped.
    """
    if max_length is None:
        return list(examples), 0, 0
    kept: list[Example] = []
    cut = 0
    for e in examples:
        if len(e.input_ids) <= max_length:
            kept.append(e)
        elif any(e.response_mask[:max_length]):
            kept.append(Example(e.input_ids[:max_length], e.response_mask[:max_length],
                                e.weight, None, e.source))
            cut += 1
    if not kept:
        shortest = min(e.response_mask.index(1) if 1 in e.response_mask else len(e.input_ids)
                       for e in examples)
        raise AlignDepthError(f"--max-length {max_length} is shorter than every prompt (the "
                              f"shortest has {shortest} tokens): raise --max-length")
    return kept, cut, len(examples) - len(kept)


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ``input_ids``, ``attention_mask``, ``response_mask`` ``(B, T)``;
    ``weight`` ``(B,)``; ``ref_logp`` ``(B, T-1)`` when every example has one."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attn = torch.zeros(len(examples), width, dtype=torch.long)
    resp = torch.zeros(len(examples), width, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        attn[i, :n] = 1
        resp[i, :n] = torch.tensor(e.response_mask)
    batch = {"input_ids": ids, "attention_mask": attn, "response_mask": resp,
             "weight": torch.tensor([e.weight for e in examples])}
    if all(e.ref_logp is not None for e in examples):
        ref = torch.zeros(len(examples), width - 1)
        for i, e in enumerate(examples):
            assert e.ref_logp is not None
            ref[i, :len(e.ref_logp)] = torch.tensor(e.ref_logp)
        batch["ref_logp"] = ref
    return batch


@torch.no_grad()
def attach_reference(model: Any, examples: Sequence[Example], pad_id: int,
                     batch_size: int = 16, show_progress: bool = False,
                     shard: tuple[int, int] = (0, 1)) -> None:
    """Store the (aligned) model's log-prob of every target token in each example.

    With ``shard = (rank, world)`` (several processes training together), this process
    computes every ``world``-th example from ``rank`` and the shares are gathered, so each
    process ends with every example's log-probs.
    """
    from aligndepth.training.losses import token_logprobs

    rank, world = shard
    mine = list(range(rank, len(examples), world))
    device = next(model.parameters()).device
    n_batches = (len(mine) + batch_size - 1) // batch_size
    with progress_bar("reference log-probs", n_batches, show_progress) as advance:
        for start in range(0, len(mine), batch_size):
            chunk = [examples[i] for i in mine[start:start + batch_size]]
            batch = collate(chunk, pad_id)
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
            lp = token_logprobs(logits, batch["input_ids"].to(device)).cpu()
            mask = batch["response_mask"][:, 1:]
            for i, e in enumerate(chunk):
                n = len(e.input_ids) - 1
                e.ref_logp = (lp[i, :n] * mask[i, :n]).tolist()
            advance()
    if world > 1:
        shares: list[Any] = [None] * world
        torch.distributed.all_gather_object(shares, {i: examples[i].ref_logp for i in mine})
        for share in shares:
            for i, ref in share.items():
                examples[i].ref_logp = ref
