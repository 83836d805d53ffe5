"""Paper recipes: each runs on the tiny organism and its report holds the paper's quoted
numbers beside the run's own."""

import json
from pathlib import Path

import pytest

from aligndepth.recipes import (
    NO_JUDGE,
    QUOTE_FIELDS,
    comparison,
    load_recipe,
    names,
    recipe_names,
)
from tests.conftest import one_torch_thread
from tests.test_cli import assert_user_error, run_cli

#: Budgets small enough for the test suite, per recipe (added with --option).
SMALL = {
    "qi-table1": ["limit=4", "max_new_tokens=8"],
    "qi-figure1": ["limit=4"],
    "qi-figure2": ["limit=4", "max_new_tokens=8"],
    "qi-table2": ["limit=2", "max_new_tokens=6", "num_steps=2", "search_width=8", "topk=4",
                  "max_prompts=2", "steps=1", "batch_size=4"],
    "qi-table3": ["limit=4", "steps=1", "batch_size=4", "eval_max_new_tokens=6"],
    "zhou-main": ["limit=3", "samples=1", "max_new_tokens=6"],
}


TASK_FILES = {"identity": "identity_shift.jsonl", "backdoor": "backdoor_train.jsonl",
              "summarize": "summarize_train.jsonl"}


def test_every_recipe_has_a_budget_here() -> None:
    assert sorted(SMALL) == recipe_names()
    for name in recipe_names():  # and says what its organism budget takes
        assert load_recipe(name).organism_time, name


@pytest.mark.parametrize("name", sorted(SMALL))
def test_recipe_runs_on_the_organism_beside_the_papers_numbers(
        name: str, tiny_organism: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    recipe = load_recipe(name)
    args = ["recipe", "run", name, "--aligned", str(tiny_organism / "aligned"),
            "--out", str(tmp_path / name), "--quiet"]
    if any(not s.command.startswith("train") for s in recipe.steps):
        args += ["--base", str(tiny_organism / "base")]
    else:
        args += ["--data", str(tiny_organism / "data" / "harmful_pairs.jsonl")]
    for option in SMALL[name]:
        args += ["--option", option]
    for step in recipe.steps:  # other training tasks on a given model: their own data
        task = step.options.get("task", "harmful")
        if step.command in ("train sft", "train constrained") and task != "harmful":
            args += ["--option", f"{step.name}:data={tiny_organism / 'data' / TASK_FILES[task]}"]
        if step.command == "train augment":
            data = tiny_organism / "data"
            args += ["--option", f"{step.name}:triples={data / 'safety_triples.jsonl'}",
                     "--option", f"{step.name}:anchor={data / 'benign_pairs.jsonl'}"]
    with one_torch_thread():
        code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    result = json.loads((tmp_path / name / "recipe.json").read_text())
    assert len(result["comparison"]) == len(recipe.quoted) > 0
    for row in result["comparison"]:
        assert row["run"] is not None, row  # every quoted metric exists in the run
    report = (tmp_path / name / "report.md").read_text()
    assert report.count("(quoted) |") == len(recipe.quoted) + 1  # each row and the header
    judges = {r["run_judge"] for r in result["comparison"]}
    assert f"- judge of this run: {', '.join(f'`{j}`' for j in sorted(judges))}" in report
    for q, row in zip(recipe.quoted, result["comparison"]):
        shown = f"{q['value']:.3f}" if isinstance(q["value"], float) else str(q["value"])
        line = next(li for li in report.splitlines() if f"| {shown} (quoted) |" in li
                    and q["setting"] in li and q["model"] in li)
        for field in ("dataset", "judge"):  # each quote names its dataset and judge
            assert f"| {' / '.join(names(q[field]))} |" in line
        # the organism's data is none of the paper's datasets: context, not comparison
        assert not row["compared"] and "context only" in line, line
    for step in recipe.steps:
        assert (tmp_path / name / step.name / "config.yaml").is_file()
    assert "report.html" in out


def test_recipe_show_and_bad_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "recipe", "show", "qi-figure2")
    assert code == 0 and "--k 10" in out and "0.515" in out and "--limit 40" in out
    assert f"({load_recipe('qi-figure2').organism_time} on 2 CPU cores, measured" in out
    code, out, _ = run_cli(capsys, "recipe", "list")
    assert code == 0 and all(name in out for name in recipe_names())
    code, _, err = run_cli(capsys, "recipe", "run", "qi-tabel1")
    assert_user_error(code, err, "unknown recipe 'qi-tabel1' (did you mean 'qi-table1'?)")


def test_recipe_options_that_reach_no_step_are_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "recipe", "run", "qi-table3", "--aligned", "m",
                           "--option", "harmful-sfd:steps=1", "--out", str(tmp_path / "r"))
    assert_user_error(code, err, "the recipe has no step 'harmful-sfd' (did you mean "
                      "'harmful-sft'?)")
    code, _, err = run_cli(capsys, "recipe", "run", "qi-table3", "--aligned", "m",
                           "--option", "num_stepz=3", "--out", str(tmp_path / "r"))
    assert_user_error(code, err, "no step of recipe 'qi-table3' takes 'num_stepz'")
    code, _, err = run_cli(capsys, "recipe", "run", "qi-table3", "--aligned", "m",
                           "--data", "h.jsonl", "--out", str(tmp_path / "r"))
    assert_user_error(code, err, "step 'identity-sft' trains on task 'identity': give its "
                      "data with --option identity-sft:data=FILE")
    assert not (tmp_path / "r").exists()


def test_every_quoted_number_names_its_dataset_model_judge_and_setting() -> None:
    for name in recipe_names():
        for q in load_recipe(name).quoted:
            assert all(str(q[f]).strip() for f in QUOTE_FIELDS), (name, q)
            for judge in names(q["judge"]):  # a judge of this toolkit, or none
                assert judge in ("gpt4-rubric", "moderation", "llamaguard", NO_JUDGE), q
    table1 = load_recipe("qi-table1").quoted  # one prefix's number, not a pooled rate
    assert all("harmful_rate" not in q["metric"].split(".")[-1] or "base_" in q["metric"]
               for q in table1)
    assert sum("by_prefix.I apologize, but I cannot" in q["metric"] for q in table1) == 2


def test_comparison_needs_the_dataset_and_marks_another_judge() -> None:
    quote = {"dataset": "HEx-PHI", "judge": "gpt4-rubric"}
    assert comparison(quote, "hexphi", "gpt4-rubric") == {
        "compared": True, "same_judge": True, "note": "compared"}
    other = comparison(quote, "hexphi", "keyword")
    assert other["compared"] and other["same_judge"] is False
    assert other["note"] == ("compared, with a different judge: this run's is keyword, the "
                             "paper's gpt4-rubric")
    for data in ("maliciousinstruct", None):
        assert comparison(quote, data, "gpt4-rubric")["note"] == (
            "context only: the paper's number is on HEx-PHI, this run is not")
    pooled = {"dataset": ["ToxicChat", "OpenAI-Moderation"], "judge": ["moderation",
                                                                      "llamaguard"]}
    assert comparison(pooled, "toxicchat", "llamaguard")["note"] == "compared"
    assert comparison({"dataset": "HEx-PHI", "judge": NO_JUDGE}, "hexphi",
                      None)["same_judge"] is None


def test_table2_compares_each_dataset_with_its_own_run(
        tiny_organism: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """HEx-PHI's and MaliciousInstruct's decoding ASRs are each compared with a run on
    their own file; each file runs only the experiments quoted on it."""
    data = tiny_organism / "data"
    lines = (data / "harmful_pairs.jsonl").read_text().splitlines()
    malicious = tmp_path / "malicious.jsonl"  # prompts only, as MaliciousInstruct
    malicious.write_text("".join(json.dumps({"instruction": json.loads(li)["instruction"]})
                                 + "\n" for li in lines[-3:]))
    args = ["recipe", "run", "qi-table2", "--base", str(tiny_organism / "base"),
            "--aligned", str(tiny_organism / "aligned"), "--out", str(tmp_path / "t2"),
            "--quiet", "--dataset", f"HEx-PHI={data / 'harmful_pairs.jsonl'}",
            "--dataset", f"maliciousinstruct={malicious}",
            "--option", f"augment:triples={data / 'safety_triples.jsonl'}",
            "--option", f"augment:anchor={data / 'benign_pairs.jsonl'}"]
    for option in SMALL["qi-table2"]:
        args += ["--option", option]
    with one_torch_thread():
        code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    root = tmp_path / "t2"
    result = json.loads((root / "recipe.json").read_text())
    assert sorted(result["runs"]) == ["aligned-hexphi", "aligned-maliciousinstruct",
                                      "augment", "augmented-hexphi",
                                      "augmented-maliciousinstruct"]
    mi = json.loads((root / "aligned-maliciousinstruct" / "summary.json").read_text())
    assert "decoding" in mi and "prefill" not in mi and "gcg" not in mi
    summaries = {d: json.loads((root / d / "summary.json").read_text())
                 for d in ("aligned-hexphi", "aligned-maliciousinstruct")}
    for dataset, run_dir in (("HEx-PHI", "aligned-hexphi"),
                             ("MaliciousInstruct", "aligned-maliciousinstruct")):
        rows = [r for r in result["comparison"] if r["dataset"] == dataset
                and r["metric"] == "aligned: decoding.any_config_asr"]
        compared = [r for r in rows if r["compared"]]
        assert [r["run_dir"] for r in compared] == [run_dir]
        assert compared[0]["run"] == summaries[run_dir]["decoding"]["any_config_asr"]
        assert compared[0]["note"] == ("compared, with a different judge: this run's is "
                                       "organism, the paper's gpt4-rubric")
        assert all("context only" in r["note"] for r in rows if not r["compared"])
    advbench = [r for r in result["comparison"] if r["dataset"] == "AdvBench"]
    assert advbench and not any(r["compared"] for r in advbench)  # no AdvBench run
    report = (root / "report.md").read_text()
    assert "| MaliciousInstruct | gpt4-rubric | decoding exploit" in report


def test_recipe_datasets_must_be_quoted_ones(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "recipe", "run", "qi-table2", "--dataset", "hexpi=x.jsonl",
                           "--out", str(tmp_path / "r"))
    assert_user_error(code, err, "--dataset hexpi: recipe 'qi-table2' quotes no number on it "
                      "(did you mean 'hexphi'?); its datasets: HEx-PHI, AdvBench, "
                      "MaliciousInstruct")
    code, _, err = run_cli(capsys, "recipe", "run", "qi-table1", "--dataset", "x.jsonl")
    assert_user_error(code, err, "--dataset x.jsonl: give NAME=FILE, e.g. --dataset "
                      "HEx-PHI=./data.jsonl")
    assert not (tmp_path / "r").exists()
