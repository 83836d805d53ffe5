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
      - {model: Llama-2-7B-Chat, metric: "prefill: asr_by_k.10", value: 0.515}
    note: ...                  # the paper's setting, in a line

``aligndepth recipe run`` (:mod:`aligndepth.cli.recipes`) runs the steps.
"""

from __future__ import annotations

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
    steps = tuple(Step(s["name"], s["command"], dict(s.get("options") or {}))
                  for s in data["steps"])
    return Recipe(name, data["title"], data["paper"], steps, dict(data.get("organism") or {}),
                  tuple(data.get("quoted") or ()), data.get("note", ""),
                  data.get("organism_time", ""))


def lookup(summaries: dict[str, Any], metric: str) -> Any:
    """The value at ``"<step>: a.b.c"`` in the steps' summaries (``None`` if absent)."""
    step, _, path = metric.partition(":")
    node: Any = summaries.get(step.strip())
    for key in path.strip().split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node
