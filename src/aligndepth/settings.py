"""What every generating run shares: :class:`RunSettings`, and :class:`SamplingParams`
(how a token is drawn). No torch at import, so the command line builds its options from
them."""

from __future__ import annotations

from dataclasses import dataclass, field

from aligndepth.errors import AlignDepthError
from aligndepth.options import option


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """What every generating run shares (keyword-only fields of the audit's and
    ``evaluate``'s configs).

    Args:
        limit: the first N records of each dataset; ``sample``: a seeded random N instead.
        seed: seeds sampling, subsets and each record's decoding seed.
        max_new_tokens: per answer (``None``: 512 on a real model, 64 on the organism).
        batch_size: prompts per batch.
        stop: extra stop strings.
        data_split: the split of dataset directories (``save_to_disk``, hub snapshots).
    """

    limit: int | None = field(default=None, metadata=option("Use only the first N prompts."))
    sample: int | None = field(default=None, metadata=option(
        "Use a seeded random subset of N prompts (as the papers do, e.g. ED: 200 harmful + "
        "200 safe); --seed picks it.", "--sample"))
    seed: int = field(default=0, metadata=option("Seed for sampling."))
    max_new_tokens: int | None = field(default=None, metadata=option(
        "Maximum new tokens per response (default 512 on a real pair, as the papers judge; "
        "64 on the organism)."))
    batch_size: int = field(default=32, metadata=option("Prompts per batch."))
    stop: tuple[str, ...] = field(default=(), metadata=option(
        "Text that ends a response (repeat). The plain template's instruction marker always "
        "stops the base model.", "--stop", many=True))
    data_split: str | None = field(default=None, metadata=option(
        "Split of a dataset directory (save_to_disk or hub snapshot), e.g. test (default: "
        "train, else the only split).", "--split", name="split"))

    def __post_init__(self) -> None:
        if (self.max_new_tokens is not None and self.max_new_tokens < 1) or self.batch_size < 1:
            raise AlignDepthError("max_new_tokens and batch_size must be at least 1")
        if self.limit is not None and self.sample is not None:
            raise AlignDepthError("--limit (the first N prompts) and --sample (a random N) "
                                  "exclude each other: give one")
        for n, name in ((self.limit, "limit"), (self.sample, "sample")):
            if n is not None and n < 1:
                raise AlignDepthError(f"--{name} must be at least 1, got {n}")
        if any(not s for s in self.stop):
            raise AlignDepthError("a stop string is empty: give --stop some text")


@dataclass(frozen=True)
class SamplingParams:
    """One decoding configuration.

    Args:
        temperature: 0 for greedy, else the softmax temperature.
        top_k: keep the k most likely tokens (0: off).
        top_p: keep the smallest set of tokens with probability >= top_p (1.0: off).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.temperature < float("inf"):  # also rejects NaN
            raise AlignDepthError(f"temperature must be a finite number >= 0, got "
                                  f"{self.temperature}")
        if self.top_k < 0:
            raise AlignDepthError(f"top_k must be >= 0 (0 turns it off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise AlignDepthError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def describe(self) -> dict[str, float]:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}


GREEDY = SamplingParams(temperature=0.0)
