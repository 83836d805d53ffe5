"""``aligndepth train sft|constrained|augment``."""

from __future__ import annotations

import inspect
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

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
from aligndepth.training.config import AugmentInputs, PairInputs, TrainConfig

Inputs = TypeVar("Inputs", PairInputs, AugmentInputs)

# -- training -----------------------------------------------------------------------------

def _train(kind: str, inputs: PairInputs | AugmentInputs, *, model: str | None, out: Path,
           device: str, quiet: bool, split: str | None = None, dynamics: bool = False,
           dynamics_steps: str | None = None, evaluate: bool = False,
           eval_data: list[str] | None = None, eval_max_new_tokens: int | None = None,
           judge: str | None = None, judge_option: list[str] | None = None,
           eval_split: str | None = None, allow_overlap: bool = False,
           resume: bool = False, config_file: Path | None = None, ctx: Any = None,
           **options: Any) -> None:
    """Train ``kind`` on ``inputs``; ``options`` are :class:`TrainConfig`'s own options
    (its β schedule's and LoRA's among them)."""
    from aligndepth.cli.evaluate import _bare_data, parse_data
    from aligndepth.evaluation.tasks import TRAINING_TASKS
    from aligndepth.models import LoadConfig
    from aligndepth.training.run import check_task, run_training

    task = inputs.task if isinstance(inputs, PairInputs) else "harmful"
    check_task(task)
    config = TrainConfig(**field_values(TrainConfig, options),
                         dynamics_steps=_dynamics_steps(dynamics, dynamics_steps))
    result = run_training(kind, model=model, out=out, **asdict(inputs), config=config,
                          load=LoadConfig(device=device), data_split=split,
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


#: Options every training command takes besides its inputs and TrainConfig's: dynamics,
#: device, evaluation, resume and config.
RUN_OPTIONS = [
    _keyword("device", Device, "auto"), _keyword("dynamics", Dynamics, False),
    _keyword("dynamics_steps", DynamicsSteps, None), _keyword("evaluate", Evaluate, False),
    _keyword("eval_data", EvalDataOpt, None), _keyword("eval_max_new_tokens", EvalMaxNew, None),
    _keyword("judge", JudgeName, None), _keyword("judge_option", JudgeOptions, None),
    _keyword("eval_split", EvalSplit, None), _keyword("allow_overlap", AllowOverlap, False),
    _keyword("resume", Resume, False), _keyword("config_file", ConfigFile, None),
    _keyword("quiet", Quiet, False)]


def _options(inputs: type, skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """A training command's options: its inputs', TrainConfig's (generated from the
    dataclasses, the configs TrainConfig holds included: LoRA's, and the β schedule's
    unless ``skip``ped), then :data:`RUN_OPTIONS`."""
    return [*field_parameters(inputs), *field_parameters(TrainConfig, skip=skip),
            *RUN_OPTIONS]


def _inputs(cls: type[Inputs], options: dict[str, Any]) -> Inputs:
    """The command's inputs, taken out of its ``options``."""
    value = cls(**field_values(cls, options))
    for p in field_parameters(cls):
        options.pop(p.name, None)
    return value


@train_app.command("sft")
@with_parameters(_options(PairInputs, skip=("schedule",)))
def train_sft(ctx: typer.Context, model: TrainModel = None,
              out: TrainOut = Path("runs/train-sft"), split: DataSplit = None,
              **options: Any) -> None:
    """Plain fine-tuning (loss on response tokens): the fine-tuning attacks' baseline."""
    inputs = _inputs(PairInputs, options)
    _train("sft", inputs, ctx=ctx, model=model, out=out, split=split, **options)


@train_app.command("constrained")
@with_parameters(_options(PairInputs))
def train_constrained(ctx: typer.Context, model: TrainModel = None,
                      out: TrainOut = Path("runs/train-constrained"),
                      split: DataSplit = None, **options: Any) -> None:
    """Token-wise constrained fine-tuning (SPEC 3.2): the first response tokens are held
    near the initial model; its log-probs are computed once before training."""
    inputs = _inputs(PairInputs, options)
    _train("constrained", inputs, ctx=ctx, model=model, out=out, split=split, **options)


@train_app.command("augment")
@with_parameters(_options(AugmentInputs, skip=("schedule",)))
def train_augment(ctx: typer.Context, model: TrainModel = None,
                  out: TrainOut = Path("runs/train-augment"), **options: Any) -> None:
    """Safety-recovery augmentation (SPEC 3.1): learn to recover with a refusal after k
    harmful tokens (k = 0 half the time, else 1..100), mixed with a benign anchor."""
    inputs = _inputs(AugmentInputs, options)
    _train("augment", inputs, ctx=ctx, model=model, out=out, **options)
