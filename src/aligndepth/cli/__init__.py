"""The ``aligndepth`` command line: thin wrappers that parse, call the API and print.

User mistakes (:class:`~aligndepth.errors.AlignDepthError`) print one line on stderr and
exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import sys
import typing
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from aligndepth.errors import AlignDepthError

#: Operating-system errors a user can fix, with the fix.
USER_OS_ERRORS = {
    errno.ENOSPC: "free disk space", errno.EDQUOT: "free disk space (quota)",
    errno.EROFS: "choose a --out on a writable file system",
    errno.EACCES: "choose a --out you may write to", errno.EPERM: "check the permissions",
    errno.ENOTDIR: "a path component is a file, not a directory",
    errno.EISDIR: "a directory stands where a file is expected",
}

app = typer.Typer(
    name="aligndepth",
    help="Measure how deep a language model's safety alignment goes, attack it, deepen it.\n\n"
    "With no model arguments every command runs on the built-in model organism.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
organism_app = typer.Typer(help="Build and inspect the model organism (a tiny synthetic "
                           "base/aligned pair in which the papers' phenomena are real).",
                           no_args_is_help=True)
data_app = typer.Typer(help="Check dataset files.", no_args_is_help=True)
app.add_typer(organism_app, name="organism")
app.add_typer(data_app, name="data")
train_app = typer.Typer(help="Fine-tune a model: attacks (harmful, identity, backdoor, benign "
                        "data) and defenses (constrained loss, safety-recovery augmentation).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                                help="Log progress details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # the CLI draws its own progress bars; -v shows library warnings
        import warnings

        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        warnings.filterwarnings("ignore")


# -- organism -----------------------------------------------------------------------------

def _organism_config(seed: int, preset: str) -> Any:
    from aligndepth.organism.config import OrganismConfig

    if preset == "standard":
        return OrganismConfig(seed=seed)
    if preset == "tiny":
        return OrganismConfig.tiny(seed)
    raise AlignDepthError(f"unknown organism preset '{preset}': use 'standard' or 'tiny'")


@organism_app.command("build")
def organism_build(
    out: Annotated[Path | None, typer.Option(help="Output directory (default: the user "
                                             "cache, reused by every command).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the world and of training.")] = 0,
    preset: Annotated[str, typer.Option(help="'standard' (the default organism, minutes) or "
                                        "'tiny' (seconds, for tests; phenomena weak).")]
    = "standard",
    force: Annotated[bool, typer.Option(help="Rebuild even if a finished build exists.")]
    = False,
    quiet: Quiet = False,
) -> None:
    """Build the model organism: world, base model, aligned model, datasets, card.json."""
    from aligndepth.organism.build import build_organism, read_card

    path = build_organism(_organism_config(seed, preset), out, force=force,
                          show_progress=not quiet)
    typer.echo(str(path))
    if not quiet:
        _print_card(read_card(path), path)


@organism_app.command("card")
def organism_card(
    path: Annotated[Path | None, typer.Argument(help="Organism directory (default: the "
                                                "cached organism for --seed).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the cached organism.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print card.json as is.")] = False,
) -> None:
    """Show an organism's card: its measured phenomena and whether each target is met."""
    from aligndepth.organism.build import organism_dir, read_card
    from aligndepth.organism.config import OrganismConfig

    root = path or organism_dir(OrganismConfig(seed=seed))
    card = read_card(root)
    if as_json:
        typer.echo(json.dumps(card, indent=2))
    else:
        _print_card(card, root)


@organism_app.command("path")
def organism_path(seed: Annotated[int, typer.Option(help="Seed.")] = 0) -> None:
    """Print where the organism for --seed is (or would be) cached."""
    from aligndepth.organism.build import organism_dir
    from aligndepth.organism.config import OrganismConfig

    typer.echo(str(organism_dir(OrganismConfig(seed=seed))))


def _print_card(card: dict[str, Any], path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from aligndepth.organism.card import TARGETS

    table = Table(title=f"organism card ({path})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("target")
    table.add_column("met")
    met = card.get("targets_met", {})
    for name, (op, bound) in TARGETS.items():
        table.add_row(name, f"{card[name]:.3f}", f"{op} {bound}",
                      "yes" if met.get(name) else "NO")
    table.add_row("build_seconds", f"{card['build_seconds']:.0f}", "<= 300", "")
    Console().print(table)


# -- models and data ----------------------------------------------------------------------

@app.command("check-pair")
def check_pair(
    base: Annotated[str, typer.Option(help="Base model: local directory or hub id.")],
    aligned: Annotated[str, typer.Option(help="Aligned model: local directory or hub id.")],
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickle (.bin/.pt) checkpoints; "
                                               "they can run code when loaded.")] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Run model code shipped with the "
                                                    "checkpoint.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16.")] = "auto",
) -> None:
    """Load a base/aligned pair, check their vocabularies match, and describe them."""
    from aligndepth.models import LoadConfig, load_pair

    pair = load_pair(base, aligned, LoadConfig(dtype=dtype, device=device,
                                               trust_remote_code=trust_remote_code,
                                               allow_pickle=allow_pickle))
    typer.echo(json.dumps(pair.describe(), indent=2))


@data_app.command("validate")
def data_validate(
    file: Annotated[Path, typer.Argument(help="A JSONL file in one of the project's schemas.")],
    schema: Annotated[str, typer.Option(help="prompts, harmful_pairs, safety_triples or "
                                        "instruction_pairs.")] = "prompts",
) -> None:
    """Validate a JSONL dataset; errors name the file, line and field."""
    from aligndepth.data.schemas import read_jsonl, schema_by_name

    records: list[Any] = read_jsonl(file, schema_by_name(schema))
    typer.echo(f"{file}: {len(records)} valid {schema} records")


DataSplit = Annotated[str | None, typer.Option(help="Split of a dataset directory "
                                              "(save_to_disk or hub snapshot), e.g. test "
                                              "(default: train, else the only split).")]


@data_app.command("inspect")
def data_inspect(
    file: Annotated[Path, typer.Argument(help="A dataset file (or HEx-PHI directory), a "
                                         "parquet file, a save_to_disk directory or a hub "
                                         "dataset snapshot.")],
    data_format: Annotated[str | None, typer.Option("--format", help="Format name (default: "
                                                    "detected).")] = None,
    rows: Annotated[int, typer.Option(help="Example rows to show.")] = 3,
    split: DataSplit = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")]
    = False,
) -> None:
    """Show which published format a file is, how many records it holds, and a few rows."""
    from rich.console import Console
    from rich.table import Table

    from aligndepth.data.formats import inspect_dataset

    info = inspect_dataset(file, data_format, rows=rows, split=split)
    if as_json:
        typer.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    console = Console()
    how = "detected" if info["detected"] else "named"
    console.print(f"[bold]{info['path']}[/bold]: {info['format']} ({how}), "
                  f"{info['records']} {info['schema']} records"
                  + (f", {info['skipped_empty']} empty rows skipped"
                     if info.get("skipped_empty") else ""))
    console.print(f"  {info['description']}")
    if info.get("categories"):
        console.print("  categories: " + ", ".join(f"{k} ({v})"
                                                   for k, v in info["categories"].items()))
    if info.get("subsets"):
        console.print("  subsets: " + ", ".join(info["subsets"]))
    table = Table(show_lines=True)
    examples = info.get("examples") or []
    for key in (examples[0] if examples else {}):
        table.add_column(key, overflow="fold")
    for ex in examples:
        table.add_row(*[str(v) for v in ex.values()])
    if examples:
        console.print(table)


# -- experiments --------------------------------------------------------------------------

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
Seed = Annotated[int, typer.Option(help="Seed for sampling.")]
Limit = Annotated[int | None, typer.Option(help="Use only the first N prompts.")]
SampleN = Annotated[int | None, typer.Option("--sample", help="Use a seeded random subset of N "
                                             "prompts (as the papers do, e.g. ED: 200 "
                                             "harmful + 200 safe); --seed picks it.")]
MaxNew = Annotated[int | None, typer.Option(help="Maximum new tokens per response (default "
                                            "512 on a real pair, as the papers judge; 64 on "
                                            "the organism).")]
Stops = Annotated[list[str] | None, typer.Option("--stop", help="Text that ends a response "
                                                 "(repeat). The plain template's instruction "
                                                 "marker always stops the base model.")]
DeviceMap = Annotated[str | None, typer.Option(help="Place each model across the GPUs (and "
                                               "CPU) present through accelerate: auto, "
                                               "balanced, sequential. Overrides --device.")]
BaseDevice = Annotated[str | None, typer.Option(help="Device of the base model (default: "
                                                "--device), e.g. to put a pair on two GPUs.")]
AlignedDevice = Annotated[str | None, typer.Option(help="Device of the aligned model "
                                                   "(default: --device).")]
Placement = Annotated[str, typer.Option(help="Where a system prompt goes in a chat template: "
                                        "system (a system message) or user (the start of the "
                                        "user's turn, for templates without a system role "
                                        "such as Gemma's).")]
Batch = Annotated[int, typer.Option(help="Prompts per batch.")]
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
    "connect_timeout, max_retries, no_top_k, cache. The key comes from "
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
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")]
Dtype = Annotated[str, typer.Option(help="auto, float32, bfloat16, float16.")]
AllowPickle = Annotated[bool, typer.Option(help="Accept pickle checkpoints (can run code).")]
TrustCode = Annotated[bool, typer.Option(help="Run model code shipped with checkpoints.")]
Ks = Annotated[list[int] | None, typer.Option("--k", help="Prefilled tokens (repeat the "
                                              "option; default 0 5 10 20 40).")]
Samples = Annotated[int, typer.Option(help="Samples per decoding configuration.")]
Phrases = Annotated[Path | None, typer.Option(help="For --judge keyword: a text file of "
                                              "refusal phrases, one per line (default: the "
                                              "built-in list).")]
Prefixes = Annotated[list[str] | None, typer.Option("--prefix", help="Refusal prefix (repeat;"
                                                    " default 'I cannot', 'I apologize, but "
                                                    "I cannot').")]
DataFormat = Annotated[str | None, typer.Option(help="Format of --data / --safe-data when not "
                                               "the project's JSONL: hexphi, harmful_hexphi, "
                                               "advbench, malicious_instruct, harmbench, "
                                               "hh_rlhf, toxicchat, openai_moderation "
                                               "(default: detected; see `data inspect`).")]
SafeData = Annotated[Path | None, typer.Option(help="JSONL prompts of safe queries for ED "
                                               "(default: the organism's benign prompts).")]
Alpha = Annotated[float, typer.Option(help="ED weight α: tokens come from (α+1)·log p_base − "
                                      "α·log p_aligned.")]
Sweep = Annotated[list[float] | None, typer.Option("--sweep", help="α values swept on harmful"
                                                   " queries (repeat; default 0.25 0.5 1 2 4).")]
EDSamples = Annotated[int, typer.Option("--samples", help="ED: sampled outputs per query, "
                                        "method and α.")]
Temperature = Annotated[float, typer.Option(help="ED sampling temperature (0: greedy).")]
TopP = Annotated[float, typer.Option(help="ED nucleus sampling threshold (1: off).")]
Methods = Annotated[str, typer.Option(help="ED methods, comma-separated subset of "
                                      "ed,base_mp,align_mp,ed_base.")]
Steps = Annotated[int | None, typer.Option(help="GCG steps at most (default 500 for gcg, "
                                             "50 in the audit).")]
SearchWidth = Annotated[int | None, typer.Option(help="GCG candidates per step (default 512; "
                                                 "128 in the audit).")]
TopK = Annotated[int | None, typer.Option("--topk", help="GCG tokens per suffix position that "
                                          "candidates are drawn from (default 256; 64 in the "
                                          "audit).")]
SuffixLength = Annotated[int | None, typer.Option(help="GCG suffix tokens (default 20).")]
NReplace = Annotated[int | None, typer.Option(help="GCG positions swapped per candidate "
                                              "(default 1).")]
BufferSize = Annotated[int | None, typer.Option(help="GCG best suffixes kept (default 1).")]
MaxPrompts = Annotated[int | None, typer.Option(help="GCG: attack at most N prompts (default "
                                                "all; 20 in the audit).")]
InitSuffix = Annotated[str | None, typer.Option(help="GCG starting suffix text (default '!' "
                                                "repeated).")]
NonAscii = Annotated[bool, typer.Option(help="GCG: allow non-ASCII suffix tokens.")]
FilterRetok = Annotated[bool, typer.Option(help="GCG: drop candidate suffixes that do not "
                                           "survive decode -> re-encode (the answer is then "
                                           "judged on exactly the optimised tokens).")]
SourceRun = Annotated[Path | None, typer.Option("--source", help="gcg-transfer: the run "
                                                "whose GCG suffixes are replayed on this "
                                                "pair's aligned model.")]
MaliciousSystem = Annotated[str | None, typer.Option(help="ED: the base model's malicious "
                                                     "system prompt (default: built in).")]


def _run(command: str, experiments: tuple[str, ...], *, base: str | None, aligned: str | None,
         data: Path | None, judge: str | None, out: Path | None, overwrite: bool, seed: int,
         limit: int | None, max_new_tokens: int | None, batch_size: int, base_format: str,
         base_template: str | None, aligned_system: str | None, device: str, dtype: str,
         sample: int | None = None, stop: list[str] | None = None,
         device_map: str | None = None, base_device: str | None = None,
         aligned_device: str | None = None, system_placement: str = "system",
         allow_pickle: bool, trust_remote_code: bool, quiet: bool, ks: list[int] | None = None,
         samples_per_config: int = 1, prefixes: list[str] | None = None,
         refusal_phrases: Path | None = None, safe_data: Path | None = None,
         alpha: float = 1.0, sweep: list[float] | None = None, samples: int = 3,
         temperature: float = 1.0, top_p: float = 1.0, methods: str = "",
         malicious_system: str | None = None, gcg: dict[str, Any] | None = None,
         data_format: str | None = None, judge_option: list[str] | None = None,
         split: str | None = None, engine: str = "hf", engine_url: str | None = None,
         engine_model: str | None = None, base_engine_url: str | None = None,
         aligned_engine_url: str | None = None, base_engine_model: str | None = None,
         aligned_engine_model: str | None = None,
         engine_option: list[str] | None = None, source: Path | None = None) -> None:
    from aligndepth.analysis.refusal_prefix import RefusalPrefixConfig
    from aligndepth.attacks.decoding import DecodingConfig
    from aligndepth.attacks.emulated import DEFAULT_ALPHAS, METHODS, EDConfig
    from aligndepth.attacks.gcg import AUDIT_BUDGET, with_budget
    from aligndepth.attacks.gcg_core import GCGConfig
    from aligndepth.attacks.gcg_transfer import GCGTransferConfig
    from aligndepth.attacks.prefill import DEFAULT_KS, PrefillConfig
    from aligndepth.audit import AuditConfig, check_servable, open_setup, run_experiments
    from aligndepth.models import LoadConfig
    from aligndepth.prompts import DEFAULT_PLAIN_TEMPLATE, PromptFormat, parse_system

    config = AuditConfig(
        experiments=experiments, limit=limit, sample=sample, stop=tuple(stop or ()), seed=seed,
        data_split=split,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size, prefill=PrefillConfig(ks=tuple(ks or DEFAULT_KS)),
        decoding=DecodingConfig(samples_per_config=samples_per_config),
        refusal_prefix=RefusalPrefixConfig(prefixes=tuple(prefixes)) if prefixes
        else RefusalPrefixConfig(),
        ed=EDConfig(alpha=alpha, alphas=tuple(sweep or DEFAULT_ALPHAS), samples=samples,
                    temperature=temperature, top_p=top_p,
                    methods=_split(methods) or METHODS, malicious_system=malicious_system),
        gcg=with_budget(GCGConfig() if command == "gcg" else AUDIT_BUDGET, **(gcg or {})),
        gcg_transfer=GCGTransferConfig(source=str(source) if source else None))
    if base_format == "plain":
        bfmt = PromptFormat.plain(base_template or DEFAULT_PLAIN_TEMPLATE)
    elif base_format == "chat":
        bfmt = PromptFormat.chat()
    else:
        raise AlignDepthError(f"unknown --base-format '{base_format}': use plain or chat")
    load = LoadConfig(dtype=dtype, device=device, allow_pickle=allow_pickle,
                      trust_remote_code=trust_remote_code, device_map=device_map)
    served = served_configs(engine, engine_url, engine_model, engine_option,
                            base_url=base_engine_url, aligned_url=aligned_engine_url,
                            base_model=base_engine_model, aligned_model=aligned_engine_model)
    if served:
        check_servable(config.experiments)
    aligned_fmt = PromptFormat("chat", system=parse_system(aligned_system),
                               placement=system_placement)
    base_load = replace(load, device=base_device or load.device, served=served.get("base"))
    aligned_load = replace(load, device=aligned_device or load.device,
                           served=served.get("aligned"))
    setup = open_setup(base, aligned, judge=judge, seed=seed, batch_size=batch_size,
                       max_new_tokens=max_new_tokens, show_progress=not quiet, load=load,
                       base_load=base_load, aligned_load=aligned_load,
                       stop_strings=tuple(stop or ()),
                       base_format=bfmt, aligned_format=aligned_fmt,
                       judge_options={**_phrases(refusal_phrases),
                                      **_judge_options(judge_option)})
    if out is None:
        slug = "organism" if setup.organism else Path(str(aligned)).name or "pair"
        out = Path("runs") / f"{command}-{slug}"
    summary = run_experiments(setup, out, config, data, overwrite=overwrite,
                              safe_data=safe_data, data_format=data_format)
    _print_summary(summary, out)


def served_configs(engine: str, url: str | None, model: str | None,
                   options: list[str] | None, **per_role: str | None) -> dict[str, Any]:
    """``{role: ServedConfig | None}`` for ``base`` and ``aligned`` (``per_role`` holds
    ``base_url``, ``aligned_url``, ``base_model``, ``aligned_model``); ``{}`` for hf."""
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
    for role in ("base", "aligned"):
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


EXPERIMENT_HELP = ("Comma-separated subset of kl,refusal_prefix,prefill,decoding,ed,gcg "
                   "(and gcg_transfer, with --source).")

#: Options that only some experiments read; a command shows those its experiments use.
OPTION_OWNERS = {
    "k": {"prefill"}, "samples_per_config": {"decoding"}, "prefix": {"refusal_prefix"},
    "safe_data": {"ed"}, "alpha": {"ed"}, "sweep": {"ed"}, "samples": {"ed"},
    "temperature": {"ed"}, "top_p": {"ed"}, "methods": {"ed"}, "malicious_system": {"ed"},
    "num_steps": {"gcg"}, "search_width": {"gcg"}, "topk": {"gcg"}, "suffix_length": {"gcg"},
    "n_replace": {"gcg"}, "buffer_size": {"gcg"}, "max_prompts": {"gcg"},
    "init_suffix": {"gcg"}, "allow_non_ascii": {"gcg"}, "filter_retokenization": {"gcg"},
    "source": {"gcg_transfer"},
}
GCG_OPTIONS = ("num_steps", "search_width", "topk", "suffix_length", "n_replace",
               "buffer_size", "max_prompts", "init_suffix", "allow_non_ascii",
               "filter_retokenization")


def _split(text: str) -> tuple[str, ...]:
    return tuple(e.strip() for e in text.split(",") if e.strip())


def _hidden(annotation: Any) -> Any:
    """A copy of an ``Annotated[..., typer.Option(...)]`` with the option hidden."""
    base, info = annotation.__origin__, annotation.__metadata__[0]
    info = copy.copy(info)
    info.hidden = True
    return Annotated[base, info]


def _experiment_command(command: str, experiments: str, doc: str, choosable: bool) -> None:
    """Register ``command``; every experiment command shares one option set.

    Options are shown where they matter: ``--experiments`` in ``audit`` only, and each
    experiment's own options in the commands that run it.
    """

    def cmd(base: Base = None, aligned: Aligned = None, data: Data = None,
            data_format: DataFormat = None, split: DataSplit = None, judge: JudgeName = None,
            engine: EngineKind = "hf", engine_url: EngineUrl = None,
            engine_model: EngineModel = None, base_engine_url: BaseEngineUrl = None,
            aligned_engine_url: AlignedEngineUrl = None,
            base_engine_model: BaseEngineModel = None,
            aligned_engine_model: AlignedEngineModel = None,
            engine_option: EngineOptions = None,
            judge_option: JudgeOptions = None, out: Out = None, overwrite: Overwrite = False,
            seed: Seed = 0, limit: Limit = None, sample: SampleN = None,
            max_new_tokens: MaxNew = None, stop: Stops = None,
            batch_size: Batch = 32, base_format: BaseFormat = "plain",
            base_template: BaseTemplate = None, aligned_system: AlignedSystem = None,
            system_placement: Placement = "system",
            device: Device = "auto", device_map: DeviceMap = None,
            base_device: BaseDevice = None, aligned_device: AlignedDevice = None,
            dtype: Dtype = "auto", allow_pickle: AllowPickle = False,
            trust_remote_code: TrustCode = False, k: Ks = None,
            samples_per_config: Samples = 1, prefix: Prefixes = None,
            refusal_phrases: Phrases = None, safe_data: SafeData = None, alpha: Alpha = 1.0,
            sweep: Sweep = None, samples: EDSamples = 3, temperature: Temperature = 1.0,
            top_p: TopP = 1.0, methods: Methods = "ed,base_mp,align_mp,ed_base",
            malicious_system: MaliciousSystem = None, num_steps: Steps = None,
            search_width: SearchWidth = None, topk: TopK = None,
            suffix_length: SuffixLength = None, n_replace: NReplace = None,
            buffer_size: BufferSize = None, max_prompts: MaxPrompts = None,
            init_suffix: InitSuffix = None, allow_non_ascii: NonAscii = False,
            filter_retokenization: FilterRetok = True, source: SourceRun = None,
            experiments: str = experiments, quiet: Quiet = False) -> None:
        options = dict(locals())
        options.pop("command")  # a free variable of this closure, not an option
        options["gcg"] = {name: options.pop(name) for name in GCG_OPTIONS}
        chosen = _split(options.pop("experiments"))
        options["ks"], options["prefixes"] = options.pop("k"), options.pop("prefix")
        _run(command, chosen, **options)

    hints = typing.get_type_hints(cmd, include_extras=True)
    hints["experiments"] = Annotated[
        str, typer.Option(help=EXPERIMENT_HELP, hidden=not choosable)]
    runs = set(_split(experiments))
    for name, owners in OPTION_OWNERS.items():
        if not owners & runs:
            hints[name] = _hidden(hints[name])
    cmd.__annotations__ = hints
    cmd.__doc__ = doc
    app.command(command)(cmd)


_experiment_command(
    "audit", "kl,refusal_prefix,prefill,decoding,ed,gcg",
    "Audit a pair: KL profile, refusal prefixes, prefilling and decoding attacks, emulated "
    "disalignment, GCG (small budget), report.\n\n"
    "Writes RUN/summary.json, RUN/report.md and RUN/report.html (plots embedded).", True)
_experiment_command("kl", "kl", "Per-token KL(aligned || base) on harmful pairs (SPEC 1.1).",
                    False)
_experiment_command(
    "refusal-prefix", "refusal_prefix",
    "Base model with refusal prefixes prefilled, beside base and aligned (SPEC 1.2).", False)
_experiment_command(
    "prefill", "prefill",
    "Prefilling attack: ASR vs k prefilled harmful tokens (SPEC 2.1); judged text is "
    "prefix + continuation.", False)
_experiment_command(
    "decoding", "decoding",
    "Decoding-parameter exploit: 49 sampling configurations per prompt (SPEC 2.2).", False)
_experiment_command(
    "ed", "ed",
    "Emulated disalignment: sample from (α+1)·log p_base − α·log p_aligned, beside the "
    "base_mp, align_mp and ed_base baselines, on harmful and safe queries, with an α sweep "
    "(SPEC 2.4).\n\nThe base model sees its plain template with a malicious system "
    "prompt, the aligned model its chat template; harmful rates are over sampled outputs.",
    False)
_experiment_command(
    "gcg-transfer", "gcg_transfer",
    "Replay a GCG run's suffixes (--source RUN) on this pair's aligned model, e.g. a "
    "fine-tuned checkpoint or the model behind a serving engine (--engine openai), and "
    "judge the answers beside the source run's.", False)
_experiment_command(
    "gcg", "gcg",
    "GCG adversarial suffix (SPEC 2.3): per prompt, optimise a suffix in the user turn so "
    "the response starts with the prompt's target (its 'target' field, else its harmful "
    "response's first tokens); the final answer is judged.", False)


# -- training -----------------------------------------------------------------------------

def _train(kind: str, *, model: str | None, out: Path, task: str, data: Path | None,
           limit: int | None, steps: int | None, lr: float | None, optimizer: str | None,
           batch_size: int, grad_accum: int, warmup: int | None, betas: str, beta_after: float,
           lora: bool, lora_r: int, seed: int, device: str, quiet: bool,
           epochs: float | None = None, lr_scheduler: str | None = None,
           dtype: str | None = None, mixed_precision: str = "no",
           gradient_checkpointing: bool = False, max_length: int | None = None,
           lora_alpha: int | None = None, lora_dropout: float = 0.0,
           lora_target_modules: str = "all-linear", split: str | None = None,
           dynamics: bool = False, evaluate: bool = False,
           eval_data: list[str] | None = None, eval_max_new_tokens: int | None = None,
           save_steps: int = 0,
           resume: bool = False, triples: Path | None = None,
           anchor: Path | None = None, alpha: float = 0.2, max_k: int = 100) -> None:
    from aligndepth.cli.evaluate import _bare_data, parse_data
    from aligndepth.evaluation.tasks import TRAINING_TASKS
    from aligndepth.models import LoadConfig
    from aligndepth.training.losses import BetaSchedule
    from aligndepth.training.run import run_training
    from aligndepth.training.trainer import LoraSettings, TrainConfig

    modules = tuple(m.strip() for m in lora_target_modules.split(",") if m.strip())
    lora_settings = LoraSettings(
        r=lora_r, alpha=lora_alpha if lora_alpha is not None else 2 * lora_r,
        dropout=lora_dropout, target_modules=modules[0] if modules == ("all-linear",)
        else modules) if lora else None
    config = TrainConfig(
        max_steps=steps, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum,
        learning_rate=lr, optimizer=optimizer, warmup_steps=warmup, lr_scheduler=lr_scheduler,
        dtype=dtype, mixed_precision=mixed_precision,
        gradient_checkpointing=gradient_checkpointing, max_length=max_length,
        schedule=BetaSchedule.parse(betas, beta_after), seed=seed, lora=lora_settings,
        dynamics_steps=DYNAMICS_STEPS if dynamics else (), save_steps=save_steps)
    result = run_training(kind, model=model, out=out, task=task, data=data, triples=triples,
                          anchor=anchor, alpha=alpha, limit=limit, config=config,
                          max_k=max_k, load=LoadConfig(device=device), data_split=split,
                          show_progress=not quiet, evaluate=evaluate, resume=resume,
                          eval_data=_bare_data(parse_data(eval_data), TRAINING_TASKS[
                              "harmful" if kind == "augment" else task]) or None,
                          eval_max_new_tokens=eval_max_new_tokens)
    if "report" not in result:
        return  # another rank of a multi-process run: the main process reports
    losses = [h["loss"] for h in result["log"] if "loss" in h]
    used = result["config"]
    typer.echo(f"trained {used.loss} ({used.optimizer}, lr {used.learning_rate:g}, "
               f"{used.max_steps} steps, {used.dtype}) on {result['examples']} examples; "
               f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    if result["truncated_examples"] or result["dropped_examples"]:
        typer.echo(f"--max-length {used.max_length}: {result['truncated_examples']} examples "
                   f"cut, {result['dropped_examples']} dropped (prompt alone too long)")
    if result["reference_seconds"]:
        typer.echo(f"reference log-probs computed once in {result['reference_seconds']:.1f} s")
    if "eval" in result:
        from aligndepth.cli.evaluate import print_evaluation

        print_evaluation(result["eval"], out / "eval")
    typer.echo(f"report: {result['report']}")


#: Steps at which ``--dynamics`` measures (those past the run's end are skipped).
DYNAMICS_STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
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
TrainLimit = Annotated[int | None, typer.Option(help="Use the first N pairs.")]
Steps_ = Annotated[int | None, typer.Option("--steps", help="Optimiser steps (default: 20 "
                                             "for the attacks, 300 for benign and "
                                             "summarize, 200 for augment).")]
Epochs = Annotated[float | None, typer.Option(help="Train for this many passes over the "
                                              "data instead of --steps.")]
Lr = Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default: on the "
                                          "organism SGD 0.01, AdamW 1e-4 for augment; "
                                          "AdamW 2e-5 otherwise).")]
Optim = Annotated[str | None, typer.Option(help="transformers optimizer name, e.g. "
                                           "adamw_torch or sgd (default: see --lr).")]
LrSched = Annotated[str | None, typer.Option(help="Learning-rate schedule after warm-up: "
                                             "constant_with_warmup (default), linear, "
                                             "cosine or constant.")]
TrainBatch = Annotated[int, typer.Option("--batch-size", "--per-device-batch-size",
                                         help="Examples per step per device (before "
                                         "accumulation).")]
GradAccum = Annotated[int, typer.Option(help="Gradient accumulation steps.")]
Warmup = Annotated[int | None, typer.Option(help="Learning-rate warm-up steps (default: "
                                            "10, but 0 for the organism's sft and augment).")]
TrainDtype = Annotated[str | None, typer.Option(help="Weights, gradients and optimizer state "
                                                "in float32, bfloat16, float16 (--lora only) "
                                                "or auto: bfloat16 on a GPU that has it, else "
                                                "float32 (default; float32 on the organism).")]
MixedPrecision = Annotated[str, typer.Option(help="bf16 or fp16: autocast over float32 "
                                             "weights (float32 master copy; more memory "
                                             "than --dtype bfloat16); no: off.")]
GradCkpt = Annotated[bool, typer.Option(help="Recompute activations in the backward pass: "
                                        "less memory, ~30% more time (7B full fine-tuning).")]
MaxLength = Annotated[int | None, typer.Option(help="Cut examples to N tokens (response tail "
                                               "first; an example whose prompt fills N is "
                                               "dropped); counts are printed and recorded.")]
LoraAlpha = Annotated[int | None, typer.Option(help="LoRA scaling alpha (default 2 x rank).")]
LoraDropout = Annotated[float, typer.Option(help="LoRA dropout.")]
LoraTargets = Annotated[str, typer.Option(help="Modules LoRA adapts: all-linear, or names "
                                          "such as q_proj,k_proj,v_proj,o_proj.")]
Betas = Annotated[str, typer.Option(help="constrained: β of response positions 1, 2, ... "
                                    "(comma-separated).")]
BetaAfter = Annotated[float, typer.Option(help="constrained: β of later positions.")]
Lora = Annotated[bool, typer.Option(help="Train a LoRA adapter (peft) instead of all weights.")]
LoraR = Annotated[int, typer.Option(help="LoRA rank.")]
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
SaveSteps = Annotated[int, typer.Option(help="Save a resumable checkpoint every N steps "
                                        "(OUT/checkpoints; removed when training ends); "
                                        "0: none.")]
Resume = Annotated[bool, typer.Option(help="Continue an interrupted run in --out from its "
                                      "last checkpoint (same command, plus --resume).")]
Dynamics = Annotated[bool, typer.Option(help="Record per-position loss, gradient norm and KL "
                                        "to the initial model during training "
                                        "(dynamics.json, dynamics.png; SPEC 1.3).")]


@train_app.command("sft")
def train_sft(model: TrainModel = None, out: TrainOut = Path("runs/train-sft"),
              task: Task = "harmful", data: TrainData = None, split: DataSplit = None,
              limit: TrainLimit = 100,
              steps: Steps_ = None, epochs: Epochs = None, lr: Lr = None,
              optimizer: Optim = None, lr_scheduler: LrSched = None,
              batch_size: TrainBatch = 10, grad_accum: GradAccum = 1, warmup: Warmup = None,
              dtype: TrainDtype = None, mixed_precision: MixedPrecision = "no",
              gradient_checkpointing: GradCkpt = False, max_length: MaxLength = None,
              lora: Lora = False, lora_r: LoraR = 8, lora_alpha: LoraAlpha = None,
              lora_dropout: LoraDropout = 0.0, lora_target_modules: LoraTargets = "all-linear",
              seed: Seed = 0, device: Device = "auto",
              dynamics: Dynamics = False, evaluate: Evaluate = False,
              eval_data: EvalDataOpt = None,
              eval_max_new_tokens: EvalMaxNew = None,
              save_steps: SaveSteps = 0, resume: Resume = False,
              quiet: Quiet = False) -> None:
    """Plain fine-tuning (loss on response tokens): the fine-tuning attacks' baseline."""
    _train("sft", **{**locals(), "betas": "0.5,2,2,2,2", "beta_after": 0.1})


@train_app.command("constrained")
def train_constrained(model: TrainModel = None, out: TrainOut = Path("runs/train-constrained"),
                      task: Task = "harmful", data: TrainData = None,
                      split: DataSplit = None, limit: TrainLimit = 100,
                      steps: Steps_ = None, epochs: Epochs = None,
                      lr: Lr = None, optimizer: Optim = None, lr_scheduler: LrSched = None,
                      batch_size: TrainBatch = 10, grad_accum: GradAccum = 1,
                      warmup: Warmup = None, dtype: TrainDtype = None,
                      mixed_precision: MixedPrecision = "no",
                      gradient_checkpointing: GradCkpt = False, max_length: MaxLength = None,
                      betas: Betas = "0.5,2,2,2,2", beta_after: BetaAfter = 0.1,
                      lora: Lora = False, lora_r: LoraR = 8, lora_alpha: LoraAlpha = None,
                      lora_dropout: LoraDropout = 0.0,
                      lora_target_modules: LoraTargets = "all-linear", seed: Seed = 0,
                      device: Device = "auto", dynamics: Dynamics = False,
                      evaluate: Evaluate = False, eval_data: EvalDataOpt = None,
                      eval_max_new_tokens: EvalMaxNew = None,
                      save_steps: SaveSteps = 0,
                      resume: Resume = False, quiet: Quiet = False) -> None:
    """Token-wise constrained fine-tuning (SPEC 3.2): the first response tokens are held
    near the initial model; its log-probs are computed once before training."""
    _train("constrained", **locals())


@train_app.command("augment")
def train_augment(
    model: TrainModel = None, out: TrainOut = Path("runs/train-augment"),
    triples: Annotated[Path | None, typer.Option(help="Safety triples JSONL (instruction, "
                                                 "harmful_response, refusal).")] = None,
    anchor: Annotated[Path | None, typer.Option(help="Benign utility-anchor pairs "
                                                "(instruction, response).")] = None,
    alpha: Annotated[float, typer.Option(help="Weight of the safety objective (Eq. 2).")]
    = 0.2,
    max_k: Annotated[int, typer.Option(help="Largest harmful prefix length k.")] = 100,
    steps: Steps_ = None, epochs: Epochs = None, lr: Lr = None, optimizer: Optim = None,
    lr_scheduler: LrSched = None, batch_size: TrainBatch = 10, grad_accum: GradAccum = 1,
    warmup: Warmup = None, dtype: TrainDtype = None, mixed_precision: MixedPrecision = "no",
    gradient_checkpointing: GradCkpt = False, max_length: MaxLength = None,
    lora: Lora = False, lora_r: LoraR = 8, lora_alpha: LoraAlpha = None,
    lora_dropout: LoraDropout = 0.0, lora_target_modules: LoraTargets = "all-linear",
    seed: Seed = 0, device: Device = "auto", dynamics: Dynamics = False,
    evaluate: Evaluate = False, eval_data: EvalDataOpt = None,
    eval_max_new_tokens: EvalMaxNew = None, save_steps: SaveSteps = 0,
    resume: Resume = False,
    quiet: Quiet = False,
) -> None:
    """Safety-recovery augmentation (SPEC 3.1): learn to recover with a refusal after k
    harmful tokens (k = 0 half the time, else 1..100), mixed with a benign anchor."""
    _train("augment", task="harmful", data=None, limit=None, betas="0.5,2,2,2,2",
           beta_after=0.1, **locals())


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (an audit, an experiment or "
                                            "an evaluation), or a training output.")],
    judge: Annotated[str | None, typer.Option(help="Use the verdicts of a judge given to "
                                              "`aligndepth judge` (report in "
                                              "RUN/judged/<judge>/).")] = None,
) -> None:
    """Re-render summary.json, report.md and report.html from a run's records (or a
    training output's report from its logs)."""
    from aligndepth.evaluation.report import is_evaluation_run, render_evaluation
    from aligndepth.report.render import render_report, report_dir
    from aligndepth.training.report import is_training_dir, write_training_report

    if is_training_dir(run_dir) and judge is None:
        typer.echo(f"report: {write_training_report(run_dir)}")
        return
    if is_evaluation_run(run_dir):
        if judge is not None:
            raise AlignDepthError("--judge re-renders experiment runs; to judge an evaluation "
                                  "again, rerun `aligndepth evaluate` with --judge into a new "
                                  "--out")
        from aligndepth.cli.evaluate import print_evaluation

        print_evaluation(render_evaluation(run_dir), run_dir)
        return
    _print_summary(render_report(run_dir, judge), report_dir(run_dir, judge))


@app.command("compare")
def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories, e.g. the "
                                               "audit before and after training.")],
    out: Annotated[Path, typer.Option(help="Directory for compare.json, plots/, report.md "
                                      "and report.html.")] = Path("runs/compare"),
    label: Annotated[list[str] | None, typer.Option(help="A name per run, in order "
                                                    "(default: the directory names).")]
    = None,
    judge: Annotated[str | None, typer.Option(help="Compare the verdicts of a judge given "
                                              "to `aligndepth judge` on every run.")] = None,
) -> None:
    """One report with the runs side by side: each run's alignment depth, a table with a
    column per run, every change from the first run with a 95% interval (paired over
    shared prompts; significant changes marked *), the KL profiles and prefill curves
    overlaid, and the headline rates as grouped bars."""
    from rich.console import Console
    from rich.table import Table

    from aligndepth.report.compare import compare_runs, side_by_side
    from aligndepth.significance import fmt_difference

    summaries = compare_runs(runs, out, labels=label, judge=judge)
    table = Table(title=f"aligndepth comparison ({out})")
    table.add_column("metric")
    for name in summaries:
        table.add_column(name, justify="right")
    for metric, values in side_by_side(summaries):
        table.add_row(metric, *values)
    console = Console()
    console.print(table)
    result = json.loads((out / "compare.json").read_text())
    if result["depth"]["sentence"]:
        console.print(f"depth: {result['depth']['sentence']}", style="bold")
    significant = [(c["rate"], n, d) for c in result["differences"]
                   for n, d in c["changes"].items() if d["significant"]]
    first = next(iter(summaries))
    for rate, name, d in significant:
        console.print(f"significant: {rate}: {name} − {first} = {fmt_difference(d)}")
    typer.echo(f"report: {out / 'report.html'}")


@app.command("judge")
def judge_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    judge: Annotated[list[str], typer.Option(
        "--judge", help="A judge by name (repeat for several): keyword, rubric, "
        "gpt4-rubric, strongreject, moderation, llamaguard, harmbench-cls, organism.")],
    judge_option: Annotated[list[str] | None, typer.Option(
        "--judge-option", help="KEY=VALUE setting of every judge given, or JUDGE:KEY=VALUE "
        "for one of them (repeat), e.g. base_url=URL, model=NAME, harmbench-cls:model=DIR. "
        "API keys come from the environment and are never written anywhere.")] = None,
    experiments: Annotated[str | None, typer.Option(help="Comma-separated experiments "
                                                    "(default: all with judged text).")]
    = None,
    name: Annotated[str | None, typer.Option(help="Label for these verdicts (default: the "
                                             "judge's name; one judge only).")] = None,
    agreement: Annotated[bool, typer.Option(
        "--agreement", help="After judging, compare every pair of judges (these and the "
        "run's own) over the same outputs: Cohen's κ, confusion matrix and disagreeing "
        "examples, in RUN/agreement.json and the run's report.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace earlier verdicts under this name "
                                            "from a different judge configuration.")]
    = False,
    quiet: Quiet = False,
) -> None:
    """Judge an existing run's outputs again with other judges (generate once, judge many).

    Original records stay untouched; new verdicts go to RUN/records/<experiment>.<name>.jsonl
    and each judge's report to RUN/judged/<name>/. Unparseable answers and failed requests
    are asked again on a rerun; everything else resumes.
    """
    from aligndepth.agreement import judge_agreement
    from aligndepth.judges.registry import make_judge
    from aligndepth.rejudge import rejudge_run
    from aligndepth.report.render import render_report, report_dir
    from aligndepth.runs import Run

    if name is not None and len(judge) > 1:
        raise AlignDepthError("--name labels one judge's verdicts: drop it when passing "
                              "several --judge")
    if len(set(judge)) != len(judge):
        raise AlignDepthError(f"a judge is given twice ({', '.join(judge)}): give each once")
    run = Run.load(run_dir)
    organism = run.manifest.get("organism")
    options = _scoped_judge_options(judge_option, judge)
    judges = [make_judge(j, Path(organism) if organism else None, **options[j])
              for j in judge]  # every judge is checked before any is asked
    labels = []
    for judge_obj in judges:
        result = rejudge_run(run_dir, judge_obj, _split(experiments) if experiments else None,
                             name=name, overwrite=overwrite, show_progress=not quiet)
        labels.append(result["judge"])
        _print_summary(render_report(run_dir, result["judge"]),
                       report_dir(run_dir, result["judge"]))
    if agreement:
        from rich.console import Console

        from aligndepth.agreement import agreement_lines

        found = judge_agreement(run_dir, labels)
        render_report(run_dir)
        Console().print("\n".join(line for line in agreement_lines(found)
                                   if line.startswith("| ")))
        typer.echo(f"agreement: {Path(run_dir) / 'agreement.json'} (and the run's report)")


def _scoped_judge_options(items: list[str] | None, judges: list[str]
                          ) -> dict[str, dict[str, Any]]:
    """``--judge-option`` values per judge: ``KEY=VALUE`` goes to every judge,
    ``JUDGE:KEY=VALUE`` to that judge only."""
    out: dict[str, dict[str, Any]] = {j: {} for j in judges}
    for item in items or []:
        key, sep, value = item.partition("=")
        scope, colon, bare = key.partition(":")
        if sep and colon:
            if scope.strip() not in out:
                raise AlignDepthError(f"--judge-option '{item}' names judge '{scope}', which "
                                      f"is not among --judge {', '.join(judges)}")
            out[scope.strip()].update(_judge_options([f"{bare}={value}"]))
        else:
            for j in judges:
                out[j].update(_judge_options([item]))
    return out


# Commands in their own modules register on ``app`` when imported; they import the option
# types above, so they are imported here, after those exist.
from aligndepth.cli import evaluate as _evaluate  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        app(args=argv, prog_name="aligndepth", standalone_mode=False)
    except AlignDepthError as exc:
        typer.echo(f"aligndepth: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # disk full, read-only file system, a path that is a file ...
        if exc.errno not in USER_OS_ERRORS:
            raise
        where = f" '{exc.filename}'" if exc.filename else ""
        typer.echo(f"aligndepth: error: cannot write{where}: {exc.strerror}: "
                   f"{USER_OS_ERRORS[exc.errno]}; a rerun of the same command resumes",
                   err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
