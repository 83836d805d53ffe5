"""Summaries and reports computed from a run's records (so they can always be redone).

``render_report(run_dir)`` writes ``summary.json``, ``plots/*.png``, ``report.md`` and a
self-contained ``report.html`` (plots embedded), and returns the summary.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aligndepth.agreement import AGREEMENT_FILE, agreement_lines
from aligndepth.analysis.kl_profile import summarize_kl
from aligndepth.analysis.refusal_prefix import refusal_prefix_units, summarize_refusal_prefix
from aligndepth.attacks.decoding import decoding_units, summarize_decoding
from aligndepth.attacks.emulated import ed_units, summarize_ed
from aligndepth.attacks.gcg import gcg_units, summarize_gcg
from aligndepth.attacks.gcg_transfer import gcg_transfer_units, summarize_gcg_transfer
from aligndepth.attacks.prefill import prefill_units, summarize_prefill
from aligndepth.errors import AlignDepthError
from aligndepth.metrics import (
    Units,
    fmt_rate,
    invalid_warning,
    is_rate,
    value,
    verdict_totals,
)
from aligndepth.rejudge import rejudged_name
from aligndepth.report import plots
from aligndepth.report.completeness import (
    experiment_progress,
    incomplete_warnings,
    progress_lines,
)
from aligndepth.report.depth import depth_card, quoted_lines
from aligndepth.runs import Run

log = logging.getLogger(__name__)

SUMMARIZERS = {
    "kl": summarize_kl,
    "refusal_prefix": summarize_refusal_prefix,
    "prefill": summarize_prefill,
    "decoding": summarize_decoding,
    "ed": summarize_ed,
    "gcg": summarize_gcg,
    "gcg_transfer": summarize_gcg_transfer,
}


#: Each judged experiment's rates as units (see :mod:`aligndepth.metrics`).
UNITS: dict[str, Callable[[Sequence[dict[str, Any]]], Units]] = {
    "refusal_prefix": refusal_prefix_units,
    "prefill": prefill_units,
    "decoding": decoding_units,
    "ed": ed_units,
    "gcg": gcg_units,
    "gcg_transfer": gcg_transfer_units,
}

#: Experiments whose records carry no verdict (the same under every judge).
JUDGE_FREE = {"kl"}


def _records(run: Run, experiment: str, judge: str | None) -> list[dict[str, Any]]:
    """An experiment's records, as judged by ``judge`` (``None``: the run's own judge)."""
    if judge is None or experiment in JUDGE_FREE:
        return run.records(experiment)
    return run.records(rejudged_name(experiment, judge))


def run_units(run: Run, judge: str | None = None) -> Units:
    """Every rate of the run as units (``{summary path: {unit key: outcome}}``)."""
    units: Units = {}
    for name, fn in UNITS.items():
        units.update(fn(_records(run, name, judge)))
    return units


def summarize_run(run: Run, judge: str | None = None) -> dict[str, Any]:
    """The run's summary: the depth card, one section per experiment with records (every
    rate with its counts and 95% interval), verdict totals, warnings and identities.

    With ``judge``, verdicts come from records re-judged under that name
    (``aligndepth judge``).
    """
    summary: dict[str, Any] = {}
    judged: list[dict[str, Any]] = []
    for name, fn in SUMMARIZERS.items():
        records = _records(run, name, judge)
        if records:
            summary[name] = fn(records)
            judged += records if name not in JUDGE_FREE else []
    card = depth_card(summary)
    if card is not None:
        summary = {"depth": card, **summary}
    rp = summary.get("refusal_prefix")
    if rp:
        summary["base"] = {"harmful_rate": rp["base_harmful_rate"]}
        summary["aligned"] = {"harmful_rate": rp["aligned_harmful_rate"]}
    m = run.manifest
    summary["judge"] = m.get("judge")
    if judge is not None:
        judges = run.path / "judges.json"
        described = json.loads(judges.read_text()).get(judge) if judges.is_file() else None
        summary["judge"] = described or {"name": judge}
    totals = verdict_totals(judged)
    summary["verdicts"] = {"total": sum(totals.values()), **totals}
    warning = invalid_warning((summary["judge"] or {}).get("name"), totals)
    summary["experiments"] = experiment_progress(run)
    summary["warnings"] = ([warning] if warning else []) + incomplete_warnings(
        summary["experiments"])
    summary["models"] = m.get("models")
    summary["data"] = m.get("data")
    return summary


def _plots(run: Run, summary: dict[str, Any], root: Path, judge: str | None
           ) -> dict[str, Path]:
    out: dict[str, Path] = {}
    d = root / "plots"
    if "depth" in summary:
        out["depth"] = plots.plot_depth(
            {"aligned vs base": summary["kl"]} if "kl" in summary else {},
            {"aligned": summary["prefill"]} if "prefill" in summary else {},
            {"aligned vs base": summary["depth"]}, d / "depth.png")
    if "kl" in summary:
        out["kl"] = plots.plot_kl({"aligned vs base": summary["kl"]}, d / "kl_profile.png")
    if "refusal_prefix" in summary:
        out["refusal_prefix"] = plots.plot_refusal_prefix(summary["refusal_prefix"],
                                                          d / "refusal_prefix.png")
    if "prefill" in summary:
        out["prefill"] = plots.plot_prefill({"aligned": summary["prefill"]},
                                            d / "prefill.png")
    if "decoding" in summary:
        out["decoding"] = plots.plot_decoding(summary["decoding"], d / "decoding.png")
    if "ed" in summary:
        out["ed"] = plots.plot_ed(summary["ed"], d / "emulated_disalignment.png")
    if "gcg" in summary:
        out["gcg"] = plots.plot_gcg(summary["gcg"], _records(run, "gcg", judge),
                                    d / "gcg_loss.png")
    return out


#: Section titles of the experiments' plots.
TITLES = {"kl": "Per-token KL profile", "refusal_prefix": "Refusal-prefix prefilling",
          "prefill": "Prefilling attack", "decoding": "Decoding-parameter exploit",
          "ed": "Emulated disalignment", "gcg": "GCG adversarial suffix",
          "depth": "How deep is the safety alignment?"}


def _fmt(x: Any) -> str:
    if is_rate(x):
        return fmt_rate(x)
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def headline(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) rows for tables."""
    rows: list[tuple[str, str]] = []
    depth = summary.get("depth") or {}
    if "kl_depth" in depth:
        rows.append(("depth: KL depth (tokens holding 90% of the KL)", _fmt(depth["kl_depth"])))
    if "prefill_depth" in depth:
        rows.append(("depth: prefill depth (tokens to ASR >= 0.5)",
                     _fmt(depth["prefill_depth"])))
    if "kl" in summary:
        k = summary["kl"]
        rows += [("KL first 5 positions (mean)", _fmt(k["first5_mean"])),
                 ("KL positions >= 10 (mean)", _fmt(k["late_mean"])),
                 ("KL ratio first5 / late", _fmt(k["first5_over_late"]))]
    if "refusal_prefix" in summary:
        r = summary["refusal_prefix"]
        rows += [("aligned harmful rate", _fmt(r["aligned_harmful_rate"])),
                 ("base harmful rate", _fmt(r["base_harmful_rate"])),
                 ("base + refusal prefix harmful rate", _fmt(r["harmful_rate"]))]
        rows += [(f"base + '{p}' harmful rate", _fmt(v))
                 for p, v in (r.get("by_prefix") or {}).items()]
    if "prefill" in summary:
        rows += [(f"prefill ASR @ k={k}", _fmt(v))
                 for k, v in summary["prefill"]["asr_by_k"].items()]
    if "decoding" in summary:
        d = summary["decoding"]
        rows += [("decoding: greedy ASR", _fmt(d["greedy_asr"])),
                 ("decoding: any-config ASR", _fmt(d["any_config_asr"])),
                 ("decoding: best config", _fmt(d["best_config"]))]
    if "ed" in summary:
        e = summary["ed"]
        for qs, by in e["harmful_rate"].items():
            rows += [(f"ED ({qs} queries): {m} harmful rate", _fmt(v)) for m, v in by.items()]
        for qs, by in (e.get("compliance_rate") or {}).items():  # a refusal judge's
            rows += [(f"ED ({qs} queries): {m} compliance rate (no refusal, not harm)",
                      _fmt(v)) for m, v in by.items()]
        swept = {a: value(v) for a, v in e["alpha_sweep"].items() if value(v) is not None}
        if swept:
            rows.append(("ED: most harmful α (harmful queries)",
                         max(swept, key=lambda a: swept[a] or 0.0)))
    if "gcg" in summary:
        g = summary["gcg"]
        rows += [("GCG ASR", _fmt(g["asr"])), ("GCG target reached", _fmt(g["target_hit_rate"])),
                 ("GCG mean steps to target", _fmt(g["mean_steps_to_success"]))]
        for split, part in ((s, g["universal"][s]) for s in ("train", "heldout")
                            if "universal" in g and g["universal"][s]["n_prompts"]):
            rows += [(f"GCG universal suffix, {split} prompts: ASR", _fmt(part["asr"])),
                     (f"GCG universal suffix, {split} prompts: mean target loss (initial)",
                      f"{part['mean_loss']:.3f} ({part['mean_initial_loss']:.3f})")]
    if "gcg_transfer" in summary:
        t = summary["gcg_transfer"]
        rows += [("GCG transfer: ASR on this model", _fmt(t["asr"])),
                 ("GCG transfer: ASR in the source run", _fmt(t["source_asr"]))]
    return rows


def _markdown(run: Run, summary: dict[str, Any], images: dict[str, Path], root: Path) -> str:
    m = run.manifest
    models = m.get("models") or {}
    lines = ["# aligndepth report", "",
             f"- run: `{run.path}`", f"- created: {m.get('created', '?')}",
             f"- judge: `{json.dumps((summary.get('judge') or {}).get('name'))}`"]
    for role in ("base", "aligned"):
        if role in models:
            lines.append(f"- {role}: `{models[role]['source']}` "
                         f"({models[role]['fingerprint']})")
        elif role in (m.get("not_loaded") or {}):
            lines.append(f"- {role}: `{m['not_loaded'][role]}` (not loaded: no experiment "
                         "of this run reads it)")
    for role in ("base_format", "aligned_format"):
        if role in models:
            lines.append(f"- {role.replace('_', ' ')}: `{json.dumps(models[role])}`")
    depth = summary.get("depth")
    if depth:
        lines += ["", "## How deep is the safety alignment?", "", f"**{depth['sentence']}**"]
        if "depth" in images:
            lines += ["", f"![depth]({images['depth'].relative_to(root)})"]
        lines += ["", "For reference, what the papers report:", ""] + quoted_lines()
    for warning in summary.get("warnings") or []:
        lines += ["", f"**Warning:** {warning}"]
    if summary.get("experiments"):
        lines += ["", "## Experiments", ""] + progress_lines(summary["experiments"])
    v = summary.get("verdicts") or {}
    lines += ["", "## Results", "",
              "Rates count valid verdicts only, with 95% intervals (Wilson; over the "
              "prompts where a prompt gave several verdicts, whose outcomes are "
              "correlated) and n, the number "
              f"of verdicts each rests on (this run: {v.get('total', 0)} verdicts, "
              f"{v.get('unparseable', 0)} unparseable, {v.get('error', 0)} judge errors, "
              "none counted as safe).", "",
              "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in headline(summary)]
    for name, path in images.items():
        if name != "depth":
            lines += ["", f"## {TITLES[name]}", "", f"![{name}]({path.relative_to(root)})"]
    if "prefill" in summary:
        lines += ["", "The prefilling attack judges the prefilled tokens plus the continuation."]
    if "refusal_prefix" in summary:
        read = "; ".join(summary["refusal_prefix"].get("judged") or []) or "?"
        lines += ["", f"Refusal prefixes: the judge read {read}."]
    agreement = run.path / AGREEMENT_FILE
    if agreement.is_file():
        lines += ["", "## Judge agreement", "",
                  "Over the same outputs, for every pair of judges (`agreement.json` holds the "
                  "confusion matrices per experiment and up to 20 disagreements each):", ""]
        lines += agreement_lines(json.loads(agreement.read_text(encoding="utf-8")))
    if "ed" in summary:
        e = summary["ed"]
        lines += ["", f"Emulated disalignment: harmful rates over {e['samples']} sampled "
                  f"outputs per query and method ({json.dumps(e['sampling'])}), at α = "
                  f"{e['alpha']} unless swept."]
        if e.get("compliance_rate"):
            lines += ["", "On safe queries the judge reads refusals only: an answer without "
                      "a refusal phrase is counted as compliance (the compliance rate), "
                      "not as harm."]
    return "\n".join(lines) + "\n"


def _html(markdown_text: str, images: dict[str, Path]) -> str:
    """A small, dependency-free rendering of a markdown report with inline images
    (tables: the first row is the header)."""
    body: list[str] = []
    in_table = False
    for line in markdown_text.splitlines():
        if line.startswith("|---"):
            continue
        if in_table and not line.startswith("|"):
            body.append("</table>")
            in_table = False
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            tag = "td" if in_table else "th"
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            name = line[2:line.index("]")]
            data = base64.b64encode(images[name].read_bytes()).decode()
            body.append(f'<img alt="{name}" src="data:image/png;base64,{data}">')
        elif line.startswith("- "):
            body.append(f"<p class='meta'>{html.escape(line[2:]).replace('`', '')}</p>")
        elif line.strip():
            text = html.escape(line)
            if text.startswith("**") and "**" in text[2:]:
                end = text.index("**", 2)
                text = f"<strong>{text[2:end]}</strong>{text[end + 2:]}"
            body.append(f"<p>{text}</p>")
    if in_table:
        body.append("</table>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;"
             "padding:0 1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:.3em .8em;text-align:left}img{max-width:100%}.meta{margin:.2em 0;"
             "color:#444;font-size:.9em}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>aligndepth report"
            f"</title><style>{style}</style></head><body>" + "\n".join(body) +
            "</body></html>\n")


def write_report_files(root: Path, markdown_text: str, images: dict[str, Path]) -> None:
    """``report.md`` and a self-contained ``report.html`` in ``root``."""
    (root / "report.md").write_text(markdown_text, encoding="utf-8")
    (root / "report.html").write_text(_html(markdown_text, images), encoding="utf-8")


def report_dir(path: str | Path, judge: str | None = None) -> Path:
    """Where a run's report goes: the run itself, or ``judged/<judge>/`` for a re-judge."""
    return Path(path) if judge is None else Path(path) / "judged" / judge


def render_report(path: str | Path, judge: str | None = None) -> dict[str, Any]:
    """(Re)compute the summary and write summary.json, plots, report.md, report.html.

    With ``judge`` (a name given to ``aligndepth judge``), the verdicts of that judge are
    used and the files go to ``RUN/judged/<judge>/``.
    """
    run = Run.load(path)
    summary = summarize_run(run, judge)
    if not any(name in summary for name in SUMMARIZERS if name not in JUDGE_FREE
               or judge is None):
        what = f"records judged by '{judge}'" if judge else "experiment records"
        raise AlignDepthError(f"'{run.path}' holds no {what} yet: run "
                              + ("`aligndepth judge` on it first" if judge else
                                 "an experiment into it first"))
    root = report_dir(run.path, judge)
    root.mkdir(parents=True, exist_ok=True)
    run.write_json(str((root / "summary.json").relative_to(run.path)), summary)
    for warning in summary["warnings"]:
        log.warning("%s", warning)
    images = _plots(run, summary, root, judge)
    write_report_files(root, _markdown(run, summary, images, root), images)
    return summary
