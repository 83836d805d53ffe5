"""Every rate broken down by the prompts' category (HEx-PHI's 11, the organism's own).

A run records its prompts' categories in the manifest (``categories``: ``{query set:
{category: [prompt ids]}}``, the query sets being ``harmful`` and ED's ``safe``; written
only when some prompt has a category, so AdvBench-like data has none). From it:

- ``summary["categories"]``: the number of prompts in each category, per query set;
- ``summary["by_category"][experiment][category]``: the experiment's rates over that
  category's records only, in the same layout as ``summary[experiment]`` and computed
  the one way every rate is (the experiment's units, :func:`aligndepth.metrics.put_rates`:
  counts, clustered intervals), e.g. ``by_category.prefill.<category>.asr_by_k.10``;
- ``plots/<experiment>_by_category.png``: the experiment's headline rates per category
  with their 95% intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aligndepth.data.schemas import PromptRecord
from aligndepth.metrics import Units, is_rate, put_rates
from aligndepth.report import plots

#: The manifest's key for the prompts' categories.
MANIFEST_KEY = "categories"
#: Rates left out of the per-category plot (too many, or repeated elsewhere); they stay
#: in ``summary.json``.
NOT_PLOTTED = ("per_config_asr", "alpha_sweep", "harmful_rate_by_condition")
#: At most this many rates per experiment in its per-category plot.
MAX_SERIES = 8

Category = Callable[[Mapping[str, Any]], "str | None"]


def category_index(prompts: Sequence[PromptRecord], safe: Sequence[PromptRecord] = ()
                   ) -> dict[str, dict[str, list[str]]] | None:
    """``{query set: {category: [prompt ids]}}`` of the run's prompts, or ``None`` when
    none has a category (what the manifest records under :data:`MANIFEST_KEY`)."""
    index: dict[str, dict[str, list[str]]] = {}
    for query_set, items in (("harmful", prompts), ("safe", safe)):
        by: dict[str, list[str]] = {}
        for p in items:
            if p.category:
                by.setdefault(p.category, []).append(p.id)
        if by:
            index[query_set] = by
    return index or None


def category_lookup(manifest: Mapping[str, Any]) -> Category | None:
    """A record's category (by its query set, ``harmful`` unless it says ``set``, and its
    prompt ``id``), or ``None`` when the run recorded no categories."""
    index = manifest.get(MANIFEST_KEY)
    if not isinstance(index, Mapping) or not index:
        return None
    maps = {str(qs): {str(pid): str(cat) for cat, ids in by.items() for pid in ids}
            for qs, by in index.items() if isinstance(by, Mapping)}

    def category(record: Mapping[str, Any]) -> str | None:
        return maps.get(str(record.get("set", "harmful")), {}).get(str(record.get("id")))

    return category


def category_counts(manifest: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Prompts per category, per query set."""
    index = manifest.get(MANIFEST_KEY)
    if not isinstance(index, Mapping):
        return {}
    return {qs: {cat: len(ids) for cat, ids in sorted(by.items())}
            for qs, by in index.items()}


def rates_by_category(records: Mapping[str, Sequence[dict[str, Any]]],
                      units: Mapping[str, Callable[[Sequence[dict[str, Any]]], Units]],
                      category: Category) -> dict[str, dict[str, dict[str, Any]]]:
    """``{experiment: {category: rates}}``: each experiment's rates (``units[experiment]``
    of its records) over the records of each category in turn."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, fn in units.items():
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in records.get(name) or ():
            c = category(r)
            if c:
                groups.setdefault(c, []).append(r)
        if groups:
            out[name] = {c: put_rates({}, fn(rs), (name,)) for c, rs in sorted(groups.items())}
    return out


def _leaves(tree: Mapping[str, Any], path: tuple[str, ...] = ()
            ) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    out = []
    for key, node in tree.items():
        if is_rate(node):
            out.append(((*path, key), node))
        elif isinstance(node, Mapping) and key not in NOT_PLOTTED:
            out += _leaves(node, (*path, key))
    return out


def series(by_category: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{rate label: {category: rate}}``: the rates an experiment's per-category plot
    shows (all but :data:`NOT_PLOTTED`, at most :data:`MAX_SERIES`)."""
    out: dict[str, dict[str, Any]] = {}
    for cat, tree in by_category.items():
        for path, rate in _leaves(tree):
            label = ".".join(path)
            if label in out or len(out) < MAX_SERIES:
                out.setdefault(label, {})[cat] = rate
    return out


def category_plots(summary: Mapping[str, Any], plot_dir: Path,
                   titles: Mapping[str, str]) -> dict[str, Path]:
    """``{"<experiment>_by_category": png}`` for each experiment broken down by category."""
    out = {}
    for name, by in (summary.get("by_category") or {}).items():
        out[f"{name}_by_category"] = plots.plot_by_category(
            series(by), f"{titles.get(name, name)}: rates by category (95% intervals)",
            plot_dir / f"{name}_by_category.png")
    return out
