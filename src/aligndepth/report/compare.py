"""One report comparing runs side by side: before and after a defense or an attack.

``compare_runs([before, after], out)`` reads each run's records (nothing is re-run),
and writes to ``out``:

- ``compare.json``: every run's summary, under its label; ``depth``: each run's depth
  card values and the runs ordered from deepest to shallowest prefill depth;
  ``differences``: every rate the runs share, as the change from the first run to each
  other one with a 95% interval, paired over the prompts both runs judged, at the
  effective size over prompts where units share one (see
  :mod:`aligndepth.significance`), and whether it is significant;
- ``plots/``: the depth figure (KL profiles and prefill curves side by side), and the
  headline attack-success / harmful rates as grouped bars with 95% intervals;
- ``report.md`` and a self-contained ``report.html``: the depth of each run, one table
  with a column per run and one per change (significant changes marked ``*``).

Typical use: audit the aligned model, train a defense, audit the trained model with
``--aligned``, then compare the two runs (see the README).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError
from aligndepth.experiments_registry import experiments
from aligndepth.experiments_registry import names as experiment_names
from aligndepth.metrics import Units, is_rate
from aligndepth.report import plots
from aligndepth.report.depth import depth_order
from aligndepth.report.references import marks
from aligndepth.report.render import (
    headline,
    run_units,
    summarize_run,
    titles,
    write_report_files,
)
from aligndepth.runs import Run
from aligndepth.significance import difference, fmt_difference

log = logging.getLogger(__name__)


def rate_metrics() -> list[tuple[str, tuple[str, ...]]]:
    """Headline rates drawn as grouped bars: (label, path into the summary), each
    experiment's ``compare_rates``."""
    return [rate for e in experiments() for rate in e.compare_rates]


def _dig(summary: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = summary
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _labels(paths: Sequence[Path], labels: Sequence[str] | None) -> list[str]:
    if labels:
        if len(labels) != len(paths):
            raise AlignDepthError(f"got {len(labels)} --label for {len(paths)} runs: give one "
                                  "label per run, in the same order, or none")
        out = list(labels)
    else:
        out = [p.name or str(p) for p in paths]
    if len(set(out)) != len(out):
        raise AlignDepthError(f"labels must be distinct, got {', '.join(out)}: pass --label "
                              "for each run")
    return out


def _fingerprint(run: Run, role: str) -> str | None:
    return ((run.manifest.get("models") or {}).get(role) or {}).get("fingerprint")


def compare_runs(paths: Sequence[str | Path], out: str | Path,
                 labels: Sequence[str] | None = None, judge: str | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Summaries of ``paths`` (under ``judge``'s verdicts if given) in one report at
    ``out``; returns ``{label: summary}``.

    Raises:
        AlignDepthError: fewer than two runs, a path that is not a run, a run with no
            records, or labels that do not match the runs.
    """
    run_paths = [Path(p) for p in paths]
    if len(run_paths) < 2:
        raise AlignDepthError("compare needs at least two run directories")
    names = _labels(run_paths, labels)
    runs = [Run.load(p) for p in run_paths]
    summaries: dict[str, dict[str, Any]] = {}
    for name, run in zip(names, runs):
        summary = summarize_run(run, judge)
        if not any(key in summary for key in experiment_names()):
            raise AlignDepthError(f"'{run.path}' holds no experiment records"
                                  + (f" judged by '{judge}'" if judge else "")
                                  + ": run an experiment into it first")
        summaries[name] = summary
    bases = {_fingerprint(run, "base") for run in runs} - {None}  # None: base not loaded
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    changes = differences(names, [run_units(r, judge) for r in runs])
    depth = depth_ranking(summaries)
    (root / "compare.json").write_text(json.dumps(
        {"runs": {n: str(r.path) for n, r in zip(names, runs)}, "judge": judge,
         "depth": depth, "differences": changes, "summaries": summaries}, indent=2),
        encoding="utf-8")
    images = _plots(summaries, root / "plots")
    notes = []
    if len(bases) > 1:
        notes.append("The runs' base models differ: their KL profiles measure distance to "
                     "different models.")
        log.warning("compared runs have different base models")
    write_report_files(root, _markdown(names, runs, summaries, images, root, notes, changes,
                                       depth), images)
    return summaries


def _path_label(path: tuple[str, ...]) -> str:
    return ".".join(path)


def differences(names: Sequence[str], units: Sequence[Units]) -> list[dict[str, Any]]:
    """For every rate the first run shares with another: the change from the first run
    to each other one (``{"rate": dotted path, "changes": {label: difference}}``)."""
    reference = units[0]
    out = []
    for path, before in reference.items():
        changes = {name: difference(before, other[path])
                   for name, other in zip(names[1:], units[1:]) if path in other}
        if changes:
            out.append({"rate": _path_label(path), "changes": changes})
    return out


def depth_ranking(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each run's depth values, the runs from deepest to shallowest prefill depth (ties
    keep their order), and one sentence saying so."""
    by_run = {name: {k: (s.get("depth") or {}).get(k) for k in ("kl_depth", "prefill_depth")}
              for name, s in summaries.items()}
    measured = [n for n, d in by_run.items() if d["prefill_depth"] is not None]
    ranking = sorted(measured, key=lambda n: -depth_order(by_run[n]["prefill_depth"]))
    sentence = None
    if len(ranking) >= 2:
        deepest, shallowest = ranking[0], ranking[-1]
        a, b = by_run[deepest]["prefill_depth"], by_run[shallowest]["prefill_depth"]
        sentence = (f"{deepest} is deeper than {shallowest} (prefill depth {a} vs {b} tokens)"
                    if depth_order(a) > depth_order(b) else
                    f"the runs' prefill depths do not differ ({a} tokens)")
    return {"by_run": by_run, "ranking": ranking, "sentence": sentence}


def _plots(summaries: dict[str, dict[str, Any]], d: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    kl = {name: s["kl"] for name, s in summaries.items() if "kl" in s}
    prefill = {name: s["prefill"] for name, s in summaries.items() if "prefill" in s}
    if kl or prefill:
        out["depth"] = plots.plot_depth(kl, prefill, {name: s.get("depth") or {}
                                                      for name, s in summaries.items()},
                                        d / "depth.png", marks(("prefill", "asr_by_k")))
    rates: dict[str, dict[str, Any]] = {}
    for metric, path in rate_metrics():
        values = {name: _dig(s, path) for name, s in summaries.items()}
        values = {name: v for name, v in values.items() if is_rate(v) and v["rate"] is not None}
        if values:
            rates[metric] = values
    if rates:
        out["rates"] = plots.plot_rates_by_run(rates, d / "rates.png")
    return out


def side_by_side(summaries: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(metric, [value per run]) rows over every run's headline metrics, in first-seen
    order; a run without a metric shows "—"."""
    tables = {name: dict(headline(s)) for name, s in summaries.items()}
    metrics = dict.fromkeys(m for t in tables.values() for m in t)
    return [(m, [tables[n].get(m, "—") for n in summaries]) for m in metrics]


def _markdown(names: list[str], runs: list[Run], summaries: dict[str, dict[str, Any]],
              images: dict[str, Path], root: Path, notes: list[str],
              changes: list[dict[str, Any]], depth: dict[str, Any]) -> str:
    lines = ["# aligndepth comparison", ""]
    for name, run in zip(names, runs):
        models = run.manifest.get("models") or {}
        aligned = (models.get("aligned") or {}).get("source", "?")
        lines.append(f"- {name}: `{run.path}` (aligned: `{aligned}`)")
    judges = {json.dumps((s.get("judge") or {}).get("name")) for s in summaries.values()}
    lines.append(f"- judge: `{', '.join(sorted(judges))}`")
    if depth["sentence"]:
        lines += ["", f"**Depth: {depth['sentence']}.**"]
    for name, s in summaries.items():
        if (s.get("depth") or {}).get("sentence"):
            lines.append(f"- {name}: {s['depth']['sentence']}")
    lines += ["", "| metric | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    lines += [f"| {m} | " + " | ".join(values) + " |" for m, values in side_by_side(summaries)]
    others = names[1:]
    if changes:
        lines += ["", f"## Changes from {names[0]}", "",
                  "Each change with its 95% interval, paired over the prompts both runs "
                  "judged when they share them (a prompt's samples counted as correlated, "
                  "not independent); `*` marks a significant change (the interval "
                  "excludes 0).", "",
                  "| rate | " + " | ".join(f"{n} − {names[0]}" for n in others) + " |",
                  "|---|" + "---|" * len(others)]
        lines += [f"| {c['rate']} | " + " | ".join(
            fmt_difference(c["changes"][n]) if n in c["changes"] else "—" for n in others)
            + " |" for c in changes]
    for warning in {w for s in summaries.values() for w in s.get("warnings") or []}:
        lines += ["", f"**Warning:** {warning}"]
    heads = {**titles(), "rates": "Headline rates"}
    for name, path in images.items():
        lines += ["", f"## {heads[name]}", "", f"![{name}]({path.relative_to(root)})"]
    lines += [""] + notes if notes else []
    return "\n".join(lines) + "\n"
