"""The experiment registry: an experiment is one module plus one :class:`Experiment`
entry, and everything that runs, offers, reports or compares experiments reads the
registry (the audit, the command line, the report, ``compare``, recipes, the docs).

An entry names the experiment's config dataclass and its hooks. A hook is a callable,
or an import path ``"package.module:function"`` loaded on first use, so this module
imports no torch: the command line builds its options from the entries without loading
the experiments. The built-in experiments register in :mod:`aligndepth.experiments_builtin`;
another one registers from its own module or a test::

    register(Experiment(name="toy", config=ToyConfig, run=run_toy, takes=("prompts",),
                        summarize=summarize_toy, title="Toy experiment", ...))

An entry also says how the report's answers table shows its records
(:class:`AnswersView`) and what a judge reads in it (:class:`Reading`, per measure, for
:mod:`aligndepth.judges.scope`); the defaults fit an experiment that judges its
responses as they are.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aligndepth.errors import AlignDepthError, did_you_mean

#: A hook: a callable, or ``"package.module:function"`` imported when first called.
Hook = Callable[..., Any] | str
#: What an experiment's ``run`` hook may take from a run's data, in this order.
INPUTS = ("pairs", "prompts", "safe")


def call(hook: Hook, *args: Any, **kwargs: Any) -> Any:
    """Call ``hook`` (importing it first when it is named by its import path)."""
    return resolve(hook)(*args, **kwargs)


def resolve(hook: Hook) -> Callable[..., Any]:
    """The callable behind ``hook``."""
    if callable(hook):
        return hook
    module, _, name = hook.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


#: What a judge measures (its ``measures``): harm (the default), or only refusal.
HARM, REFUSAL = "harm", "refusal"


@dataclass(frozen=True)
class Reading:
    """What a judge reads in one part of an experiment.

    ``judged`` says it in words (records keep it as ``judged``); ``continuation_only``:
    the judge reads only what the model generated (the record's ``output``), not the text
    forced before it; ``rate``: the summary key its rate is written under.
    """

    judged: str
    continuation_only: bool = False
    rate: str = "harmful_rate"


#: The judge reads the response as it is.
RESPONSE = Reading("the response")

#: A column of the answers table: a record key, or a hook ``field(record) -> value``
#: (a callable, or ``"package.module:function"``).
Field = str | Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class AnswersView:
    """How the report's answers table shows an experiment's records: ``setting``, the
    (label, field) of what each record was run with (a prefix, decoding parameters), and
    ``axes``, the (label, field) its rows are filtered by (k, a configuration)."""

    setting: tuple[str, Field] = ("setting", "setting")
    axes: tuple[tuple[str, Field], ...] = ()


def field_value(field: Field, record: Mapping[str, Any]) -> Any:
    """The value of ``field`` in ``record``."""
    if callable(field) or ":" in field:
        return call(field, record)
    return record.get(field)


@dataclass(frozen=True)
class Quote:
    """A number (or a statement) a paper reports, quoted for reference.

    ``metric``: its path in the experiment's summary section (``asr_by_k.10``); ``value``:
    the number, or a sentence for a figure quoted by its shape; ``judge``: the judge of
    this toolkit that follows the paper's protocol (``none``: nothing was judged);
    ``id``: how a recipe names it.
    """

    id: str
    model: str
    dataset: str | tuple[str, ...]
    judge: str | tuple[str, ...]
    setting: str
    metric: str
    value: float | str
    source: str


@dataclass(frozen=True)
class Experiment:
    """One experiment: what it is called, its config, how it runs and how it is reported.

    Args:
        name: the records file (``records/<name>.jsonl``), the summary's key and the
            ``--experiments`` value; its command is ``name`` with ``-`` for ``_``.
        config: its frozen config dataclass (fields with ``option(...)`` metadata are its
            command-line options, :mod:`aligndepth.config_options`); ``audit_config``: the config
            the audit starts from when it differs from ``config()`` (GCG's small budget).
        run: ``run(setup, run, *inputs, config)`` appends its records to the run, one unit
            at a time; ``takes`` names the inputs it reads, among :data:`INPUTS`.
        summarize: ``summarize(records) -> dict``, the experiment's summary section.
        units: ``units(records) -> Units``, every judged rate as units (intervals,
            ``compare``'s differences); ``None``: the records carry no verdict.
        prepare: ``prepare(setup, *inputs, config) -> (config, manifest additions)``,
            called before the run directory opens: it checks inputs (a user error
            before anything is written) and may complete the config.
        rows: ``rows(section) -> [(metric, text)]``: its rows of the results table (and
            of ``compare``'s side-by-side table).
        plot: ``plot(section, records, plots_dir) -> Path | None``.
        notes: ``notes(section) -> [markdown line]``: read under its report section.
        extras: ``extras(section) -> dict``: keys it adds to the top of the summary.
        tokenizer_check: ``tokenizer_check(config) -> check | None``; ``check(tokenizer)``
            raises what the aligned model's tokenizer alone refuses, before any weights
            load.
        title, panel, help: its report section title, its ``--help`` heading, its
            command's help.
        quotes: what the papers report on it (:class:`Quote`).
        compare_rates: ``(label, path in the summary)`` of its headline rates, drawn as
            grouped bars by ``compare``.
        reads_base: it reads the base model whatever its options (an attack with a
            ``target`` field reads the base when aimed at it); ``needs_pairs``: its data
            must have harmful responses; ``needs_safe``: it also reads safe queries
            (``--safe-data``); ``judged``: it generates and judges text;
            ``needs_weights``: why a served engine cannot run it (``None``: it can);
            ``in_audit``: the audit runs it by default.
        forced_tokens: ``forced_tokens(config) -> int``: tokens forced into the response
            before generation (the context check adds them); ``base_system``:
            ``base_system(config) -> str | None``: the system prompt the base model sees.
        answers: how the report's answers table shows its records (a judged
            experiment's; default: no setting or axis of its own).
        readings: ``{part: {measure: Reading}}``, what a judge of each measure reads in
            each part that judges text (``name``, or ``name:PART`` for parts such as ED's
            query sets); a measure missing is refused before anything loads. Default:
            the response, under either measure.
    """

    name: str
    config: type
    run: Hook
    summarize: Hook
    title: str
    help: str
    takes: tuple[str, ...] = ("prompts",)
    units: Hook | None = None
    prepare: Hook | None = None
    rows: Hook | None = None
    plot: Hook | None = None
    notes: Hook | None = None
    extras: Hook | None = None
    tokenizer_check: Hook | None = None
    forced_tokens: Hook | None = None
    base_system: Hook | None = None
    panel: str = ""
    quotes: tuple[Quote, ...] = ()
    compare_rates: tuple[tuple[str, tuple[str, ...]], ...] = ()
    audit_config: Any = None
    reads_base: bool = False
    needs_pairs: bool = False
    needs_safe: bool = False
    judged: bool = True
    needs_weights: str | None = None
    in_audit: bool = True
    answers: AnswersView = AnswersView()
    readings: Mapping[str, Mapping[str, Reading]] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.name.islower():
            raise ValueError(f"experiment name '{self.name}' must be a lower-case identifier")
        unknown = [t for t in self.takes if t not in INPUTS]
        if unknown:
            raise ValueError(f"experiment '{self.name}' takes unknown inputs {unknown}; "
                             f"choose among {INPUTS}")
        stray = [p for p in self.readings or () if p.partition(":")[0] != self.name]
        if stray:
            raise ValueError(f"experiment '{self.name}' has readings of parts {stray}: name "
                             f"them '{self.name}' or '{self.name}:PART'")

    @property
    def command(self) -> str:
        """Its command on the command line (``refusal-prefix``)."""
        return self.name.replace("_", "-")

    @property
    def servable(self) -> bool:
        """A served engine (text only) can run it."""
        return self.judged and self.needs_weights is None

    def start_config(self, alone: bool) -> Any:
        """The config a command starts from: the experiment's own command (``alone``)
        takes ``config()``, the audit ``audit_config`` when given."""
        if alone or self.audit_config is None:
            return self.config()
        return self.audit_config

    def judge_readings(self) -> dict[str, Mapping[str, Reading]]:
        """``{part: {measure: Reading}}`` (none when it judges nothing)."""
        if not self.judged:
            return {}
        if self.readings is None:
            return {self.name: {HARM: RESPONSE, REFUSAL: RESPONSE}}
        return dict(self.readings)

    def reads_base_with(self, config: Any) -> bool:
        """Whether it reads the base model under ``config``."""
        return self.reads_base or getattr(config, "target", "aligned") == "base"


_REGISTRY: dict[str, Experiment] = {}
_BUILTIN_LOADED = False
_CHANGES = [0]


def generation() -> int:
    """A number that changes whenever an experiment is registered or removed (the
    command line rebuilds its experiment commands when it does)."""
    _load_builtins()
    return _CHANGES[0]


def _load_builtins() -> None:
    global _BUILTIN_LOADED
    if not _BUILTIN_LOADED:
        _BUILTIN_LOADED = True
        importlib.import_module("aligndepth.experiments_builtin")


def register(entry: Experiment, replace: bool = False) -> Experiment:
    """Add ``entry`` (``replace``: over an entry of the same name); returns it."""
    _load_builtins()
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f"experiment '{entry.name}' is already registered")
    _REGISTRY[entry.name] = entry
    _CHANGES[0] += 1
    return entry


def unregister(name: str) -> None:
    """Remove the experiment ``name`` (e.g. a test's)."""
    _load_builtins()
    if _REGISTRY.pop(name, None) is not None:
        _CHANGES[0] += 1


def experiments() -> Iterator[Experiment]:
    """Every registered experiment, in registration order (the built-ins first)."""
    _load_builtins()
    return iter(list(_REGISTRY.values()))


def names() -> tuple[str, ...]:
    """Every registered experiment's name."""
    return tuple(e.name for e in experiments())


def audit_names() -> tuple[str, ...]:
    """The experiments the audit runs by default."""
    return tuple(e.name for e in experiments() if e.in_audit)


def get(name: str) -> Experiment:
    """The experiment ``name``; an unknown one is a user error with "did you mean"."""
    _load_builtins()
    if name not in _REGISTRY:
        known = tuple(_REGISTRY)
        raise AlignDepthError(f"unknown experiment '{name}'{did_you_mean(name, known)}; "
                              f"choose from {', '.join(known)}")
    return _REGISTRY[name]


def chosen(names_: Sequence[str]) -> list[Experiment]:
    """The entries of ``names_``, in that order."""
    return [get(n) for n in names_]
