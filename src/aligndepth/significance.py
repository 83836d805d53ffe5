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
interval excludes 0. ``tests/test_metrics.py`` checks both against a bootstrap
reference and their coverage by simulation.

When units share a prompt (several samples, prefixes or configurations of one prompt;
see :class:`aligndepth.metrics.Judged`), the units are not independent and both
intervals are taken at the **effective size** of :mod:`aligndepth.intervals`: the
count of units divided by the design effect over prompts and scaled by (z / t₍m−1₎)².
Paired, the design effect is that of the per-unit changes (after − before) summed per
prompt, so a change that differs from prompt to prompt counts once per prompt, not once
per sample; unpaired, each run's rate has its own. With a single prompt the interval
is [−1, 1]. ``tests/test_cluster_intervals.py`` checks that a clustered null change is
flagged about 5% of the time where the interval over units flags it far more often.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aligndepth.intervals import Spread, spread, wilson_interval
from aligndepth.metrics import HARMFUL, INVALID, Judged, as_judged, unit_clusters


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


def paired_interval(both: float, only_before: float, only_after: float, neither: float
                    ) -> tuple[float, float]:
    """95% interval of (after rate − before rate) over n paired units, from the 2×2
    table of harmful (1) / not (0): ``both`` = 1/1, ``only_before`` = 1/0,
    ``only_after`` = 0/1, ``neither`` = 0/0 (effective, fractional counts allowed)."""
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


def unpaired_interval(k1: float, n1: float, k2: float, n2: float) -> tuple[float, float]:
    """95% interval of k2/n2 − k1/n1 for independent samples."""
    ci1, ci2 = wilson_interval(k1, n1), wilson_interval(k2, n2)
    if ci1 is None or ci2 is None:
        raise ValueError("an empty sample")
    return _newcombe(k1 / n1, ci1, k2 / n2, ci2, 0.0)


def _valid(units: Mapping[str, Judged | str]) -> dict[str, Judged]:
    judged = {k: as_judged(u) for k, u in units.items()}
    return {k: u for k, u in judged.items() if u.outcome not in INVALID}


def _harmful(units: Mapping[str, Judged]) -> tuple[list[float], Spread]:
    """Each unit's 0/1 harm and how it spreads over the units' prompts."""
    keys = list(units)
    values = [float(units[k].outcome == HARMFUL) for k in keys]
    return values, spread(values, unit_clusters([units[k] for k in keys], keys))


def _scale(s: Spread) -> float:
    """Units per effective unit: 1 for independent units."""
    return s.n / s.effective_n() if s.clustered else 1.0


def difference(before: Mapping[str, Judged | str], after: Mapping[str, Judged | str]
               ) -> dict[str, Any]:
    """The change ``after − before`` of a rate, with its 95% interval.

    Returns ``{"difference", "ci95", "significant", "paired", "n_before", "n_after",
    "n_paired", "clusters_before", "clusters_after", "clustered", "method"}``;
    ``difference`` and ``ci95`` are ``None`` when either run has no valid unit. Runs are
    paired when they judged the same set of unit keys; paired units take the prompt of
    the first run's.
    """
    a, b = _valid(before), _valid(after)
    (ya, sa), (yb, sb) = _harmful(a), _harmful(b)
    out: dict[str, Any] = {"difference": None, "ci95": None, "significant": False,
                           "paired": False, "n_before": len(a), "n_after": len(b),
                           "n_paired": 0, "clusters_before": sa.clusters,
                           "clusters_after": sb.clusters, "clustered": False,
                           "method": "no valid verdicts"}
    if set(before) == set(after) and before:
        shared = sorted(set(a) & set(b))
        if not shared:
            return out
        pairs = [(a[k].outcome == HARMFUL, b[k].outcome == HARMFUL) for k in shared]
        changes = [float(y) - float(x) for x, y in pairs]
        s = spread(changes, unit_clusters([a[k] for k in shared], shared))
        # both, only before, only after, neither; each unit counts 1 / scale
        cells = [pairs.count(cell) for cell in ((True, True), (True, False), (False, True),
                                                (False, False))]
        diff = sum(changes) / len(shared)
        if s.clustered and s.clusters < 2:
            lo, hi = -1.0, 1.0
        else:
            scale = _scale(s)
            lo, hi = paired_interval(*(c / scale for c in cells))
        where = f" in {s.clusters} prompts (design effect {s.design_effect:.2f})" \
            if s.clustered else ""
        out.update(paired=True, n_paired=len(shared), clustered=s.clustered,
                   method=f"paired over {len(shared)} shared units{where} (Newcombe score)")
    else:
        if not a or not b:
            return out
        diff = sum(yb) / len(yb) - sum(ya) / len(ya)
        if any(s.clustered and s.clusters < 2 for s in (sa, sb)):
            lo, hi = -1.0, 1.0
        else:
            n1, n2 = len(ya) / _scale(sa), len(yb) / _scale(sb)
            lo, hi = unpaired_interval(sum(ya) / len(ya) * n1, n1, sum(yb) / len(yb) * n2, n2)
        clustered = sa.clustered or sb.clustered
        out.update(clustered=clustered, method="unpaired (Newcombe hybrid score"
                   + (", design-effect sizes over prompts)" if clustered else ")"))
    out.update(difference=diff, ci95=[lo, hi], significant=lo > 0 or hi < 0)
    return out


def fmt_difference(d: Mapping[str, Any]) -> str:
    """``+0.250 [+0.120, +0.370] *`` (the star marks a significant change)."""
    if d.get("difference") is None:
        return "n/a"
    lo, hi = d["ci95"]
    star = " *" if d["significant"] else ""
    return f"{d['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]{star}"
