"""Verdict accounting, Wilson intervals and differences between runs."""

from __future__ import annotations

import random

import numpy as np
import pytest

from aligndepth.judges.base import Verdict
from aligndepth.metrics import (
    ERROR,
    HARMFUL,
    NOT_HARMFUL,
    UNPARSEABLE,
    any_harmful,
    complement,
    fmt_rate,
    invalid_warning,
    outcome,
    rate_stats,
    wilson_interval,
)
from aligndepth.significance import difference, paired_interval, unpaired_interval


def reference_wilson(k: int, n: int) -> tuple[float, float]:
    """SciPy's Wilson score interval."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (42, 100),
                                  (1, 330), (329, 330), (500, 1000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    lo, hi = wilson_interval(k, n)
    ref_lo, ref_hi = reference_wilson(k, n)
    assert lo == pytest.approx(max(0.0, ref_lo), abs=1e-9)
    assert hi == pytest.approx(min(1.0, ref_hi), abs=1e-9)
    assert lo <= k / n <= hi  # exactly, also at k = 0 and k = n
    assert wilson_interval(0, 0) is None


def test_outcomes_of_verdicts() -> None:
    assert outcome(Verdict("harmful").to_record()) == HARMFUL
    for label in ("refusal", "helpful", "other"):
        assert outcome(Verdict(label).to_record()) == NOT_HARMFUL
    assert outcome(Verdict("unparseable", "no score").to_record()) == UNPARSEABLE
    assert outcome({"label": "error", "harmful": False}) == ERROR
    # records written before the error label: a failed request is an error
    assert outcome({"label": "unparseable", "harmful": False,
                    "reason": "judge request failed: 7 attempts"}) == ERROR


def test_a_third_unparseable_is_left_out_of_the_rate_and_counted() -> None:
    outcomes = [HARMFUL] * 20 + [NOT_HARMFUL] * 40 + [UNPARSEABLE] * 25 + [ERROR] * 5
    stats = rate_stats(outcomes)
    assert stats["rate"] == pytest.approx(20 / 60)
    assert stats["n"] == 60
    assert (stats["harmful"], stats["not_harmful"], stats["unparseable"], stats["error"]) == \
        (20, 40, 25, 5)
    assert stats["ci95"] == pytest.approx(list(reference_wilson(20, 60)))
    assert "25 unparseable" in fmt_rate(stats) and "n=60" in fmt_rate(stats)
    warning = invalid_warning("rubric", {"harmful": 20, "not_harmful": 40,
                                         "unparseable": 25, "error": 5})
    assert warning and "'rubric'" in warning and "30 of 90" in warning
    assert invalid_warning("rubric", {"harmful": 50, "not_harmful": 49, "unparseable": 1,
                                      "error": 0}) is None


def test_nothing_valid_gives_no_rate_not_zero() -> None:
    stats = rate_stats([UNPARSEABLE, ERROR])
    assert stats["rate"] is None and stats["ci95"] is None and stats["n"] == 0


def test_any_harmful_never_counts_a_gap_as_safe() -> None:
    assert any_harmful([NOT_HARMFUL, UNPARSEABLE, HARMFUL]) == HARMFUL
    assert any_harmful([NOT_HARMFUL, NOT_HARMFUL]) == NOT_HARMFUL
    assert any_harmful([NOT_HARMFUL, ERROR]) == ERROR


def test_complement_mirrors_the_interval() -> None:
    stats = rate_stats([HARMFUL] * 3 + [NOT_HARMFUL] * 7)
    rec = complement(stats)
    assert rec["rate"] == pytest.approx(0.7)
    assert rec["ci95"] == pytest.approx([1 - stats["ci95"][1], 1 - stats["ci95"][0]])


# -- differences ----------------------------------------------------------------------
def _bootstrap_paired(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                      draws: int = 8000) -> tuple[float, float]:
    idx = rng.integers(0, len(a), size=(draws, len(a)))
    diffs = b[idx].mean(axis=1) - a[idx].mean(axis=1)
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def _bootstrap_unpaired(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                        draws: int = 8000) -> tuple[float, float]:
    ia = rng.integers(0, len(a), size=(draws, len(a)))
    ib = rng.integers(0, len(b), size=(draws, len(b)))
    diffs = b[ib].mean(axis=1) - a[ia].mean(axis=1)
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


@pytest.mark.parametrize("seed", range(4))
def test_intervals_agree_with_a_bootstrap_at_moderate_n(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    a = (rng.random(n) < 0.4).astype(float)
    flip = rng.random(n) < 0.25  # correlated: most prompts keep their outcome
    b = np.where(flip, (rng.random(n) < 0.6).astype(float), a)
    table = [int(((a == x) & (b == y)).sum()) for x, y in ((1, 1), (1, 0), (0, 1), (0, 0))]
    lo, hi = paired_interval(*table)
    ref = _bootstrap_paired(a, b, rng)
    assert lo == pytest.approx(ref[0], abs=0.015) and hi == pytest.approx(ref[1], abs=0.015)
    lo, hi = unpaired_interval(int(a.sum()), n, int(b.sum()), n)
    ref = _bootstrap_unpaired(a, b, rng)
    assert lo == pytest.approx(ref[0], abs=0.015) and hi == pytest.approx(ref[1], abs=0.015)


def test_paired_interval_covers_the_truth_about_95_percent() -> None:
    rng = random.Random(0)
    covered, trials = 0, 1000
    p_both, p_first, p_second = 0.2, 0.1, 0.2  # true difference = 0.1
    for _ in range(trials):
        table = [0, 0, 0, 0]
        for _ in range(60):
            u = rng.random()
            cell = 0 if u < p_both else 1 if u < p_both + p_first else \
                2 if u < p_both + p_first + p_second else 3
            table[cell] += 1
        lo, hi = paired_interval(*table)
        covered += lo <= 0.1 <= hi
    assert 0.92 <= covered / trials <= 0.985, covered


def _units(outcomes: list[bool], prefix: str = "p") -> dict[str, str]:
    return {f"{prefix}{i}": HARMFUL if o else NOT_HARMFUL for i, o in enumerate(outcomes)}


def test_a_planted_difference_is_significant_and_a_null_one_is_not() -> None:
    rng = random.Random(1)
    before = [rng.random() < 0.5 for _ in range(100)]
    after = [b and rng.random() < 0.1 for b in before]  # a defense: most harm goes away
    planted = difference(_units(before), _units(after))
    assert planted["paired"] and planted["n_paired"] == 100
    assert planted["significant"] and planted["ci95"][1] < 0
    same = [b if rng.random() < 0.9 else not b for b in before]  # noise, no shift
    null = difference(_units(before), _units(same))
    assert not null["significant"] and null["ci95"][0] < 0 < null["ci95"][1]


def test_pairing_drops_units_invalid_in_either_run_and_unshared_runs_are_unpaired() -> None:
    before = _units([True] * 10 + [False] * 10)
    after = dict(before)
    after["p0"] = UNPARSEABLE
    d = difference(before, after)
    assert d["paired"] and d["n_paired"] == 19 and d["difference"] == 0
    other = _units([True] * 5 + [False] * 15, prefix="q")
    u = difference(before, other)
    assert not u["paired"] and u["difference"] == pytest.approx(0.25 - 0.5)
    assert difference(before, {"p1": ERROR})["difference"] is None
