"""The answers table of ``report.html``: every judged record of an experiment, browsable.

Each experiment's section of the report gets one ``<div class="answers">`` holding its
records as compact JSON (``<script type="application/json">``), which a small vanilla
script (``assets/answers.js``, embedded once per report with ``assets/answers.css``)
renders a page at a time: filters by verdict, by the experiment's own axes (k, decoding
configuration, ED query set, method and α, the GCG step that reached the target, the
refusal prefix: each experiment's registry entry names them in its ``answers`` view; and
the prompt's category) and a text search. Nothing is fetched: the report
stays one file.

The embedded rows are ``[prompt id, prompt index, outcome, setting, answer, judge,
*axis values]``; prompts are stored once (``prompts``). Long texts are cut, with a
marker naming the records file that holds them whole, so that every table together
stays within :data:`BUDGET` bytes (a 20,000-record run stays well under 10 MB).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from aligndepth.experiments_registry import experiments, field_value, get
from aligndepth.metrics import outcome
from aligndepth.rejudge import rejudged_name

#: Bytes of embedded answers one report may hold, over all its experiments.
BUDGET = 7_000_000
#: Longest text kept whole (characters); cut further when a run would pass the budget.
CAPS = (4000, 2000, 1000, 600, 400, 250, 160, 100, 60)
#: Rows per page in the browser.
PAGE_SIZE = 25

def _judge_text(verdict: Mapping[str, Any]) -> str:
    """The judge's reason, score and details in one line."""
    parts = [str(verdict.get("reason") or "")]
    if verdict.get("score") is not None:
        parts.append(f"score {verdict['score']}")
    if verdict.get("details"):
        parts.append(json.dumps(verdict["details"], sort_keys=True, ensure_ascii=False,
                                default=str))
    return "; ".join(p for p in parts if p)


def _show(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def table_data(experiment: str, records: Sequence[Mapping[str, Any]],
               category: Callable[[Mapping[str, Any]], str | None] | None = None,
               judge: str | None = None, source: str | None = None) -> dict[str, Any]:
    """One experiment's records (re-judged by ``judge`` if given) as the table's JSON
    (texts not yet cut); ``source`` names the records' files."""
    view = get(experiment).answers
    axes: list[tuple[str, Any]] = list(view.axes)
    if category is not None and any(category(r) for r in records):
        axes.append(("category", lambda r: category(r) or "(none)"))
    prompts: dict[str, int] = {}
    rows = []
    for r in records:
        verdict = r.get("verdict")
        index = prompts.setdefault(str(r.get("instruction", "")), len(prompts))
        rows.append([_show(r.get("id")), index,
                     outcome(verdict) if isinstance(verdict, Mapping) else "not judged",
                     _show(field_value(view.setting[1], r)), _show(r.get("output")),
                     _judge_text(verdict) if isinstance(verdict, Mapping) else "",
                     *(_show(field_value(fn, r)) for _, fn in axes)])
    name = rejudged_name(experiment, judge) if judge else experiment
    return {"experiment": experiment, "records": source or f"records/{name}.jsonl",
            "setting": view.setting[0], "axes": [label for label, _ in axes],
            "prompts": list(prompts), "rows": rows, "page_size": PAGE_SIZE, "cut": 0}


#: Indexes of the cuttable texts in a row: setting, answer, judge.
_LONG = (3, 4, 5)


def _cut(text: str, cap: int, where: str) -> str:
    if len(text) <= cap:
        return text
    return f"{text[:cap]} … [cut: {len(text) - cap} more characters, whole in {where}]"


def _size(data: Mapping[str, Any]) -> int:
    return len(_dump(data).encode("utf-8"))


def fit(tables: list[dict[str, Any]], budget: int = BUDGET) -> list[dict[str, Any]]:
    """Cut the long texts of ``tables`` (prompts too) at the largest cap of :data:`CAPS`
    that keeps them all within ``budget`` bytes; ``cut`` counts the texts cut."""
    out = tables
    for cap in CAPS:
        out = [_capped(t, cap) for t in tables]
        if sum(map(_size, out)) <= budget:
            break
    return out


def _capped(table: dict[str, Any], cap: int) -> dict[str, Any]:
    where = table["records"]
    cut = 0
    rows = []
    for row in table["rows"]:
        new = list(row)
        for i in _LONG:
            new[i] = _cut(row[i], cap, where)
            cut += new[i] != row[i]
        rows.append(new)
    prompts = [_cut(p, cap, where) for p in table["prompts"]]
    cut += sum(a != b for a, b in zip(prompts, table["prompts"]))
    return {**table, "rows": rows, "prompts": prompts, "cut": cut}


def _dump(data: Any) -> str:
    """JSON safe inside ``<script>``: every ``<`` escaped, so nothing in it can close the
    element or open a comment."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def assets() -> str:
    """The table's stylesheet and script, once per page."""
    root = resources.files("aligndepth.report") / "assets"
    css = (root / "answers.css").read_text(encoding="utf-8")
    js = (root / "answers.js").read_text(encoding="utf-8")
    return f"<style>{css}</style>\n<script>{js}</script>"


def answer_blocks(records: Mapping[str, Sequence[Mapping[str, Any]]],
                  category: Callable[[Mapping[str, Any]], str | None] | None = None,
                  judge: str | None = None, budget: int = BUDGET,
                  sources: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{experiment: HTML block}`` for every registered experiment that judges text and
    has records (as re-judged by ``judge``, if given), shown as its entry's ``answers``
    view says; the first block also carries the assets. ``sources`` names the files the
    records came from (default ``records/<experiment>.jsonl``)."""
    names = [e.name for e in experiments() if e.judged and records.get(e.name)]
    tables = fit([table_data(name, records[name], category, judge,
                             (sources or {}).get(name)) for name in names],
                 budget)
    blocks = {}
    for i, (name, table) in enumerate(zip(names, tables)):
        note = (f" {table['cut']} long texts are cut here; {table['records']} holds them "
                "whole." if table["cut"] else "")
        blocks[name] = (
            (assets() + "\n" if i == 0 else "")
            + f"<h3>Answers</h3><p class='answers-note'>Every record of "
            f"{html.escape(table['records'])}, filterable and searchable.{html.escape(note)}"
            f"</p><div class='answers' data-experiment='{html.escape(name)}'>"
            f"<script type='application/json'>{_dump(table)}</script></div>")
    return blocks
