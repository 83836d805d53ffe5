"""Summaries and reports computed from a run's records (so they can always be redone).

``render_report(run_dir)`` writes ``summary.json``, ``plots/*.png``, ``report.md`` and a
self-contained ``report.html`` (plots embedded), and returns the summary.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aligndepth.agreement import AGREEMENT_FILE, agreement_lines
from aligndepth.errors import AlignDepthError
from aligndepth.experiments_registry import Experiment, call, experiments
from aligndepth.metrics import Units, invalid_warning, verdict_totals
from aligndepth.rejudge import rejudged_name
from aligndepth.report import plots
from aligndepth.report.answers import answer_blocks
from aligndepth.report.categories import (
    category_counts,
    category_lookup,
    category_plots,
    rates_by_category,
)
from aligndepth.report.completeness import (
    experiment_progress,
    incomplete_warnings,
    progress_lines,
)
from aligndepth.report.depth import depth_card, quoted_lines
from aligndepth.report.references import marks
from aligndepth.report.sections import fmt
from aligndepth.run_files import records_label
from aligndepth.runs import Run

log = logging.getLogger(__name__)


def _records(run: Run, entry: Experiment, judge: str | None) -> list[dict[str, Any]]:
    """An experiment's records, as judged by ``judge`` (``None``: the run's own judge)."""
    return run.records(_records_name(entry, judge))


def _records_name(entry: Experiment, judge: str | None) -> str:
    """The records name (``Run.records``) of ``entry`` as judged by ``judge``."""
    return entry.name if judge is None or not entry.judged else rejudged_name(entry.name, judge)


def run_units(run: Run, judge: str | None = None) -> Units:
    """Every rate of the run as units (``{summary path: {unit key: outcome}}``)."""
    units: Units = {}
    for entry in experiments():
        if entry.units is not None:
            units.update(call(entry.units, _records(run, entry, judge)))
    return units


def summarize_run(run: Run, judge: str | None = None) -> dict[str, Any]:
    """The run's summary: the depth card, one section per experiment with records (every
    rate with its counts and 95% interval), verdict totals, warnings and identities.

    With ``judge``, verdicts come from records re-judged under that name
    (``aligndepth judge``).
    """
    summary: dict[str, Any] = {}
    judged: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for entry in experiments():
        records = by_name[entry.name] = _records(run, entry, judge)
        if records:
            summary[entry.name] = call(entry.summarize, records)
            judged += records if entry.judged else []
            if entry.extras is not None:
                extras.update(call(entry.extras, summary[entry.name]))
    card = depth_card(summary)
    if card is not None:
        summary = {"depth": card, **summary}
    summary.update(extras)
    m = run.manifest
    category = category_lookup(m)
    if category is not None:  # every rate again over each category's prompts
        summary["categories"] = category_counts(m)
        units = {e.name: functools.partial(call, e.units) for e in experiments()
                 if e.units is not None}
        summary["by_category"] = rates_by_category(by_name, units, category)
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
    """``{"depth" or experiment: image}``: the depth figure, then each experiment's plot."""
    out: dict[str, Path] = {}
    d = root / "plots"
    if "kl" in summary and "prefill" in summary:  # alone, either is its own plot below
        out["depth"] = plots.plot_depth(
            {"aligned vs base": summary["kl"]}, {"aligned": summary["prefill"]},
            {"aligned vs base": summary["depth"]}, d / "depth.png",
            marks(("prefill", "asr_by_k")))
    for entry in experiments():
        if entry.plot is not None and entry.name in summary:
            image = call(entry.plot, summary[entry.name], _records(run, entry, judge), d)
            if image is not None:
                out[entry.name] = image
    return out


#: The depth card's section title.
DEPTH_TITLE = "How deep is the safety alignment?"


def titles() -> dict[str, str]:
    """Section titles: the depth card's and each experiment's."""
    return {"depth": DEPTH_TITLE, **{e.name: e.title for e in experiments()}}


def headline(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) rows for tables: the depth card's, then each experiment's."""
    rows: list[tuple[str, str]] = []
    depth = summary.get("depth") or {}
    if "kl_depth" in depth:
        rows.append(("depth: KL depth (tokens holding 90% of the KL)", fmt(depth["kl_depth"])))
    if "prefill_depth" in depth:
        rows.append(("depth: prefill depth (tokens to ASR >= 0.5)",
                     fmt(depth["prefill_depth"])))
    for entry in experiments():
        if entry.rows is not None and entry.name in summary:
            rows += call(entry.rows, summary[entry.name])
    return rows


def _section(entry: Experiment, summary: dict[str, Any], images: dict[str, Path],
             root: Path, blocks: Mapping[str, str]) -> list[str]:
    """An experiment's report section: its title, its plots (and rates by category), its
    notes and its answers table."""
    lines = ["", f"## {entry.title}"]
    for key in (entry.name, f"{entry.name}_by_category"):
        if key in images:
            lines += ["", f"![{key}]({images[key].relative_to(root)})"]
    if entry.notes is not None:
        lines += [""] + call(entry.notes, summary[entry.name])
    if entry.name in blocks:
        lines += ["", f"<!-- block {entry.name} -->"]
    return lines


def _markdown(run: Run, summary: dict[str, Any], images: dict[str, Path], root: Path,
              blocks: Mapping[str, str] | None = None) -> str:
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
        lines += ["", f"## {DEPTH_TITLE}", "", f"**{depth['sentence']}**"]
        if "depth" in images:
            lines += ["", f"![depth]({images['depth'].relative_to(root)})"]
        else:
            lines += ["", "Its plot is the experiment's own, below."]
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
    for entry in experiments():
        if entry.name in summary:
            lines += _section(entry, summary, images, root, blocks or {})
    agreement = run.path / AGREEMENT_FILE
    if agreement.is_file():
        lines += ["", "## Judge agreement", "",
                  "Over the same outputs, for every pair of judges (`agreement.json` holds the "
                  "confusion matrices per experiment and up to 20 disagreements each):", ""]
        lines += agreement_lines(json.loads(agreement.read_text(encoding="utf-8")))
    return "\n".join(lines) + "\n"


_BLOCK = re.compile(r"<!-- block (\S+) -->")


def _html(markdown_text: str, images: dict[str, Path],
          blocks: Mapping[str, str] | None = None) -> str:
    """A small, dependency-free rendering of a markdown report with inline images
    (tables: the first row is the header); a line ``<!-- block NAME -->`` becomes
    ``blocks[NAME]`` (HTML, e.g. an answers table)."""
    body: list[str] = []
    in_table = False
    for line in markdown_text.splitlines():
        if line.startswith("|---"):
            continue
        block = _BLOCK.fullmatch(line.strip())
        if block:
            body.append((blocks or {}).get(block.group(1), ""))
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


def write_report_files(root: Path, markdown_text: str, images: dict[str, Path],
                       blocks: Mapping[str, str] | None = None) -> None:
    """``report.md`` and a self-contained ``report.html`` in ``root`` (``blocks``: HTML
    for the markdown's ``<!-- block NAME -->`` lines)."""
    (root / "report.md").write_text(markdown_text, encoding="utf-8")
    (root / "report.html").write_text(_html(markdown_text, images, blocks), encoding="utf-8")


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
    if not any(e.name in summary for e in experiments() if e.judged or judge is None):
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
    images.update(category_plots(summary, root / "plots", titles()))
    names = {e.name: _records_name(e, judge) for e in experiments()}
    blocks = answer_blocks({e.name: _records(run, e, judge) for e in experiments()},
                           category_lookup(run.manifest), judge,
                           sources={e: records_label(run.path / "records", name)
                                    for e, name in names.items()})
    write_report_files(root, _markdown(run, summary, images, root, blocks), images, blocks)
    return summary
