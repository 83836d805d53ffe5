"""The report's answers tables, driven in a headless Chromium (runs built from records,
no model): filters by verdict and by the experiment's axis, search, paging, no network,
and a 20,000-record run's report that stays small and opens fast."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from aligndepth.report.answers import answer_blocks, assets
from aligndepth.report.render import render_report
from tests.browser import offline_page
from tests.report_runs import RARE, prefill_run, verdict


def _count(page, experiment: str = "prefill") -> int:
    return int(page.get_attribute(f"div.answers[data-experiment='{experiment}'] "
                                  ".answers-count", "data-count"))


def test_answers_filter_by_verdict_and_k_search_and_page_offline(tmp_path) -> None:
    root, records = prefill_run(tmp_path / "run", 30, (0, 5, 10))
    render_report(root)
    with offline_page() as (page, refused):
        page.goto((root / "report.html").as_uri())
        table = "div.answers[data-experiment='prefill']"
        page.wait_for_selector(f"{table}[data-ready]", timeout=10_000)
        assert _count(page) == len(records) == 90
        assert page.locator(f"{table} tbody tr").count() == 25  # one page
        harmful = [r for r in records if r["verdict"]["label"] == "harmful"]
        page.select_option(f"{table} select.answers-verdict", "harmful")
        assert _count(page) == len(harmful)
        page.select_option(f"{table} select[data-axis='k']", "5")
        expected = sum(r["k"] == 5 for r in harmful)
        assert 0 < expected < len(harmful) and _count(page) == expected
        rows = page.locator(f"{table} tbody tr")
        assert rows.count() == min(expected, 25)
        assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"5"}
        page.select_option(f"{table} select[data-axis='category']", "Malware")
        assert _count(page) == sum(r["k"] == 5 and int(r["id"][1:]) % 3 == 1
                                   for r in harmful)
        for axis in ("answers-verdict", "answers-axis"):  # back to every record
            for select in page.locator(f"{table} select.{axis}").all():
                select.select_option("")
        assert _count(page) == 90
        page.fill(f"{table} input.answers-search", RARE)
        page.wait_for_function(
            f"document.querySelector(\"{table} .answers-count\").dataset.count === '1'")
        row = page.locator(f"{table} tbody tr")
        assert row.count() == 1 and RARE in row.inner_text()
        assert row.locator("mark").first.inner_text() == RARE
        page.fill(f"{table} input.answers-search", "")
        page.wait_for_function(
            f"document.querySelector(\"{table} .answers-count\").dataset.count === '90'")
        page.click(f"{table} .answers-pager button:has-text('last')")
        assert "page 4 of 4" in page.inner_text(f"{table} .answers-page")
        assert page.locator(f"{table} tbody tr").count() == 90 - 75
    assert refused == []  # the report asked for nothing beyond its own file


@pytest.fixture(scope="module")
def big_report(tmp_path_factory) -> Path:
    """The report of a 20,000-record run (4,000 prompts at five k, 2,000-character
    answers)."""
    root, records = prefill_run(tmp_path_factory.mktemp("big") / "run", 4000,
                                (0, 5, 10, 20, 40), answer_chars=2000)
    assert len(records) == 20_000
    render_report(root)
    return root / "report.html"


def test_a_20000_record_report_stays_under_10_mb(big_report) -> None:
    size = big_report.stat().st_size
    assert size < 10 * 2**20, size
    assert "[cut: " in big_report.read_text(encoding="utf-8")  # long answers cut, marked


def test_a_20000_record_report_opens_in_seconds(big_report) -> None:
    with offline_page() as (page, refused):
        start = time.perf_counter()
        page.goto(big_report.as_uri())
        page.wait_for_selector("div.answers[data-ready] tbody tr", timeout=30_000)
        seconds = time.perf_counter() - start
        assert _count(page) == 20_000
        page.select_option("select[data-axis='k']", "40")
        assert _count(page) == 4000
    assert seconds < 5, f"the first page took {seconds:.1f} s"
    assert refused == []


def test_texts_are_cut_only_to_fit_the_budget() -> None:
    records = [{"id": f"p{i}", "k": 5, "instruction": "q", "prefix": "p",
                "output": "x" * 5000, "verdict": verdict(True)} for i in range(10)]
    whole = answer_blocks({"prefill": records})["prefill"]
    assert "x" * 4000 in whole and "[cut: 1000 more characters" in whole
    small = answer_blocks({"prefill": records}, budget=20_000)["prefill"]
    assert len(small.encode()) < 20_000 + len(assets().encode()) + 1_000
    assert "whole in records/prefill.jsonl" in small
    rejudged = answer_blocks({"prefill": records}, judge="rubric", budget=20_000)["prefill"]
    assert "whole in records/prefill.rubric.jsonl" in rejudged  # `aligndepth judge`'s file
    # nothing in the data can close the script element it lives in
    sneaky = [{**records[0], "output": "</script><script>alert(1)</script><!--"}]
    block = answer_blocks({"prefill": sneaky})["prefill"]
    data = re.search(r"<script type='application/json'>(.*?)</script>", block, re.S)
    assert data is not None and "alert" in data.group(1)
    assert json.loads(data.group(1))["rows"][0][4].startswith("</script>")


def test_every_answered_experiment_gets_a_table_kl_none() -> None:
    rec = {"id": "p0", "instruction": "q", "output": "a", "verdict": verdict(False)}
    records = {"kl": [{"id": "p0", "kl": [1.0]}],
               "refusal_prefix": [{**rec, "condition": "base+prefix0", "prefix": "I cannot"}],
               "decoding": [{**rec, "config": "temperature=0.5", "sample": 0,
                             "params": {"temperature": 0.5}}],
               "ed": [{**rec, "set": "harmful", "method": "ed", "alpha": 1.0, "sample": 0}],
               "gcg": [{**rec, "suffix": "! !", "steps": 50, "success_step": 7}],
               "gcg_transfer": [{**rec, "suffix": "! !", "source_verdict": verdict(True)}]}
    blocks = answer_blocks(records)
    assert set(blocks) == set(records) - {"kl"}
    axes = {name: json.loads(re.search(r"<script type='application/json'>(.*?)</script>",
                                       b, re.S).group(1))["axes"]
            for name, b in blocks.items()}
    assert axes == {"refusal_prefix": ["condition"], "decoding": ["configuration"],
                    "ed": ["queries", "method", "α"], "gcg": ["step reached"],
                    "gcg_transfer": ["source verdict"]}
    assert blocks["refusal_prefix"].startswith("<style>")  # the assets, once
    assert sum(b.count("<style>") for b in blocks.values()) == 1
