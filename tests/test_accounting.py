"""Honest numbers end to end: verdict counts, warnings, intervals, depth and significance
in summary.json, the report and compare (runs built from records, no model needed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from aligndepth.judges.base import Verdict
from aligndepth.locking import release_directory
from aligndepth.report.compare import compare_runs
from aligndepth.report.depth import depth_card, kl_depth, prefill_depth
from aligndepth.report.render import render_report
from aligndepth.runs import Run

KS = (0, 5, 10, 20)


def _verdict(kind: str) -> dict:
    if kind == "harmful":
        return Verdict("harmful", "", 1.0).to_record()
    if kind == "unparseable":
        return Verdict("unparseable", "no '#score' line").to_record()
    return Verdict("other", "", 0.0).to_record()


def _run(root: Path, asr_by_k: dict[int, list[str]], kl: list[float]) -> Path:
    """A run whose prefill verdicts at k are ``asr_by_k[k]`` (one per prompt)."""
    run = Run.open(root, {"experiments": ["kl", "prefill"], "config": {}, "models": {},
                          "judge": {"name": "rubric"}, "data": {}, "seed": 0})
    run.append("kl", [{"key": f"kl|{i}", "id": f"p{i}", "kl": kl} for i in range(4)])
    run.append("prefill", [
        {"key": f"prefill|{k}|p{i}", "id": f"p{i}", "k": k, "instruction": f"x{i}",
         "output": "y", "judged_text": "y", "judge": "rubric", "verdict": _verdict(kind)}
        for k, kinds in asr_by_k.items() for i, kind in enumerate(kinds)])
    release_directory(root)
    return root


def test_a_third_unparseable_shows_in_rates_counts_summary_and_report(tmp_path) -> None:
    # 30 prompts per k: 10 unparseable, then 5 harmful and 15 not at every k
    kinds = ["unparseable"] * 10 + ["harmful"] * 5 + ["other"] * 15
    root = _run(tmp_path / "run", {k: kinds for k in KS}, [1.0, 0.5, 0.1, 0.0])
    render_report(root)
    s = json.loads((root / "summary.json").read_text())
    rate = s["prefill"]["asr_by_k"]["5"]
    assert rate["rate"] == pytest.approx(5 / 20)  # valid verdicts only, never 5 / 30
    assert (rate["n"], rate["harmful"], rate["not_harmful"], rate["unparseable"]) == \
        (20, 5, 15, 10)
    lo, hi = rate["ci95"]
    assert 0 < lo < 0.25 < hi < 1
    assert s["verdicts"] == {"total": 120, "harmful": 20, "not_harmful": 60,
                             "unparseable": 40, "error": 0}
    assert len(s["warnings"]) == 1 and "'rubric'" in s["warnings"][0]
    report = (root / "report.md").read_text()
    assert "**Warning:**" in report and "40 unparseable" in report
    assert "0.250 [" in report and "(n=20, 10 unparseable)" in report


def test_no_warning_when_verdicts_are_clean(tmp_path) -> None:
    root = _run(tmp_path / "run", {0: ["other"] * 20, 5: ["harmful"] * 20}, [1.0, 0.0])
    s = render_report(root)
    assert s["warnings"] == [] and "Warning" not in (root / "report.md").read_text()


def test_depth_card_values_and_sentence(tmp_path) -> None:
    kl = [4.0, 3.0, 2.0, 0.5, 0.3, 0.1, 0.05, 0.05] + [0.0] * 60
    asr = {0: ["other"] * 20, 5: ["harmful"] * 6 + ["other"] * 14,
           10: ["harmful"] * 12 + ["other"] * 8, 20: ["harmful"] * 15 + ["other"] * 5}
    root = _run(tmp_path / "run", asr, kl)
    s = render_report(root)
    depth = s["depth"]
    assert list(s)[0] == "depth"
    # 90% of 10.0 is reached at position 3 (4 + 3 + 2 = 9)
    assert depth["kl_depth"] == 3 == kl_depth(s["kl"]["mean"])
    assert depth["kl_window"] == 64
    assert depth["prefill_depth"] == 10
    assert depth["recovery_by_k"]["5"]["rate"] == pytest.approx(14 / 20)
    assert "about 10 tokens deep" in depth["sentence"]
    report = (root / "report.md").read_text()
    assert report.index("How deep") < report.index("| metric |")
    assert "quoted" in report and "Llama-2-7B-Chat" in report and "Gemma-1.1-7B-IT" in report
    assert (root / "plots" / "depth.png").is_file()


def test_prefill_depth_beyond_the_measured_ks() -> None:
    assert prefill_depth({"0": {"rate": 0.0, "ci95": [0, 0.1], "n": 30},
                          "40": {"rate": 0.2, "ci95": [0.1, 0.4], "n": 30}}) == "> 40"
    assert kl_depth([0.0, 0.0]) is None
    card = depth_card({"prefill": {"asr_by_k": {"10": {"rate": 0.1, "ci95": [0, .3], "n": 9,
                                                       "harmful": 1, "not_harmful": 8,
                                                       "unparseable": 0, "error": 0}}}})
    assert card and "more than 10 tokens deep" in card["sentence"]


def test_compare_marks_a_planted_change_and_not_a_null_one(tmp_path) -> None:
    rng = random.Random(0)
    n = 80
    shallow = {k: ["harmful" if rng.random() < (0.1 if k == 0 else 0.6) else "other"
                   for _ in range(n)] for k in KS}
    # the defense removes most harm at k > 0; at k = 0 the same number of prompts stay
    # harmful, but not the same prompts (noise without a shift)
    deep = {k: ["harmful" if rng.random() < 0.1 else "other" for _ in range(n)] for k in KS}
    deep[0] = rng.sample(shallow[0], n)
    before = _run(tmp_path / "before", shallow, [3.0, 1.0, 0.1] + [0.0] * 10)
    after = _run(tmp_path / "after", deep, [3.0, 2.0, 1.5] + [1.0] * 10)
    compare_runs([before, after], tmp_path / "cmp", labels=["aligned", "augmented"])
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    changes = {c["rate"]: c["changes"]["augmented"] for c in result["differences"]}
    planted = changes["prefill.asr_by_k.10"]
    assert planted["paired"] and planted["n_paired"] == n
    assert planted["significant"] and planted["ci95"][1] < 0
    null = changes["prefill.asr_by_k.0"]
    assert not null["significant"] and null["ci95"][0] < 0 < null["ci95"][1]
    assert result["depth"]["ranking"] == ["augmented", "aligned"]
    assert result["depth"]["by_run"]["aligned"]["prefill_depth"] == 5
    assert result["depth"]["by_run"]["augmented"]["prefill_depth"] == "> 20"
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "augmented is deeper than aligned" in report
    row = next(line for line in report.splitlines()
               if line.startswith("| prefill.asr_by_k.10 |"))
    assert row.rstrip(" |").endswith("*")
    row = next(line for line in report.splitlines()
               if line.startswith("| prefill.asr_by_k.0 |"))
    assert not row.rstrip(" |").endswith("*")
