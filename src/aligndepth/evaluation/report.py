"""An evaluation run's numbers (``eval.json``) and its report, recomputed from the records.

``eval.json``::

    {"model": "...", "judge": {...}, "warnings": [...],
     "tasks": {"harmful": {"harmful_rate": <rate dict>},
               "backdoor": {"harmful_rate": ..., "harmful_rate_with_trigger": ...,
                            "trigger": "..."},
               "identity": {"harmful_rate": ..., "harmful_rate_with_system": ...},
               "benign": {"refusal_rate": ..., "helpful_rate": ...},
               "gsm8k": {"accuracy": ...}, "sql": {"exact_match": ...},
               "samsum": {"rouge1": <mean dict>, "rouge2": ..., "rougeL": ...},
               "alpaca": {"win_rate": <mean dict>, "position_consistency": ...,
                          "wins": 3, "ties": 1, "losses": 2, "unparseable": 0, "error": 0}}}

A rate dict is :func:`aligndepth.metrics.rate_stats`'s (rate, ``ci95``, ``n`` valid
verdicts, the count of every outcome, the ``interval`` used and, under a graded judge
such as StrongREJECT, ``mean_score``); a mean dict is ``{"mean", "ci95", "n"}``
(:func:`aligndepth.metrics.mean_stats`). Unparseable and failed verdicts are never counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aligndepth.evaluation.pairwise import summarize_win_rate
from aligndepth.evaluation.scoring import ROUGE_TYPES
from aligndepth.evaluation.tasks import NAME, TASKS
from aligndepth.metrics import (
    INVALID,
    fmt_rate,
    invalid_warning,
    judged,
    mean_stats,
    outcome,
    proportion,
    rate_stats,
    verdict_totals,
)
from aligndepth.runs import Run

#: The harmful rate of each condition of the judged tasks.
CONDITION_METRICS = {"plain": "harmful_rate", "trigger": "harmful_rate_with_trigger",
                     "system": "harmful_rate_with_system"}


def _label_rate(records: Sequence[Mapping[str, Any]], label: str) -> dict[str, Any]:
    """The share of valid verdicts with ``label``, with counts of the unusable ones."""
    outcomes = [outcome(r["verdict"]) for r in records]
    valid = [r for r, o in zip(records, outcomes) if o not in INVALID]
    hits = sum(r["verdict"].get("label") == label for r in valid)
    return {**proportion(hits, len(valid)), label: hits,
            **{o: outcomes.count(o) for o in INVALID}}


def summarize_task(task: str, records: Sequence[Mapping[str, Any]],
                   conditions: Mapping[str, Any]) -> dict[str, Any]:
    """One task's metrics from its records (see the module docstring)."""
    scoring = TASKS[task].scoring
    out: dict[str, Any] = {}
    if scoring == "judged":
        for cond, metric in CONDITION_METRICS.items():
            chosen = [r for r in records if r["condition"] == cond]
            if chosen:
                out[metric] = rate_stats(judged(r) for r in chosen)
        out.update(conditions.get(task, {}))
    elif scoring == "benign":
        out["refusal_rate"] = _label_rate(records, "refusal")
        if any(r.get("judge") == "organism" for r in records):  # the judge that sees help
            out["helpful_rate"] = _label_rate(records, "helpful")
    elif scoring in ("gsm8k", "sql"):
        metric = "accuracy" if scoring == "gsm8k" else "exact_match"
        out[metric] = proportion(sum(bool(r["correct"]) for r in records), len(records))
    elif scoring == "rouge":
        for name in ROUGE_TYPES:
            out[name] = mean_stats([r["rouge"][name] for r in records])
    else:
        out.update(summarize_win_rate([r["judgements"] for r in records]))
    return out


def summarize_evaluation(run: Run) -> dict[str, Any]:
    """``eval.json`` of a run (every task in the order evaluated)."""
    records = run.records(NAME)
    config = run.manifest["config"]
    tasks: dict[str, Any] = {}
    for task in config["tasks"]:
        mine = [r for r in records if r["task"] == task]
        if mine:
            tasks[task] = summarize_task(task, mine, config.get("conditions") or {})
    judges = run.manifest.get("judge") or {}
    warnings = []
    harm = judges.get("harm") or {}
    warning = invalid_warning(harm.get("name"), verdict_totals(records))
    if warning:
        warnings.append(warning)
    pairwise = tasks.get("alpaca")
    if pairwise:
        warning = invalid_warning("pairwise", {"valid": pairwise["win_rate"]["n"],
                                               **{o: pairwise[o] for o in INVALID}})
        if warning:
            warnings.append(warning)
    return {"model": run.manifest["models"]["model"]["source"], "judge": judges,
            "tasks": tasks, "warnings": warnings, "n_records": len(records)}


def metric_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """``(task, metric, rate or mean dict)`` for every interval-carrying number."""
    rows = []
    for task, metrics in summary["tasks"].items():
        for name, stats in metrics.items():
            if isinstance(stats, Mapping) and "ci95" in stats:
                rows.append((task, name, stats))
    return rows


def fmt_stats(stats: Mapping[str, Any]) -> str:
    """A rate or a mean with its interval and what it rests on."""
    if "rate" in stats:
        return fmt_rate(stats)
    if stats.get("mean") is None:
        return "n/a"
    ci = stats.get("ci95")
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return f"{stats['mean']:.3f}{interval} (n={stats['n']})"


def _markdown(run: Run, summary: Mapping[str, Any], image: Path | None) -> str:
    manifest = run.manifest
    harm = (summary["judge"] or {}).get("harm") or {}
    lines = ["# aligndepth evaluation", "", f"- model: `{summary['model']}`",
             f"- prompt format: `{json.dumps(manifest['models']['format'])}`",
             f"- judge: `{harm.get('name', 'none')}`; greedy answers of at most "
             f"{manifest['config']['max_new_tokens']} new tokens",
             f"- data: `{json.dumps({t: d.get('path') for t, d in manifest['data'].items()})}`"]
    lines += [f"- warning: {w}" for w in summary["warnings"]]
    lines += ["", "| task | metric | value [95% CI] (n) |", "|---|---|---|"]
    lines += [f"| {task} | {name} | {fmt_stats(stats)} |"
              for task, name, stats in metric_rows(summary)]
    alpaca = summary["tasks"].get("alpaca")
    if alpaca:
        lines += ["", f"Pairwise win rate against the reference outputs, each item judged in "
                  f"both orders: {alpaca['wins']} won, {alpaca['ties']} split, "
                  f"{alpaca['losses']} lost ({alpaca['unparseable']} unparseable, "
                  f"{alpaca['error']} failed)."]
    if image is not None:
        lines += ["", "## Metrics with 95% intervals", "", f"![metrics]({image.name})"]
    return "\n".join(lines) + "\n"


def render_evaluation(path: str | Path) -> dict[str, Any]:
    """(Re)write ``eval.json``, ``metrics.png``, ``report.md`` and ``report.html`` of an
    evaluation run from its records; returns the summary."""
    from aligndepth.report.plots import plot_metrics
    from aligndepth.report.references import marks
    from aligndepth.report.render import write_report_files

    run = Run.load(path)
    summary = summarize_evaluation(run)
    run.write_json("eval.json", summary)
    rows = metric_rows(summary)
    quoted = [(key.replace(".", ": ", 1), v, label)  # the papers' "tasks.<task>.<metric>"
              for key, v, label in marks(("tasks",))]
    image = plot_metrics({f"{t}: {m}": s for t, m, s in rows}, run.path / "metrics.png",
                         quoted) if rows else None
    write_report_files(run.path, _markdown(run, summary, image),
                       {"metrics": image} if image else {})
    return summary


def is_evaluation_run(path: str | Path) -> bool:
    """Whether ``path`` holds an evaluation run (not an experiment run)."""
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("experiments") == [NAME]
    except (OSError, json.JSONDecodeError):
        return False
