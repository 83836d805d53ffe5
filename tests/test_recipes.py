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
                  "max_prompts=2"],
    "qi-table3": ["limit=4", "steps=1", "batch_size=4", "eval_max_new_tokens=6"],
    "zhou-main": ["limit=3", "samples=1", "max_new_tokens=6"],
}


def test_every_recipe_has_a_budget_here() -> None:
    assert sorted(SMALL) == recipe_names()


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
    code, out, _ = run_cli(capsys, "recipe", "list")
    assert code == 0 and all(name in out for name in recipe_names())
    code, _, err = run_cli(capsys, "recipe", "run", "qi-tabel1")
    assert_user_error(code, err, "unknown recipe 'qi-tabel1' (did you mean 'qi-table1'?)")
