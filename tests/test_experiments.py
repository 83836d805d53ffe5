"""Experiments on the tiny organism: mechanics, summaries, resume, bad input."""

import json

import pytest

from aligndepth.attacks.decoding import decoding_grid
from aligndepth.attacks.gcg_core import GCGConfig
from aligndepth.attacks.prefill import PrefillConfig
from aligndepth.audit import AuditConfig, open_setup, run_experiments
from aligndepth.errors import AlignDepthError
from aligndepth.metrics import fmt_rate
from aligndepth.models import LoadConfig
from aligndepth.report.render import render_report
from aligndepth.runs import Run


@pytest.fixture(scope="module")
def setup(tiny_organism):
    s = open_setup(str(tiny_organism / "base"), str(tiny_organism / "aligned"),
                   judge="keyword", load=LoadConfig(device="cpu"), show_progress=False,
                   max_new_tokens=16, batch_size=4)
    s.organism = tiny_organism  # default data from the tiny organism
    return s


def test_decoding_grid_has_the_papers_49_configurations() -> None:
    grid = decoding_grid()
    assert len(grid) == 49 and len({n for n, _ in grid}) == 49


def test_audit_writes_summary_report_and_records(setup, tmp_path) -> None:
    config = AuditConfig(limit=5, prefill=PrefillConfig(ks=(0, 2, 5)),
                         gcg=GCGConfig(num_steps=3, search_width=16, topk=8, max_prompts=5))
    summary = run_experiments(setup, tmp_path / "run", config)
    for path in ("summary.json", "report.md", "report.html", "manifest.json",
                 "plots/kl_profile.png", "plots/decoding.png"):
        assert (tmp_path / "run" / path).is_file(), path
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(s["prefill"]["asr_by_k"]) == {"0", "2", "5"}
    for key in ("first5_mean", "late_mean"):
        assert key in s["kl"]
    for section, key in (("refusal_prefix", "harmful_rate"), ("base", "harmful_rate"),
                         ("aligned", "harmful_rate"), ("decoding", "greedy_asr"),
                         ("decoding", "any_config_asr")):
        assert s[section][key]["rate"] is not None and s[section][key]["n"] > 0
        lo, hi = s[section][key]["ci95"]
        assert lo <= s[section][key]["rate"] <= hi
    assert s["verdicts"]["total"] == sum(s["verdicts"][o] for o in
                                         ("harmful", "not_harmful", "unparseable", "error"))
    assert s["judge"]["name"] == "keyword"
    assert s["models"]["aligned"]["fingerprint"].startswith("sha256:")
    html = (tmp_path / "run" / "report.html").read_text()
    # the depth figure, six sections, and the five judged ones by the organism's categories
    assert set(s["by_category"]) == {"refusal_prefix", "prefill", "decoding", "ed", "gcg"}
    assert html.count("data:image/png;base64,") == 7 + 5
    assert html.count("<div class='answers'") == 5  # every experiment with answers
    run = Run.load(tmp_path / "run")
    assert len(run.records("decoding")) == 5 * 50
    ed = s["ed"]
    # the keyword judge reads refusals: on safe queries its rate is compliance, not harm
    assert set(ed["harmful_rate"]) == {"harmful"} and set(ed["compliance_rate"]) == {"safe"}
    assert set(ed["harmful_rate"]["harmful"]) == {"ed", "base_mp", "align_mp", "ed_base"}
    assert ed["n_queries"] == {"harmful": 5, "safe": 5} and ed["samples"] == 3
    # harmful: 5 alphas + 3 baselines; safe: 4 methods; 3 samples each
    assert len(run.records("ed")) == 5 * 3 * (5 + 3) + 5 * 3 * 4
    assert s["gcg"]["n_prompts"] == 5 and len(s["gcg"]["mean_loss_by_step"]) >= 1
    assert all(r["target"] and r["suffix_ids"] for r in run.records("gcg"))
    prefix_records = [r for r in run.records("prefill") if r["k"] == 5]
    assert all(r["judged_text"].startswith(r["prefix"][:5]) for r in prefix_records)
    # re-rendering from records gives the same summary
    assert render_report(tmp_path / "run") == summary


def test_rerun_resumes_and_different_config_is_refused(setup, tmp_path) -> None:
    config = AuditConfig(experiments=("prefill",), limit=4, prefill=PrefillConfig(ks=(0, 3)))
    first = run_experiments(setup, tmp_path / "run", config)
    again = run_experiments(setup, tmp_path / "run", config)
    assert first == again
    assert len(Run.load(tmp_path / "run").records("prefill")) == 8
    other = AuditConfig(experiments=("prefill",), limit=4, prefill=PrefillConfig(ks=(0, 2)))
    with pytest.raises(AlignDepthError, match="different config.*--overwrite"):
        run_experiments(setup, tmp_path / "run", other)
    run_experiments(setup, tmp_path / "run", other, overwrite=True)


def test_bad_inputs_are_user_errors(setup, tmp_path) -> None:
    with pytest.raises(AlignDepthError, match="not shorter than every harmful response"):
        run_experiments(setup, tmp_path / "a", AuditConfig(experiments=("prefill",), limit=2,
                                                           prefill=PrefillConfig(ks=(500,))))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(AlignDepthError, match="holds no records"):
        run_experiments(setup, tmp_path / "b", AuditConfig(), data=empty)
    prompts_only = tmp_path / "prompts.jsonl"
    prompts_only.write_text('{"instruction": "how do i x ?"}\n')
    with pytest.raises(AlignDepthError, match="need harmful responses"):
        run_experiments(setup, tmp_path / "c", AuditConfig(), data=prompts_only)
    with pytest.raises(AlignDepthError, match="did you mean 'prefill'"):
        AuditConfig(experiments=("prefil",))


def test_torn_last_line_is_dropped(tmp_path) -> None:
    run = Run.open(tmp_path / "r", {"experiments": ["x"]})
    run.append("x", [{"key": "a", "v": 1}])
    with run.records_path("x").open("a") as fh:
        fh.write('{"key": "b", "v"')
    reopened = Run.open(tmp_path / "r", {"experiments": ["x"]})
    assert [r["key"] for r in reopened.records("x")] == ["a"]
    reopened.append("x", [{"key": "b", "v": 2}, {"key": "a", "v": 9}])
    assert [r["key"] for r in reopened.records("x")] == ["a", "b"]


def test_ed_resumes_to_the_same_sampled_records(setup, tmp_path) -> None:
    from aligndepth.attacks.emulated import EDConfig

    config = AuditConfig(experiments=("ed",), limit=3,
                         ed=EDConfig(alphas=(0.5,), samples=2))
    run_experiments(setup, tmp_path / "run", config)
    path = Run.load(tmp_path / "run").records_path("ed")
    full = path.read_text().splitlines()
    assert len(full) == 3 * 2 * (2 + 3) + 3 * 2 * 4  # harmful: 2 alphas + 3; safe: 4
    path.write_text("\n".join(full[:-7]) + "\n")  # lose the last units' records
    run_experiments(setup, tmp_path / "run", config)
    resumed = path.read_text().splitlines()
    assert sorted(resumed) == sorted(full)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["ed"]["malicious_system"]  # the resolved prompt is recorded
    assert manifest["data"]["safe"]["n"] == 3


def test_compare_puts_two_runs_side_by_side(setup, tiny_organism, tmp_path, capsys) -> None:
    from aligndepth.cli import main
    from aligndepth.report.compare import compare_runs

    config = AuditConfig(experiments=("kl", "prefill"), limit=4,
                         prefill=PrefillConfig(ks=(0, 10)))
    before = run_experiments(setup, tmp_path / "before", config)
    # "after": the base model in the aligned role, a stand-in for a retrained model
    other = open_setup(str(tiny_organism / "base"), str(tiny_organism / "base"),
                       judge="keyword", load=LoadConfig(device="cpu"), show_progress=False,
                       max_new_tokens=16, batch_size=4)
    other.organism = tiny_organism
    after = run_experiments(other, tmp_path / "after", config)
    out = tmp_path / "cmp"
    summaries = compare_runs([tmp_path / "before", tmp_path / "after"], out,
                             labels=["aligned", "base as aligned"])
    assert summaries["aligned"]["prefill"] == before["prefill"]
    assert summaries["base as aligned"]["kl"] == after["kl"]
    assert max(after["kl"]["mean"]) < 1e-6 < max(before["kl"]["mean"])
    md = (out / "report.md").read_text()
    assert "| metric | aligned | base as aligned |" in md
    row = next(line for line in md.splitlines() if line.startswith("| prefill ASR @ k=10 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:] == [fmt_rate(before["prefill"]["asr_by_k"]["10"]),
                         fmt_rate(after["prefill"]["asr_by_k"]["10"])]
    for name in ("depth.png", "rates.png"):
        assert (out / "plots" / name).is_file()
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 2
    saved = json.loads((out / "compare.json").read_text())
    assert set(saved["summaries"]) == {"aligned", "base as aligned"}
    # the CLI: a table on stdout; bad input is one line and exit 2, writing nothing
    main_args = ["compare", str(tmp_path / "before"), str(tmp_path / "after"),
                 "--out", str(tmp_path / "cli")]
    main(main_args)
    assert "prefill ASR @ k=10" in capsys.readouterr().out
    for argv, needle in (([str(tmp_path / "before")], "at least two"),
                         ([str(tmp_path / "before"), str(tmp_path)], "not a run directory"),
                         ([str(tmp_path / "before"), str(tmp_path / "after"), "--label", "x"],
                          "one label per run")):
        with pytest.raises(SystemExit) as exc:
            main(["compare", *argv, "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and needle in err and "Traceback" not in err
        assert not (tmp_path / "bad").exists()


def test_an_interrupted_audit_re_renders_as_incomplete(setup, tmp_path, capsys) -> None:
    """Every requested experiment is listed with its units done / planned; one killed
    part-way (its last unit's records lost) or never started is named in a warning."""
    from tests.test_cli import run_cli

    config = AuditConfig(experiments=("refusal_prefix", "gcg"), limit=3,
                         gcg=GCGConfig(num_steps=2, search_width=8, topk=4, max_prompts=3))
    summary = run_experiments(setup, tmp_path / "run", config)
    rp = summary["experiments"]["refusal_prefix"]
    assert list(summary["experiments"]) == ["refusal_prefix", "gcg"]
    assert rp["complete"] and rp["units_done"] == rp["units_planned"] > 0
    assert summary["experiments"]["gcg"] == {"units_done": 3, "units_planned": 3,
                                             "records": 3, "complete": True}
    assert summary["warnings"] == []
    path = Run.load(tmp_path / "run").records_path("gcg")
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))  # killed
    code, _, err = run_cli(capsys, "report", str(tmp_path / "run"))
    assert code == 0, err
    again = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert again["experiments"]["gcg"] == {"units_done": 2, "units_planned": 3,
                                           "records": 2, "complete": False}
    assert again["experiments"]["refusal_prefix"]["complete"] is True
    assert again["warnings"] == ["gcg is incomplete: 2 of 3 units done (2 records), so its "
                                 "numbers cover part of the data; rerun the same command to "
                                 "finish it"]
    assert "gcg is incomplete" in err
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| gcg | 2 / 3 | 2 | INCOMPLETE |" in report
    assert (f"| refusal_prefix | {rp['units_done']} / {rp['units_planned']} | "
            f"{rp['records']} | complete |") in report
    path.unlink()  # killed before gcg began: no plan, no records
    Run.load(tmp_path / "run").plan_path("gcg").unlink()
    again = render_report(tmp_path / "run")
    assert again["experiments"]["gcg"]["complete"] is False
    assert again["warnings"] == ["gcg did not start: the run was interrupted before it; "
                                 "rerun the same command to run it"]
    run_experiments(setup, tmp_path / "run", config)  # the rerun finishes it
    assert render_report(tmp_path / "run")["warnings"] == []
