"""How trained weights are stored and updated, so that no update is lost to rounding.

A bfloat16 weight keeps 8 bits of mantissa: an update smaller than half the spacing
of bfloat16 numbers at the weight (1/512 to 1/256 of its size) rounds back to the weight
itself. At the papers' learning rate (2e-5) that is most updates, and every
update to a weight near 1 (norm scales). So a run in bfloat16 weights (``--dtype
bfloat16``, or ``auto`` on a GPU that has it) does not use the plain optimizer:

- **compensated** (the default for bfloat16 full fine-tuning): torch-optimi's AdamW (or
  SGD) with Kahan summation keeps, per weight, the part of the update the bfloat16 weight
  could not take (one more bfloat16 tensor: 10 bytes per parameter with AdamW instead of
  8) and adds it back at the next step. When training ends the weights are saved in
  float32 as weight + compensation, so the saved model holds every update;
- **master weights** (``--mixed-precision bf16``; the ``auto`` default under FSDP or
  DeepSpeed, where the weights are sharded and memory allows): float32 weights and
  optimizer state, computation autocast to bfloat16 (16 bytes per parameter);
- **pure** (``--pure-bf16``, only when asked, with a warning): the plain optimizer on
  bfloat16 weights, which loses the small updates.

``benchmarks/bench_train_precision.py`` measures the three against float32 (BENCHMARKS.md).
LoRA adapters are float32 (peft keeps them so over a bfloat16 base): nothing to compensate.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from aligndepth.errors import AlignDepthError
from aligndepth.training.config import TrainConfig, device_name, training_dtype

log = logging.getLogger(__name__)

#: transformers optimizer names -> the torch-optimi class that updates with compensation
COMPENSATED_OPTIMIZERS = {"adamw_torch": "AdamW", "adamw_torch_fused": "AdamW", "sgd": "SGD"}


@dataclass(frozen=True)
class Precision:
    """Args:
        dtype: the weights' dtype while training (``float32``, ``bfloat16``, ``float16``).
        autocast: ``no``, or ``bf16``/``fp16`` computation over float32 weights.
        compensated: Kahan-compensated updates (saved as float32 weight + compensation).
        pure: bfloat16 weights with the plain optimizer (``--pure-bf16``).
    """

    dtype: str
    autocast: str = "no"
    compensated: bool = False
    pure: bool = False

    def describe(self) -> str:
        if self.compensated:
            return (f"{self.dtype} weights, Kahan-compensated updates (torch-optimi), "
                    "saved as float32")
        if self.autocast != "no":
            return f"float32 master weights, {self.autocast} autocast"
        if self.pure:
            return f"{self.dtype} weights, plain updates (--pure-bf16)"
        return f"{self.dtype} weights"


def sharded_launch() -> bool:
    """Whether ``accelerate launch`` shards the weights (FSDP or DeepSpeed)."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes")
               for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"))


def choose_precision(config: TrainConfig, device: Any, *, bf16: bool | None = None,
                     sharded: bool | None = None) -> Precision:
    """How a run of (filled) ``config`` on ``device`` stores and updates its weights.

    ``bf16`` says whether the device computes in bfloat16 and ``sharded`` whether the
    weights are sharded across processes (default: ask the device and the environment).

    Raises:
        AlignDepthError: the device lacks the dtype; ``--pure-bf16`` on a run whose
            weights are not bfloat16; compensation asked of an optimizer without it;
            bfloat16 weights under FSDP/DeepSpeed (compensation needs the whole weight).
    """
    assert config.dtype is not None and config.optimizer is not None
    sharded = sharded_launch() if sharded is None else sharded
    dtype = str(training_dtype(config.dtype, device, bf16)).removeprefix("torch.")
    if config.mixed_precision != "no":
        return Precision("float32", config.mixed_precision)
    if config.pure_bf16:
        if dtype != "bfloat16":
            raise AlignDepthError(f"--pure-bf16: this run trains {dtype} weights on "
                                  f"{device_name(device)} (--dtype {config.dtype}): give "
                                  "--dtype bfloat16, or drop --pure-bf16")
        return Precision(dtype, pure=True)
    if dtype != "bfloat16" or config.lora is not None:
        return Precision(dtype)
    if sharded:
        if config.dtype == "auto":
            return Precision("float32", "bf16")  # sharded: float32 master weights fit
        raise AlignDepthError("--dtype bfloat16 under FSDP/DeepSpeed: compensated updates "
                              "need whole weights; use --mixed-precision bf16 (float32 master "
                              "weights, sharded) or --pure-bf16")
    if config.optimizer not in COMPENSATED_OPTIMIZERS:
        raise AlignDepthError(f"--optimizer {config.optimizer} has no compensated update for "
                              "bfloat16 weights: use adamw_torch or sgd, --mixed-precision "
                              "bf16 (float32 master weights), or --pure-bf16 (loses small "
                              "updates)")
    _optimi()
    return Precision(dtype, compensated=True)


def pure_bf16_warning(config: TrainConfig) -> str:
    """What ``--pure-bf16`` loses, in one line."""
    return (f"--pure-bf16: {config.optimizer} on bfloat16 weights rounds away every update "
            "smaller than 1/512 to 1/256 of the weight: at lr "
            f"{config.learning_rate:g} most weights, and norm scales near 1, never move "
            "(benchmarks/bench_train_precision.py); drop --pure-bf16 to keep every update")


def _optimi() -> Any:
    try:
        import optimi
    except ImportError:
        raise AlignDepthError("bfloat16 training compensates rounding with torch-optimi: pip "
                              "install 'aligndepth[train]' (or use --mixed-precision bf16)"
                              ) from None
    return optimi


def compensated_optimizer(optimizer: str, args: Any) -> tuple[type, dict[str, Any]]:
    """The torch-optimi class and keyword arguments (the Trainer's
    ``optimizer_cls_and_kwargs``) that update like ``optimizer`` under ``args``
    (``TrainingArguments``: learning rate, AdamW's betas and epsilon, weight decay), with
    Kahan summation."""
    cls = getattr(_optimi(), COMPENSATED_OPTIMIZERS[optimizer])
    kwargs: dict[str, Any] = {"lr": args.learning_rate, "weight_decay": args.weight_decay,
                              "kahan_sum": True}
    if cls.__name__ == "AdamW":
        kwargs.update(betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    return cls, kwargs


def fold_compensation(optimizer: Any) -> int:
    """Make every compensated weight float32 weight + compensation, in place (the saved
    model then holds every update), freeing each weight's optimizer state as it goes
    (training is over). Returns how many weights were folded."""
    import torch

    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
    folded = 0
    with torch.no_grad():
        for group in inner.param_groups:
            for param in group["params"]:
                comp = inner.state.get(param, {}).get("kahan_comp")
                if comp is None or comp.shape != param.shape:
                    continue
                param.data = param.data.float() + comp.float()
                del inner.state[param]
                folded += 1
    log.info("folded the rounding compensation into %d weights (saved as float32)", folded)
    return folded


def update_agreement(start: dict[str, Any], trained: dict[str, Any],
                     reference: dict[str, Any]) -> dict[str, float]:
    """How the weight change of ``trained`` (from ``start``) follows ``reference``'s
    (state dicts of the same model, any dtypes; compared in float64 over every weight).

    Returns ``cosine`` (of the two changes), ``changed`` (share of the weights ``trained``
    moved), ``changed_of_reference`` (of the weights ``reference`` moved, the share
    ``trained`` moved too) and ``norm_ratio`` (length of the change over ``reference``'s).
    """
    import torch

    def change(state: dict[str, Any]) -> torch.Tensor:
        return torch.cat([(state[k].double() - start[k].double()).flatten() for k in start
                          if start[k].is_floating_point()])

    moved, ref = change(trained), change(reference)
    ref_moved = ref != 0
    return {"cosine": float(torch.nn.functional.cosine_similarity(moved, ref, dim=0)),
            "changed": float((moved != 0).double().mean()),
            "changed_of_reference": float(((moved != 0) & ref_moved).sum()
                                          / ref_moved.sum().clamp(min=1)),
            "norm_ratio": float(moved.norm() / ref.norm().clamp(min=1e-300))}
