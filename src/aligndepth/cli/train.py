"""``aligndepth train sft|constrained|augment``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.app import Quiet, train_app
from aligndepth.cli.config_file import ConfigFile, write_run_config
from aligndepth.cli.fields import field_parameters, field_values, with_parameters
from aligndepth.cli.shared_options import (
    DataSplit,
    Device,
    JudgeName,
    JudgeOptions,
    _judge_options,
)
from aligndepth.errors import AlignDepthError
from aligndepth.training.config import BetaSchedule, LoraSettings, TrainConfig

# -- training -----------------------------------------------------------------------------

def _train(kind: str, *, model: str | None, out: Path, task: str, data: Path | None,
           limit: int | None, betas: str, beta_after: float, lora: bool,
           device: str, quiet: bool, split: str | None = None, data_format: str | None = None,
           dynamics: bool = False, dynamics_steps: str | None = None, evaluate: bool = False,
           eval_data: list[str] | None = None, eval_max_new_tokens: int | None = None,
           judge: str | None = None, judge_option: list[str] | None = None,
           eval_split: str | None = None, allow_overlap: bool = False,
           resume: bool = False, triples: Path | None = None,
           anchor: Path | None = None, safety_weight: float = 0.2, max_k: int = 100,
           config_file: Path | None = None, ctx: Any = None, **options: Any) -> None:
    """Train ``kind``; ``options`` are the :class:`TrainConfig` fields' own options."""
    from aligndepth.cli.evaluate import _bare_data, parse_data
    from aligndepth.evaluation.tasks import TRAINING_TASKS
    from aligndepth.models import LoadConfig
    from aligndepth.training.run import check_task, run_training

    check_task(task)
    given = [p.name for p in field_parameters(LoraSettings)
             if options.get(p.name, p.default) != p.default]
    if given and not lora:
        raise AlignDepthError(f"--{given[0].replace('_', '-')} needs --lora (train a LoRA "
                              "adapter)")
    lora_settings = LoraSettings(**field_values(LoraSettings, options)) if lora else None
    config = TrainConfig(**field_values(TrainConfig, options),
                         schedule=BetaSchedule.parse(betas, beta_after), lora=lora_settings,
                         dynamics_steps=_dynamics_steps(dynamics, dynamics_steps))
    result = run_training(kind, model=model, out=out, task=task, data=data, triples=triples,
                          anchor=anchor, alpha=safety_weight, limit=limit, config=config,
                          max_k=max_k, load=LoadConfig(device=device), data_split=split,
                          data_format=data_format,
                          show_progress=not quiet, evaluate=evaluate, resume=resume,
                          eval_data=_bare_data(parse_data(eval_data), TRAINING_TASKS[
                              "harmful" if kind == "augment" else task]) or None,
                          eval_max_new_tokens=eval_max_new_tokens, judge=judge,
                          judge_options=_judge_options(judge_option), eval_split=eval_split,
                          allow_overlap=allow_overlap)
    if "report" not in result:
        return  # another rank of a multi-process run: the main process reports
    write_run_config(ctx, out)
    losses = [h["loss"] for h in result["log"] if "loss" in h]
    used = result["config"]
    typer.echo(f"trained {used.loss} ({used.optimizer}, lr {used.learning_rate:g}, "
               f"{used.max_steps} steps, {result.get('precision', used.dtype)}) on "
               f"{result['examples']} examples"
               f"{_of_available(result['data'])}; loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    for warning in result.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    if "format" in result["data"]:
        how = "given" if result["data"]["format_given"] else "detected"
        typer.echo(f"data: {result['data']['file']} read as {result['data']['format']} ({how})")
    if result["truncated_examples"] or result["dropped_examples"]:
        typer.echo(f"--max-length {used.max_length}: {result['truncated_examples']} examples "
                   f"cut, {result['dropped_examples']} dropped (prompt alone too long)")
    if result["reference_seconds"]:
        typer.echo(f"reference log-probs computed once in {result['reference_seconds']:.1f} s")
    if "eval" in result:
        from aligndepth.cli.evaluate import print_evaluation

        print_evaluation(result["eval"], out / "eval")
    typer.echo(f"report: {result['report']}")


def _of_available(data: dict[str, Any]) -> str:
    """`` (the first 100 of 2000 pairs, --limit 100)`` when a limit left pairs out."""
    limit, available = data.get("limit"), data.get("available")
    if limit is None or available is None or limit >= available:
        return ""
    return f" (the first {limit} of {available} pairs, --limit {limit})"


#: Steps at which ``--dynamics`` measures (those past the run's end are skipped).
DYNAMICS_STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _dynamics_steps(dynamics: bool, steps: str | None) -> tuple[int, ...]:
    """``--dynamics`` (the default steps) or ``--dynamics-steps 0,5,20`` (those)."""
    if steps is None:
        return DYNAMICS_STEPS if dynamics else ()
    try:
        values = tuple(sorted({int(v) for v in steps.split(",") if v.strip()}))
    except ValueError:
        values = ()
    if not values or values[0] < 0:
        raise AlignDepthError(f"--dynamics-steps '{steps}': give comma-separated step "
                              "numbers >= 0, e.g. 0,5,20")
    return values
TrainModel = Annotated[str | None, typer.Option("--model", help="Model to fine-tune: local "
                                                "directory or hub id (default: the organism's "
                                                "aligned model).")]
TrainOut = Annotated[Path, typer.Option(help="New directory for the trained model (or LoRA "
                                        "adapter), training_log.json and train_config.json.")]
Task = Annotated[str, typer.Option(help="Organism data when --data is not given: harmful, "
                                   "identity, backdoor, benign (house-style how-to answers) "
                                   "or summarize (a task the aligned model refuses).")]
TrainData = Annotated[Path | None, typer.Option(help="Training pairs: JSONL (instruction_pairs "
                                                "or harmful_pairs schema) or a published "
                                                "format (alpaca, samsum, gsm8k, ...), also "
                                                "as parquet, a save_to_disk directory or a "
                                                "hub snapshot (see --split).")]
TrainFormat = Annotated[str | None, typer.Option(
    "--format", help="The format of --data (default: detected, and printed): pairs (prompt or "
    "instruction, with response or output), alpaca, harmful_hexphi ({messages: [...]}), "
    "samsum, gsm8k, sql_create_context, ... (docs/training.md).")]
TrainLimit = Annotated[int | None, typer.Option(help="Use the first N pairs (default: all; "
                                                "on the organism its recipe's 100).")]
Betas = Annotated[str, typer.Option(help="constrained: β of response positions 1, 2, ... "
                                    "(comma-separated).")]
BetaAfter = Annotated[float, typer.Option(help="constrained: β of later positions.")]
Lora = Annotated[bool, typer.Option(help="Train a LoRA adapter (peft) instead of all weights.")]
Evaluate = Annotated[bool, typer.Option(help="Then evaluate the trained model for its task "
                                        "as `aligndepth evaluate` does (harmful rate; "
                                        "with/without trigger or persona; ROUGE utility "
                                        "and refusals for benign tasks) into OUT/eval and "
                                        "eval.json. A real model needs --eval-data.")]
EvalDataOpt = Annotated[list[str] | None, typer.Option(
    "--eval-data", help="With --evaluate: TASK=FILE (repeat) or FILE, the held-out data "
    "of each evaluated task (harmful=FILE for the harmful rates); default on the "
    "organism: its held-out sets.")]
EvalMaxNew = Annotated[int | None, typer.Option(help="With --evaluate: maximum new tokens "
                                                "per answer (default 512; 64 on the "
                                                "organism).")]
EvalSplit = Annotated[str | None, typer.Option(help="With --evaluate: the split of --eval-data "
                                              "dataset directories (default: test for the "
                                              "utility tasks).")]
AllowOverlap = Annotated[bool, typer.Option(help="With --evaluate: evaluate even on prompts "
                                            "the model was trained on (refused by default).")]
Resume = Annotated[bool, typer.Option(help="Continue an interrupted run in --out from its "
                                      "last checkpoint (same command, plus --resume).")]
Dynamics = Annotated[bool, typer.Option(help="Record per-position loss, gradient norm and KL "
                                        "to the initial model during training "
                                        "(dynamics.json, dynamics.png; SPEC 1.3) at steps "
                                        "0, 1, 2, 5, 10, 20, 50, ...")]
DynamicsSteps = Annotated[str | None, typer.Option(help="Record the dynamics at these steps "
                                                   "instead (comma-separated, e.g. 0,5,20).")]


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


#: Options every training command takes: the TrainConfig fields' own (generated from the
#: dataclass), then LoRA (LoraSettings'), dynamics, device, evaluation, resume and config.
COMMON = [
    *field_parameters(TrainConfig),
    _keyword("lora", Lora, False), *field_parameters(LoraSettings),
    _keyword("device", Device, "auto"), _keyword("dynamics", Dynamics, False),
    _keyword("dynamics_steps", DynamicsSteps, None), _keyword("evaluate", Evaluate, False),
    _keyword("eval_data", EvalDataOpt, None), _keyword("eval_max_new_tokens", EvalMaxNew, None),
    _keyword("judge", JudgeName, None), _keyword("judge_option", JudgeOptions, None),
    _keyword("eval_split", EvalSplit, None), _keyword("allow_overlap", AllowOverlap, False),
    _keyword("resume", Resume, False), _keyword("config_file", ConfigFile, None),
    _keyword("quiet", Quiet, False)]


@train_app.command("sft")
@with_parameters(COMMON)
def train_sft(ctx: typer.Context, model: TrainModel = None,
              out: TrainOut = Path("runs/train-sft"),
              task: Task = "harmful", data: TrainData = None, split: DataSplit = None,
              limit: TrainLimit = None, data_format: TrainFormat = None,
              **options: Any) -> None:
    """Plain fine-tuning (loss on response tokens): the fine-tuning attacks' baseline."""
    _train("sft", ctx=ctx, model=model, out=out, task=task, data=data, split=split,
           limit=limit, data_format=data_format, betas="0.5,2,2,2,2", beta_after=0.1, **options)


@train_app.command("constrained")
@with_parameters(COMMON)
def train_constrained(ctx: typer.Context, model: TrainModel = None,
                      out: TrainOut = Path("runs/train-constrained"),
                      task: Task = "harmful", data: TrainData = None,
                      split: DataSplit = None, limit: TrainLimit = None,
                      data_format: TrainFormat = None, betas: Betas = "0.5,2,2,2,2",
                      beta_after: BetaAfter = 0.1,
                      **options: Any) -> None:
    """Token-wise constrained fine-tuning (SPEC 3.2): the first response tokens are held
    near the initial model; its log-probs are computed once before training."""
    _train("constrained", ctx=ctx, model=model, out=out, task=task, data=data, split=split,
           limit=limit, data_format=data_format, betas=betas, beta_after=beta_after, **options)


@train_app.command("augment")
@with_parameters(COMMON)
def train_augment(
    ctx: typer.Context, model: TrainModel = None, out: TrainOut = Path("runs/train-augment"),
    triples: Annotated[Path | None, typer.Option(help="Safety triples JSONL (instruction, "
                                                 "harmful_response, refusal).")] = None,
    anchor: Annotated[Path | None, typer.Option(help="Benign utility-anchor pairs "
                                                "(instruction, response).")] = None,
    safety_weight: Annotated[float, typer.Option(help=(
        "α of Eq. 2: the weight of the safety-recovery objective against the benign "
        "anchor's (1 − α)."))] = 0.2,
    max_k: Annotated[int, typer.Option(help="Largest harmful prefix length k.")] = 100,
    **options: Any,
) -> None:
    """Safety-recovery augmentation (SPEC 3.1): learn to recover with a refusal after k
    harmful tokens (k = 0 half the time, else 1..100), mixed with a benign anchor."""
    _train("augment", ctx=ctx, model=model, out=out, task="harmful", data=None, limit=None,
           triples=triples, anchor=anchor, safety_weight=safety_weight, max_k=max_k,
           betas="0.5,2,2,2,2", beta_after=0.1, **options)
