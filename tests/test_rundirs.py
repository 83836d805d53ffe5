"""Run directories you can trust: one writer, no silent deletion, records that heal."""

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aligndepth.errors import AlignDepthError
from aligndepth.locking import LOCK_NAME, release_directory
from aligndepth.runs import Run

MANIFEST = {"experiments": ["x"], "config": {"a": 1}, "models": {}, "judge": {}, "data": {},
            "seed": 0}


def tree_digest(root: Path) -> str:
    """Names and bytes of every file under ``root`` (the lock file excluded)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.name == LOCK_NAME:
            continue
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _records(n: int, start: int = 0) -> list[dict]:
    return [{"key": f"k{i}", "value": i} for i in range(start, start + n)]


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "run"
    yield path
    release_directory(path)


def test_a_second_writer_is_refused_and_records_are_not_doubled(run_dir) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import json, sys, time\n"
         "from aligndepth.runs import Run\n"
         f"run = Run.open({str(run_dir)!r}, json.loads({json.dumps(json.dumps(MANIFEST))}))\n"
         "run.append('x', [{'key': 'k0', 'value': 0}])\n"
         "print('ready', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(AlignDepthError, match=f"another aligndepth process \\(pid "
                                                  f"{holder.pid}\\)"):
            Run.open(run_dir, MANIFEST)
    finally:
        holder.kill()
        holder.wait()
    run = Run.open(run_dir, MANIFEST)  # the OS released the lock of the killed process
    run.append("x", _records(3))
    assert [r["key"] for r in run.records("x")] == ["k0", "k1", "k2"]


def test_overwrite_never_touches_a_directory_that_is_not_a_run(tmp_path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / "data").mkdir()
    (mine / "data" / "x.csv").write_text("1,2")
    before = tree_digest(mine)
    for overwrite in (False, True):
        with pytest.raises(AlignDepthError, match="not an aligndepth run.*--overwrite only "
                                                  "replaces runs"):
            Run.open(mine, MANIFEST, overwrite=overwrite)
    assert tree_digest(mine) == before
    assert sorted(p.name for p in mine.iterdir()) == ["data", "thesis.tex"]


def test_overwrite_replaces_a_run_and_the_refusal_says_what_it_would_delete(run_dir) -> None:
    Run.open(run_dir, MANIFEST).append("x", _records(2))
    other = {**MANIFEST, "seed": 1}
    with pytest.raises(AlignDepthError, match="--overwrite to replace it \\(deletes "
                                              "manifest.json, records/\\)"):
        Run.open(run_dir, other)
    run = Run.open(run_dir, other, overwrite=True)
    assert run.records("x") == [] and run.manifest["seed"] == 1


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]"])
def test_a_corrupted_manifest_is_a_clear_error_and_overwrite_replaces_it(run_dir,
                                                                          content) -> None:
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(content)
    before = tree_digest(run_dir)
    with pytest.raises(AlignDepthError, match="manifest.json' is corrupted.*--overwrite"):
        Run.open(run_dir, MANIFEST)
    assert tree_digest(run_dir) == before
    run = Run.open(run_dir, MANIFEST, overwrite=True)
    assert run.manifest["seed"] == 0


def test_a_failed_append_leaves_the_records_whole_and_a_rerun_completes(run_dir,
                                                                         monkeypatch) -> None:
    run = Run.open(run_dir, MANIFEST)
    run.append("x", _records(2))
    before = run.records_path("x").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(AlignDepthError, match="No space left on device.*rerun"):
        run.append("x", _records(2, start=2))
    assert run.records_path("x").read_bytes() == before
    monkeypatch.undo()
    release_directory(run_dir)
    again = Run.open(run_dir, MANIFEST)
    again.append("x", _records(4))
    assert [r["key"] for r in again.records("x")] == ["k0", "k1", "k2", "k3"]


def test_a_garbage_line_is_moved_aside_with_a_warning_on_resume(run_dir, caplog) -> None:
    Run.open(run_dir, MANIFEST).append("x", _records(3))
    path = run_dir / "records" / "x.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "garbage {\n" + "".join(lines[1:]) + '{"torn": ')
    readonly = Run.load(run_dir)
    with caplog.at_level("WARNING"):
        assert [r["key"] for r in readonly.records("x")] == ["k0", "k1", "k2"]
    assert "1 unreadable line(s) skipped (line 2)" in caplog.text
    assert "garbage" in path.read_text()  # a reader never rewrites
    release_directory(run_dir)
    caplog.clear()
    resumed = Run.open(run_dir, MANIFEST)
    with caplog.at_level("WARNING"):
        assert resumed.done_keys("x") == {"k0", "k1", "k2"}
    assert "moved to x.rejected.jsonl" in caplog.text
    assert (run_dir / "records" / "x.rejected.jsonl").read_text() == "garbage {\n"
    assert "garbage" not in path.read_text()
    resumed.append("x", _records(1, start=3))
    assert [r["key"] for r in resumed.records("x")] == ["k0", "k1", "k2", "k3"]


def test_out_naming_a_file_is_refused(tmp_path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    with pytest.raises(AlignDepthError, match="is a file, not a directory"):
        Run.open(f, MANIFEST)
    assert f.read_text() == "mine"


def test_a_resumed_run_says_how_much_was_done(run_dir, caplog) -> None:
    from aligndepth.runs import Unit

    run = Run.open(run_dir, MANIFEST)
    units = [Unit(f"u{i}", [f"k{i}"]) for i in range(4)]
    run.append("x", _records(3))
    release_directory(run_dir)
    with caplog.at_level("WARNING"):
        todo = Run.open(run_dir, MANIFEST).pending("x", units)
    assert [u.name for u in todo] == ["u3"]
    assert "resuming, 3 of 4 units already done" in caplog.text


def test_pending_plans_every_unit_it_is_shown(run_dir) -> None:
    from aligndepth.report.completeness import experiment_progress
    from aligndepth.runs import Unit

    run = Run.open(run_dir, {**MANIFEST, "experiments": ["x", "y"]})
    assert run.planned("x") is None
    run.pending("x", [Unit("a#0", ["k0", "k1"]), Unit("a#1", ["k2"])])
    run.pending("x", [Unit("b#0", ["k3"])])  # a second batch of units (evaluate's tasks)
    assert run.planned("x") == {"a#0": ["k0", "k1"], "a#1": ["k2"], "b#0": ["k3"]}
    run.append("x", _records(2))  # the first unit, whole
    run.append("x", [{"key": "k3", "value": 3}])
    assert experiment_progress(Run.load(run_dir)) == {
        "x": {"units_done": 2, "units_planned": 3, "records": 3, "complete": False},
        "y": {"units_done": 0, "units_planned": None, "records": 0, "complete": False}}


def test_train_resume_into_a_new_directory_is_an_error(tmp_path) -> None:
    from aligndepth.training.trainer import resume_point

    with pytest.raises(AlignDepthError, match="nothing to resume"):
        resume_point(tmp_path / "new", resume=True)
    assert resume_point(tmp_path / "new", resume=False) is None


def test_the_cli_refuses_a_locked_out_in_one_line(tiny_organism, tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from aligndepth.locking import lock_directory\n"
         f"lock_directory({str(out)!r})\n"
         "print('ready', flush=True)\n"
         "time.sleep(1500)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        res = subprocess.run(
            [sys.executable, "-m", "aligndepth.cli", "prefill", "--base",
             str(tiny_organism / "base"), "--aligned", str(tiny_organism / "aligned"),
             "--device", "cpu", "--quiet", "--limit", "2", "--max-new-tokens", "4", "--k", "2",
             "--judge", "keyword", "--out", str(out),
             "--data", str(tiny_organism / "data" / "harmful_pairs.jsonl")],
            capture_output=True, text=True, timeout=1200,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        holder.kill()
        holder.wait()
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert f"another aligndepth process (pid {holder.pid})" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_a_run_resumes_on_another_device(run_dir) -> None:
    def on(device: str) -> dict:
        return {**MANIFEST, "models": {"base": {"source": "b", "placement": device},
                                      "aligned": {"source": "a", "placement": device}}}

    Run.open(run_dir, on("cuda:0")).append("x", _records(1))
    release_directory(run_dir)
    assert Run.open(run_dir, on("cpu")).done_keys("x") == {"k0"}
    release_directory(run_dir)
    with pytest.raises(AlignDepthError, match="different models"):
        Run.open(run_dir, {**on("cpu"), "models": {"base": {"source": "other"}}})


def test_overwrite_keeps_a_users_file_in_a_run_and_names_it(run_dir, caplog) -> None:
    run = Run.open(run_dir, MANIFEST)
    run.append("x", _records(2))
    run.write_json("summary.json", {"n": 2})
    (run_dir / "plots").mkdir()
    (run_dir / "plots" / "p.png").write_bytes(b"png")
    (run_dir / "my_notes.txt").write_text("notes")
    (run_dir / "drafts").mkdir()
    (run_dir / "drafts" / "a.md").write_text("draft")
    with caplog.at_level("WARNING"):
        Run.open(run_dir, {**MANIFEST, "seed": 1}, overwrite=True)
    assert (run_dir / "my_notes.txt").read_text() == "notes"
    assert (run_dir / "drafts" / "a.md").read_text() == "draft"
    assert sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME) == [
        "drafts", "manifest.json", "my_notes.txt"]
    assert "kept drafts/, my_notes.txt (not written by aligndepth)" in caplog.text
    assert json.loads((run_dir / "manifest.json").read_text())["seed"] == 1


def test_a_leftover_temporary_manifest_does_not_block_the_next_run(run_dir) -> None:
    run_dir.mkdir()
    (run_dir / "manifest.json.tmp").write_bytes(b"")  # a write cut short by a crash
    run = Run.open(run_dir, MANIFEST)
    assert not (run_dir / "manifest.json.tmp").exists()
    (run_dir / "records").mkdir(exist_ok=True)
    (run_dir / "records" / "x.jsonl.tmp").write_bytes(b'{"key": "k')
    release_directory(run_dir)
    assert Run.open(run_dir, MANIFEST).resumed
    assert not (run_dir / "records" / "x.jsonl.tmp").exists()
    assert run.records("x") == []


def _disk_full_after(monkeypatch, calls: int) -> None:
    """Every ``os.fsync`` after the first ``calls`` fails as a full disk does."""
    real, count = os.fsync, [0]

    def fsync(fd):
        count[0] += 1
        if count[0] > calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_then_freed_space_resumes_to_an_uninterrupted_run(tiny_organism, tmp_path,
                                                                      monkeypatch,
                                                                      capsys) -> None:
    from aligndepth.cli import main

    def prefill(out: Path) -> tuple[int, str]:
        try:
            main(["prefill", "--base", str(tiny_organism / "base"), "--aligned",
                  str(tiny_organism / "aligned"), "--judge", "keyword", "--device", "cpu",
                  "--batch-size", "1", "--limit", "4", "--max-new-tokens", "6", "--quiet",
                  "--data", str(tiny_organism / "data" / "harmful_pairs.jsonl"),
                  "--out", str(out)])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, capsys.readouterr().err

    full, cut = tmp_path / "full", tmp_path / "cut"
    try:
        assert prefill(full)[0] == 0
        _disk_full_after(monkeypatch, 0)  # the manifest cannot be written
        code, err = prefill(cut)
        assert code == 2 and "No space left on device" in err, err
        assert sorted(p.name for p in cut.iterdir()) == [LOCK_NAME]  # no manifest.json.tmp
        (cut / "manifest.json.tmp").write_bytes(b"")  # as a crash mid-write leaves it
        monkeypatch.undo()
        _disk_full_after(monkeypatch, 3)  # the manifest and two units, then full
        code, err = prefill(cut)
        assert code == 2 and "could not write records" in err, err
        written = Run.load(cut).records("prefill")
        assert 0 < len(written) < len(Run.load(full).records("prefill"))
        monkeypatch.undo()  # space is freed
        assert prefill(cut)[0] == 0
        for name in ("records/prefill.jsonl", "summary.json"):
            assert (cut / name).read_bytes() == (full / name).read_bytes(), name
        assert not list(cut.rglob("*.tmp"))
    finally:
        release_directory(full)
        release_directory(cut)
