"""Fine-tuning on the transformers ``Trainer``, with the project's losses plugged in.

The loss is chosen by name (:data:`aligndepth.training.losses.LOSSES`); everything else
is the standard stack, so accelerate (multi-GPU, FSDP or DeepSpeed through its config),
gradient accumulation, checkpointing and LoRA (peft) need no code here. For the
``constrained`` loss the initial model's per-token log-probs of the targets are computed
once before training (:func:`~aligndepth.training.data.attach_reference`), so no second
model is resident while training.

The result is a standard Hugging Face model directory (or a LoRA adapter directory whose
``adapter_config.json`` names the base) with the tokenizer, plus ``training_log.json``
(the trainer's log history) and ``train_config.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from aligndepth.errors import AlignDepthError, did_you_mean
from aligndepth.training.data import Example, attach_reference, collate
from aligndepth.training.losses import NEEDS_REFERENCE, BetaSchedule, LossInputs, loss_by_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA through peft: rank, scaling, dropout and which modules (all linear layers)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"


@dataclass(frozen=True)
class TrainConfig:
    """Args:
        loss: ``sft`` or ``constrained``.
        learning_rate: peak learning rate (constant after warm-up).
        max_steps: optimiser steps.
        batch_size: examples per device per step (before accumulation).
        grad_accum: gradient accumulation steps.
        warmup_steps: linear learning-rate warm-up (the paper uses 10 for constrained).
        schedule: β per response position (constrained only).
        lora: train a LoRA adapter instead of all weights.
        seed: data order and initialisation of new weights.
        max_grad_norm: gradient clipping.
        optimizer: a transformers optimizer name (``adamw_torch``, ``sgd``, ...).
        dynamics_steps: steps (0 = before training) at which per-token loss, gradient
            norm and KL to the initial model are recorded on a probe batch.
        save_steps: save a resumable checkpoint (weights, optimizer, scheduler, RNG and
            data position) to ``OUT/checkpoints/`` every this many steps; 0: never. The
            last two are kept, and all are removed once the model is saved.
    """

    loss: str = "sft"
    learning_rate: float = 1e-3
    max_steps: int = 20
    batch_size: int = 10
    grad_accum: int = 1
    warmup_steps: int = 0
    schedule: BetaSchedule = field(default_factory=BetaSchedule)
    lora: LoraSettings | None = None
    seed: int = 0
    max_grad_norm: float = 1.0
    optimizer: str = "adamw_torch"
    dynamics_steps: tuple[int, ...] = ()
    save_steps: int = 0

    def __post_init__(self) -> None:
        loss_by_name(self.loss)
        if self.max_steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise AlignDepthError("max_steps, batch_size and grad_accum must be at least 1")
        if self.warmup_steps < 0 or not 0 < self.learning_rate < float("inf"):
            raise AlignDepthError(f"warmup_steps must be >= 0 and the learning rate a finite "
                                  f"number > 0, got {self.learning_rate}")
        from transformers.training_args import OptimizerNames

        names = [o.value for o in OptimizerNames]
        if self.optimizer not in names:
            raise AlignDepthError(f"unknown optimizer '{self.optimizer}'"
                                  f"{did_you_mean(self.optimizer, names)}; e.g. adamw_torch "
                                  "or sgd")
        if self.save_steps < 0:
            raise AlignDepthError(f"save_steps must be >= 0 (0: no checkpoints), got "
                                  f"{self.save_steps}")


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
    if resume and not found and not (root.exists() and any(root.iterdir())):
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
    target: Any = settings.target_modules
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=target if isinstance(target, str) else list(target),
                        task_type="CAUSAL_LM")
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

    from transformers import TrainingArguments

    from aligndepth.prompts import pad_token_id

    if not examples:
        raise AlignDepthError("the training dataset is empty: give at least one example")
    out = Path(out_dir)
    checkpoint = resume_point(out, resume)
    pad = pad_token_id(tokenizer) if pad_id is None else pad_id
    reference_seconds = 0.0
    if config.loss in NEEDS_REFERENCE:
        t0 = time.perf_counter()
        model.eval()
        attach_reference(model, examples, pad, batch_size=config.batch_size,
                         show_progress=show_progress)
        reference_seconds = time.perf_counter() - t0
    tracker = None
    if config.dynamics_steps:
        from aligndepth.training.dynamics import TokenDynamics

        tracker = TokenDynamics(model, examples[:8], pad)
    if config.lora is not None:
        model = _with_lora(model, config.lora)
    model.train()
    use_cpu = not torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"), max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps, lr_scheduler_type="constant_with_warmup",
        weight_decay=0.0, max_grad_norm=config.max_grad_norm, logging_steps=1,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500, save_total_limit=2, report_to=[],
        seed=config.seed, data_seed=config.seed,
        remove_unused_columns=False, disable_tqdm=not show_progress, use_cpu=use_cpu,
        dataloader_num_workers=0, optim=config.optimizer,
        bf16=not use_cpu and torch.cuda.is_bf16_supported())
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=_Examples(examples),
        data_collator=lambda batch: collate(batch, pad), loss_name=config.loss,
        schedule=config.schedule)
    if not show_progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if tracker is not None:
        from aligndepth.training.dynamics import dynamics_callback

        trainer.add_callback(dynamics_callback(tracker, config.dynamics_steps))
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    source_generation = Path(base_source) / "generation_config.json" if base_source else None
    if config.lora is None and source_generation is not None and source_generation.is_file():
        # the trained model stops exactly as its source did (e.g. Llama-3's eot and eos)
        shutil.copyfile(source_generation, out / "generation_config.json")
    if config.lora is not None and base_source:
        _pin_adapter_base(out, base_source)
    if tracker is not None:
        from aligndepth.training.dynamics import plot_dynamics

        tracker.save(out / "dynamics.json")
        plot_dynamics(tracker.records, out / "dynamics.png")
    history = list(trainer.state.log_history)
    (out / "training_log.json").write_text(json.dumps(history, indent=2))
    (out / "train_config.json").write_text(json.dumps(
        {**asdict(config), **(describe or {}), "examples": len(examples),
         "base_source": base_source,
         "reference_seconds": reference_seconds}, indent=2, default=str))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the model is saved
    return {"out": out, "log": history, "reference_seconds": reference_seconds}


def _pin_adapter_base(out: Path, base_source: str) -> None:
    """Make the adapter name its base model by a path that loads anywhere on this disk."""
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = base_source
    cfg_path.write_text(json.dumps(cfg, indent=2))
