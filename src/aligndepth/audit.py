"""Run a set of experiments into one run directory and render its report.

The audit runs the KL profile, refusal-prefix prefilling, the prefilling attack, the
decoding exploit, emulated disalignment and GCG (a small budget) on a model pair (the
organism by default); the single-experiment CLI commands call :func:`run_experiments`
with one experiment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from aligndepth.cluster import finish_run, open_run
from aligndepth.data.loading import resolve_data
from aligndepth.data.schemas import HarmfulPair, PromptRecord
from aligndepth.errors import AlignDepthError
from aligndepth.experiment import (
    ORGANISM_MAX_NEW_TOKENS,
    REAL_MAX_NEW_TOKENS,
    RunSettings,
    Setup,
    provenance,
)
from aligndepth.experiments_registry import audit_names, call, chosen, get, names
from aligndepth.judges.registry import make_judge
from aligndepth.judges.scope import check_judging, measures
from aligndepth.models import LoadConfig, load_pair, load_tokenizer
from aligndepth.prompts import PromptFormat
from aligndepth.report.categories import MANIFEST_KEY, category_index
from aligndepth.runs import file_digest
from aligndepth.shards import Shard, parse_shard, worker_shard

log = logging.getLogger(__name__)

_SETTINGS = tuple(f.name for f in fields(RunSettings))


@dataclass(frozen=True, init=False)
class AuditConfig(RunSettings):
    """Which experiments to run and how; ``limit`` caps prompts per experiment.

    Each registered experiment's config is given by its name
    (``AuditConfig(experiments=("prefill",), prefill=PrefillConfig(ks=(0, 5)))``) and read
    the same way (``config.prefill``); an experiment not given starts from its entry's
    audit config (:meth:`~aligndepth.experiments_registry.Experiment.start_config`).
    ``experiments`` defaults to those the audit runs (every entry with ``in_audit``).
    ``shard``: this worker's share of a sharded run (``"I/N"`` or a
    :class:`~aligndepth.shards.Shard`; under torchrun RANK/WORLD_SIZE, see
    :mod:`aligndepth.cluster`); not part of the run's identity.
    """

    experiments: tuple[str, ...] = ()
    configs: dict[str, Any] = field(default_factory=dict)
    shard: Shard | None = None

    def __init__(self, *, experiments: tuple[str, ...] | None = None,
                 configs: dict[str, Any] | None = None, shard: str | Shard | None = None,
                 **given: Any) -> None:
        settings = {k: given.pop(k) for k in list(given) if k in _SETTINGS}
        for f in fields(RunSettings):
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc,operator]
            object.__setattr__(self, f.name, settings.get(f.name, default))
        merged = dict(configs or {})
        for name, value in given.items():
            get(name)  # an unknown experiment's config is a user error
            merged[name] = value
        object.__setattr__(self, "experiments",
                           audit_names() if experiments is None else tuple(experiments))
        object.__setattr__(self, "configs", merged)
        object.__setattr__(self, "shard", parse_shard(shard))
        self.__post_init__()

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in self.experiments:
            get(name)  # "unknown experiment ..., did you mean"
        if not self.experiments:
            raise AlignDepthError("choose at least one experiment")

    def __getattr__(self, name: str) -> Any:
        """An experiment's config (``config.prefill``)."""
        if name.startswith("_") or name not in names():
            raise AttributeError(name)
        found = self.__dict__.get("configs", {}).get(name)
        return get(name).start_config(alone=False) if found is None else found

    def with_config(self, name: str, config: Any) -> AuditConfig:
        """A copy with the experiment ``name``'s config replaced."""
        return replace(self, configs={**self.configs, name: config})

    def identity(self) -> dict[str, Any]:
        """The part of the config that shapes results (recorded, compared on resume)."""
        out: dict[str, Any] = {"limit": self.limit, "max_new_tokens": self.max_new_tokens,
                               "batch_size": self.batch_size}
        if self.sample is not None:
            out["sample"] = self.sample
        if self.stop:
            out["stop"] = list(self.stop)
        if self.data_split is not None:
            out["data_split"] = self.data_split
        for name in self.experiments:
            config = getattr(self, name)  # a config may say what of it shapes results
            out[name] = config.identity() if hasattr(config, "identity") else asdict(config)
        return out


def check_servable(experiments: tuple[str, ...]) -> None:
    """A user error when an experiment that needs the weights (its entry's
    ``needs_weights``) is asked of served models."""
    for entry in chosen(experiments):
        if entry.needs_weights is not None:
            others = [e.name for e in chosen(experiments) if e.needs_weights is None]
            hint = f", or leave it out: --experiments {','.join(others)}" if others else ""
            raise AlignDepthError(f"{entry.name} needs {entry.needs_weights}, which a served "
                                  f"engine does not return: run it with --engine hf{hint}")


def base_readers(config: AuditConfig) -> tuple[str, ...]:
    """The experiments of ``config`` that read the base model: those whose entry reads it
    (kl, refusal_prefix, ed) and an attack aimed at it (``--prefill-target base``)."""
    return tuple(e.name for e in chosen(config.experiments)
                 if e.reads_base_with(getattr(config, e.name)))


def resolve_pair(base: str | None, aligned: str | None, show_progress: bool = True,
                 readers: tuple[str, ...] | None = None
                 ) -> tuple[Path | None, str | None, str]:
    """The organism the pair belongs to (None for another pair) and the pair's two
    sources: the given ones, or the organism's (built if need be) when neither is given.
    ``readers`` are the experiments that read the base model (:func:`base_readers`;
    ``None``: the base is needed): when there are none, ``aligned`` may come alone and
    the base source is then ``None``. Loads no weights."""
    from aligndepth.organism.build import build_organism, organism_home

    if base is not None and aligned is None:
        raise AlignDepthError("give --aligned too: every experiment reads the aligned model "
                              "(or give neither model, for the organism)")
    if aligned is not None and base is None:
        if readers is None:
            raise AlignDepthError("give both --base and --aligned, or neither (the organism)")
        if readers:
            verb = "needs" if len(readers) == 1 else "need"
            raise AlignDepthError(f"{', '.join(readers)} {verb} the base model: give --base "
                                  "too (prefill, decoding and gcg need only --aligned)")
        return organism_home(aligned), None, aligned
    if base is None or aligned is None:
        organism = build_organism(show_progress=show_progress)
        return organism, str(organism / "base"), str(organism / "aligned")
    # the organism's base against another model (e.g. a fine-tuned aligned model):
    # the organism's data and exact judge remain the defaults
    return organism_home(base), base, aligned


def open_setup(base: str | None = None, aligned: str | None = None, *,
               judge: str | None = None, load: LoadConfig | None = None,
               base_format: PromptFormat | None = None,
               aligned_format: PromptFormat | None = None, seed: int = 0,
               batch_size: int = 32, max_new_tokens: int | None = None,
               show_progress: bool = True, judge_options: dict[str, Any] | None = None,
               base_load: LoadConfig | None = None, aligned_load: LoadConfig | None = None,
               stop_strings: tuple[str, ...] = (),
               check_tokenizer: Callable[[Any], None] | None = None,
               readers: tuple[str, ...] | None = None) -> Setup:
    """Models and judge: the given pair, or the organism when neither model is given.

    ``readers``: the experiments that will read the base model (:func:`base_readers`);
    with none, only the aligned model loads (``--base``, if given, is not loaded and the
    manifest says so). ``None`` (the default) loads both.

    The judge defaults to ``organism`` on the organism (also when ``base`` is the
    organism's base model, e.g. against a fine-tuned aligned model) and ``keyword``
    otherwise. ``max_new_tokens`` defaults to 64 on the organism and to 512 on a real pair
    (the papers judge answers of up to 512 tokens). ``base_load`` / ``aligned_load``
    place the two models differently (default: ``load``). ``check_tokenizer`` is called
    with the aligned model's tokenizer before any weights load (e.g. to refuse a GCG
    ``--init-suffix`` holding a control token).
    """
    organism, base, aligned = resolve_pair(base, aligned, show_progress, readers)
    judge_obj = make_judge(judge or ("organism" if organism else "keyword"), organism,
                           **(judge_options or {}))
    if check_tokenizer is not None:
        check_tokenizer(load_tokenizer(aligned, aligned_load or load))
    unloaded = base if readers is not None and not readers else None
    if unloaded is not None:
        log.info("not loading the base model %s: no experiment of this run reads it", base)
    pair = load_pair(None if unloaded else base, aligned, load, base_format, aligned_format,
                     base_config=base_load, aligned_config=aligned_load)
    if max_new_tokens is None:
        max_new_tokens = ORGANISM_MAX_NEW_TOKENS if organism else REAL_MAX_NEW_TOKENS
    ed_systems = None
    if organism is not None:  # the organism's world has its own ED system prompts
        from aligndepth.organism.world import BENIGN_SYSTEM, MALICIOUS_SYSTEM

        ed_systems = (MALICIOUS_SYSTEM, BENIGN_SYSTEM)
    return Setup(pair, judge_obj, organism, seed=seed, batch_size=batch_size,
                 max_new_tokens=max_new_tokens, show_progress=show_progress,
                 stop_strings=tuple(stop_strings), ed_systems=ed_systems,
                 unloaded_base=unloaded)


@dataclass(frozen=True)
class Inputs:
    """A run's data, read and validated before any model loads: harmful pairs (None when
    the data has no responses), the prompts, ED's safe queries, and their provenance."""

    pairs: list[HarmfulPair] | None
    prompts: list[PromptRecord]
    safe: list[PromptRecord]
    provenance: dict[str, Any]


def read_inputs(organism: Path | None, config: AuditConfig, data: str | Path | None = None,
                safe_data: str | Path | None = None, data_format: str | None = None
                ) -> Inputs:
    """Read and check the data of ``config.experiments`` (see :func:`run_experiments`);
    needs no model, so a bad file is an error before any weights load."""
    pairs, prompts, provenance = _load_data(data, organism, config, data_format)
    safe: list[PromptRecord] = []
    if any(e.needs_safe for e in chosen(config.experiments)):
        safe, safe_provenance = _load_safe(safe_data, organism, config, data_format)
        if safe_provenance:
            provenance = {**provenance, "safe": safe_provenance}
    return Inputs(pairs, prompts, safe, provenance)


def _load_data(path: str | Path | None, organism: Path | None, config: AuditConfig,
               data_format: str | None = None
               ) -> tuple[list[HarmfulPair] | None, list[PromptRecord], dict[str, Any]]:
    """Harmful pairs (when the data has responses) and prompts, with provenance."""
    pairs: list[HarmfulPair] | None = None
    try:
        pairs, used = resolve_data(HarmfulPair, path, organism, limit=config.limit,
                                   sample=config.sample, sample_seed=config.seed,
                                   data_format=data_format, subset="harmful",
                                   data_split=config.data_split)
        prompts = [PromptRecord(p.instruction, id=p.id, category=p.category, split=p.split,
                                target=p.target) for p in pairs]
    except AlignDepthError as exc:
        if "missing field 'harmful_response'" not in str(exc):
            raise
        prompts, used = resolve_data(PromptRecord, path, organism, limit=config.limit,
                                     sample=config.sample, sample_seed=config.seed,
                                     data_format=data_format, subset="harmful",
                                     data_split=config.data_split)
    if pairs is None:
        wanted = sorted(e.name for e in chosen(config.experiments) if e.needs_pairs)
        if wanted:
            raise AlignDepthError(
                f"{', '.join(wanted)} need harmful responses, and '{used}' has none: give "
                "--data in the harmful_pairs schema, or choose other experiments")
    return pairs, prompts, _provenance(used, len(prompts))


def _provenance(path: Path, n: int) -> dict[str, Any]:
    """What a run records about a dataset file."""
    return {"path": str(path), "digest": file_digest(path), "n": n}


def _load_safe(path: str | Path | None, organism: Path | None, config: AuditConfig,
               data_format: str | None = None
               ) -> tuple[list[PromptRecord], dict[str, Any] | None]:
    """Safe queries (ED's): ``path``, the organism's benign prompts, or none."""
    if path is None and organism is None:
        log.warning("no --safe-data: ED's effect on safe queries is not measured")
        return [], None
    safe, used = resolve_data(PromptRecord, path, organism, limit=config.limit,
                              sample=config.sample, sample_seed=config.seed,
                              organism_file="benign_prompts.jsonl", data_format=data_format,
                              subset="safe", data_split=config.data_split)
    return safe, _provenance(used, len(safe))


def check_contexts(setup: Setup, prompts: list[PromptRecord], config: AuditConfig) -> None:
    """Raise a user error when the longest prompt, as each model sees it, plus the new
    tokens (and the largest prefill) would run past that model's context."""
    from aligndepth.engine import check_context

    if not prompts:
        return
    entries = chosen(config.experiments)
    extra = max([call(e.forced_tokens, getattr(config, e.name)) for e in entries
                 if e.forced_tokens is not None], default=0)
    systems = [call(e.base_system, getattr(config, e.name)) for e in entries
               if e.base_system is not None]
    assert config.max_new_tokens is not None
    for role in reversed(setup.pair.roles):
        model, fmt = setup.role(role)
        if role == "base" and systems:
            fmt = fmt.with_system(systems[0])
        lengths = [len(fmt.encode(model.tokenizer, p.instruction)) for p in prompts]
        check_context(model.model, lengths, config.max_new_tokens + extra, f"{role} model")


def run_experiments(setup: Setup, out: str | Path, config: AuditConfig,
                    data: str | Path | None = None, overwrite: bool = False,
                    safe_data: str | Path | None = None, data_format: str | None = None,
                    inputs: Inputs | None = None, release_base: bool = False
                    ) -> dict[str, Any]:
    """Run ``config.experiments`` into ``out`` (resuming if it holds this run).

    ``data`` holds the harmful queries (harmful pairs or prompts); ``safe_data`` the safe
    queries that ED is also measured on (default: the organism's benign prompts). Both
    may be the project's JSONL or a published format (``data_format``, else detected);
    for formats that label both kinds (ToxicChat, OpenAI moderation) ``data`` keeps the
    harmful rows and ``safe_data`` the safe ones, so one file can serve both. ``inputs``
    is that data already read (:func:`read_inputs`, called before loading the pair).

    The experiments that read the base model run first; with ``release_base`` the base
    model is then dropped from ``setup`` and its memory returned, before the experiments
    that read only the aligned model (every record is the same in any order: each unit's
    seed depends only on the run seed and the unit's name).

    With ``config.shard`` (or under torchrun) this worker runs its share of the units
    (:mod:`aligndepth.cluster`) and returns the summary only when it renders the run,
    else ``{"shard": "I/N", "missing": ...}``.
    """
    readers = base_readers(config)
    if readers and "base" not in setup.pair.roles:
        raise AlignDepthError(f"{', '.join(readers)} need the base model, which this setup "
                              "did not load: pass readers=base_readers(config) to open_setup")
    if config.max_new_tokens is None:
        config = replace(config, max_new_tokens=setup.max_new_tokens)
    assert config.max_new_tokens is not None
    # a copy: the caller's setup keeps its own settings
    setup = replace(setup, max_new_tokens=config.max_new_tokens, stop_strings=tuple(
        dict.fromkeys((*setup.stop_strings, *config.stop))))
    check_judging(config.experiments, setup.judge.name, measures(setup.judge))
    if inputs is None:
        inputs = read_inputs(setup.organism, config, data, safe_data, data_format)
    prompts = inputs.prompts
    added: dict[str, Any] = {}
    for entry in chosen(config.experiments):  # each checks its inputs before writing
        if entry.prepare is not None:
            prepared, more = call(entry.prepare, setup, *_taken(entry, inputs),
                                  getattr(config, entry.name))
            config = config.with_config(entry.name, prepared)
            added.update(more)
    manifest: dict[str, Any] = {
        "experiments": list(config.experiments),
        "config": config.identity(),
        "models": setup.pair.describe(),
        "judge": setup.judge.describe(),
        "data": inputs.provenance,
        "seed": setup.seed,
        "prompts": provenance(setup, prompts[0].instruction) if prompts else None,
        "organism": str(setup.organism) if setup.organism else None,
        **({"not_loaded": {"base": setup.unloaded_base}} if setup.unloaded_base else {}),
    }
    for key, more in added.items():  # e.g. GCG's search space, ED's own prompts
        if isinstance(manifest.get(key), dict):
            manifest[key] = {**manifest[key], **more}
        elif key not in manifest:
            manifest[key] = more
    categories = category_index(prompts, inputs.safe)  # the reports break rates down by them
    if categories:
        manifest[MANIFEST_KEY] = categories
    if any(setup.role(r)[0].served is not None for r in setup.pair.roles):
        check_servable(config.experiments)
    check_contexts(setup, prompts, config)  # before anything is written
    run = open_run(setup, out, manifest, overwrite, worker_shard(config.shard, os.environ))
    order = [*readers, *(name for name in config.experiments if name not in readers)]
    for entry in chosen(order):
        if release_base and entry.name not in readers and "base" in setup.pair.roles:
            log.info("releasing the base model: no remaining experiment reads it")
            setup.pair.release_base()
        log.info("running %s", entry.name)
        call(entry.run, setup, run, *_taken(entry, inputs), getattr(config, entry.name))
    return finish_run(run)


def _taken(entry: Any, inputs: Inputs) -> list[Any]:
    """The inputs an experiment's hooks take (its entry's ``takes``), in that order."""
    return [getattr(inputs, name) for name in entry.takes]
