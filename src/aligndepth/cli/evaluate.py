"""``aligndepth evaluate``: one model's safety and utility, with intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.app import Quiet, app
from aligndepth.cli.config_file import ConfigFile, write_run_config
from aligndepth.cli.fields import field_parameters, field_values, with_parameters
from aligndepth.cli.shared_options import (
    EngineKind,
    EngineModel,
    EngineOptions,
    EngineUrl,
    JudgeName,
    JudgeOptions,
    Overwrite,
    Placement,
    _judge_options,
    served_configs,
)
from aligndepth.errors import AlignDepthError
from aligndepth.evaluation.config import EvalConfig
from aligndepth.run_settings import LoadConfig

EvalModel = Annotated[str | None, typer.Argument(
    help="The model: a local directory (a model or a LoRA adapter, e.g. a `train` output) "
    "or a hub id (default: the organism's aligned model).", show_default=False)]
EvalData = Annotated[list[str] | None, typer.Option(
    "--data", help="TASK=FILE (repeat), or FILE when one dataset is needed: the project's "
    "JSONL or a published format (GSM8k, SQL create-context, SAMSum, Alpaca/AlpacaEval, "
    "HEx-PHI, ...) as JSON, JSONL, CSV, parquet, a save_to_disk directory or a hub "
    "snapshot. harmful=FILE feeds harmful, backdoor and identity.")]
PairwiseOptions = Annotated[list[str] | None, typer.Option(
    "--pairwise-option", help="KEY=VALUE setting of the pairwise judge of --task alpaca "
    "(repeat), e.g. model=gpt-4o base_url=URL (default: ALIGNDEPTH_JUDGE_BASE_URL, "
    "ALIGNDEPTH_JUDGE_MODEL; the key from ALIGNDEPTH_JUDGE_API_KEY or OPENAI_API_KEY).")]
PromptKind = Annotated[str, typer.Option("--prompt-format", help="chat (the model's chat "
                                         "template) or plain (a completion template, for "
                                         "base models).")]
EvalOut = Annotated[Path | None, typer.Option(help="Run directory (default: runs/evaluate-"
                                              "<model>). Rerun the same command to resume.")]


def parse_data(items: list[str] | None) -> dict[str, str]:
    """``["gsm8k=a.json", "b.parquet"]`` -> ``{"gsm8k": "a.json", "": "b.parquet"}``
    (a bare file is keyed ``""`` and given to the one task that needs data)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or "/" in key or "\\" in key or not key.strip():
            key, value = "", item  # a bare path (which may itself contain '=')
        key = key.strip()
        if key in out:
            raise AlignDepthError(f"--data {key or 'FILE'} is given twice: give it once")
        out[key] = value.strip()
    return out


def _bare_data(data: dict[str, str], tasks: tuple[str, ...]) -> dict[str, str]:
    """Give a bare ``--data FILE`` to the one data group among ``tasks``."""
    from aligndepth.evaluation.tasks import task_by_name

    if "" not in data:
        return data
    groups = list(dict.fromkeys(task_by_name(t).data_group for t in tasks))
    if len(groups) != 1:
        raise AlignDepthError(f"--data FILE is ambiguous with tasks needing different data "
                              f"({', '.join(groups)}): write --data TASK=FILE for each")
    rest = {k: v for k, v in data.items() if k}
    return {**rest, groups[0]: data[""]}


@app.command("evaluate", help=(
    "Evaluate one model the way the papers do: harmful rate (any judge), with a backdoor "
    "trigger or under a persona, refusals of safe prompts, GSM8k accuracy, SQL exact match, "
    "SAMSum ROUGE and an AlpacaEval-style pairwise win rate; every number with a 95% "
    "interval, in eval.json and a report (docs/evaluation.md)."))
@with_parameters(field_parameters(EvalConfig) + field_parameters(LoadConfig))
def evaluate_cmd(ctx: typer.Context, model: EvalModel = None, data: EvalData = None,
                 judge: JudgeName = None, judge_option: JudgeOptions = None,
                 pairwise_option: PairwiseOptions = None, out: EvalOut = None,
                 overwrite: Overwrite = False, prompt_format: PromptKind = "chat",
                 system_placement: Placement = "system",
                 engine: EngineKind = "hf",
                 engine_url: EngineUrl = None, engine_model: EngineModel = None,
                 engine_option: EngineOptions = None, config_file: ConfigFile = None,
                 quiet: Quiet = False, **options: Any) -> None:
    """``aligndepth evaluate`` (its help is in the decorator; ``options``: the
    :class:`EvalConfig` and :class:`LoadConfig` fields' own options)."""
    from aligndepth.evaluation.run import run_evaluation
    from aligndepth.prompts import PromptFormat

    config = EvalConfig(**field_values(EvalConfig, options))
    if prompt_format not in ("chat", "plain"):
        raise AlignDepthError(f"unknown --prompt-format '{prompt_format}': use chat or plain")
    fmt = PromptFormat("chat", placement=system_placement) if prompt_format == "chat" \
        else PromptFormat.plain()
    served = served_configs(engine, engine_url, engine_model, engine_option)
    load = LoadConfig(**field_values(LoadConfig, options), served=served.get("aligned"))
    if out is None:
        out = Path("runs") / f"evaluate-{Path(model).name if model else 'organism'}"
    summary = run_evaluation(model, out, config, data=_bare_data(parse_data(data), config.tasks),
                             judge=judge, judge_options=_judge_options(judge_option),
                             pairwise_options=_judge_options(pairwise_option), load=load,
                             fmt=fmt, overwrite=overwrite, show_progress=not quiet)
    write_run_config(ctx, out)
    print_evaluation(summary, out)


def print_evaluation(summary: dict[str, Any], out: Path) -> None:
    """The metrics table, the warnings and where the report is."""
    from rich.console import Console
    from rich.table import Table

    from aligndepth.evaluation.report import fmt_stats, metric_rows

    table = Table(title=f"aligndepth evaluation ({out})")
    for column in ("task", "metric", "value [95% CI] (n)"):
        table.add_column(column)
    for task_name, metric, stats in metric_rows(summary):
        table.add_row(task_name, metric, fmt_stats(stats))
    Console().print(table)
    for warning in summary.get("warnings") or []:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"report: {out / 'report.html'}")
