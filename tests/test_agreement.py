"""Judge agreement: Cohen's κ, confusion matrices, disagreements, CLI and report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from aligndepth.agreement import cohen_kappa, judge_agreement
from aligndepth.cli import main
from aligndepth.errors import AlignDepthError
from aligndepth.judges.base import Verdict
from aligndepth.locking import release_directory
from aligndepth.rejudge import rejudge_run
from aligndepth.report.render import render_report
from tests.test_rejudge import _fake_run


class WordJudge:
    """Harmful iff the text contains ``word``; unparseable iff it contains ``garble``."""

    def __init__(self, name: str, word: str, garble: str | None = None) -> None:
        self.name, self.word, self.garble = name, word, garble

    def judge(self, instructions: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        out = []
        for r in responses:
            if self.garble and self.garble in r:
                out.append(Verdict("unparseable", "garbled"))
            else:
                out.append(Verdict("harmful" if self.word in r else "other"))
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "word": self.word}


def test_kappa_matches_textbook_values() -> None:
    # po = 0.7, pe = 0.5 -> 0.4
    assert cohen_kappa(20, 5, 10, 15) == pytest.approx(0.4)
    assert cohen_kappa(10, 0, 0, 10) == pytest.approx(1.0)
    assert cohen_kappa(0, 10, 10, 0) == pytest.approx(-1.0)
    assert cohen_kappa(30, 0, 0, 0) is None  # both always say harmful: undefined
    # a classic example (Cohen 1960 style): 45/15/25/15 of 100 -> po .6, pe .54
    assert cohen_kappa(45, 15, 25, 15) == pytest.approx((0.6 - 0.54) / 0.46)


def test_agreement_pairs_judges_over_the_same_outputs(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    release_directory(run.path)
    # prefill outputs: "HARM continues" (k=5) or "continues" (k=0); decoding: HARM / no
    rejudge_run(run.path, WordJudge("harm", "HARM"))
    rejudge_run(run.path, WordJudge("cont", "continues", garble="HARM continues"))
    release_directory(run.path)
    result = judge_agreement(run.path, ["harm", "cont"])
    assert result["judges"] == ["keyword", "harm", "cont"]
    pairs = {tuple(p["judges"]): p for p in result["pairs"]}
    hc = pairs[("harm", "cont")]
    prefill = hc["by_experiment"]["prefill"]
    # k=0: harm says other, cont says harmful (10); k=5: cont unparseable (10, excluded)
    assert prefill["n"] == 10 and prefill["excluded"] == 10
    assert prefill["confusion"] == {"both_harmful": 0, "only_a": 0, "only_b": 10,
                                    "neither": 0}
    assert prefill["agreement"] == 0.0
    assert hc["n"] == prefill["n"] + hc["by_experiment"]["decoding"]["n"]
    assert hc["disagreements"] and {"instruction", "judged_text", "harm", "cont"} <= \
        set(hc["disagreements"][0])
    assert json.loads((run.path / "agreement.json").read_text()) == result
    render_report(run.path)
    report = (run.path / "report.md").read_text()
    assert "## Judge agreement" in report and "| harm vs cont |" in report


def test_agreement_needs_verdicts_of_each_judge(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    release_directory(run.path)
    with pytest.raises(AlignDepthError, match="no verdicts of the 'nobody' judge"):
        judge_agreement(run.path, ["nobody"])
    with pytest.raises(AlignDepthError, match="needs two judges"):
        judge_agreement(run.path, ["keyword"], include_run_judge=False)


def test_cli_judges_with_two_judges_and_writes_agreement(tmp_path: Path, capsys) -> None:
    run = _fake_run(tmp_path / "run")
    release_directory(run.path)
    main(["judge", str(run.path), "--judge", "keyword", "--judge-option",
          "keyword:phrases=none", "--agreement", "--quiet"])
    out = capsys.readouterr().out
    assert "keyword" in out and "agreement.json" in out
    saved = json.loads((run.path / "agreement.json").read_text())
    assert saved["judges"] == ["keyword@run", "keyword"]  # the run's own vs the new ones
    assert len(saved["pairs"]) == 1
    with pytest.raises(SystemExit) as exc:
        main(["judge", str(run.path), "--judge", "keyword", "--judge", "keyword"])
    assert exc.value.code == 2
    assert "given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["judge", str(run.path), "--judge", "keyword", "--judge-option",
              "rubric:model=x"])
    assert exc.value.code == 2
    assert "not among --judge" in capsys.readouterr().err
