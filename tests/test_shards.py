"""Shards of one run: --shard I/N workers (separate processes, one run directory) and a
2-rank torchrun audit record exactly what one process records, render one summary equal
to its summary, and a shard killed with kill -9 then rerun completes without doubling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aligndepth.cli import main
from aligndepth.errors import AlignDepthError
from aligndepth.runs import Run, Unit
from aligndepth.shards import Shard, owner, parse_shard, worker_shard
from tests.conftest import one_torch_thread
from tests.kill9 import kill_point, killed_at

ROOT = Path(__file__).parent.parent
#: The audit at budgets that keep it to seconds on the tiny organism (as tests/test_kill9).
AUDIT = ["audit", "--limit", "3", "--k", "0", "--k", "2", "--samples", "1", "--sweep", "0.5",
         "--num-steps", "2", "--search-width", "8", "--topk", "4", "--suffix-length", "4",
         "--batch-size", "1", "--judge", "keyword", "--max-new-tokens", "6", "--device", "cpu",
         "--quiet"]


def _argv(organism: Path, out: Path, *more: str) -> list[str]:
    return [*AUDIT, "--base", str(organism / "base"), "--aligned", str(organism / "aligned"),
            "--data", str(organism / "data" / "harmful_pairs.jsonl"), "--out", str(out), *more]


def _forked(argv: list[str]) -> int:
    """``aligndepth ARGV`` in a forked copy of this process (its own locks, as a job-array
    task has); its exit status."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def records(root: Path) -> dict[str, list[dict[str, Any]]]:
    """Each requested experiment's records as the run reads them (all shards as one)."""
    run = Run.load(root)
    return {e: run.records(e) for e in run.manifest["experiments"]}


def by_key(found: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out = {f"{e}/{r['key']}": r for e, rs in found.items() for r in rs}
    assert len(out) == sum(len(rs) for rs in found.values()), "doubled records"
    return out


def summary(root: Path) -> dict[str, Any]:
    return json.loads((root / "summary.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def single(tiny_organism: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The audit in one process."""
    out = tmp_path_factory.mktemp("single") / "run"
    with one_torch_thread():
        assert _forked(_argv(tiny_organism, out)) == 0
    return out


def test_parse_and_refuse_shards() -> None:
    assert parse_shard("1/3") == Shard(1, 3) and str(Shard(1, 3)) == "1/3"
    for bad in ("3/3", "0/0", "x", "1/", "-1/2"):
        with pytest.raises(AlignDepthError, match="--shard"):
            parse_shard(bad)
    env = {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}
    assert worker_shard(None, env) == Shard(2, 4)
    assert worker_shard(Shard(0, 2), {"WORLD_SIZE": "1"}) == Shard(0, 2)
    with pytest.raises(AlignDepthError, match="both split the run"):
        worker_shard(Shard(0, 2), env)


def test_the_split_is_a_partition_fixed_by_the_unit() -> None:
    units = [f"u{i}" for i in range(200)]
    for n in (1, 2, 3, 7):
        owners = [owner("prefill", u, n) for u in units]
        assert owners == [owner("prefill", u, n) for u in reversed(units)][::-1]
        assert set(owners) == set(range(n))  # 200 units reach every worker
    # the same unit name falls elsewhere in another experiment (chunk #0 is everywhere)
    assert len({owner(e, "#0", 7) for e in ("kl", "prefill", "ed", "gcg", "decoding")}) > 1


def test_pending_gives_a_worker_its_share(tmp_path: Path) -> None:
    from aligndepth.locking import release_directory
    from aligndepth.shards import ShardedRun

    units = [Unit(f"u{i}", [f"k{i}"]) for i in range(12)]
    shares = []
    for i in range(3):
        run = ShardedRun.open_shard(tmp_path / "run", {"experiments": ["x"]}, Shard(i, 3))
        todo = run.pending("x", units)
        shares.append([u.name for u in todo])
        run.append("x", [{"key": k} for u in todo[:2] for k in u.keys])
        release_directory(tmp_path / "run" / "records", f".shard-{i}-of-3.lock")
    release_directory(tmp_path / "run")
    assert sorted(sum(shares, [])) == sorted(u.name for u in units)
    merged = Run.load(tmp_path / "run")
    assert set(merged.planned("x") or {}) == {u.name for u in units}
    assert [r["key"] for r in merged.records("x")] == [  # in the plan's order
        k for u in units for k in u.keys if k in merged.done_keys("x")]


def test_three_shards_equal_one_process(single: Path, tiny_organism: Path,
                                        tmp_path: Path) -> None:
    out = tmp_path / "sharded"
    with one_torch_thread():
        for i in range(3):
            assert _forked(_argv(tiny_organism, out, "--shard", f"{i}/3")) == 0
            assert (out / "summary.json").exists() == (i == 2)  # the last one renders
    names = {p.name for p in (out / "records").iterdir()}
    assert any(".shard-1-of-3." in n for n in names) and not any(
        n.endswith(".jsonl") and ".shard-" not in n for n in names)
    assert by_key(records(out)) == by_key(records(single))
    assert summary(out) == summary(single)
    # the answers tables name the files the records are in
    page = (out / "report.html").read_text()
    assert "Every record of records/prefill.shard-*-of-3.jsonl" in page
    assert "Every record of records/prefill.jsonl" in (single / "report.html").read_text()
    # each shard's file holds only its own units' records
    run = Run.load(out)
    for name in run.manifest["experiments"]:
        plan = run.planned(name) or {}
        home = {k: owner(name, u, 3) for u, keys in plan.items() for k in keys}
        for i in range(3):
            path = out / "records" / f"{name}.shard-{i}-of-3.jsonl"
            lines = path.read_text().splitlines() if path.exists() else []
            assert all(home[json.loads(line)["key"]] == i for line in lines), path


def test_report_waits_for_every_shard(tiny_organism: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "half"
    with one_torch_thread():
        assert _forked(_argv(tiny_organism, out, "--shard", "1/2")) == 0
    assert not (out / "summary.json").exists()
    with pytest.raises(SystemExit) as exc:
        main(["report", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "shards 0/2 (0 of" in err and "units done)" in err, err
    # another count is refused while the run is incomplete, before any model loads
    assert _forked(_argv(tiny_organism, out, "--shard", "0/3")) == 2


def test_a_killed_shard_reruns_to_the_same_records(single: Path, tiny_organism: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "killed"
    expected = by_key(records(single))
    with one_torch_thread():
        assert _forked(_argv(tiny_organism, out, "--shard", "0/2")) == 0
        run = Run.load(out)
        mine = sum(owner(e, u, 2) == 1 for e in run.manifest["experiments"]
                   for u in run.planned(e) or {})
        assert mine >= 2
        count, moment = kill_point("shard 1/2", mine)
        killed_at(_argv(tiny_organism, out, "--shard", "1/2"), count, moment)
        assert not (out / "summary.json").exists()
        assert _forked(_argv(tiny_organism, out, "--shard", "1/2")) == 0
    assert by_key(records(out)) == expected
    assert summary(out) == summary(single)


def test_two_torchrun_ranks_equal_one_process(single: Path, tiny_organism: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "torchrun"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", "-m", "aligndepth", *_argv(tiny_organism, out)],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, [line for line in done.stderr.splitlines() if "error" in line]
    assert {p.name for p in (out / "records").glob("*.shard-*-of-2.jsonl")}
    assert by_key(records(out)) == by_key(records(single))
    assert summary(out) == summary(single)


def _torchrun(argv: list[str], script: list[str], env: dict[str, str]
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", *script, *argv], env=env, capture_output=True, text=True, timeout=600,
        check=False)


def test_a_killed_torchrun_rank_reruns_to_the_same_records(single: Path, tiny_organism: Path,
                                                            tmp_path: Path) -> None:
    """kill -9 of rank 1 mid-run ends the launch (torchrun stops the other rank); the same
    launch again completes the run, nothing lost or doubled, equal to one process."""
    out = tmp_path / "torchrun-killed"
    run = Run.load(single)
    mine = sum(owner(e, u, 2) == 1 for e in run.manifest["experiments"]
               for u in run.planned(e) or {})
    count, moment = kill_point("torchrun rank 1/2", mine)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
           "OMP_NUM_THREADS": "1", "KILL_RANK": "1", "KILL_COUNT": str(count),
           "KILL_MOMENT": moment}
    killed = _torchrun(_argv(tiny_organism, out), [str(ROOT / "tests" / "torchrun_kill.py")],
                       env)
    assert killed.returncode != 0 and not (out / "summary.json").exists()
    assert "SIGKILL" in killed.stderr, killed.stderr[-2000:]  # rank 1 died as planned
    assert any((out / "records").glob("*.shard-1-of-2.jsonl"))  # rank 1 had started
    env["KILL_RANK"] = "none"
    done = _torchrun(_argv(tiny_organism, out), ["-m", "aligndepth"], env)
    assert done.returncode == 0, [line for line in done.stderr.splitlines() if "rror" in line]
    assert by_key(records(out)) == by_key(records(single))
    assert summary(out) == summary(single)
