"""Progress when stderr is not a terminal (a batch job's log): plain lines with the step,
the total, the time elapsed and left, and the caller's fields; none with ``--quiet``."""

from __future__ import annotations

import re
import types

import pytest

from aligndepth import progress
from aligndepth.cli import main
from aligndepth.progress import progress_bar


class _Clock:
    """``time.monotonic`` that returns the seconds it is set to."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):  # type: ignore[no-untyped-def]
    fake = _Clock()
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_lines_at_the_first_step_every_interval_and_the_end(capsys, clock) -> None:
    with progress_bar("work", 10) as advance:  # capsys: stderr is not a terminal
        for t in (1, 10, 20, 31, 40, 50, 62):
            clock.now = float(t)
            advance(loss=2.0 / t)
        clock.now = 70.0
        advance(3, loss=0.01)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "work: 1/10 (10%), elapsed 0:00:01, remaining 0:00:09, loss=2.000",
        "work: 4/10 (40%), elapsed 0:00:31, remaining 0:00:46, loss=0.065",
        "work: 7/10 (70%), elapsed 0:01:02, remaining 0:00:26, loss=0.032",
        "work: 10/10 (100%), elapsed 0:01:10, loss=0.010",
    ]


def test_no_extra_line_when_the_last_step_was_written(capsys, clock) -> None:
    with progress_bar("work", 2) as advance:
        advance()
        clock.now = 40.0
        advance(step="b")
    assert capsys.readouterr().err.splitlines() == [
        "work: 1/2 (50%), elapsed 0:00:00, remaining 0:00:00",
        "work: 2/2 (100%), elapsed 0:00:40, step=b"]


def test_disabled_progress_writes_nothing(capsys) -> None:
    with progress_bar("work", 3, enabled=False) as advance:
        advance(loss=1.0)
    assert capsys.readouterr().err == ""


def _gcg(capsys, tiny_organism, out, *extra: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    argv = ["gcg", "--base", str(tiny_organism / "base"), "--aligned",
            str(tiny_organism / "aligned"), "--device", "cpu", "--limit", "2",
            "--max-new-tokens", "4", "--judge", "keyword", "--out", str(out),
            "--data", str(tiny_organism / "data" / "harmful_pairs.jsonl"),
            "--num-steps", "3", "--search-width", "8", "--topk", "4", "--suffix-length", "3",
            "--no-early-stop", *extra]
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_gcg_logs_its_steps_and_best_loss_when_not_on_a_terminal(
        capsys, tiny_organism, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # a line per step
    code, err = _gcg(capsys, tiny_organism, tmp_path / "run")
    assert code == 0, err
    steps = [line for line in err.splitlines() if line.startswith("GCG steps: ")]
    pattern = (r"GCG steps: (\d)/6 \(\d+%\), elapsed \d:\d\d:\d\d(, remaining \d:\d\d:\d\d)?, "
               r"prompt=([12])/2 best_loss=(\d+\.\d{3})")
    found = [re.fullmatch(pattern, line) for line in steps]
    assert all(found), steps
    assert [int(m.group(1)) for m in found if m] == [1, 2, 3, 4, 5, 6]
    # the two prompts' searches advance together: each reports its 3 steps
    assert sorted(m.group(3) for m in found if m) == ["1"] * 3 + ["2"] * 3
    for prompt in ("1", "2"):
        losses = [float(m.group(4)) for m in found if m and m.group(3) == prompt]
        assert losses == sorted(losses, reverse=True)  # the best loss never rises


def test_quiet_silences_progress_lines(capsys, tiny_organism, tmp_path, monkeypatch
                                       ) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    code, err = _gcg(capsys, tiny_organism, tmp_path / "run", "--quiet")
    assert code == 0, err
    assert "GCG steps" not in err and "elapsed" not in err, err
