"""The experiment commands, built from one template: ``audit``, ``kl``,
``refusal-prefix``, ``prefill``, ``decoding``, ``ed``, ``gcg`` and ``gcg-transfer``."""

from __future__ import annotations

import copy
import typing
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.app import Quiet, app
from aligndepth.cli.config_file import ConfigFile, write_run_config
from aligndepth.cli.options import (
    Aligned,
    AlignedDevice,
    AlignedEngineModel,
    AlignedEngineUrl,
    AlignedSystem,
    AllowPickle,
    Alpha,
    Base,
    BaseDevice,
    BaseEngineModel,
    BaseEngineUrl,
    BaseFormat,
    BaseTemplate,
    Batch,
    BenignSystem,
    BufferSize,
    CandidateBatch,
    Data,
    DataFormat,
    DataSplit,
    DecodingTarget,
    Device,
    DeviceMap,
    Dtype,
    EarlyStop,
    EDSamples,
    EDTopK,
    EngineKind,
    EngineModel,
    EngineOptions,
    EngineUrl,
    FilterRetok,
    InitSuffix,
    JudgeName,
    JudgeOptions,
    KLFormat,
    KLPositions,
    Ks,
    Limit,
    MaliciousSystem,
    MaxNew,
    MaxPrompts,
    Methods,
    NonAscii,
    NReplace,
    Out,
    Overwrite,
    Phrases,
    Placement,
    PrefillTarget,
    Prefixes,
    SafeData,
    SampleN,
    Samples,
    SearchWidth,
    Seed,
    SourceRun,
    Steps,
    Stops,
    SuffixLength,
    Sweep,
    TargetTokens,
    Temperature,
    TopK,
    TopP,
    TrustCode,
    _judge_options,
    _phrases,
    _print_summary,
    _split,
    served_configs,
)
from aligndepth.errors import AlignDepthError


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
         engine_option: list[str] | None = None, source: Path | None = None,
         context: Any = None, kl_prompt_format: str = "aligned", kl_positions: int = 64,
         prefill_target: str = "aligned", decoding_target: str = "aligned",
         ed_top_k: int = 0, benign_system: str | None = None) -> None:
    from aligndepth.analysis.kl_profile import KLConfig
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
        batch_size=batch_size,
        kl=KLConfig(prompt_format=kl_prompt_format, max_positions=kl_positions),
        prefill=PrefillConfig(ks=tuple(ks or DEFAULT_KS), target=prefill_target),
        decoding=DecodingConfig(samples_per_config=samples_per_config, target=decoding_target),
        refusal_prefix=RefusalPrefixConfig(prefixes=tuple(prefixes)) if prefixes
        else RefusalPrefixConfig(),
        ed=EDConfig(alpha=alpha, alphas=tuple(sweep or DEFAULT_ALPHAS), samples=samples,
                    temperature=temperature, top_k=ed_top_k, top_p=top_p,
                    methods=_split(methods) or METHODS, malicious_system=malicious_system,
                    benign_system=benign_system),
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
    write_run_config(context, out)
    _print_summary(summary, out)






EXPERIMENT_HELP = ("Comma-separated subset of kl,refusal_prefix,prefill,decoding,ed,gcg "
                   "(and gcg_transfer, with --source).")

#: Options that only some experiments read; a command shows those its experiments use.
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
    "kl_prompt_format": {"kl"}, "kl_positions": {"kl"}, "prefill_target": {"prefill"},
    "decoding_target": {"decoding"}, "ed_top_k": {"ed"}, "benign_system": {"ed"},
    "target_tokens": {"gcg"}, "early_stop": {"gcg"}, "candidate_batch": {"gcg"},
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
               "filter_retokenization", "target_tokens", "early_stop", "candidate_batch")




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
            kl_prompt_format: KLFormat = "aligned", kl_positions: KLPositions = 64,
            prefill_target: PrefillTarget = "aligned",
            decoding_target: DecodingTarget = "aligned", ed_top_k: EDTopK = 0,
            benign_system: BenignSystem = None, target_tokens: TargetTokens = None,
            early_stop: EarlyStop = None, candidate_batch: CandidateBatch = None,
            experiments: str = experiments, config_file: ConfigFile = None,
            quiet: Quiet = False) -> None:
        options = dict(locals())
        options.pop("command")  # a free variable of this closure, not an option
        options.pop("config_file")  # read by its callback before this runs
        options["context"] = options.pop("ctx")
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
