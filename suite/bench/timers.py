"""Timing in the worker: the backend's device-aware timer, the clock pytest-benchmark reads, and
the summary of samples.

The timers themselves are behind the ``Backend.timer()`` hook (``softmaxbench.backends.base``:
:class:`HostTimer` by default -- ``perf_counter`` around the call, ``block_until_ready`` on a
JAX-like result, ``synchronize()``; :class:`CudaEventTimer` for torch-cuda and CuPy), so no
framework code lives here. :class:`HarnessClock` is the clock handed to pytest-benchmark: it
reads the device time the timer measured, so pytest-benchmark's rounds, statistics and JSON hold
exactly our samples.

>>> import numpy as np
>>> from softmaxbench.backends import Backend
>>> class Numpy(Backend):
...     name = "np"
...     def softmax(self, x, axis=-1):
...         e = np.exp(x - x.max(axis=axis, keepdims=True))
...         return e / e.sum(axis=axis, keepdims=True)
>>> b = Numpy()
>>> timer = timer_for(b)
>>> timer.name
'perf_counter+synchronize'
>>> seconds = timer.time(b.softmax, (np.zeros((4, 8), np.float32),), {"axis": -1})
>>> 0 < seconds < 1
True
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from softmaxbench.backends.base import (  # noqa: F401 - the timers, re-exported
    CudaEventTimer,
    HostTimer,
    Timer,
    block_until_ready,
)


def timer_for(backend) -> Timer:
    """The backend's timer (its ``timer()`` hook); a hook that gives no Timer gets the host timer."""
    make = getattr(backend, "timer", None)
    timer = make() if callable(make) else None
    return timer if isinstance(timer, Timer) else HostTimer(backend)


class HarnessClock:
    """The timer given to pytest-benchmark: it reads the time our device timer measured.

    pytest-benchmark reads its timer just before and just after the target; our target times
    the call with the device's own timer and advances this clock by that much. ``reset()`` at
    the start of each round makes the reading exact (0 + dt), so pytest-benchmark's samples are
    bit-identical to ours.

    >>> clock = HarnessClock()
    >>> clock.reset(); start = clock(); clock.advance(0.25); clock() - start
    0.25
    """

    __name__ = "HarnessClock"  # pytest-benchmark names its timer by __module__ + __name__

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def reset(self) -> None:
        self.now = 0.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Summary:
    """Robust figures of a list of samples (seconds)."""

    median: float
    iqr: float
    mean: float
    cv: float          # coefficient of variation: stdev / mean
    n: int


def summarize(samples: Sequence[float]) -> Summary:
    """Median, inter-quartile range, mean and coefficient of variation of ``samples``.

    >>> s = summarize([1.0, 2.0, 3.0, 4.0])
    >>> (s.median, s.iqr, round(s.cv, 3))
    (2.5, 1.5, 0.516)
    """
    if not samples:
        raise ValueError("no samples")
    xs = sorted(samples)
    n = len(xs)
    median = statistics.median(xs)
    if n >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
        stdev = statistics.stdev(xs)
    else:
        q1 = q3 = xs[0]
        stdev = 0.0
    mean = statistics.fmean(xs)
    return Summary(median=median, iqr=q3 - q1, mean=mean, cv=stdev / mean if mean > 0 else 0.0, n=n)
