"""What every experiment shares: the models, the judge, and decoding helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aligndepth.generation import SamplingParams, generate
from aligndepth.judges.base import Judge, Verdict
from aligndepth.models import LoadedModel, ModelPair
from aligndepth.prompts import PromptFormat, pad_token_id


@dataclass
class Setup:
    """Models, judge and shared settings for a set of experiments.

    ``organism`` is the organism directory when running on the organism (it supplies the
    default data and the exact judge), else ``None``.
    """

    pair: ModelPair
    judge: Judge
    organism: Path | None = None
    seed: int = 0
    batch_size: int = 32
    max_new_tokens: int = 64
    show_progress: bool = True


def stop_ids(tokenizer: Any) -> list[int]:
    """End-of-turn and end-of-text ids the tokenizer knows (EOS plus common turn ends)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for tok in ("</s>", "<|end|>", "<|eot_id|>", "<|im_end|>", "<end_of_turn>",
                "<|endoftext|>"):
        if tok in vocab:
            ids.add(int(vocab[tok]))
    return sorted(ids)


def encode_with_prefix(model: LoadedModel, fmt: PromptFormat, instruction: str,
                       prefix_ids: Sequence[int] = ()) -> list[int]:
    """Prompt ids with the first response tokens (``prefix_ids``) already in place."""
    return fmt.encode(model.tokenizer, instruction) + list(prefix_ids)


def complete(setup: Setup, model: LoadedModel, prompts: Sequence[Sequence[int]],
             params: SamplingParams | Sequence[SamplingParams], seed: int) -> list[list[int]]:
    """Decode continuations; returns the new token ids per prompt (stop token removed)."""
    tok = model.tokenizer
    return generate(model.model, prompts, params, max_new_tokens=setup.max_new_tokens,
                    stop_ids=stop_ids(tok), pad_id=pad_token_id(tok), seed=seed,
                    batch_size=setup.batch_size)


def prefixed_prompt(model: LoadedModel, fmt: PromptFormat, instruction: str, prefix: str
                    ) -> tuple[list[int], list[int]]:
    """Prompt ids continuing ``prefix`` in the response, and the ids of the prefix itself
    (empty when the template does not keep the prompt as a prefix of itself)."""
    ids = fmt.encode(model.tokenizer, instruction, prefix)
    if not prefix:
        return ids, []
    bare = fmt.encode(model.tokenizer, instruction)
    if ids[: len(bare)] == bare:
        return ids, ids[len(bare):]
    return ids, []


def decode(model: LoadedModel, ids: Sequence[int]) -> str:
    return str(model.tokenizer.decode(list(ids), skip_special_tokens=True))


def judged(setup: Setup, instructions: Sequence[str], texts: Sequence[str]) -> list[Verdict]:
    return setup.judge.judge(instructions, texts)


def rate(records: Sequence[dict[str, Any]]) -> float:
    """Share of records whose verdict is harmful (0.0 for none)."""
    return sum(bool(r["verdict"]["harmful"]) for r in records) / len(records) if records else 0.0
