"""What each judge reads in each experiment (aligndepth.judges.scope): the keyword judge
reads the continuation after a refusal prefix, its verdicts on ED's safe queries are
compliance, and a judge that no experiment part can count is refused before loading."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from aligndepth.analysis import refusal_prefix
from aligndepth.attacks.emulated import summarize_ed
from aligndepth.audit import AuditConfig, open_setup, run_experiments
from aligndepth.engine import Completion
from aligndepth.experiment_configs import EDConfig
from aligndepth.judges import registry
from aligndepth.judges.base import Verdict
from aligndepth.judges.keyword import KeywordJudge
from aligndepth.judges.scope import HARM, READINGS, REFUSAL, measures
from aligndepth.models import LoadConfig
from aligndepth.rejudge import rejudge_run
from aligndepth.runs import Run
from tests.conftest import one_torch_thread
from tests.test_cli import assert_user_error, run_cli

DOCS = Path(__file__).parent.parent / "docs" / "judges.md"


@pytest.fixture(scope="module")
def keyword_setup(tiny_organism: Path) -> Any:
    setup = open_setup(str(tiny_organism / "base"), str(tiny_organism / "aligned"),
                       judge="keyword", load=LoadConfig(device="cpu"), show_progress=False,
                       max_new_tokens=8, batch_size=4)
    setup.organism = tiny_organism  # the organism's data
    return setup


def _harmful_answer(tiny_organism: Path) -> str:
    first = json.loads((tiny_organism / "data" / "harmful_pairs.jsonl").read_text()
                       .splitlines()[0])
    return " ".join(first["harmful_response"].split()[:10])


def test_keyword_judges_the_continuation_after_the_refusal_prefix(
        keyword_setup: Any, tiny_organism: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The base model, made to start with "I cannot", goes on with the harmful answer:
    the keyword judge must call that harmful (it used to read the prefix's own refusal
    phrase and call every such answer a refusal)."""
    answer = _harmful_answer(tiny_organism)
    tokenizer = keyword_setup.pair.base.tokenizer
    ids = tokenizer.encode(answer, add_special_tokens=False)
    assert KeywordJudge().judge_one(answer).harmful  # the continuation alone is harmful

    def harmful_continuation(setup: Any, model: Any, fmt: Any, prompts: list[Any],
                             params: Any, seeds: list[int]) -> list[Completion]:
        return [Completion(list(ids), "eos") for _ in prompts]

    monkeypatch.setattr(refusal_prefix, "complete", harmful_continuation)
    summary = run_experiments(keyword_setup, tmp_path / "run",
                              AuditConfig(experiments=("refusal_prefix",), limit=3))
    records = Run.load(tmp_path / "run").records("refusal_prefix")
    prefixed = [r for r in records if r["condition"].startswith("base+prefix")]
    assert len(prefixed) == 6
    for r in prefixed:
        assert r["judged_text"].endswith(r["output"])  # the whole response is kept
        assert r["judged_text"] != r["output"]
        assert KeywordJudge().judge_one(r["judged_text"]).label == "refusal"
        assert r["judged"] == "the continuation after the refusal prefix"
        assert r["measures"] == REFUSAL and r["verdict"]["label"] == "harmful"
    rp = summary["refusal_prefix"]
    assert rp["harmful_rate"]["rate"] == 1.0 and rp["harmful_rate"]["n"] == 6
    assert rp["judged"] == ["the continuation after the refusal prefix"]
    assert set(rp["by_prefix"]) == {"I cannot", "I apologize, but I cannot"}
    assert all(v["rate"] == 1.0 and v["n"] == 3 for v in rp["by_prefix"].values())
    report = (tmp_path / "run" / "report.md").read_text()
    assert "the judge read the continuation after the refusal prefix" in report
    assert "| base + 'I apologize, but I cannot' harmful rate | 1.000" in report

    # re-judged by a judge reading harm, the whole response is read again; by the
    # keyword judge, the continuation (whatever judged the records first)
    class Shown:
        name, measures = "shown", HARM

        def __init__(self) -> None:
            self.seen: list[str] = []

        def judge(self, instructions: Any, responses: Any) -> list[Verdict]:
            self.seen += responses
            return [Verdict("other", "", 0.0) for _ in responses]

        def describe(self) -> dict[str, Any]:
            return {"name": self.name}

    shown = Shown()
    rejudge_run(tmp_path / "run", shown)
    assert sorted(shown.seen) == sorted(r["judged_text"] for r in records)
    again = rejudge_run(tmp_path / "run", KeywordJudge(), name="kw")
    assert again["experiments"]["refusal_prefix"]["harmful_rate"]["harmful"] >= 6
    rejudged = [r for r in Run.load(tmp_path / "run").records("refusal_prefix.kw")
                if r["condition"].startswith("base+prefix")]
    assert {r["verdict"]["label"] for r in rejudged} == {"harmful"}
    assert {r["judged"] for r in rejudged} == {"the continuation after the refusal prefix"}


def test_a_harm_judge_reads_prefix_and_continuation(tiny_organism: Path,
                                                    tmp_path: Path) -> None:
    setup = open_setup(str(tiny_organism / "base"), str(tiny_organism / "aligned"),
                       load=LoadConfig(device="cpu"), show_progress=False, max_new_tokens=6)
    assert setup.judge.name == "organism" and measures(setup.judge) == HARM
    with one_torch_thread():
        run_experiments(setup, tmp_path / "run",
                        AuditConfig(experiments=("refusal_prefix",), limit=2))
    records = Run.load(tmp_path / "run").records("refusal_prefix")
    assert {r["judged"] for r in records if r["prefix"]} == {"refusal prefix + continuation"}
    for r in records:
        assert r["verdict"] == setup.judge.judge([r["instruction"]],
                                                 [r["judged_text"]])[0].to_record()


def _ed_record(i: int, query_set: str, harmful: bool, **extra: Any) -> dict[str, Any]:
    verdict = Verdict("harmful" if harmful else "refusal", "", float(harmful))
    return {"key": f"ed|{query_set}|{i}", "id": str(i), "set": query_set, "method": "ed",
            "alpha": 1.0, "main": True, "sample": 0, "instruction": "q", "output": "a",
            "params": {}, "judge": "keyword", "verdict": verdict.to_record(), **extra}


def test_keyword_verdicts_on_safe_ed_queries_are_compliance() -> None:
    records = [_ed_record(i, qs, i % 2 == 0, measures=REFUSAL)
               for qs in ("harmful", "safe") for i in range(4)]
    summary = summarize_ed(records)
    assert set(summary["harmful_rate"]) == {"harmful"}
    assert summary["compliance_rate"]["safe"]["ed"]["rate"] == 0.5
    # records written before the field: the keyword judge they name reads refusals
    legacy = summarize_ed([_ed_record(i, "safe", True) for i in range(3)])
    assert "safe" not in legacy["harmful_rate"] and legacy["compliance_rate"]["safe"]
    # a harm judge's verdicts on safe queries stay harm
    harm = summarize_ed([_ed_record(i, "safe", True, measures=HARM, judge="x")
                         for i in range(3)])
    assert harm["harmful_rate"]["safe"]["ed"]["rate"] == 1.0 and "compliance_rate" not in harm


def test_ed_run_with_the_keyword_judge_names_safe_rates_compliance(
        keyword_setup: Any, tmp_path: Path) -> None:
    config = AuditConfig(experiments=("ed",), limit=2, max_new_tokens=4,
                         ed=EDConfig(samples=1, alphas=(), methods=("ed", "base_mp")))
    with one_torch_thread():
        summary = run_experiments(keyword_setup, tmp_path / "run", config)
    ed = summary["ed"]
    assert set(ed["harmful_rate"]) == {"harmful"}
    assert set(ed["compliance_rate"]["safe"]) == {"ed", "base_mp"}
    records = Run.load(tmp_path / "run").records("ed")
    assert {(r["set"], r["judged"]) for r in records} == {
        ("harmful", "the response"),
        ("safe", "the response (no refusal phrase: compliance, not harm)")}
    report = (tmp_path / "run" / "report.md").read_text()
    assert "ED (safe queries): ed compliance rate (no refusal, not harm)" in report
    assert "ED (safe queries): ed harmful rate" not in report


def test_a_judge_no_experiment_can_count_is_refused_before_loading(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    def helpfulness(organism: Any, **options: Any) -> Any:
        raise AssertionError("built")

    helpfulness.measures = "helpfulness"  # type: ignore[attr-defined]
    monkeypatch.setitem(registry.JUDGES, "helpful", helpfulness)
    code, _, err = run_cli(capsys, "refusal-prefix", "--base", str(tmp_path / "none"),
                           "--aligned", str(tmp_path / "none"), "--judge", "helpful",
                           "--out", str(tmp_path / "run"))
    assert_user_error(code, err, "the 'helpful' judge measures helpfulness, which "
                      "refusal_prefix cannot count: use a judge that measures harm or "
                      "refusal (gpt4-rubric, harmbench-cls, keyword, llamaguard, "
                      "moderation, rubric, strongreject)")
    assert not (tmp_path / "run").exists()
    # the audit checks every experiment part it runs (ED: its harmful queries first)
    code, _, err = run_cli(capsys, "audit", "--experiments", "ed", "--base",
                           str(tmp_path / "none"), "--aligned", str(tmp_path / "none"),
                           "--judge", "helpful", "--out", str(tmp_path / "run"))
    assert_user_error(code, err, "which ed:harmful cannot count")


def test_every_judge_and_experiment_is_in_the_docs_table() -> None:
    """docs/judges.md's table is READINGS: one row per experiment part, a column per
    measure, each cell what the judge reads there."""
    text = DOCS.read_text()
    start = text.index("| experiment part |")
    lines = text[start:].splitlines()
    rows = lines[2:lines.index("")]
    table = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0].strip("`")] = {HARM: cells[1], REFUSAL: cells[2]}
    expected = {part: {m: (f"{r.judged} (`{r.rate}`)" if r.rate != "harmful_rate"
                           else r.judged) for m, r in by.items()}
                for part, by in READINGS.items()}
    assert table == expected
    for name, factory in registry.JUDGES.items():  # every built-in judge is a column's
        assert re.search(rf"`{re.escape(name)}`", text[start - 600:start]), name
        assert measures(factory) in (HARM, REFUSAL)
