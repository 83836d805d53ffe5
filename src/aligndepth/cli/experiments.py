"""The experiment commands, built from one template: ``audit``, ``kl``,
``refusal-prefix``, ``prefill``, ``decoding``, ``ed``, ``gcg`` and ``gcg-transfer``.

The commands come from the experiment registry (:mod:`aligndepth.experiments_registry`):
``audit`` and one command per registered experiment. The options shared by every
experiment (models, data, judge, engine, run settings) are declared here; each
experiment's own options are generated from its config dataclass, so every field is
settable and no command offers an option it ignores: a command shows the options of the
experiments it runs. An experiment registered after this module is imported gets its
command when the command line next runs (:func:`sync_commands`).
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.app import Quiet, app
from aligndepth.cli.config_file import ConfigFile, write_run_config
from aligndepth.cli.fields import field_parameters, field_values
from aligndepth.cli.shared_options import (
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
    ShardOpt,
    Stops,
    _judge_options,
    _phrases,
    _print_summary,
    _split,
    served_configs,
)
from aligndepth.errors import AlignDepthError
from aligndepth.experiments_registry import audit_names, call, chosen, generation
from aligndepth.experiments_registry import experiments as registered
from aligndepth.run_settings import LoadConfig


def experiment_configs(command: str, options: dict[str, Any]) -> dict[str, Any]:
    """Each experiment's config from the command's generated ``options``, starting from
    the config its entry gives the command (GCG: the paper's budget in ``gcg``, a small
    one in the audit)."""
    return {e.name: replace(e.start_config(alone=command == e.command),
                            **field_values(e.config, options)) for e in registered()}


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
         shard: str | None, context: Any) -> None:
    from aligndepth.audit import (
        AuditConfig,
        base_readers,
        check_servable,
        open_setup,
        read_inputs,
        resolve_pair,
        run_experiments,
    )
    from aligndepth.cluster import worker_load
    from aligndepth.prompts import DEFAULT_PLAIN_TEMPLATE, PromptFormat, parse_system
    from aligndepth.runs import check_out
    from aligndepth.shards import check_count, parse_shard, setup_lock, worker_shard

    config = AuditConfig(
        experiments=experiments, limit=limit, sample=sample, stop=tuple(stop or ()), seed=seed,
        data_split=split, max_new_tokens=max_new_tokens, batch_size=batch_size,
        shard=parse_shard(shard), **configs)
    worker = worker_shard(config.shard, os.environ)  # --shard, or a torchrun rank's
    load = worker_load(load)  # a torchrun rank's own GPU
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
    if worker is not None:
        check_count(Path(out).expanduser(), worker)
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
    if "missing" in summary:  # a worker of a sharded run that left the report to another
        if summary["missing"] is not None:
            typer.echo(f"shard {summary['shard']} done; the run waits for "
                       f"{summary['missing']}: `aligndepth report {out}` once all are done")
        return
    if worker is None:
        write_run_config(context, out)
    else:
        with setup_lock(Path(out).expanduser()):
            write_run_config(context, out)
    _print_summary(summary, out)


def _tokenizer_check(config: Any) -> Callable[[Any], None] | None:
    """What the aligned tokenizer alone can refuse before any weights load (the chosen
    experiments' ``tokenizer_check``, e.g. a GCG ``--init-suffix`` holding a control
    token, non-ASCII text or one that cannot move)."""
    checks = [check for e in chosen(config.experiments) if e.tokenizer_check is not None
              if (check := call(e.tokenizer_check, getattr(config, e.name))) is not None]
    if not checks:
        return None
    return partial(_all, checks)


def _all(checks: list[Callable[[Any], None]], tokenizer: Any) -> None:
    for check in checks:
        check(tokenizer)


def experiment_help() -> str:
    """``--experiments``'s help: the audit's experiments and the others."""
    others = [e for e in registered() if not e.in_audit]
    more = f" (and {', '.join(e.name for e in others)})" if others else ""
    return f"Comma-separated subset of {','.join(audit_names())}{more}."


#: The shared options that only the experiments that generate and judge read.
JUDGING_OPTIONS = ("judge", "judge_option", "refusal_phrases", "max_new_tokens", "stop")
#: The shared options that only the experiments a served engine can run read.
ENGINE_OPTIONS = ("engine", "engine_url", "engine_model", "base_engine_url",
                  "aligned_engine_url", "base_engine_model", "aligned_engine_model",
                  "engine_option")


def option_owners() -> dict[str, set[str]]:
    """Shared options that only some experiments read, with those experiments; a command
    shows those its experiments use (each experiment's own options are shown the same
    way, see ``_experiment_command``)."""
    judging = {e.name for e in registered() if e.judged}
    servable = {e.name for e in registered() if e.servable}
    return {**dict.fromkeys(JUDGING_OPTIONS, judging),
            **dict.fromkeys(ENGINE_OPTIONS, servable),
            "safe_data": {e.name for e in registered() if e.needs_safe}}


def owners() -> dict[str, set[str]]:
    """The experiments that read each option (every shared one and every generated one;
    an option not listed is read by every experiment)."""
    return {**option_owners(), **{p.name: {e.name} for e in registered()
                                  for p in field_parameters(e.config)}}


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
    picked = set(_split(ctx.params["experiments"]))
    by_option = owners()
    for param in ctx.command.params:
        readers = by_option.get(param.name)
        hidden = getattr(param, "hidden", False)
        if param.name not in ctx.params or not (hidden or (readers and not readers & picked)):
            continue
        value, default = ctx.params[param.name], param.default
        if value == default or (value in (None, (), []) and default in (None, (), [])):
            continue
        if param.name in ENGINE_OPTIONS:  # say why the engine cannot
            from aligndepth.audit import check_servable

            check_servable(tuple(picked))
        flag = max(param.opts, key=len)
        if not hidden:  # audit, without the option's experiment
            raise AlignDepthError(f"--experiments {ctx.params['experiments']} does not use "
                                  f"{flag}: drop it, or add an experiment that does "
                                  f"({', '.join(sorted(readers or ()))}) to --experiments")
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
            safe_data: SafeData = None, shard: ShardOpt = None,
            experiments: str = experiments,
            config_file: ConfigFile = None, quiet: Quiet = False,
            **options: Any) -> None:
        _refuse_unused(ctx, command)
        shared = {k: v for k, v in locals().items()
                  if k not in ("options", "command", "ctx", "config_file", "experiments")}
        _run(command, _split(experiments), experiment_configs(command, options),
             load=LoadConfig(**field_values(LoadConfig, options)), context=ctx, **shared)

    # the audit shows every experiment's options (any may be chosen), a command its own
    runs = {e.name for e in registered()} if choosable else set(_split(experiments))
    signature = inspect.signature(cmd, eval_str=True)
    params = []
    shared_owners = option_owners()
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        if param.name == "experiments":  # then the loading and experiments' options
            params += field_parameters(LoadConfig, panel="Model loading")
            for e in registered():
                params += field_parameters(e.config, hidden=e.name not in runs,
                                           panel=e.panel or f"{e.title} ({e.name})")
            param = param.replace(annotation=Annotated[
                str, typer.Option(help=experiment_help(), hidden=not choosable)])
        elif not shared_owners.get(param.name, runs) & runs:
            param = param.replace(annotation=_hidden(param.annotation))
        params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    cmd.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    cmd.__annotations__ = {p.name: p.annotation for p in params}
    cmd.__doc__ = doc
    _replace_command(command, cmd)


def _replace_command(name: str, cmd: Callable[..., Any]) -> None:
    """Register ``cmd`` as ``name`` on the app, in the place of an earlier one."""
    before = [c for c in app.registered_commands if c.name == name]
    app.command(name)(cmd)
    if before:
        new = app.registered_commands.pop()
        app.registered_commands[app.registered_commands.index(before[0])] = new


AUDIT_HELP = ("Audit a pair: KL profile, refusal prefixes, prefilling and decoding attacks, "
              "emulated disalignment, GCG (small budget), report.\n\n"
              "Writes RUN/summary.json, RUN/report.md and RUN/report.html (plots embedded).")
_synced: dict[str, Any] = {"generation": None, "commands": set()}


def sync_commands() -> None:
    """Register ``audit`` and one command per registered experiment (again when the
    registry changed since, e.g. an experiment registered by a plug-in or a test)."""
    if _synced["generation"] == generation():
        return
    _experiment_command("audit", ",".join(audit_names()), AUDIT_HELP, True)
    commands = {e.command for e in registered()}
    for e in registered():
        _experiment_command(e.command, e.name, e.help, False)
    gone = _synced["commands"] - commands
    app.registered_commands[:] = [c for c in app.registered_commands if c.name not in gone]
    _synced.update(generation=generation(), commands=commands)


sync_commands()
