"""The papers' experiments as recipes: YAML files that say which commands to run with
which options, on a real pair and (a smaller budget) on the organism, and what the paper
reported, quoted, for the report to set beside the run's own numbers.

A recipe file::

    title: ...                 # what it reproduces
    paper: ...                 # the citation
    steps:                     # commands run in order, each into OUT/<name>
      - {name: prefill, command: prefill, options: {k: [0, 5, 10, 20, 40]}}
    organism: {limit: 40}      # options added on the organism (a budget that fits a laptop)
    organism_time: "about 20 s"  # what that budget took, measured on 2 CPU cores
    quoted:                    # the paper's numbers: "<step>: <path in its summary>"
      - {step: prefill, quote: qi-fig2-k10}   # a number an experiment's registry entry quotes
      - {model: Llama-2-7B-Chat, dataset: HEx-PHI, judge: gpt4-rubric,   # any other number
         setting: "fine-tuned on 100 harmful pairs", metric: "sft: tasks.harmful.harmful_rate",
         value: 0.889}
    note: ...                  # the paper's setting, in a line

A number about an experiment is quoted once, in the experiment's registry entry
(:mod:`aligndepth.experiments_builtin`), and a recipe names it by its id (``quote``) and
the step whose summary holds the experiment. Every quoted number names its ``model``,
``dataset`` (one, or a list when the paper pools several), ``judge`` (the judge of this
toolkit that follows the paper's protocol, a list when the paper used several, ``none``
when nothing was judged) and ``setting``. A run is compared with a quoted number only
when it ran on that dataset (``recipe run --dataset NAME=FILE``); otherwise the quote is
shown as context. A comparison under another judge than the paper's is marked as such
(:func:`comparison`).

``aligndepth recipe run`` (:mod:`aligndepth.cli.recipes`) runs the steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aligndepth.errors import AlignDepthError, did_you_mean


@dataclass(frozen=True)
class Step:
    name: str
    command: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    paper: str
    steps: tuple[Step, ...]
    organism: dict[str, Any]
    quoted: tuple[dict[str, Any], ...]
    note: str = ""
    organism_time: str = ""


def _files() -> dict[str, Any]:
    root = resources.files(__name__)
    return {p.name.removesuffix(".yaml"): p for p in root.iterdir()
            if p.name.endswith(".yaml")}


def recipe_names() -> list[str]:
    return sorted(_files())


def load_recipe(name: str) -> Recipe:
    """The recipe ``name``; an unknown name is a user error with "did you mean"."""
    import yaml

    files = _files()
    if name not in files:
        raise AlignDepthError(f"unknown recipe '{name}'{did_you_mean(name, files)}; see "
                              f"`aligndepth recipe list` ({', '.join(sorted(files))})")
    data = yaml.safe_load(files[name].read_text(encoding="utf-8"))
    data["quoted"] = [_quote(q) for q in data.get("quoted") or ()]
    for quote in data.get("quoted") or ():
        missing = [f for f in QUOTE_FIELDS if f not in quote]
        if missing:
            raise ValueError(f"recipe '{name}': a quoted number lacks {', '.join(missing)}")
    steps = tuple(Step(s["name"], s["command"], dict(s.get("options") or {}))
                  for s in data["steps"])
    return Recipe(name, data["title"], data["paper"], steps, dict(data.get("organism") or {}),
                  tuple(data.get("quoted") or ()), data.get("note", ""),
                  data.get("organism_time", ""))


def _quote(item: dict[str, Any]) -> dict[str, Any]:
    """A recipe's quoted number: as written, or (``{step, quote: ID}``) the registered
    experiment quote ``ID``, its metric read from the step's summary."""
    if "quote" not in item:
        return item
    from dataclasses import asdict

    from aligndepth.experiments_registry import experiments

    found = {q.id: (e.name, q) for e in experiments() for q in e.quotes}
    if item["quote"] not in found:
        raise ValueError(f"a recipe quotes '{item['quote']}', which no experiment quotes"
                         f"{did_you_mean(str(item['quote']), found)}")
    experiment, quote = found[item["quote"]]
    fields = asdict(quote)
    for key in ("dataset", "judge"):
        if isinstance(fields[key], tuple):
            fields[key] = list(fields[key])
    return {**{k: fields[k] for k in ("model", "dataset", "judge", "setting", "value")},
            "metric": f"{item['step']}: {experiment}.{quote.metric}"}


#: What every quoted number names.
QUOTE_FIELDS = ("model", "dataset", "judge", "setting", "metric", "value")
#: The ``judge`` of a quoted number that was not judged (a KL, a ROUGE score).
NO_JUDGE = "none"


def names(value: Any) -> list[str]:
    """A quote's ``dataset`` or ``judge``: one name or a list of them, as a list."""
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def dataset_key(name: str) -> str:
    """``HEx-PHI``, ``hexphi`` and ``hex_phi`` name one dataset: ``hexphi``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def quoted_datasets(recipe: Recipe) -> dict[str, str]:
    """``{key: label}`` of every dataset the recipe quotes a number on."""
    return {dataset_key(d): d for q in recipe.quoted for d in names(q["dataset"])}


def quote_step(quote: dict[str, Any]) -> str:
    return str(quote["metric"]).partition(":")[0].strip()


def step_experiments(recipe: Recipe, step: str, dataset: str) -> list[str]:
    """The experiments (first key of each metric's path) of ``step`` that the recipe
    quotes on ``dataset`` (a key): what a run of the step on that dataset is for."""
    found = []
    for q in recipe.quoted:
        if quote_step(q) == step and dataset in {dataset_key(d) for d in names(q["dataset"])}:
            found.append(str(q["metric"]).partition(":")[2].strip().split(".")[0])
    return list(dict.fromkeys(found))


def comparison(quote: dict[str, Any], run_dataset: str | None,
               run_judge: str | None) -> dict[str, Any]:
    """Whether a run (on ``run_dataset``, a key or ``None`` when its data is not a named
    dataset, judged by ``run_judge``) compares with ``quote``, and how to say so."""
    datasets, judges = names(quote["dataset"]), names(quote["judge"])
    compared = run_dataset is not None and run_dataset in {dataset_key(d) for d in datasets}
    same_judge = None if judges == [NO_JUDGE] else run_judge in judges
    if not compared:
        note = (f"context only: the paper's number is on {' / '.join(datasets)}, this run "
                "is not")
    elif same_judge is False:
        note = (f"compared, with a different judge: this run's is {run_judge or '?'}, the "
                f"paper's {' / '.join(judges)}")
    else:
        note = "compared"
    return {"compared": compared, "same_judge": same_judge, "note": note}


def lookup(summaries: dict[str, Any], metric: str) -> Any:
    """The value at ``"<step>: a.b.c"`` in the steps' summaries (``None`` if absent)."""
    step, _, path = metric.partition(":")
    node: Any = summaries.get(step.strip())
    for key in path.strip().split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node
