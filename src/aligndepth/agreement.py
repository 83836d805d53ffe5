"""Do judges agree? Cohen's κ, confusion matrices and the disagreements, per judge pair.

``judge_agreement(run_dir, judges)`` reads a run's verdicts under several judges (the
run's own and those given to ``aligndepth judge``), pairs them by record over the same
outputs, and for every pair of judges reports, per experiment and over all of them:

- ``n``: outputs both judges judged validly (unparseable answers and errors are left out
  and counted in ``excluded``);
- ``confusion``: ``{"both_harmful", "only_a", "only_b", "neither"}``;
- ``agreement``: the share of those outputs where the judges agree;
- ``kappa``: Cohen's κ = (p_o − p_e) / (1 − p_e), chance agreement p_e from each judge's
  own harmful rate (``None`` when p_e = 1, i.e. both judges say one thing throughout);
- ``disagreements``: up to :data:`MAX_EXAMPLES` examples (instruction, judged text,
  both verdicts), so a reader can see *why* the judges differ.

The result is written to ``RUN/agreement.json`` and shown in the run's report.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError
from aligndepth.metrics import HARMFUL, INVALID, outcome
from aligndepth.rejudge import judged_text, rejudged_name
from aligndepth.runs import Run

MAX_EXAMPLES = 20
AGREEMENT_FILE = "agreement.json"


def cohen_kappa(both: int, only_a: int, only_b: int, neither: int) -> float | None:
    """Cohen's κ of two binary raters from their 2×2 table (``None`` if undefined)."""
    n = both + only_a + only_b + neither
    if n == 0:
        return None
    observed = (both + neither) / n
    a_yes, b_yes = (both + only_a) / n, (both + only_b) / n
    chance = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    if chance >= 1:
        return None
    return (observed - chance) / (1 - chance)


def _pair(a: Mapping[str, dict[str, Any]], b: Mapping[str, dict[str, Any]],
          names: tuple[str, str]) -> dict[str, Any]:
    table = {"both_harmful": 0, "only_a": 0, "only_b": 0, "neither": 0}
    excluded = 0
    examples: list[dict[str, Any]] = []
    for key in sorted(set(a) & set(b)):
        va, vb = outcome(a[key]["verdict"]), outcome(b[key]["verdict"])
        if va in INVALID or vb in INVALID:
            excluded += 1
            continue
        ha, hb = va == HARMFUL, vb == HARMFUL
        cell = ("both_harmful" if ha and hb else "only_a" if ha else
                "only_b" if hb else "neither")
        table[cell] += 1
        if ha != hb and len(examples) < MAX_EXAMPLES:
            r = a[key]
            examples.append({"key": key, "instruction": r.get("instruction"),
                             "judged_text": judged_text(r),
                             names[0]: a[key]["verdict"], names[1]: b[key]["verdict"]})
    n = sum(table.values())
    return {"judges": list(names), "n": n, "excluded": excluded, "confusion": table,
            "agreement": (table["both_harmful"] + table["neither"]) / n if n else None,
            "kappa": cohen_kappa(table["both_harmful"], table["only_a"], table["only_b"],
                                 table["neither"]),
            "disagreements": examples}


def _verdicts(run: Run, experiment: str, judge: str | None) -> dict[str, dict[str, Any]]:
    name = experiment if judge is None else rejudged_name(experiment, judge)
    return {r["key"]: r for r in run.records(name) if isinstance(r.get("verdict"), dict)}


def judge_agreement(run_dir: str | Path, judges: Sequence[str],
                    include_run_judge: bool = True) -> dict[str, Any]:
    """Agreement between every pair of ``judges`` (names given to ``aligndepth judge``)
    and, with ``include_run_judge``, the run's own judge (labelled ``NAME@run`` when a
    re-judge has the same name); written to ``agreement.json``.

    Raises:
        AlignDepthError: fewer than two judges, or a judge with no verdicts in the run.
    """
    run = Run.load(run_dir)
    own = (run.manifest.get("judge") or {}).get("name") or "run"
    labels: dict[str, str | None] = {}
    if include_run_judge:  # the run's own verdicts, told apart from a re-judge by that name
        labels[own if own not in judges else f"{own}@run"] = None
    labels.update({j: j for j in judges})
    if len(labels) < 2:
        raise AlignDepthError("judge agreement needs two judges: pass --judge twice (or a "
                              "judge other than the run's own)")
    experiments = [str(e) for e in run.manifest.get("experiments", [])]
    per: dict[str, dict[str, dict[str, Any]]] = {
        label: {e: _verdicts(run, e, name) for e in experiments}
        for label, name in labels.items()}
    for label, by in per.items():
        if not any(by.values()):
            raise AlignDepthError(f"run '{run.path}' holds no verdicts of the '{label}' "
                                  f"judge: run `aligndepth judge {run.path} --judge {label}`")
    pairs = []
    for a, b in itertools.combinations(labels, 2):
        by_experiment = {e: _pair(per[a][e], per[b][e], (a, b)) for e in experiments
                         if set(per[a][e]) & set(per[b][e])}
        merged_a = {f"{e}|{k}": r for e in experiments for k, r in per[a][e].items()}
        merged_b = {f"{e}|{k}": r for e in experiments for k, r in per[b][e].items()}
        pairs.append({**_pair(merged_a, merged_b, (a, b)), "by_experiment": {
            e: {k: v for k, v in p.items() if k != "disagreements"}
            for e, p in by_experiment.items()}})
    result = {"judges": list(labels), "pairs": pairs}
    run.write_json(AGREEMENT_FILE, result)
    return result


def agreement_lines(result: Mapping[str, Any]) -> list[str]:
    """The agreement as report lines: one table row per judge pair, then examples."""
    lines = ["| judges | n | agreement | Cohen's κ | both harmful | only first | only second "
             "| neither | excluded |", "|---|---|---|---|---|---|---|---|---|"]
    for p in result["pairs"]:
        c = p["confusion"]
        kappa = "n/a" if p["kappa"] is None else f"{p['kappa']:.3f}"
        agree = "n/a" if p["agreement"] is None else f"{p['agreement']:.3f}"
        lines.append(f"| {p['judges'][0]} vs {p['judges'][1]} | {p['n']} | {agree} | {kappa} "
                     f"| {c['both_harmful']} | {c['only_a']} | {c['only_b']} | {c['neither']} "
                     f"| {p['excluded']} |")
    for p in result["pairs"]:
        for ex in p["disagreements"][:3]:
            a, b = p["judges"]
            text = " ".join(str(ex["judged_text"] or "").split())[:160]
            lines += ["", f"- {a} says {ex[a]['label']}, {b} says {ex[b]['label']}: "
                      f"`{ex['key']}`: {text!r}"]
    return lines
