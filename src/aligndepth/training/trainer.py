"""Fine-tuning on the transformers ``Trainer``, with the project's losses plugged in.

The loss is chosen by name (:data:`aligndepth.training.losses.LOSSES`); everything else
is the standard stack (gradient accumulation, activation checkpointing, resumable
checkpoints, LoRA through peft). Under ``accelerate launch`` (several processes, DDP;
docs/training.md) the code is the same: the model is loaded on the CPU and placed by the
Trainer on each rank's device, the batch is per device, and only the main process saves
(``trainer.save_model``), writes the logs and removes the checkpoints. For the
``constrained`` loss the initial model's per-token log-probs of the targets are computed
once before training (:func:`~aligndepth.training.data.attach_reference`; each rank a
share, then gathered), so no second model is resident while training.

The result is a standard Hugging Face model directory (or a LoRA adapter directory whose
``adapter_config.json`` names the base) with the tokenizer, plus ``training_log.json``
(the trainer's log history) and ``train_config.json``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from aligndepth.errors import AlignDepthError
from aligndepth.training.config import (
    DEFAULT_RECIPE,
    LoraSettings,
    TrainConfig,
)
from aligndepth.training.data import Example, attach_reference, collate, truncate_examples
from aligndepth.training.losses import NEEDS_REFERENCE, BetaSchedule, LossInputs, loss_by_name
from aligndepth.training.precision import (
    Precision,
    choose_precision,
    compensated_optimizer,
    fold_compensation,
    pure_bf16_warning,
)

__all__ = ["LoraSettings", "TrainConfig", "resume_point", "train"]

log = logging.getLogger(__name__)


def _step_of(checkpoint: Path) -> int:
    tail = checkpoint.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def resume_point(out: str | Path, resume: bool) -> Path | None:
    """The checkpoint a run into ``out`` continues from, or None for a fresh start.

    Raises:
        AlignDepthError: ``out`` is in use and there is nothing to resume (or resuming
            was not asked for).
    """
    from aligndepth.locking import LOCK_NAME

    root = Path(out)
    if root.exists() and not root.is_dir():
        raise AlignDepthError(f"--out '{root}' is a file, not a directory: choose a directory")
    found = sorted((root / "checkpoints").glob("checkpoint-*"), key=_step_of)
    if resume and found:
        return found[-1]
    if resume and not found and not (root.exists()
                                     and any(p.name != LOCK_NAME for p in root.iterdir())):
        raise AlignDepthError(f"nothing to resume in '{root}': it holds no interrupted run "
                              "(drop --resume to start training there)")
    if root.exists() and any(p.name != LOCK_NAME for p in root.iterdir()):
        if found:
            raise AlignDepthError(f"'{root}' holds checkpoints of an unfinished run: pass "
                                  "--resume to continue it, or choose a new --out directory")
        if resume:
            raise AlignDepthError(f"nothing to resume in '{root}': it has no checkpoints "
                                  "(train with --save-steps N to write them)")
        raise AlignDepthError(f"'{root}' is not empty: choose a new --out directory")
    return None


class _Examples(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


def _trainer_class() -> Any:
    from transformers import Trainer

    class LossTrainer(Trainer):  # type: ignore[misc]
        """``Trainer`` whose loss is one of the project's losses."""

        def __init__(self, *args: Any, loss_name: str, schedule: BetaSchedule, **kw: Any):
            super().__init__(*args, **kw)
            self.loss_fn = loss_by_name(loss_name)
            self.schedule = schedule

        def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor],
                         return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            from aligndepth.training.losses import token_logprobs

            out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            batch = LossInputs(token_logprobs(out.logits, inputs["input_ids"]),
                               inputs["response_mask"][:, 1:], inputs.get("ref_logp"),
                               inputs.get("weight"))
            loss = self.loss_fn(batch, self.schedule)
            return (loss, out) if return_outputs else loss

    return LossTrainer


def _with_lora(model: Any, settings: LoraSettings) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise AlignDepthError("LoRA needs peft: pip install 'aligndepth[train]'") from None
    config = LoraConfig(r=settings.r, lora_alpha=settings.scaling, lora_dropout=settings.dropout,
                        target_modules=settings.peft_target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def train(model: Any, tokenizer: Any, examples: Sequence[Example], config: TrainConfig,
          out_dir: str | Path, *, base_source: str = "", show_progress: bool = True,
          pad_id: int | None = None, resume: bool = False,
          describe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune ``model`` on ``examples`` and save it (or its adapter) to ``out_dir``.

    With ``resume``, a run interrupted after writing checkpoints (``config.save_steps``)
    continues from the last one and ends with the model an uninterrupted run would have
    (dynamics are recorded only for the steps that run after resuming). ``describe``
    adds fields (what was trained, on which data) to ``train_config.json``.

    Returns ``{"out": path, "log": log_history, "reference_seconds": float}``.
    """
    import time

    from aligndepth.prompts import pad_token_id

    if not examples:
        raise AlignDepthError("the training dataset is empty: give at least one example")
    out = Path(out_dir)
    checkpoint = resume_point(out, resume)
    config = config.filled(DEFAULT_RECIPE)
    examples, cut, dropped = truncate_examples(examples, config.max_length)
    epochs = config.epochs  # recorded; the run itself counts the steps they make
    device = training_device(model)
    config, model, precision = _settle(config, model, len(examples), device)
    warnings = schedule_warnings(config) + ([pure_bf16_warning(config)] if precision.pure
                                            else [])
    for warning in warnings:
        log.warning("%s", warning)
    if config.dynamics_steps and world_size() > 1:
        raise AlignDepthError("--dynamics measures in one process: drop it, or train without "
                              "accelerate launch")
    pad = pad_token_id(tokenizer) if pad_id is None else pad_id
    args = _training_arguments(config, out, show_progress, device)  # sets up the ranks
    reference_seconds = 0.0
    if config.loss in NEEDS_REFERENCE:
        t0 = time.perf_counter()
        model.eval()
        if _device_of(model) != args.device:
            model = model.to(args.device)  # this rank's own device, where it will train
        attach_reference(model, examples, pad, batch_size=config.batch_size,
                         show_progress=show_progress and is_main_process(),
                         shard=(process_index(), world_size()))
        reference_seconds = time.perf_counter() - t0
    tracker = None
    if config.dynamics_steps:
        from aligndepth.training.dynamics import TokenDynamics

        tracker = TokenDynamics(model, examples[:8], pad)
    if config.lora is not None:
        model = _with_lora(model, config.lora)
    model.train()
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=_Examples(examples),
        data_collator=lambda batch: collate(batch, pad), loss_name=config.loss,
        schedule=config.schedule, optimizer_cls_and_kwargs=compensated_optimizer(
            str(config.optimizer), args) if precision.compensated else None)
    if not show_progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if tracker is not None:
        from aligndepth.training.dynamics import dynamics_callback

        trainer.add_callback(dynamics_callback(tracker, config.dynamics_steps))
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if precision.compensated:
        fold_compensation(trainer.optimizer)  # the saved float32 weights hold every update
    trainer.save_model(str(out))  # the main process writes; every rank takes part
    trainer.accelerator.wait_for_everyone()
    history = list(trainer.state.log_history)
    result = {"out": out, "log": history, "reference_seconds": reference_seconds,
              "config": config, "truncated_examples": cut, "dropped_examples": dropped,
              "warnings": warnings, "precision": precision.describe()}
    if not trainer.is_world_process_zero():
        return result
    (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; train_config.json says it
    tokenizer.save_pretrained(out)
    source_generation = Path(base_source) / "generation_config.json" if base_source else None
    if config.lora is None and source_generation is not None and source_generation.is_file():
        # the trained model stops exactly as its source did (e.g. Llama-3's eot and eos)
        shutil.copyfile(source_generation, out / "generation_config.json")
    base_reference = portable_base(base_source, out)
    if config.lora is not None and base_source:
        _pin_adapter_base(out, base_reference)
    if tracker is not None:
        from aligndepth.training.dynamics import plot_dynamics

        tracker.save(out / "dynamics.json")
        plot_dynamics(tracker.records, out / "dynamics.png")
    (out / "training_log.json").write_text(json.dumps(history, indent=2))
    (out / "train_config.json").write_text(json.dumps(
        {**asdict(config), "epochs": epochs, **(describe or {}), "examples": len(examples),
         "truncated_examples": cut, "dropped_examples": dropped, "base_source": base_reference,
         "base_source_path": base_source if Path(base_source).is_dir() else None,
         "device": str(args.device), "processes": world_size(),
         "precision": precision.describe(),
         "reference_seconds": reference_seconds, "warnings": warnings}, indent=2,
        default=str))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the model is saved
    return result


def _device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


def world_size() -> int:
    """Processes training together (``accelerate launch``, ``torchrun``); 1 alone."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def process_index() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Whether this process writes files (rank 0, or the only process)."""
    return process_index() == 0


def training_device(model: Any) -> torch.device:
    """Where this process trains: the model's device alone; under a multi-process launch
    this rank's GPU (``LOCAL_RANK``), or the CPU for ``accelerate launch --cpu``."""
    import os

    if world_size() == 1:
        return _device_of(model)
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if torch.cuda.is_available() and not use_cpu:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def schedule_warnings(config: TrainConfig) -> list[str]:
    """What the learning-rate schedule does that a user may not expect: a warm-up as long
    as the run never reaches the peak learning rate."""
    assert config.max_steps is not None and config.warmup_steps is not None
    if config.warmup_steps and config.warmup_steps >= config.max_steps:
        # linear warm-up: step k (from 0) runs at k / warmup of the peak
        reached = (config.max_steps - 1) / config.warmup_steps
        return [f"the {config.warmup_steps}-step warm-up is not shorter than the "
                f"{config.max_steps}-step run: the last step's learning rate is "
                f"{reached:.0%} of {config.learning_rate:g} (pass --warmup below --steps, "
                "or more --steps)"]
    return []


def _settle(config: TrainConfig, model: Any, n_examples: int,
            device: torch.device) -> tuple[TrainConfig, Any, Precision]:
    """Fix what depends on the model, device and data: the precision the model trains in
    (cast if it was loaded in another dtype), the step count of an ``epochs`` run, the
    dynamics steps."""
    precision = choose_precision(config, device)
    dtype = getattr(torch, precision.dtype)
    if config.mixed_precision == "fp16" and device.type != "cuda":
        raise AlignDepthError("--mixed-precision fp16 needs a CUDA GPU: use bf16 on this "
                              f"device ({device})")
    if next(model.parameters()).dtype != dtype:
        log.info("casting the model to %s for training", dtype)
        model = model.to(dtype)
    steps = config.max_steps
    if steps is None:
        assert config.epochs is not None
        per_step = config.batch_size * config.grad_accum * world_size()
        steps = max(1, math.ceil(config.epochs * math.ceil(n_examples / per_step)))
    dynamics = tuple(s for s in config.dynamics_steps if s <= steps)
    return replace(config, max_steps=steps, epochs=None, dtype=precision.dtype,
                   mixed_precision=precision.autocast, dynamics_steps=dynamics), model, precision


def _training_arguments(config: TrainConfig, out: Path, show_progress: bool,
                        device: torch.device) -> Any:
    from dataclasses import fields as dataclass_fields

    from transformers import TrainingArguments

    # transformers 5.x renamed gradient to activation checkpointing; take what is there
    names = {f.name for f in dataclass_fields(TrainingArguments)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names \
        else "gradient_checkpointing"
    checkpointing: dict[str, Any] = {ckpt: config.gradient_checkpointing,
                                     f"{ckpt}_kwargs": {"use_reentrant": False}}
    assert config.max_steps is not None and config.learning_rate is not None
    assert config.warmup_steps is not None and config.lr_scheduler is not None
    assert config.optimizer is not None, "train() fills every field before this"
    return TrainingArguments(
        output_dir=str(out / "checkpoints"), max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps, lr_scheduler_type=config.lr_scheduler,
        weight_decay=0.0, max_grad_norm=config.max_grad_norm, logging_steps=1,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500, save_total_limit=2, report_to=[],
        seed=config.seed, data_seed=config.seed,
        remove_unused_columns=False, disable_tqdm=not show_progress,
        use_cpu=device.type == "cpu", dataloader_num_workers=0, optim=config.optimizer,
        ddp_find_unused_parameters=False,
        bf16=config.mixed_precision == "bf16", fp16=config.mixed_precision == "fp16",
        **checkpointing)


def portable_base(base_source: str, out: Path) -> str:
    """How the output names its base: a local directory by its path relative to ``out``
    (``../models/chat``; always starting with ``.``, which no hub id does), so the run
    and its base move together; a hub id as it is."""
    import os

    if not base_source or not Path(base_source).is_dir():
        return base_source
    relative = os.path.relpath(Path(base_source).resolve(), out.resolve())
    return relative if relative.startswith(".") else os.path.join(".", relative)


def _pin_adapter_base(out: Path, base_source: str) -> None:
    """Make the adapter name its base model (see :func:`portable_base`)."""
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = base_source
    cfg_path.write_text(json.dumps(cfg, indent=2))
