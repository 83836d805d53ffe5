"""What a fine-tuning run does: :class:`TrainConfig`, and how unset fields are filled.

Every field the user sets is used as given. Fields left ``None`` are filled by a
:class:`Recipe` (:func:`aligndepth.training.run.run_training` picks the organism's or
the real-model one) and then by :data:`DEFAULT_RECIPE`, so ``train_config.json`` always
records fully specified settings: what ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aligndepth.config_options import fixed, nested, option
from aligndepth.errors import AlignDepthError, did_you_mean

if TYPE_CHECKING:
    import torch

#: ``transformers`` learning-rate schedules offered on the command line.
LR_SCHEDULERS = ("constant_with_warmup", "linear", "cosine", "constant")
TRAIN_DTYPES = ("auto", "float32", "bfloat16", "float16")
MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass(frozen=True)
class BetaSchedule:
    """β per response position: ``betas[t-1]`` for the first positions, ``after`` later.

    The paper's default: β₁ = 0.5, β₂…β₅ = 2.0, then 0.1.
    """

    betas: tuple[float, ...] = field(default=(0.5, 2.0, 2.0, 2.0, 2.0), metadata=option(
        "constrained: β of response positions 1, 2, ... (comma-separated).", sep=",",
        what="the β schedule"))
    after: float = field(default=0.1, metadata=option(
        "constrained: β of later positions.", "--beta-after", name="beta_after"))

    def __post_init__(self) -> None:
        if not self.betas:
            raise AlignDepthError("the β schedule is empty: give at least one value, e.g. "
                                  "--betas 0.5,2,2,2,2")
        bad = [b for b in (*self.betas, self.after) if not 0 < b < float("inf")]
        if bad:
            raise AlignDepthError(f"every β must be > 0, got {bad[0]}: e.g. --betas "
                                  "0.5,2,2,2,2 --beta-after 0.1")

    @classmethod
    def uniform(cls, beta: float) -> BetaSchedule:
        return cls((beta,), beta)

    @classmethod
    def parse(cls, text: str, after: float) -> BetaSchedule:
        """From ``"0.5,2,2,2,2"``; raises a user error for anything else."""
        try:
            values = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise AlignDepthError(f"cannot read the β schedule '{text}': give comma-separated "
                                  "numbers, e.g. 0.5,2,2,2,2") from None
        return cls(values, after)

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """β for 1-based response ``positions`` (any shape; 0 = not a response token)."""
        import torch

        table = torch.tensor((*self.betas, self.after), device=positions.device)
        index = (positions - 1).clamp(min=0, max=len(self.betas))
        return table[index]


@dataclass(frozen=True)
class LoraSettings:
    """LoRA through peft: rank, scaling (default 2 × rank), dropout and which modules
    (``("all-linear",)``: every linear layer; a comma-separated text is split)."""

    r: int = field(default=8, metadata=option("LoRA rank.", "--lora-r", name="lora_r"))
    alpha: int | None = field(default=None, metadata=option(
        "LoRA scaling alpha (default 2 x rank).", "--lora-alpha", name="lora_alpha"))
    dropout: float = field(default=0.0, metadata=option(
        "LoRA dropout.", "--lora-dropout", name="lora_dropout"))
    target_modules: tuple[str, ...] = field(default=("all-linear",), metadata=option(
        "Modules LoRA adapts: all-linear, or names such as q_proj,k_proj,v_proj,o_proj.",
        "--lora-target-modules", name="lora_target_modules", sep=","))

    def __post_init__(self) -> None:
        if self.alpha is None:
            object.__setattr__(self, "alpha", 2 * self.r)
        if isinstance(self.target_modules, str):
            object.__setattr__(self, "target_modules", tuple(
                m.strip() for m in self.target_modules.split(",") if m.strip()))
        if self.r < 1 or (self.alpha or 0) <= 0 or not 0 <= self.dropout < 1:
            raise AlignDepthError(f"LoRA needs rank >= 1, alpha > 0 and 0 <= dropout < 1, got "
                                  f"r={self.r}, alpha={self.alpha}, dropout={self.dropout}")
        if not self.target_modules:
            raise AlignDepthError("--lora-target-modules is empty: name modules such as "
                                  "q_proj,v_proj, or use all-linear")

    @property
    def scaling(self) -> int:
        """The LoRA alpha (2 × rank unless given)."""
        return self.alpha if self.alpha is not None else 2 * self.r

    @property
    def peft_target_modules(self) -> str | list[str]:
        """What peft's ``LoraConfig(target_modules=...)`` takes."""
        modules = list(self.target_modules)
        return "all-linear" if modules == ["all-linear"] else modules


@dataclass(frozen=True)
class Recipe:
    """Defaults for the fields a user leaves unset."""

    optimizer: str = "adamw_torch"
    learning_rate: float = 2e-5
    warmup_steps: int = 10
    lr_scheduler: str = "constant_with_warmup"
    dtype: str = "auto"
    max_steps: int = 20
    #: training examples used when ``--limit`` is not given (``None``: all of them)
    examples: int | None = None


#: The real-model defaults: AdamW at 2e-5 with 10 warm-up steps (the papers' setting),
#: bfloat16 weights where the device has it, every example of the data.
DEFAULT_RECIPE = Recipe()


@dataclass(frozen=True)
class TrainConfig:
    """Args (``None``: filled by the recipe, see the module docstring):
        loss: ``sft`` or ``constrained`` (``run_training``: the kind's).
        learning_rate: peak learning rate.
        optimizer: a transformers optimizer name (``adamw_torch``, ``sgd``, ...).
        max_steps: optimiser steps; give this or ``epochs``, not both.
        epochs: passes over the data, turned into steps
            (``ceil(epochs · ceil(n / (batch_size · grad_accum · processes)))``).
        batch_size: examples per device per step (before accumulation).
        grad_accum: gradient accumulation steps.
        warmup_steps: linear learning-rate warm-up (the paper uses 10 for constrained).
        lr_scheduler: a transformers schedule (:data:`LR_SCHEDULERS`).
        dtype: weights, gradients and optimizer state: ``float32``, ``bfloat16``,
            ``float16`` (LoRA only) or ``auto`` (bfloat16 on a GPU that has it, else float32).
        mixed_precision: ``bf16``/``fp16``: autocast over float32 weights (the
            optimizer's master copy stays float32); ``no``: compute in ``dtype``.
        pure_bf16: update bfloat16 weights with the plain optimizer, which rounds away
            most small updates; by default bfloat16 full fine-tuning compensates the
            rounding (:mod:`aligndepth.training.precision`).
        gradient_checkpointing: recompute activations in the backward pass (memory for
            time; needed to fully fine-tune a 7B model on one 80 GB GPU).
        max_length: cut every example to this many tokens (the response's tail goes; an
            example whose prompt alone fills it is dropped); the counts are recorded.
        schedule: β per response position (constrained only).
        lora: train a LoRA adapter instead of all weights.
        seed: data order and initialisation of new weights.
        max_grad_norm: gradient clipping.
        dynamics_steps: steps (0 = before training) at which per-token loss, gradient
            norm and KL to the initial model are recorded on a probe batch (steps past
            the end are skipped).
        save_steps: save a resumable checkpoint (weights, optimizer, scheduler, RNG and
            data position) to ``OUT/checkpoints/`` every this many steps; 0: never. The
            last two are kept, and all are removed once the model is saved.
    """

    loss: str | None = field(default=None, metadata=fixed(
        "the training kind (sft, constrained, augment) picks it"))
    learning_rate: float | None = field(default=None, metadata=option(
        "Peak learning rate (default: on the organism AdamW 8e-5, 1e-4 for augment; AdamW "
        "2e-5 otherwise).", "--lr", name="lr"))
    optimizer: str | None = field(default=None, metadata=option(
        "transformers optimizer name, e.g. adamw_torch or sgd (default: see --lr)."))
    max_steps: int | None = field(default=None, metadata=option(
        "Optimiser steps (default: 20 for the attacks, 300 for benign and summarize, 200 "
        "for augment).", "--steps", name="steps"))
    epochs: float | None = field(default=None, metadata=option(
        "Train for this many passes over the data instead of --steps."))
    batch_size: int = field(default=10, metadata=option(
        "Examples per step per device (before accumulation).", "--batch-size",
        "--per-device-batch-size"))
    grad_accum: int = field(default=1, metadata=option("Gradient accumulation steps."))
    warmup_steps: int | None = field(default=None, metadata=option(
        "Learning-rate warm-up steps (default: 10; on the organism 5, and 0 for augment).",
        "--warmup", name="warmup"))
    lr_scheduler: str | None = field(default=None, metadata=option(
        "Learning-rate schedule after warm-up: constant_with_warmup (default), linear, "
        "cosine or constant."))
    dtype: str | None = field(default=None, metadata=option(
        "Weights, gradients and optimizer state in float32, bfloat16, float16 (--lora only) "
        "or auto: bfloat16 on a GPU that has it, else float32 (default; float32 on the "
        "organism)."))
    mixed_precision: str = field(default="no", metadata=option(
        "bf16 or fp16: autocast over float32 weights (float32 master copy; more memory "
        "than --dtype bfloat16); no: off."))
    pure_bf16: bool = field(default=False, metadata=option(
        "Update bfloat16 weights with the plain optimizer, which rounds away updates below "
        "half a bfloat16 step (most at lr 2e-5); default: compensated updates."))
    gradient_checkpointing: bool = field(default=False, metadata=option(
        "Recompute activations in the backward pass: less memory, ~30% more time (7B full "
        "fine-tuning)."))
    max_length: int | None = field(default=None, metadata=option(
        "Cut examples to N tokens (response tail first; an example whose prompt fills N is "
        "dropped); counts are printed and recorded."))
    schedule: BetaSchedule = field(default_factory=BetaSchedule, metadata=nested())
    lora: LoraSettings | None = field(default=None, metadata=nested(
        switch="--lora", help="Train a LoRA adapter (peft) instead of all weights."))
    seed: int = field(default=0, metadata=option(
        "Seed of the data order and of new weights."))
    max_grad_norm: float = field(default=1.0, metadata=option(
        "Clip the gradient to this global norm."))
    dynamics_steps: tuple[int, ...] = ()  # --dynamics, --dynamics-steps
    save_steps: int = field(default=0, metadata=option(
        "Save a resumable checkpoint every N steps (OUT/checkpoints; removed when training "
        "ends); 0: none."))

    def __post_init__(self) -> None:
        if self.loss is not None:
            from aligndepth.training.losses import loss_by_name

            loss_by_name(self.loss)
        if self.max_steps is not None and self.epochs is not None:
            raise AlignDepthError("give the training length as steps or as epochs, not both")
        if (self.max_steps is not None and self.max_steps < 1) or self.batch_size < 1 \
                or self.grad_accum < 1:
            raise AlignDepthError("max_steps, batch_size and grad_accum must be at least 1")
        if self.epochs is not None and not 0 < self.epochs < math.inf:
            raise AlignDepthError(f"--epochs must be a finite number > 0, got {self.epochs}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise AlignDepthError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.learning_rate is not None and not 0 < self.learning_rate < math.inf:
            raise AlignDepthError(f"the learning rate must be a finite number > 0, got "
                                  f"{self.learning_rate}")
        if self.optimizer is not None:
            from transformers.training_args import OptimizerNames

            names = [o.value for o in OptimizerNames]
            if self.optimizer not in names:
                raise AlignDepthError(f"unknown optimizer '{self.optimizer}'"
                                      f"{did_you_mean(self.optimizer, names)}; e.g. "
                                      "adamw_torch or sgd")
        _check_choice("--lr-scheduler", self.lr_scheduler, LR_SCHEDULERS)
        _check_choice("--dtype", self.dtype, TRAIN_DTYPES)
        _check_choice("--mixed-precision", self.mixed_precision, MIXED_PRECISION)
        if self.mixed_precision != "no" and self.dtype not in (None, "float32"):
            raise AlignDepthError(f"--mixed-precision {self.mixed_precision} autocasts over "
                                  f"float32 weights: drop --dtype {self.dtype} or use "
                                  "--dtype float32")
        if self.pure_bf16 and (self.lora is not None or self.mixed_precision != "no"
                               or self.dtype not in (None, "auto", "bfloat16")):
            raise AlignDepthError("--pure-bf16 is for full fine-tuning of bfloat16 weights "
                                  "(LoRA adapters and --mixed-precision train float32 weights)"
                                  ": use --dtype bfloat16 without --lora, or drop --pure-bf16")
        if self.dtype == "float16" and self.lora is None:
            raise AlignDepthError("full fine-tuning in float16 overflows without loss "
                                  "scaling: use --dtype bfloat16, --mixed-precision fp16, or "
                                  "--lora")
        if self.max_length is not None and self.max_length < 2:
            raise AlignDepthError(f"--max-length must be at least 2 tokens, got "
                                  f"{self.max_length}")
        if self.save_steps < 0:
            raise AlignDepthError(f"save_steps must be >= 0 (0: no checkpoints), got "
                                  f"{self.save_steps}")

    def filled(self, recipe: Recipe, loss: str | None = None) -> TrainConfig:
        """This config with every unset field taken from ``recipe`` (and ``loss``)."""
        if loss is not None and self.loss not in (None, loss):
            raise AlignDepthError(f"the config's loss '{self.loss}' contradicts the training "
                                  f"kind, which trains with '{loss}': drop one of them")
        dtype = self.dtype or ("float32" if self.mixed_precision != "no" else recipe.dtype)
        return replace(
            self, loss=self.loss or loss or "sft",
            learning_rate=self.learning_rate or recipe.learning_rate,
            optimizer=self.optimizer or recipe.optimizer,
            warmup_steps=recipe.warmup_steps if self.warmup_steps is None
            else self.warmup_steps,
            lr_scheduler=self.lr_scheduler or recipe.lr_scheduler, dtype=dtype,
            max_steps=recipe.max_steps if self.max_steps is None and self.epochs is None
            else self.max_steps)


@dataclass(frozen=True)
class PairInputs:
    """What ``sft`` and ``constrained`` train on (the keywords of ``run_training``):
    the organism's data for ``task``, or the pairs of ``data`` (read as ``data_format``),
    the first ``limit`` of them."""

    task: str = field(default="harmful", metadata=option(
        "Organism data when --data is not given: harmful, identity, backdoor, benign "
        "(house-style how-to answers) or summarize (a task the aligned model refuses)."))
    data: Path | None = field(default=None, metadata=option(
        "Training pairs: JSONL (instruction_pairs or harmful_pairs schema) or a published "
        "format (alpaca, samsum, gsm8k, ...), also as parquet, a save_to_disk directory or "
        "a hub snapshot (see --split)."))
    data_format: str | None = field(default=None, metadata=option(
        "The format of --data (default: detected, and printed): pairs (prompt or "
        "instruction, with response or output), alpaca, harmful_hexphi ({messages: [...]}), "
        "samsum, gsm8k, sql_create_context, ... (docs/training.md).", "--format"))
    limit: int | None = field(default=None, metadata=option(
        "Use the first N pairs (default: all; on the organism its recipe's 100)."))


@dataclass(frozen=True)
class AugmentInputs:
    """What ``augment`` trains on (the keywords of ``run_training``): safety triples
    and a benign anchor (the organism's by default), mixed as ``alpha`` · safety +
    (1 − ``alpha``) · utility, with harmful prefixes of k ≤ ``max_k`` tokens."""

    triples: Path | None = field(default=None, metadata=option(
        "Safety triples JSONL (instruction, harmful_response, refusal)."))
    anchor: Path | None = field(default=None, metadata=option(
        "Benign utility-anchor pairs (instruction, response)."))
    alpha: float = field(default=0.2, metadata=option(
        "α of Eq. 2: the weight of the safety-recovery objective against the benign "
        "anchor's (1 − α).", "--safety-weight", name="safety_weight"))
    max_k: int = field(default=100, metadata=option("Largest harmful prefix length k."))


def _check_choice(flag: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise AlignDepthError(f"{flag} {value}: unknown{did_you_mean(value, choices)}; "
                              f"choose from {', '.join(choices)}")


def training_dtype(name: str, device: Any, bf16: bool | None = None) -> Any:
    """The torch dtype to train in on ``device``; ``auto`` is bfloat16 where the device
    has it (a CUDA GPU of compute capability 8+), else float32. ``bf16`` says whether the
    device computes in bfloat16 (default: ask it).

    Raises:
        AlignDepthError: the device cannot compute in ``name``.
    """
    import torch

    if bf16 is None and name in ("auto", "bfloat16"):
        bf16 = bf16_supported(device)
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and bf16 else torch.float32
    if name == "bfloat16" and not bf16:
        raise AlignDepthError(f"--dtype bfloat16: {device_name(device)} has no bfloat16 "
                              "arithmetic: use --dtype float32 (or float16 with --lora)")
    return getattr(torch, name)


def bf16_supported(device: Any) -> bool:
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "mps":
        try:
            torch.ones(1, dtype=torch.bfloat16, device=device)
        except (RuntimeError, TypeError):
            return False
    return True


def device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return f"this GPU ({torch.cuda.get_device_name(device)})"
    return f"device '{device}'"
