"""The kill -9 battery: every experiment, the audit and a recipe, killed at a seeded
record count (before, during or after a write) and rerun, record the same as an
uninterrupted run, with no record lost or doubled."""

from pathlib import Path

import pytest

from aligndepth.cli import main
from tests.conftest import one_torch_thread
from tests.kill9 import all_records, kill_point, killed_at

#: Each command with a budget that keeps it to a second or two on the tiny organism.
COMMANDS = {
    "prefill": ["prefill", "--k", "0", "--k", "3", "--batch-size", "2"],
    "refusal_prefix": ["refusal-prefix", "--batch-size", "2"],
    "decoding": ["decoding", "--limit", "2"],
    "ed": ["ed", "--limit", "2", "--samples", "1", "--sweep", "0.5", "--batch-size", "4"],
    "gcg": ["gcg", "--limit", "3", "--num-steps", "2", "--search-width", "8", "--topk", "4",
            "--suffix-length", "4"],
    "kl": ["kl", "--batch-size", "1"],
    "audit": ["audit", "--limit", "2", "--k", "0", "--k", "2", "--samples", "1", "--sweep",
              "0.5", "--num-steps", "2", "--search-width", "8", "--topk", "4",
              "--suffix-length", "4", "--batch-size", "2"],
    "recipe": ["recipe", "run", "qi-table1", "--option", "limit=4", "--option",
               "max_new_tokens=6", "--option", "batch_size=1"],
}


def _argv(name: str, organism: Path, out: Path) -> list[str]:
    pair = ["--base", str(organism / "base"), "--aligned", str(organism / "aligned")]
    if name == "recipe":
        return [*COMMANDS[name], *pair, "--out", str(out), "--quiet"]
    argv = [*COMMANDS[name], *pair, "--device", "cpu", "--quiet", "--out", str(out),
            "--data", str(organism / "data" / "harmful_pairs.jsonl")]
    if "--limit" not in argv:
        argv += ["--limit", "4"]
    if name != "kl":  # kl generates and judges nothing
        argv += ["--judge", "keyword", "--max-new-tokens", "6"]
    return argv


def _run(argv: list[str]) -> None:
    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code, f"aligndepth {argv[0]} exited with {exc.code}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_kill_9_at_a_random_record_then_rerun_equals_an_uninterrupted_run(
        name: str, tiny_organism: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    with one_torch_thread():
        _run(_argv(name, tiny_organism, full))
        expected = all_records(full)
        total = sum(len(r) for r in expected.values())
        count, moment = kill_point(name, total)
        killed_at(_argv(name, tiny_organism, killed), count, moment)
        partial = all_records(killed)
        for path, records in partial.items():  # what was written before the kill is right
            assert all(r in expected[path] for r in records), path
        assert sum(len(r) for r in partial.values()) < total or not any(
            killed.rglob("summary.json")), "the run was not interrupted"
        _run(_argv(name, tiny_organism, killed))
    resumed = all_records(killed)
    for path, records in resumed.items():
        keys = [r["key"] for r in records]
        assert len(keys) == len(set(keys)), f"{path}: doubled records"
    assert resumed == expected, f"killed at {count} records ({moment})"
    capsys.readouterr()
