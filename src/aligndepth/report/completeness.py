"""Whether a run did all it set out to do: each requested experiment's units done of
those it planned.

The manifest names the experiments a run was asked for; each experiment's plan
(``records/<experiment>.plan.json``, written by :meth:`aligndepth.runs.Run.pending` when
the experiment starts) names its units and their record keys. A unit is done when all
its keys are recorded (units are appended whole). An experiment with no plan and no
records never started; one with records but no plan was run before plans were kept, so
what it planned is unknown.
"""

from __future__ import annotations

from typing import Any

from aligndepth.runs import Run


def experiment_progress(run: Run) -> dict[str, dict[str, Any]]:
    """``{experiment: {"units_done", "units_planned", "records", "complete"}}`` for every
    experiment the manifest requests, in its order (``units_planned`` and ``complete`` are
    ``None`` when the plan is unknown)."""
    out: dict[str, dict[str, Any]] = {}
    for name in run.manifest.get("experiments") or []:
        done = run.done_keys(name)
        plan = run.planned(name)
        if plan is None:
            started = bool(done)
            out[name] = {"units_done": None if started else 0, "units_planned": None,
                         "records": len(done), "complete": None if started else False}
            continue
        finished = sum(set(keys) <= done for keys in plan.values())
        out[name] = {"units_done": finished, "units_planned": len(plan),
                     "records": len(done), "complete": finished == len(plan)}
    return out


def incomplete_warnings(progress: dict[str, dict[str, Any]]) -> list[str]:
    """One warning per requested experiment that is not complete."""
    out = []
    for name, p in progress.items():
        if p["complete"] is not False:
            continue
        if p["units_planned"] is None:
            out.append(f"{name} did not start: the run was interrupted before it; rerun the "
                       "same command to run it")
        else:
            out.append(f"{name} is incomplete: {p['units_done']} of {p['units_planned']} "
                       f"units done ({p['records']} records), so its numbers cover part of "
                       "the data; rerun the same command to finish it")
    return out


def progress_lines(progress: dict[str, dict[str, Any]]) -> list[str]:
    """A markdown table: each requested experiment, its units done / planned, its state."""
    lines = ["| experiment | units done / planned | records | state |", "|---|---|---|---|"]
    for name, p in progress.items():
        planned = "?" if p["units_planned"] is None else p["units_planned"]
        done = "?" if p["units_done"] is None else p["units_done"]
        state = {True: "complete", False: "INCOMPLETE", None: "unknown (no plan)"}[
            p["complete"]]
        lines.append(f"| {name} | {done} / {planned} | {p['records']} | {state} |")
    return lines
