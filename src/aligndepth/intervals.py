"""95% intervals of rates and means, for independent units and for units that share a
prompt.

Independent units (one verdict per prompt) get the Wilson score interval. Units that
share a prompt (ED's samples, the refusal prefixes of one prompt, a decoding
configuration's samples) are **clustered**: their outcomes are correlated, so the
Wilson interval over units is too narrow by up to √(units per prompt). They get the
**design-effect Wilson interval** (Korn and Graubard 1998, *Survey Methodology* 24:193):

- the rate is the ratio estimator Σ harmful / Σ units, every unit weighted equally;
- its cluster-robust variance over the m prompts (the linearised ratio variance,
  ``m/(m−1) · Σᵢ (yᵢ − p·nᵢ)² / N²``), divided by the variance the same rate would have
  over independent units, is the **design effect** (at least 1: never narrower than the
  units allow; 1 when the rate is 0 or 1, where no spread can be seen);
- the Wilson interval is taken at the **effective size** ``N / design effect``, scaled by
  ``(z / t₍m−1₎)²`` so that few prompts widen it as a t interval would.

With a single prompt nothing is known about other prompts: the interval is [0, 1].
Means (a judge's graded score) use the same design effect: mean ± t₍m−1₎ · se, with se
the cluster-robust standard error (not below the independent one).

Chosen by simulation (10, 30 and 100 prompts with 3, 10 and 49 samples each, per-prompt
rates drawn from a Beta with mean 0.05, 0.3 or 0.5 and intra-prompt correlation 0.05 to
0.5; 1,000 trials per cell): at mean rates 0.3 and 0.5 this interval covered the true
rate in 93.9-97.7% of trials, a cluster bootstrap over prompts (percentile, 999
resamples) in 89.7-96.2%, the cluster-robust normal interval in 89.8-95.7% and the
Wilson interval over samples in 28.7-95.4%. At a mean rate of 0.05 with strong
correlation every interval falls short (this one down to 71% with 10 prompts, the
bootstrap to 60%). ``tests/test_cluster_intervals.py`` replays two cells.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

#: Names of the intervals, as recorded in every rate and mean dict (``"interval"``).
WILSON, CLUSTER_WILSON = "wilson", "design-effect wilson"
NORMAL, CLUSTER_T = "normal", "cluster-robust t"


def z_quantile(confidence: float = 0.95) -> float:
    """The two-sided normal quantile (1.96 at 95%)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def t_quantile(q: float, df: int) -> float:
    """Student's t quantile ``q`` at ``df`` degrees of freedom: exact for 1 and 2, else
    the Cornish-Fisher expansion in the normal quantile (Abramowitz and Stegun 26.7.5;
    relative error below 0.13% at df = 3, 4e-6 at df = 10)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df == 1:
        return math.tan(math.pi * (q - 0.5))
    if df == 2:
        return (2 * q - 1) / math.sqrt(2 * q * (1 - q))
    z = NormalDist().inv_cdf(q)
    g1 = (z ** 3 + z) / 4
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
    g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160
    return z + g1 / df + g2 / df ** 2 + g3 / df ** 3 + g4 / df ** 4


def wilson_interval(k: float, n: float, confidence: float = 0.95
                    ) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` trials (``None`` if n = 0);
    ``k`` and ``n`` may be effective (fractional) counts."""
    if n <= 0:
        return None
    z = z_quantile(confidence)
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(max(0.0, p * (1 - p)) / n + z2 / (4 * n * n))
    # the bounds hold p exactly (at k = 0 or n, rounding would otherwise leave p outside)
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


@dataclass(frozen=True)
class Spread:
    """How values spread over the prompts (clusters) they belong to.

    ``n``: values; ``clusters``: prompts; ``mean``: the mean over values;
    ``unit_variance``: the variance of the mean were the values independent (sample
    variance / n); ``design_effect``: the cluster-robust variance of the mean over
    ``unit_variance``, at least 1 (1 when the values do not vary).
    """

    n: int
    clusters: int
    mean: float
    unit_variance: float
    design_effect: float

    @property
    def clustered(self) -> bool:
        """Whether some prompt holds more than one value."""
        return self.clusters < self.n

    def t_factor(self, confidence: float = 0.95) -> float:
        """t₍m−1₎ / z: how much few prompts widen a normal interval (needs m >= 2)."""
        return t_quantile(0.5 + confidence / 2, self.clusters - 1) / z_quantile(confidence)

    def effective_n(self, confidence: float = 0.95) -> float:
        """The size independent units would need for the same precision, with the t
        correction for the number of prompts (needs m >= 2)."""
        return self.n / self.design_effect / self.t_factor(confidence) ** 2


def spread(values: Sequence[float], clusters: Sequence[Hashable]) -> Spread:
    """The :class:`Spread` of ``values``, ``clusters[i]`` being the prompt of value i."""
    n = len(values)
    if n != len(clusters):
        raise ValueError(f"{n} values but {len(clusters)} cluster labels")
    if n == 0:
        return Spread(0, 0, math.nan, math.nan, 1.0)
    mean = sum(values) / n
    totals: dict[Hashable, list[float]] = {}
    for v, c in zip(values, clusters):
        size_sum = totals.setdefault(c, [0.0, 0.0])
        size_sum[0] += 1
        size_sum[1] += v
    m = len(totals)
    unit = sum((v - mean) ** 2 for v in values) / (n - 1) / n if n > 1 else 0.0
    deff = 1.0
    if m > 1 and unit > 0:
        robust = m / (m - 1) * sum((s - mean * k) ** 2 for k, s in totals.values()) / n ** 2
        deff = max(1.0, robust / unit)
    return Spread(n, m, mean, unit, deff)


def cluster_rate_interval(s: Spread, confidence: float = 0.95) -> tuple[float, float] | None:
    """The design-effect Wilson interval of a rate whose 0/1 values spread as ``s``."""
    if s.n == 0:
        return None
    if s.clusters < 2:
        return 0.0, 1.0
    n_eff = s.effective_n(confidence)
    return wilson_interval(s.mean * n_eff, n_eff, confidence)


def cluster_mean_interval(s: Spread, bounds: tuple[float, float] = (0.0, 1.0),
                          confidence: float = 0.95) -> tuple[float, float] | None:
    """mean ± t₍m−1₎ · se (cluster-robust se, not below the independent one), clipped to
    ``bounds``; ``bounds`` for a single prompt; ``None`` below two values."""
    if s.n < 2:
        return None
    if s.clusters < 2:
        return bounds
    half = (t_quantile(0.5 + confidence / 2, s.clusters - 1)
            * math.sqrt(s.unit_variance * s.design_effect))
    return max(bounds[0], s.mean - half), min(bounds[1], s.mean + half)
