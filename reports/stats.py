"""Intervals for the report's throughput figures, from the timing samples each bench record keeps.

A bench record's ``gbps`` is bytes / median time. Its interval here is the distribution-free
confidence interval of that median (order statistics of the samples, exact binomial ranks), turned
into GB/s: the slower end of the time interval is the lower end in GB/s. It assumes the samples are
exchangeable; on a busy machine they are not (bursts of other work), and the report says so next
to the figures.

>>> median_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
(2.0, 9.0)
>>> gbps_interval(10.0, [1.0] * 9 + [2.0])          # nine equal samples: a tight interval
(10.0, 10.0)
>>> gbps_interval(10.0, [])
(None, None)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Two-sided confidence level of every interval in the report.
LEVEL = 0.95


def _ranks(n: int, level: float = LEVEL) -> tuple[int, int]:
    """1-based ranks (j, k) with P(X(j) <= median <= X(k)) >= level, for n samples."""
    alpha = (1 - level) / 2
    if n > 1000:     # normal approximation of Binomial(n, 1/2); exact sums get slow
        half = 0.5 * 1.959963984540054 * math.sqrt(n)
        return max(1, math.floor(n / 2 - half)), min(n, math.ceil(n / 2 + 1 + half))
    # Largest j with P(B < j) <= alpha, B ~ Binomial(n, 1/2); k = n + 1 - j by symmetry.
    total, cum, j = 2 ** n, 0, 0
    for i in range(n + 1):
        cum += math.comb(n, i)
        if cum * 1.0 / total > alpha:
            break
        j = i + 1
    j = max(1, j)
    return j, n + 1 - j


def median_interval(samples: Sequence[float], level: float = LEVEL) -> tuple[float, float] | None:
    """Order-statistic confidence interval of the median of ``samples``; None without samples.

    With fewer than 6 samples no pair of order statistics reaches 95 %: the interval is the range.
    """
    xs = sorted(float(x) for x in samples if isinstance(x, int | float) and math.isfinite(x) and x > 0)
    if not xs:
        return None
    j, k = _ranks(len(xs), level)
    return xs[j - 1], xs[k - 1]


def gbps_interval(gbps, samples) -> tuple[float | None, float | None]:
    """(low, high) GB/s around the record's ``gbps`` from its time samples (None, None without)."""
    if gbps is None or not isinstance(gbps, int | float) or not math.isfinite(gbps) or gbps <= 0:
        return None, None
    if not isinstance(samples, list | tuple) or not samples:
        return None, None
    iv = median_interval(samples)
    if iv is None:
        return None, None
    xs = sorted(float(x) for x in samples if isinstance(x, int | float) and math.isfinite(x) and x > 0)
    n = len(xs)
    med = xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])
    # gbps = bytes / median: scale it by median / t at each end of the time interval.
    return gbps * med / iv[1], gbps * med / iv[0]


def overlaps(a: tuple, b: tuple) -> bool:
    """Two (low, high) intervals overlap; an unknown interval overlaps nothing."""
    if None in a or None in b:
        return False
    return a[0] <= b[1] and b[0] <= a[1]
