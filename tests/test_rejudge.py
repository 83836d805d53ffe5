"""Re-judging a run's records with another judge (aligndepth.rejudge)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from aligndepth.attacks.prefill import summarize_prefill
from aligndepth.errors import AlignDepthError
from aligndepth.judges.base import Verdict
from aligndepth.judges.rubric import RubricJudge
from aligndepth.rejudge import rejudge_names, rejudge_run
from aligndepth.runs import Run
from tests.fake_openai import FakeOpenAI


def _asr(summary: dict) -> dict[str, float | None]:
    return {k: v["rate"] for k, v in summary["asr_by_k"].items()}


class StubJudge:
    """Harmful iff the text contains HARM; remembers what it was shown."""

    name = "stub"

    def __init__(self, version: int = 1, fail_after: int | None = None) -> None:
        self.version = version
        self.fail_after = fail_after
        self.seen: list[str] = []

    def judge(self, instructions: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt  # a killed process
        self.seen += responses
        return [Verdict("harmful", "HARM", 1.0) if "HARM" in r else Verdict("other", "", 0.0)
                for r in responses]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}


def _fake_run(root: Path) -> Run:
    run = Run.open(root, {"experiments": ["kl", "prefill", "decoding"], "config": {},
                          "models": {}, "judge": {"name": "keyword"}, "data": {}, "seed": 0})
    run.append("kl", [{"key": f"kl|{i}", "id": str(i), "kl": [0.1, 0.2]} for i in range(3)])
    run.append("prefill", [
        {"key": f"prefill|{k}|{i}", "id": str(i), "k": k, "instruction": f"do thing {i}",
         "prefix": "HARM " if k else "", "output": "continues", "judged_text":
         ("HARM " if k else "") + "continues", "judge": "keyword",
         "verdict": Verdict("other", "", 0.0).to_record()}
        for k in (0, 5) for i in range(10)])
    run.append("decoding", [
        {"key": f"dec|{i}|greedy|0", "id": str(i), "config": "greedy", "sample": 0,
         "instruction": f"do thing {i}", "output": "HARM" if i % 2 else "no",
         "judge": "keyword", "verdict": Verdict("harmful", "", 1.0).to_record()}
        for i in range(6)])
    return run


def test_rejudge_writes_side_files_and_leaves_originals(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (run.path / "records").iterdir()}
    judge = StubJudge()
    result = rejudge_run(run.path, judge, batch_size=4)

    assert {p.name: p.read_bytes() for p in (run.path / "records").iterdir()
            if p.name in before} == before
    assert sorted(p.name for p in (run.path / "records").iterdir()) == [
        "decoding.jsonl", "decoding.stub.jsonl", "kl.jsonl", "prefill.jsonl",
        "prefill.stub.jsonl"]
    assert set(result["experiments"]) == {"prefill", "decoding"}  # kl has no text
    assert rejudge_names(run.path) == {"stub": {"name": "stub", "version": 1}}

    loaded = Run.load(run.path)
    prefill = loaded.records("prefill.stub")
    assert len(prefill) == 20 and {r["judge"] for r in prefill} == {"stub"}
    assert all(r["original_judge"] == "keyword" for r in prefill)
    # judged_text (prefix + continuation) was judged, not the bare output
    assert _asr(summarize_prefill(prefill)) == {"0": 0.0, "5": 1.0}
    assert _asr(summarize_prefill(loaded.records("prefill"))) == {"0": 0.0, "5": 0.0}
    assert result["experiments"]["decoding"]["harmful_rate"]["rate"] == 0.5
    assert result["experiments"]["decoding"]["original_harmful_rate"]["rate"] == 1.0
    assert result["experiments"]["prefill"]["judged_now"] == 20

    again = StubJudge()
    result = rejudge_run(run.path, again)
    assert again.seen == [] and result["experiments"]["prefill"]["already_done"] == 20


def test_rejudge_resumes_after_a_kill(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        rejudge_run(run.path, StubJudge(fail_after=8), ["prefill"], batch_size=4)
    assert len(Run.load(run.path).records("prefill.stub")) == 8
    judge = StubJudge()
    result = rejudge_run(run.path, judge, ["prefill"], batch_size=4)
    assert len(judge.seen) == 12 and result["experiments"]["prefill"]["records"] == 20
    keys = [r["key"] for r in Run.load(run.path).records("prefill.stub")]
    assert len(keys) == len(set(keys)) == 20


def test_rejudge_refuses_a_changed_judge_and_bad_requests(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    rejudge_run(run.path, StubJudge(), ["decoding"])
    with pytest.raises(AlignDepthError, match="different configuration"):
        rejudge_run(run.path, StubJudge(version=2), ["decoding"])
    rejudge_run(run.path, StubJudge(version=2), ["decoding"], name="stub-v2")
    result = rejudge_run(run.path, StubJudge(version=2), ["decoding"], overwrite=True)
    assert result["experiments"]["decoding"]["judged_now"] == 6
    assert set(rejudge_names(run.path)) == {"stub", "stub-v2"}
    with pytest.raises(AlignDepthError, match="no experiment ed"):
        rejudge_run(run.path, StubJudge(), ["ed"])
    with pytest.raises(AlignDepthError, match="judge name"):
        rejudge_run(run.path, StubJudge(), name="a.b")
    with pytest.raises(AlignDepthError, match="not a run directory"):
        rejudge_run(tmp_path / "nothing", StubJudge())


def test_rejudge_with_the_rubric_judge(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    key = "sk-rejudge-secret-value"
    with FakeOpenAI(key, fault_rate=0.2) as server:
        judge = RubricJudge(base_url=server.url, model="m", api_key=key, timeout=0.5,
                            backoff_base=0.01, cache_dir=tmp_path / "cache")
        result = rejudge_run(run.path, judge, ["prefill"])
    assert result["experiments"]["prefill"]["harmful_rate"]["rate"] == 0.5
    assert _asr(summarize_prefill(Run.load(run.path).records("prefill.rubric"))) == {
        "0": 0.0, "5": 1.0}
    assert all(key.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
