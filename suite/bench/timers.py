"""Device-aware timers: how long one call of an op takes on its device, and nothing else.

A CPU call is over when it returns; a GPU call is over when the device has run it; a JAX call
is over when its result is ready (JAX dispatches asynchronously even on the CPU). So:

- :class:`HostTimer` -- ``perf_counter`` around the call, then ``block_until_ready`` on the result
  where it has one (JAX) and ``backend.synchronize()`` (a no-op on the CPU; the contract for any
  other device). Used for CPU backends, JAX on any device, and GPU backends of unknown frameworks.
- :class:`TorchEventTimer` / :class:`CupyEventTimer` -- CUDA events recorded around the call on
  the current stream (``torch.cuda.Event`` / ``cupy.cuda.Event``): device time without the
  host's launch latency, read after the end event has completed.

:class:`HarnessClock` is the clock handed to pytest-benchmark: it reads the device time the
timer measured, so pytest-benchmark's rounds, statistics and JSON hold exactly our samples.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_perf_counter = time.perf_counter


def block_until_ready(out) -> None:
    """Wait for an asynchronously computed result (JAX arrays, also inside tuples/lists)."""
    if hasattr(out, "block_until_ready"):
        out.block_until_ready()
    elif isinstance(out, tuple | list):
        for o in out:
            block_until_ready(o)


_ASYNC_TYPES: dict[type, bool] = {}


def _is_async(tp: type) -> bool:
    """Whether results of this type may still be computing (cached per type: the check runs inside
    the timed region, where a NumPy array's ``__array_interface__`` alone would cost a microsecond)."""
    known = _ASYNC_TYPES.get(tp)
    if known is None:
        known = _ASYNC_TYPES[tp] = hasattr(tp, "block_until_ready") or issubclass(tp, tuple | list)
    return known


class Timer:
    """Times one call: ``time(fn, args, kwargs)`` -> seconds until the device has finished it."""

    name = "timer"

    def __init__(self, backend=None):
        self.backend = backend

    def time(self, fn: Callable, args: Sequence, kwargs: dict) -> float:
        raise NotImplementedError


class HostTimer(Timer):
    """perf_counter around the call, then block on the result and synchronize the backend."""

    name = "perf_counter+synchronize"

    def __init__(self, backend=None):
        super().__init__(backend)
        # Resolved once: the timed region should hold the call and as little else as possible,
        # so the base class's no-op synchronize is not even called.
        from softmaxbench.backends.base import Backend

        sync = getattr(backend, "synchronize", None)
        own = getattr(type(backend), "synchronize", None) if backend is not None else None
        self._sync = None if sync is None or own is Backend.synchronize else sync

    def time(self, fn: Callable, args: Sequence, kwargs: dict) -> float:
        sync = self._sync
        if sync is not None:
            sync()  # earlier queued work must not be charged to this call
        t0 = _perf_counter()
        out = fn(*args, **kwargs)
        if _is_async(type(out)):
            block_until_ready(out)
        if sync is not None:
            sync()
        t1 = _perf_counter()
        del out
        return t1 - t0


class _CudaEventTimer(Timer):
    """CUDA events recorded around the call on the current stream: the device's own clock."""

    def _elapsed_ms(self) -> float:
        raise NotImplementedError

    def time(self, fn: Callable, args: Sequence, kwargs: dict) -> float:
        if self.backend is not None:
            self.backend.synchronize()
        self._start.record()
        out = fn(*args, **kwargs)
        self._end.record()
        self._end.synchronize()
        del out
        return self._elapsed_ms() / 1e3  # ms -> s


class TorchEventTimer(_CudaEventTimer):
    """CUDA events of torch recorded around the call on the current stream."""

    name = "torch.cuda.Event"

    def __init__(self, backend=None):
        super().__init__(backend)
        import torch

        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def _elapsed_ms(self) -> float:
        return self._start.elapsed_time(self._end)


class CupyEventTimer(_CudaEventTimer):
    """CUDA events of CuPy recorded around the call on the current stream."""

    name = "cupy.cuda.Event"

    def __init__(self, backend=None):
        super().__init__(backend)
        import cupy

        self._cupy = cupy
        self._start = cupy.cuda.Event()
        self._end = cupy.cuda.Event()

    def _elapsed_ms(self) -> float:
        return self._cupy.cuda.get_elapsed_time(self._start, self._end)


def timer_for(backend) -> Timer:
    """The timer that fits a backend: CUDA events for torch/CuPy on a GPU, else the host timer.

    A backend may name its timer with a ``timer`` attribute ("host", "torch-events",
    "cupy-events") when its framework attribute does not tell.
    """
    choice = getattr(backend, "timer", None)
    framework = str(getattr(backend, "framework", "") or "")
    if choice is None and getattr(backend, "device", "cpu") == "gpu":
        if framework.startswith("torch"):
            choice = "torch-events"
        elif framework.startswith("cupy"):
            choice = "cupy-events"
    if choice == "torch-events":
        return TorchEventTimer(backend)
    if choice == "cupy-events":
        return CupyEventTimer(backend)
    return HostTimer(backend)


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
