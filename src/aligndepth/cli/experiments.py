"""The experiment commands, built from one template: ``audit``, ``kl``,
``refusal-prefix``, ``prefill``, ``decoding``, ``ed``, ``gcg`` and ``gcg-transfer``.

The options shared by every experiment (models, data, judge, engine, run settings) are
declared here; each experiment's own options are generated from its config dataclass
(:mod:`aligndepth.configs`), so every field is settable and no command offers an option
it ignores: a command shows the options of the experiments it runs.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.app import Quiet, app
from aligndepth.cli.config_file import ConfigFile, write_run_config
from aligndepth.cli.fields import field_parameters, field_values
from aligndepth.cli.options import (
    Aligned,
    AlignedDevice,
    AlignedEngineModel,
    AlignedEngineUrl,
    AlignedSystem,
    Base,
    BaseDevice,
    BaseEngineModel,
    BaseEngineUrl,
    BaseFormat,
    BaseTemplate,
    Batch,
    Data,
    DataFormat,
    DataSplit,
    EngineKind,
    EngineModel,
    EngineOptions,
    EngineUrl,
    JudgeName,
    JudgeOptions,
    Limit,
    MaxNew,
    Out,
    Overwrite,
    Phrases,
    Placement,
    SafeData,
    SampleN,
    Seed,
    Stops,
    _judge_options,
    _phrases,
    _print_summary,
    _split,
    served_configs,
)
from aligndepth.configs import AUDIT_BUDGET, EXPERIMENT_CONFIGS, GCGConfig
from aligndepth.errors import AlignDepthError
from aligndepth.settings import LoadConfig


def experiment_configs(command: str, options: dict[str, Any]) -> dict[str, Any]:
    """Each experiment's config from the command's generated ``options``; GCG starts
    from the command's budget (``gcg``: the paper's, the audit: :data:`AUDIT_BUDGET`)."""
    out = {}
    for name, cls in EXPERIMENT_CONFIGS.items():
        if cls is GCGConfig:
            start = GCGConfig() if command == "gcg" else AUDIT_BUDGET
        else:
            start = cls()
        out[name] = replace(start, **field_values(cls, options))
    return out


def _run(command: str, experiments: tuple[str, ...], configs: dict[str, Any], *,
         base: str | None, aligned: str | None, data: Path | None, judge: str | None,
         out: Path | None, overwrite: bool, seed: int, limit: int | None,
         max_new_tokens: int | None, batch_size: int, base_format: str,
         base_template: str | None, aligned_system: str | None, load: LoadConfig,
         sample: int | None, stop: list[str] | None,
         base_device: str | None, aligned_device: str | None, system_placement: str,
         quiet: bool,
         refusal_phrases: Path | None, safe_data: Path | None, data_format: str | None,
         judge_option: list[str] | None, split: str | None, engine: str,
         engine_url: str | None, engine_model: str | None, base_engine_url: str | None,
         aligned_engine_url: str | None, base_engine_model: str | None,
         aligned_engine_model: str | None, engine_option: list[str] | None,
         context: Any) -> None:
    from aligndepth.audit import (
        AuditConfig,
        base_readers,
        check_servable,
        open_setup,
        read_inputs,
        resolve_pair,
        run_experiments,
    )
    from aligndepth.prompts import DEFAULT_PLAIN_TEMPLATE, PromptFormat, parse_system
    from aligndepth.runs import check_out

    config = AuditConfig(
        experiments=experiments, limit=limit, sample=sample, stop=tuple(stop or ()), seed=seed,
        data_split=split, max_new_tokens=max_new_tokens, batch_size=batch_size, **configs)
    if base_format == "plain":
        bfmt = PromptFormat.plain(base_template or DEFAULT_PLAIN_TEMPLATE)
    elif base_format == "chat":
        bfmt = PromptFormat.chat()
    else:
        raise AlignDepthError(f"unknown --base-format '{base_format}': use plain or chat")
    # the base model loads only when an experiment reads it
    readers = base_readers(config)
    served = served_configs(engine, engine_url, engine_model, engine_option,
                            roles=("base", "aligned") if readers else ("aligned",),
                            base_url=base_engine_url, aligned_url=aligned_engine_url,
                            base_model=base_engine_model, aligned_model=aligned_engine_model)
    if served:
        check_servable(config.experiments)
    if judge is not None:  # before any model (or a classifier judge) loads
        from aligndepth.judges.registry import judge_factory
        from aligndepth.judges.scope import check_judging, measures

        check_judging(config.experiments, judge, measures(judge_factory(judge)))
    aligned_fmt = PromptFormat("chat", system=parse_system(aligned_system),
                               placement=system_placement)
    base_load = replace(load, device=base_device or load.device, served=served.get("base"))
    aligned_load = replace(load, device=aligned_device or load.device,
                           served=served.get("aligned"))
    # every input checkable without weights is checked before the pair loads
    organism, base, aligned = resolve_pair(base, aligned, show_progress=not quiet,
                                           readers=readers)
    inputs = read_inputs(organism, config, data, safe_data, data_format)
    if out is None:
        slug = "organism" if organism else Path(str(aligned)).name or "pair"
        out = Path("runs") / f"{command}-{slug}"
    check_out(Path(out).expanduser(), overwrite)
    setup = open_setup(base, aligned, judge=judge, seed=seed, batch_size=batch_size,
                       max_new_tokens=max_new_tokens, show_progress=not quiet, load=load,
                       base_load=base_load, aligned_load=aligned_load,
                       stop_strings=tuple(stop or ()),
                       base_format=bfmt, aligned_format=aligned_fmt,
                       check_tokenizer=_tokenizer_check(config), readers=readers,
                       judge_options={**_phrases(refusal_phrases),
                                      **_judge_options(judge_option)})
    summary = run_experiments(setup, out, config, data, overwrite=overwrite,
                              safe_data=safe_data, data_format=data_format, inputs=inputs,
                              release_base=True)
    write_run_config(context, out)
    _print_summary(summary, out)


def _tokenizer_check(config: Any) -> Callable[[Any], None] | None:
    """What the aligned tokenizer alone can refuse before any weights load: a GCG
    ``--init-suffix`` holding a control token, non-ASCII text or one that cannot move."""
    if "gcg" not in config.experiments or config.gcg.init_suffix is None:
        return None
    from aligndepth.attacks.gcg_tokens import check_init_suffix

    return partial(check_init_suffix, config=config.gcg)


EXPERIMENT_HELP = ("Comma-separated subset of kl,refusal_prefix,prefill,decoding,ed,gcg "
                   "(and gcg_transfer, with --source).")

#: Shared options that only some experiments read; a command shows those its experiments
#: use (each experiment's own options are shown the same way, see ``_experiment_command``).
#: The experiments that judge or generate (every one but kl, which scores given pairs).
GENERATING = {"refusal_prefix", "prefill", "decoding", "ed", "gcg", "gcg_transfer"}
#: The experiments a served engine can run.
SERVABLE = {"refusal_prefix", "prefill", "decoding", "gcg_transfer"}
OPTION_OWNERS = {
    "judge": GENERATING, "judge_option": GENERATING, "refusal_phrases": GENERATING,
    "max_new_tokens": GENERATING, "stop": GENERATING,
    **{name: SERVABLE for name in ("engine", "engine_url", "engine_model", "base_engine_url",
                                    "aligned_engine_url", "base_engine_model",
                                    "aligned_engine_model", "engine_option")},
    "safe_data": {"ed"},
}


#: The ``--help`` heading of each experiment's own options.
PANELS = {"kl": "KL profile (kl)", "refusal_prefix": "Refusal prefix (refusal_prefix)",
          "prefill": "Prefilling attack (prefill)", "decoding": "Decoding exploit (decoding)",
          "ed": "Emulated disalignment (ed)", "gcg": "GCG (gcg)",
          "gcg_transfer": "GCG transfer (gcg_transfer)"}


#: The experiments that read each option (every shared one and every generated one; an
#: option not listed is read by every experiment).
OWNERS = {**OPTION_OWNERS, **{p.name: {name} for name, cls in EXPERIMENT_CONFIGS.items()
                              for p in field_parameters(cls)}}


def _hidden(annotation: Any) -> Any:
    """A copy of an ``Annotated[..., typer.Option(...)]`` with the option hidden."""
    base, info = annotation.__origin__, annotation.__metadata__[0]
    info = copy.copy(info)
    info.hidden = True
    return Annotated[base, info]


def _refuse_unused(ctx: Any, command: str) -> None:
    """An option that none of the experiments run reads (hidden from the command's
    ``--help``, or, in ``audit``, one of an experiment left out of ``--experiments``)
    given a value is an error, not silently ignored."""
    chosen = set(_split(ctx.params["experiments"]))
    for param in ctx.command.params:
        owners = OWNERS.get(param.name)
        hidden = getattr(param, "hidden", False)
        if param.name not in ctx.params or not (hidden or (owners and not owners & chosen)):
            continue
        value, default = ctx.params[param.name], param.default
        if value == default or (value in (None, (), []) and default in (None, (), [])):
            continue
        if OPTION_OWNERS.get(param.name) is SERVABLE:  # say why the engine cannot
            from aligndepth.audit import check_servable

            check_servable(tuple(chosen))
        flag = max(param.opts, key=len)
        if not hidden:  # audit, without the option's experiment
            raise AlignDepthError(f"--experiments {ctx.params['experiments']} does not use "
                                  f"{flag}: drop it, or add an experiment that does "
                                  f"({', '.join(sorted(owners or ()))}) to --experiments")
        raise AlignDepthError(f"`aligndepth {command}` does not use {flag}: drop it, or run "
                              f"an experiment that does (`aligndepth audit` runs them all)")


def _experiment_command(command: str, experiments: str, doc: str, choosable: bool) -> None:
    """Register ``command``; every experiment command shares one option set.

    Options are shown where they matter: ``--experiments`` in ``audit`` only, and each
    experiment's own options (generated from its config) in the commands that run it.
    """

    def cmd(ctx: typer.Context, base: Base = None, aligned: Aligned = None, data: Data = None,
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
            base_device: BaseDevice = None, aligned_device: AlignedDevice = None,
            refusal_phrases: Phrases = None,
            safe_data: SafeData = None, experiments: str = experiments,
            config_file: ConfigFile = None, quiet: Quiet = False,
            **options: Any) -> None:
        _refuse_unused(ctx, command)
        shared = {k: v for k, v in locals().items()
                  if k not in ("options", "command", "ctx", "config_file", "experiments")}
        _run(command, _split(experiments), experiment_configs(command, options),
             load=LoadConfig(**field_values(LoadConfig, options)), context=ctx, **shared)

    runs = set(_split(experiments))
    signature = inspect.signature(cmd, eval_str=True)
    params = []
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        if param.name == "experiments":  # then the loading and experiments' options
            params += field_parameters(LoadConfig, panel="Model loading")
            for name, cls in EXPERIMENT_CONFIGS.items():
                params += field_parameters(cls, hidden=name not in runs, panel=PANELS[name])
            param = param.replace(annotation=Annotated[
                str, typer.Option(help=EXPERIMENT_HELP, hidden=not choosable)])
        elif not OPTION_OWNERS.get(param.name, runs) & runs:
            param = param.replace(annotation=_hidden(param.annotation))
        params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    cmd.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    cmd.__annotations__ = {p.name: p.annotation for p in params}
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
