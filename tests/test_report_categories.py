"""Rates by category in summary.json and a plot, the papers' numbers drawn on the plots
they compare with, and the depth figure drawn only when it adds to the sections (runs
built from records, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aligndepth.attacks.emulated import ed_units
from aligndepth.data.schemas import PromptRecord
from aligndepth.metrics import records_rate
from aligndepth.report import plots
from aligndepth.report.categories import category_index, category_lookup, rates_by_category
from aligndepth.report.references import all_references, marks
from aligndepth.report.render import render_report
from tests.report_runs import CATEGORIES, prefill_run, verdict

LLAMA = "quoted: Llama-2-7B-Chat (HEx-PHI, judge gpt4-rubric)"


def test_every_rate_by_category_with_intervals_and_a_plot(tmp_path) -> None:
    root, records = prefill_run(tmp_path / "run", 60, (0, 5, 10))
    s = render_report(root)
    assert s["categories"] == {"harmful": dict.fromkeys(sorted(CATEGORIES), 20)}
    by = s["by_category"]["prefill"]
    assert set(by) == set(CATEGORIES)
    for j, cat in enumerate(CATEGORIES):
        for k in ("0", "5", "10"):
            mine = [r for r in records if r["k"] == int(k) and int(r["id"][1:]) % 3 == j]
            rate = by[cat]["asr_by_k"][k]
            assert rate == records_rate(mine)  # the one rate implementation
            assert rate["n"] == 20 and rate["interval"] == "wilson"
            lo, hi = rate["ci95"]
            assert lo <= rate["rate"] <= hi
    assert json.loads((root / "summary.json").read_text())["by_category"] == s["by_category"]
    assert (root / "plots" / "prefill_by_category.png").is_file()
    report = (root / "report.md").read_text()
    assert "![prefill_by_category](plots/prefill_by_category.png)" in report


def test_data_without_categories_has_no_breakdown(tmp_path) -> None:
    root, _ = prefill_run(tmp_path / "run", 12, (0, 5), categories=False)
    s = render_report(root)
    assert "by_category" not in s and "categories" not in s
    assert not (root / "plots" / "prefill_by_category.png").exists()


def test_the_manifest_index_keeps_query_sets_apart() -> None:
    harmful = [PromptRecord("x", id="q1", category="Malware"), PromptRecord("y", id="q2")]
    safe = [PromptRecord("z", id="q1", category="cooking")]  # the same id, another set
    index = category_index(harmful, safe)
    assert index == {"harmful": {"Malware": ["q1"]}, "safe": {"cooking": ["q1"]}}
    assert category_index([PromptRecord("x", id="a")]) is None  # AdvBench: none
    lookup = category_lookup({"categories": index})
    assert lookup is not None
    assert lookup({"id": "q1"}) == "Malware" and lookup({"id": "q2"}) is None
    assert lookup({"id": "q1", "set": "safe"}) == "cooking"
    # ED's samples of one query are clustered within its category too
    ed = [{"id": "q1", "set": qs, "method": "ed", "alpha": 1.0, "main": True, "sample": s,
           "verdict": verdict(s == 0)} for qs in ("harmful", "safe") for s in range(3)]
    by = rates_by_category({"ed": ed}, {"ed": ed_units}, lookup)["ed"]
    assert set(by) == {"Malware", "cooking"}
    assert set(by["Malware"]["harmful_rate"]) == {"harmful"}
    assert set(by["cooking"]["harmful_rate"]) == {"safe"}
    assert by["cooking"]["harmful_rate"]["safe"]["ed"]["n"] == 3


def test_quoted_numbers_are_each_drawn_once_with_model_and_judge() -> None:
    refs = all_references()
    assert len({(r.path, r.model, r.datasets, r.value) for r in refs}) == len(refs)
    prefill = marks(("prefill", "asr_by_k"))
    assert ("10", 0.515, LLAMA) in prefill and prefill.count(("10", 0.515, LLAMA)) == 1
    assert ("10", 0.029, "quoted: Llama-2-7B-Chat, augmented (HEx-PHI, judge gpt4-rubric)"
            ) in prefill
    assert all(label.startswith("quoted: ") for _, _, label in prefill)
    assert {key for key, _, _ in marks(("gcg",))} == {"asr"}
    # a quote in words (the KL curve's shape, ED's 43 of 48) is not a mark
    assert marks(("kl",)) == [] and marks(("ed",)) == []


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots would save."""
    made = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: made.append(fig) or path)
    return made


def _marks(ax) -> dict[str, list[tuple[float, float]]]:
    """Each quoted label's marks, at the place they mark (quotes at one place are drawn a
    little apart: x rounded)."""
    return {c.get_label(): [(float(round(x)), float(y)) for x, y in c.get_offsets()]
            for c in ax.collections if c.get_label().startswith("quoted: ")}


def _rate(v: float) -> dict:
    return {"rate": v, "ci95": [max(0.0, v - 0.1), min(1.0, v + 0.1)], "n": 20}


def test_quotes_are_drawn_on_the_plots_they_compare_with(figures) -> None:
    plots.plot_prefill({"aligned": {"asr_by_k": {k: _rate(0.5) for k in ("0", "5", "10")}}},
                       Path("p.png"), marks(("prefill", "asr_by_k")))
    drawn = _marks(figures[-1].axes[0])
    assert sorted(drawn[LLAMA]) == [(5.0, 0.421), (10.0, 0.515)]  # at the measured k only
    rp = {"harmful_rate_by_condition": {"aligned": _rate(0.0), "base": _rate(0.9),
                                        "base+prefix0": _rate(0.1)},
          "prefixes": {"base+prefix0": "I apologize, but I cannot"}}
    plots.plot_refusal_prefix(rp, Path("r.png"), marks(("refusal_prefix",)))
    drawn = _marks(figures[-1].axes[0])
    gemma = "quoted: Gemma-7B (base) (HEx-PHI, judge gpt4-rubric)"
    assert sorted(drawn[gemma]) == [(1.0, 0.854), (2.0, 0.01)]  # base, then the prefix bar
    dec = {"per_config_asr": {"temperature=0.5": _rate(0.2)}, "greedy_asr": _rate(0.0),
           "any_config_asr": _rate(0.3)}
    plots.plot_decoding(dec, Path("d.png"), marks(("decoding",)))
    lines = [ln.get_label() for ln in figures[-1].axes[0].lines]
    assert f"{LLAMA}: any config asr" in lines
    gcg = {"asr": _rate(0.2), "mean_loss_by_step": [2.0, 1.0], "n_prompts": 5}
    plots.plot_gcg(gcg, [{"losses": [2.0, 1.0]}], Path("g.png"), marks(("gcg",)))
    assert (0.0, 0.365) in _marks(figures[-1].axes[1])[LLAMA]


def test_the_depth_figure_is_not_drawn_twice(tmp_path) -> None:
    alone, _ = prefill_run(tmp_path / "alone", 9, (0, 5))
    render_report(alone)
    assert not (alone / "plots" / "depth.png").exists()
    html = (alone / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # prefill and its categories
    both, _ = prefill_run(tmp_path / "both", 9, (0, 5), kl=True)
    s = render_report(both)
    assert "depth" in s and (both / "plots" / "depth.png").is_file()
