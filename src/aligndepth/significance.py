"""Is a change in a rate between two runs real? Differences with 95% intervals.

``difference(before, after)`` takes two runs' units for the same rate (``{unit key:
outcome}``, see :mod:`aligndepth.metrics`) and returns the change ``after − before`` with
a 95% interval:

- **paired** when the runs judged the same units (the same prompts, as in an audit of
  a model before and after a defense): only units valid in both runs count, and the
  interval is Newcombe's score interval for a difference of paired proportions
  (Newcombe 1998, *Statistics in Medicine* 17:2635, method 10), which uses the
  correlation between the runs, so a consistent change on the same prompts is
  detected with fewer prompts than two independent samples would need;
- **unpaired** otherwise: Newcombe's hybrid score interval for independent proportions
  (ibid. 17:873, method 10).

Both are built from Wilson intervals and behave well at small n and at rates near 0 or
1, where the normal approximation fails. A difference is **significant** when its
interval excludes 0. ``tests/test_significance.py`` checks both against a bootstrap
reference and their coverage by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aligndepth.metrics import HARMFUL, INVALID, wilson_interval


def _newcombe(p1: float, ci1: tuple[float, float], p2: float, ci2: tuple[float, float],
              phi: float) -> tuple[float, float]:
    """Interval of p2 − p1 from the two Wilson intervals and their correlation ``phi``."""
    l1, u1 = ci1
    l2, u2 = ci2
    below = math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1)
                          + (u1 - p1) ** 2))
    above = math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1)
                          + (p1 - l1) ** 2))
    d = p2 - p1
    return max(-1.0, d - below), min(1.0, d + above)


def paired_interval(both: int, only_before: int, only_after: int, neither: int
                    ) -> tuple[float, float]:
    """95% interval of (after rate − before rate) over n paired units, from the 2×2
    table of harmful (1) / not (0): ``both`` = 1/1, ``only_before`` = 1/0,
    ``only_after`` = 0/1, ``neither`` = 0/0."""
    n = both + only_before + only_after + neither
    if n == 0:
        raise ValueError("no paired units")
    p1, p2 = (both + only_before) / n, (both + only_after) / n
    ci1, ci2 = wilson_interval(both + only_before, n), wilson_interval(both + only_after, n)
    assert ci1 is not None and ci2 is not None
    denominator = ((both + only_before) * (only_after + neither) * (both + only_after)
                   * (only_before + neither))
    phi = 0.0
    if denominator > 0:
        phi = (both * neither - only_before * only_after) / math.sqrt(denominator)
    return _newcombe(p1, ci1, p2, ci2, phi)


def unpaired_interval(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """95% interval of k2/n2 − k1/n1 for independent samples."""
    ci1, ci2 = wilson_interval(k1, n1), wilson_interval(k2, n2)
    if ci1 is None or ci2 is None:
        raise ValueError("an empty sample")
    return _newcombe(k1 / n1, ci1, k2 / n2, ci2, 0.0)


def _valid(units: Mapping[str, str]) -> dict[str, bool]:
    return {k: o == HARMFUL for k, o in units.items() if o not in INVALID}


def difference(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, Any]:
    """The change ``after − before`` of a rate, with its 95% interval.

    Returns ``{"difference", "ci95", "significant", "paired", "n_before", "n_after",
    "n_paired", "method"}``; ``difference`` and ``ci95`` are ``None`` when either run has
    no valid unit. Runs are paired when they judged the same set of unit keys.
    """
    a, b = _valid(before), _valid(after)
    out: dict[str, Any] = {"difference": None, "ci95": None, "significant": False,
                           "paired": False, "n_before": len(a), "n_after": len(b),
                           "n_paired": 0, "method": "no valid verdicts"}
    if set(before) == set(after) and before:
        shared = sorted(set(a) & set(b))
        if not shared:
            return out
        table = {(x, y): 0 for x in (True, False) for y in (True, False)}
        for key in shared:
            table[(a[key], b[key])] += 1
        lo, hi = paired_interval(table[(True, True)], table[(True, False)],
                                 table[(False, True)], table[(False, False)])
        diff = (table[(False, True)] - table[(True, False)]) / len(shared)
        out.update(paired=True, n_paired=len(shared),
                   method=f"paired over {len(shared)} shared units (Newcombe score)")
    else:
        if not a or not b:
            return out
        k1, k2 = sum(a.values()), sum(b.values())
        lo, hi = unpaired_interval(k1, len(a), k2, len(b))
        diff = k2 / len(b) - k1 / len(a)
        out["method"] = "unpaired (Newcombe hybrid score)"
    out.update(difference=diff, ci95=[lo, hi], significant=lo > 0 or hi < 0)
    return out


def fmt_difference(d: Mapping[str, Any]) -> str:
    """``+0.250 [+0.120, +0.370] *`` (the star marks a significant change)."""
    if d.get("difference") is None:
        return "n/a"
    lo, hi = d["ci95"]
    star = " *" if d["significant"] else ""
    return f"{d['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]{star}"
