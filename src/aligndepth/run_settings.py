"""What every run shares: :class:`RunSettings` (what a generating run reads),
:class:`SamplingParams` (how a token is drawn) and :class:`LoadConfig` (how a model
loads). No torch at import, so the command line builds its options from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aligndepth.config_options import fixed, option
from aligndepth.errors import AlignDepthError


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


DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class LoadConfig:
    """How to load models.

    Args:
        dtype: ``auto`` (bfloat16 on a GPU that supports it, else float32), ``float32``,
            ``bfloat16`` or ``float16``.
        device: ``auto`` (cuda, then mps, then cpu) or a torch device string; the whole
            model is moved there. Ignored when ``device_map`` is set.
        device_map: place the model across devices through accelerate (``auto``,
            ``balanced``, ``balanced_low_0``, ``sequential``, or one device such as
            ``cuda:1``), passed to ``from_pretrained(device_map=...)``; the model is then
            not moved with ``.to``. Wins over ``device`` when both are given. Needs
            accelerate.
        trust_remote_code: run model code shipped in the checkpoint (off by default).
        allow_pickle: accept ``.bin``/``.pt`` pickle checkpoints (off: safetensors only).
        revision: hub revision (ignored for local directories).
        served: a :class:`~aligndepth.engine.served.ServedConfig`: the model runs on that
            OpenAI-compatible server, and only its tokenizer and config load here (the
            directory needs no weights).
        threads: torch's CPU threads for the process once a model is on the CPU; ``0``:
            one thread for a model under
            :data:`~aligndepth.devices.SMALL_MODEL_PARAMETERS` (such a model gains little
            from more, keeps its speed beside other busy processes, and its float sums are
            the same on every machine), else torch's default.
    """

    dtype: str = field(default="auto", metadata=option(
        "auto (bfloat16 on a GPU that has it, else float32), float32, bfloat16, float16."))
    device: str = field(default="auto", metadata=option(
        "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps."))
    trust_remote_code: bool = field(default=False, metadata=option(
        "Run model code shipped with checkpoints."))
    allow_pickle: bool = field(default=False, metadata=option(
        "Accept pickle checkpoints (can run code)."))
    revision: str | None = field(default=None, metadata=fixed(
        "one revision cannot name every model of a command: pin a hub model by giving "
        "its downloaded snapshot directory (or set it from Python)"))
    device_map: str | None = field(default=None, metadata=option(
        "Place each model across the GPUs (and CPU) present through accelerate: auto, "
        "balanced, sequential. Overrides --device."))
    served: Any = field(default=None, metadata=fixed(
        "set by --engine openai and its options (--engine-url, --engine-model, "
        "--engine-option)"))
    threads: int = field(default=0, metadata=option(
        "Torch CPU threads for a model on the CPU; 0: one for a model under 50 M parameters "
        "(as fast, steady beside other busy processes, same sums on every machine), else "
        "torch's default."))

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise AlignDepthError(f"unknown dtype '{self.dtype}': use one of {', '.join(DTYPES)}")
        if self.threads < 0:
            raise AlignDepthError(f"--threads {self.threads} is negative: give a count, or 0 "
                                  "for the automatic choice")
        if self.device_map is not None and not self.device_map.strip():
            raise AlignDepthError("--device-map is empty: use auto, balanced, sequential "
                                  "or a device such as cuda:0")
