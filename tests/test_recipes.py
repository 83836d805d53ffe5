"""Paper recipes: each runs on the tiny organism and its report holds the paper's quoted
numbers beside the run's own."""

import json
from pathlib import Path

import pytest

from aligndepth.recipes import load_recipe, recipe_names
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
    for q in recipe.quoted:
        shown = f"{q['value']:.3f}" if isinstance(q["value"], float) else str(q["value"])
        assert shown in report
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
