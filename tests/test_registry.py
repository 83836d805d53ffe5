"""An experiment is one module plus one registration: a toy experiment, all in
tests/toy_experiment.py and registered here, runs through the audit (Python API and
command line), gets its command and options, a report section and compare rows."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aligndepth.audit import AuditConfig, open_setup, run_experiments
from aligndepth.experiments_registry import get, names, register, unregister
from aligndepth.models import LoadConfig
from aligndepth.report.compare import compare_runs
from tests.test_cli import assert_user_error, run_cli
from tests.toy_experiment import TOY, ToyConfig


@pytest.fixture
def toy() -> Iterator[None]:
    register(TOY)
    yield
    unregister(TOY.name)


def test_every_builtin_experiment_is_registered() -> None:
    assert names()[:7] == ("kl", "refusal_prefix", "prefill", "decoding", "ed", "gcg",
                           "gcg_transfer")
    assert "toy" not in names()


def test_the_readme_table_has_a_row_per_experiment() -> None:
    """README's experiment table lists every registered experiment's command."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("| experiment | what it measures | summary.json |", 1)[1]
    rows = [line for line in table.split("\n\n", 1)[0].splitlines() if line.startswith("| `")]
    listed = [line.split("`")[1] for line in rows]
    assert listed == [get(n).command for n in names()], listed


def test_the_toy_runs_through_the_audit_api(toy: None, tiny_organism: Path,
                                             tmp_path: Path) -> None:
    setup = open_setup(None, str(tiny_organism / "aligned"), judge="keyword",
                       load=LoadConfig(device="cpu"), show_progress=False, max_new_tokens=6,
                       batch_size=4, readers=())
    config = AuditConfig(experiments=("toy",), limit=3, toy=ToyConfig(opening="Sure, here"))
    before = (setup.max_new_tokens, setup.stop_strings)
    summary = run_experiments(setup, tmp_path / "run", config)
    assert (setup.max_new_tokens, setup.stop_strings) == before  # the setup is unchanged
    assert summary["toy"]["n"] == 3 and summary["toy"]["harmful_rate"]["n"] == 3
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["toy"] == {"opening": "Sure, here"}
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Toy: answers after a forced opening" in report
    assert "![toy](plots/toy.png)" in report and (tmp_path / "run/plots/toy.png").is_file()
    assert "toy: harmful rate after the opening" in report
    assert "judged 3 answers after a forced opening" in report
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Toy: answers after a forced opening" in html
    # its answers view: the opening as the setting, filtered by why the answer stopped
    block = html.split("data-experiment='toy'>", 1)[1]
    table = json.loads(block.split("<script type='application/json'>", 1)[1]
                       .split("</script>", 1)[0])
    assert (table["setting"], table["axes"][0]) == ("opening", "stopped by")  # then category
    records = [json.loads(line) for line in
               (tmp_path / "run" / "records" / "toy.jsonl").read_text().splitlines()]
    assert [row[3] for row in table["rows"]] == ["Sure, here"] * 3
    assert [row[6] for row in table["rows"]] == [r["stop_reason"] for r in records]
    # its reading: the keyword judge (a refusal judge) reads only the continuation
    assert {r["judged"] for r in records} == {"the continuation after the opening"}
    assert all(r["judged_text"] == r["output"] for r in records)


def test_the_toy_declares_what_each_judge_reads(toy: None) -> None:
    from aligndepth.errors import AlignDepthError
    from aligndepth.judges.scope import HARM, REFUSAL, check_judging, parts, reading

    assert parts("toy") == ["toy"]
    assert reading("toy", HARM) == TOY.readings["toy"][HARM]
    assert reading("toy", REFUSAL).continuation_only
    with pytest.raises(AlignDepthError, match="measures helpfulness, which toy cannot count"):
        check_judging(["toy"], "helpful", "helpfulness")


def test_the_toy_gets_its_command_options_and_compare_rows(
        toy: None, tiny_organism: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    code, out, _ = run_cli(capsys, "toy", "--help")
    assert code == 0 and "--toy-opening" in out and "Toy (toy)" in out
    code, out, _ = run_cli(capsys, "audit", "--help")
    assert "--toy-opening" in out
    code, _, err = run_cli(capsys, "prefill", "--toy-opening", "x")
    assert_user_error(code, err, "does not use --toy-opening")
    common = ["--aligned", str(tiny_organism / "aligned"), "--judge", "keyword", "--limit",
              "3", "--max-new-tokens", "6", "--device", "cpu", "--quiet"]
    code, _, err = run_cli(capsys, "toy", *common, "--out", str(tmp_path / "a"))
    assert code == 0, err
    code, _, err = run_cli(capsys, "audit", "--experiments", "toy", *common,
                           "--toy-opening", "Here is how", "--out", str(tmp_path / "b"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["experiments"] == ["toy"]
    assert manifest["config"]["toy"] == {"opening": "Here is how"}
    assert (tmp_path / "b" / "config.yaml").read_text().count("toy_opening") == 1
    compared = compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp")
    assert set(compared) == {"a", "b"}
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [d["rate"] for d in result["differences"]] == ["toy.harmful_rate"]
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "| toy: harmful rate after the opening |" in report
    assert (tmp_path / "cmp" / "plots" / "rates.png").is_file()


def test_an_unregistered_experiment_leaves_no_command(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    code, _, err = run_cli(capsys, "toy", "--help")
    assert code == 2 and "toy" in err
    with pytest.raises(Exception, match="unknown experiment 'toy'"):
        get("toy")
