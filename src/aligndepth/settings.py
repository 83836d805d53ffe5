"""What every generating run shares: :class:`RunSettings` (no torch at import, so the
command line can build its options from it)."""

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
