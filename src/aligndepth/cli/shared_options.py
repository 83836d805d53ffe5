"""Command-line options shared by several commands, and the parsers of their values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.fields import field_option
from aligndepth.errors import AlignDepthError
from aligndepth.run_settings import LoadConfig, RunSettings

# -- options --------------------------------------------------------------------------

Base = Annotated[str | None, typer.Option(help="Base model: local directory or hub id "
                                          "(default: the organism).")]
Aligned = Annotated[str | None, typer.Option(help="Aligned model: local directory or hub id "
                                             "(default: the organism).")]
Data = Annotated[Path | None, typer.Option(help="Harmful queries: JSONL in the harmful_pairs "
                                           "(or prompts) schema, or a published dataset file "
                                           "(default: the organism's held-out set).")]
JudgeName = Annotated[str | None, typer.Option("--judge", help="Judge: organism (default on "
                                               "the organism), keyword (default otherwise), "
                                               "rubric, gpt4-rubric, strongreject, moderation, "
                                               "llamaguard, harmbench-cls (docs/judges.md).")]
JudgeOptions = Annotated[list[str] | None, typer.Option(
    "--judge-option", help="KEY=VALUE setting of the judge (repeat), e.g. base_url=URL, "
    "model=NAME for the API judges; model=DIR for llamaguard and harmbench-cls. API keys "
    "come from the environment (OPENAI_API_KEY or ALIGNDEPTH_JUDGE_API_KEY) and are never "
    "written anywhere.")]
Out = Annotated[Path | None, typer.Option(help="Run directory (default: runs/<command>-"
                                          "<models>). Rerun the same command to resume.")]
Overwrite = Annotated[bool, typer.Option(help="Replace a run directory that holds a "
                                         "different run.")]
ShardOpt = Annotated[str | None, typer.Option(
    "--shard", help="I/N: run worker I's share of the units of an N-worker run (a job-array "
    "task, 0 <= I < N) into the same --out; `aligndepth report RUN` once all are done. "
    "Under torchrun or accelerate launch each rank takes its share by itself.")]
BaseDevice = Annotated[str | None, typer.Option(
    help="Device of the base model (default: --device), e.g. to put a pair on two GPUs.",
    rich_help_panel="Model loading")]
AlignedDevice = Annotated[str | None, typer.Option(
    help="Device of the aligned model (default: --device).", rich_help_panel="Model loading")]
Placement = Annotated[str, typer.Option(help="Where a system prompt goes in a chat template: "
                                        "system (a system message) or user (the start of the "
                                        "user's turn, for templates without a system role "
                                        "such as Gemma's).")]
EngineKind = Annotated[str, typer.Option("--engine", help="Where answers are generated: hf "
                                         "(here, the default) or openai (an OpenAI-"
                                         "compatible completions server: vLLM, SGLang, "
                                         "llama.cpp; the model directories then need only "
                                         "their tokenizer and config).")]
EngineUrl = Annotated[str | None, typer.Option(help="--engine openai: the server's base URL, "
                                               "e.g. http://gpu-node:8000/v1 (both models "
                                               "unless set per model).")]
EngineModel = Annotated[str | None, typer.Option(help="--engine openai: the served model's "
                                                 "name (default: the server's only one).")]
BaseEngineUrl = Annotated[str | None, typer.Option(help="--engine openai: the base model's "
                                                   "server, when the two are served apart.")]
AlignedEngineUrl = Annotated[str | None, typer.Option(help="--engine openai: the aligned "
                                                      "model's server.")]
BaseEngineModel = Annotated[str | None, typer.Option(help="--engine openai: the base model's "
                                                     "served name.")]
AlignedEngineModel = Annotated[str | None, typer.Option(help="--engine openai: the aligned "
                                                        "model's served name.")]
EngineOptions = Annotated[list[str] | None, typer.Option(
    "--engine-option", help="KEY=VALUE setting of the served engine (repeat): prompt_as=text "
    "(servers without token-id prompts, e.g. llama.cpp), max_concurrency, timeout, "
    "connect_timeout, max_retries, backoff_base, backoff_max, no_top_k, cache, cache_dir, "
    "revision (names the served weights: answers are reused across runs only under the "
    "same revision). The key comes from "
    "ALIGNDEPTH_ENGINE_API_KEY or OPENAI_API_KEY only.")]
BaseFormat = Annotated[str, typer.Option(help="Base model's prompt format: plain or chat.")]
BaseTemplate = Annotated[str | None, typer.Option(help="Plain template for the base model "
                                                  "(must contain {instruction}).")]
AlignedSystem = Annotated[str | None, typer.Option(help="System prompt of the aligned model: "
                                                   "'default' (none given, so the template's "
                                                   "own default applies, e.g. Qwen2.5's), "
                                                   "'none' (an empty one, suppressing such a "
                                                   "default) or a text. The manifest records "
                                                   "the rendered prompt.")]
Phrases = Annotated[Path | None, typer.Option(help="For --judge keyword: a text file of "
                                              "refusal phrases, one per line (default: the "
                                              "built-in list).")]
DataFormat = Annotated[str | None, typer.Option(help="Format of --data / --safe-data when not "
                                               "the project's JSONL: hexphi, harmful_hexphi, "
                                               "advbench, malicious_instruct, harmbench, "
                                               "hh_rlhf, toxicchat, openai_moderation "
                                               "(default: detected; see `data inspect`).")]
SafeData = Annotated[Path | None, typer.Option(help="JSONL prompts of safe queries for ED "
                                               "(default: the organism's benign prompts).")]

# Options of RunSettings fields, generated from their metadata (help, flags).
Seed = field_option(RunSettings, "seed")
Limit = field_option(RunSettings, "limit")
SampleN = field_option(RunSettings, "sample")
MaxNew = field_option(RunSettings, "max_new_tokens")
Stops = field_option(RunSettings, "stop")
Batch = field_option(RunSettings, "batch_size")
DataSplit = field_option(RunSettings, "split")
Device = field_option(LoadConfig, "device")  # train: its dtype is TrainConfig's

def served_configs(engine: str, url: str | None, model: str | None,
                   options: list[str] | None, roles: tuple[str, ...] = ("base", "aligned"),
                   **per_role: str | None) -> dict[str, Any]:
    """``{role: ServedConfig | None}`` for each of ``roles`` (the models that load;
    ``per_role`` holds ``base_url``, ``aligned_url``, ``base_model``, ``aligned_model``);
    ``{}`` for hf."""
    from aligndepth.engine.served import served_config

    if engine not in ("hf", "openai"):
        raise AlignDepthError(f"unknown --engine '{engine}': use hf or openai")
    given = [k for k, v in per_role.items() if v] + (["url"] if url else []) + (
        ["model"] if model else []) + (["option"] if options else [])
    if engine == "hf":
        if given:
            raise AlignDepthError("--engine-url, --engine-model and --engine-option need "
                                  "--engine openai")
        return {}
    settings = _judge_options(options)
    out: dict[str, Any] = {}
    for role in roles:
        where = per_role.get(f"{role}_url") or url
        if not where:
            raise AlignDepthError(f"--engine openai needs the {role} model's server: pass "
                                  f"--engine-url URL (or --{role}-engine-url)")
        out[role] = served_config(where, per_role.get(f"{role}_model") or model, **settings)
    return out


def _judge_options(items: list[str] | None) -> dict[str, Any]:
    """``["model=gpt-4o", "threshold=4"]`` -> ``{"model": "gpt-4o", "threshold": 4}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AlignDepthError(f"--judge-option '{item}' is not KEY=VALUE, e.g. "
                                  "--judge-option model=gpt-4o")
        if "key" in key.lower() and "api" in key.lower():
            raise AlignDepthError("pass API keys through the environment (OPENAI_API_KEY or "
                                  "ALIGNDEPTH_JUDGE_API_KEY), not on the command line")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _phrases(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.is_file():
        raise AlignDepthError(f"refusal phrase file '{path}' does not exist")
    phrases = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not phrases:
        raise AlignDepthError(f"refusal phrase file '{path}' is empty: one phrase per line")
    return {"phrases": phrases}




def _split(text: str) -> tuple[str, ...]:
    return tuple(e.strip() for e in text.split(",") if e.strip())


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from aligndepth.report.render import headline

    table = Table(title=f"aligndepth summary ({out})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in headline(summary):
        table.add_row(name, value)
    console = Console()
    console.print(table)
    if (summary.get("depth") or {}).get("sentence"):
        console.print(summary["depth"]["sentence"], style="bold")
    for warning in summary.get("warnings") or []:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"report: {out / 'report.html'}")
