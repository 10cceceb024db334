"""The trusted side's checks on what a bench worker reports: nothing it says is believed unchecked.

A worker times its own calls (it must: the device is there), so the trusted process checks:

1. **The clock.** The samples of a ``time`` request cannot add up to more than the parent's own
   wall clock around that request, and must be a plausible share of it: at least
   :data:`PLAUSIBLE_SHARE` of what the request took beyond a generous harness allowance
   (:func:`harness_allowance`). A timer patched to report a tenth fails this wherever a call
   takes longer than the harness's per-round cost.
2. **The work.** Outputs of sampled timed calls come back (the rounds are picked by the parent,
   their input sets are fresh ones; the rows are picked after the timing) and are judged here
   against results the parent computes itself from the seeded inputs it rebuilds
   (:func:`output_problem`): a cached replay or skipped work fails. A result whose conversion to
   NumPy took the op's time, when a ready array of the same size converts at once, was still
   being computed when the timer stopped (:func:`lazy_problem`): a lazy op fails. The judged
   rounds are the only ones on inputs the backend has never seen: when every one of them takes
   several times the others' median, the others replayed cached results (:func:`replay_problem`).
   Both are decided over every pass of a workload (one slow round is no evidence).
   The kernel's own accounting is a second witness: no thread of the worker can have run longer
   than the timed calls took, so the busiest thread's CPU seconds during the request (read by
   the parent from ``/proc/<pid>/task``, nothing the worker wrote) bound the samples from below
   (:func:`cpu_problem`). It holds on a busy machine, where wall time inflates and CPU time does
   not, so its bar (:data:`CPU_SHARE`) is tight: a clock slowed to 0.4 fails it.
3. **The figure.** GB/s above :data:`IMPLAUSIBLE_FACTOR` times the device's copy bandwidth,
   measured the same way in the same worker, is marked ``implausible`` and kept out of tables and
   gates (:func:`implausible`).

>>> timing_problem([0.01] * 10, wall_s=1.0, rounds=10)[:40]
'reported timings are not plausible: the '
>>> timing_problem([0.09] * 10, wall_s=1.0, rounds=10) is None
True
"""

from __future__ import annotations

import math
import os

import numpy as np

from softmaxbench.reference.dtypes import np_dtype
from softmaxbench.suite.bench.workloads import COPY_OP, Workload

#: The reported time must be at least this share of the request's wall time beyond the allowance.
PLAUSIBLE_SHARE = 0.3
#: The reported time must be at least this share of the busiest worker thread's CPU seconds
#: during the request, beyond the allowance (a thread cannot run longer than the wall clock).
CPU_SHARE = 0.7
#: Harness cost allowed per round (setup, pytest-benchmark's bookkeeping) and per request.
ROUND_ALLOWANCE_S = 100e-6
REQUEST_ALLOWANCE_S = 0.1
#: A figure above this many times the measured copy bandwidth is implausible. Copies read and
#: write; a read-mostly op (cross-entropy reads the logits once) can beat them by up to ~1.5x
#: where writes cost a read for ownership, so the bar is 2x.
IMPLAUSIBLE_FACTOR = 2.0
#: Largest tolerance of the output check (relative to the row's scale): it tells results apart
#: from other inputs' results and from no result, it is not the conformance check.
MAX_TOLERANCE = 0.05
#: Rows of a sampled output judged (the parent picks them after the timing).
JUDGED_ROWS = 16
#: The judged rounds (fresh inputs) may take at most this many times their pass's median, and
#: :data:`REPLAY_MARGIN_S` more, before the other rounds are taken for replays of earlier results.
#: Honest backends' judged rounds took 0.3-1.0x their pass's median (numpy, torch-cpu, 1 and 16
#: MiB, load 2-6: `judged_ratio` in the records).
REPLAY_FACTOR = 2.0
REPLAY_MARGIN_S = 200e-6
#: ...and more than a pass over the workload's bytes at this rate: a fresh input set comes from
#: memory while a rotating pool that fits a cache does not (an honest 1 MiB copy's judged rounds
#: took 7-10x its median, all of it the cold read).
COLD_RATE = 2e9


#: Bytes per second the judged rounds' untimed work is allowed at, at the slowest: making an input
#: set from the seeded base (rolling it, on the host) and moving bytes (an input set to the device,
#: an output and a ready array of its size back).
BUILD_RATE, MOVE_RATE = 0.2e9, 1e9
#: Judged input sets up to this many bytes in all are built by the worker in ``prepare`` (staged),
#: so the timed request only moves them (``workloads.InputPool.stage``).
STAGE_LIMIT = 2**30


def staged(refresh_bytes: int) -> bool:
    """Whether the judged rounds' input sets are built in ``prepare`` (the rule both sides follow)."""
    return refresh_bytes <= STAGE_LIMIT


def harness_allowance(rounds: int, kept_bytes: int = 0, refresh_bytes: int = 0, gpu: bool = False) -> float:
    """Seconds of a ``time`` request that are not timed calls, at most (a generous bound).

    >>> round(harness_allowance(17, 2 * 2**25, 2 * 2**24), 3)  # two judged rounds at 16 MiB float32
    0.202
    """
    # Judged rounds put a fresh input set in place (built beforehand when staged), poison free
    # device memory and convert their outputs.
    build = 0.0 if staged(refresh_bytes) else refresh_bytes / BUILD_RATE
    judged = (kept_bytes + refresh_bytes) / MOVE_RATE + build + (0.05 if gpu else 0.0)
    return REQUEST_ALLOWANCE_S + rounds * ROUND_ALLOWANCE_S + judged


def timing_problem(samples, wall_s: float, rounds: int, allowance_s: float | None = None) -> str | None:
    """Why the reported samples cannot be believed against the parent's clock (None: they can)."""
    if len(samples) != rounds:
        return f"the worker reported {len(samples)} samples for {rounds} timed rounds"
    bad = [s for s in samples if not (isinstance(s, int | float) and math.isfinite(s) and s >= 0)]
    if bad:
        return f"the worker reported a sample that is not a duration ({bad[0]!r})"
    total = float(sum(samples))
    if total > wall_s * 1.001 + 1e-3:
        return (f"reported timings are impossible: the timed calls add up to {total:.4g} s in a request "
                f"that took {wall_s:.4g} s by the trusted clock")
    allowance = harness_allowance(rounds) if allowance_s is None else allowance_s
    unexplained = wall_s - allowance
    if unexplained > 0 and total < PLAUSIBLE_SHARE * unexplained:
        return (f"reported timings are not plausible: the timed calls add up to {total:.4g} s, but the "
                f"request took {wall_s:.4g} s by the trusted clock ({allowance:.3g} s of it allowed for "
                f"the harness); was the clock patched?")
    return None


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of process ``pid`` so far, by thread id, from
    the kernel's accounting (``/proc/<pid>/task/<tid>/stat``; {} where it cannot be read)."""
    from softmaxbench.suite.isolation.channel import stat_cpu_s

    try:
        tids = os.listdir(f"/proc/{int(pid)}/task")
    except OSError:
        return {}
    seconds = {int(tid): stat_cpu_s(f"/proc/{int(pid)}/task/{tid}/stat") for tid in tids}
    return {tid: s for tid, s in seconds.items() if s is not None}


def busiest_thread_s(before: dict[int, float], after: dict[int, float]) -> float:
    """The most CPU seconds one thread spent between two :func:`thread_cpu_s` readings."""
    return max((t - before.get(tid, 0.0) for tid, t in after.items()), default=0.0)


def cpu_problem(samples, busiest_s: float, allowance_s: float) -> str | None:
    """Why the samples cannot be believed against the kernel's accounting of the worker's
    threads (None: they can). No thread runs longer than the wall clock, so the timed calls took
    at least the busiest thread's CPU time beyond the harness's allowance.

    >>> cpu_problem([0.04] * 10, busiest_s=1.0, allowance_s=0.1)[:34]
    'reported timings are not plausible'
    >>> cpu_problem([0.09] * 10, busiest_s=1.0, allowance_s=0.1) is None
    True
    """
    total = float(sum(s for s in samples if isinstance(s, int | float) and math.isfinite(s)))
    unexplained = busiest_s - allowance_s
    if unexplained > 0 and total < CPU_SHARE * unexplained:
        return (f"reported timings are not plausible: the timed calls add up to {total:.4g} s, but one "
                f"thread of the worker ran {busiest_s:.4g} s of CPU in that request by the kernel's "
                f"accounting ({allowance_s:.3g} s of it allowed for the harness); was the clock patched?")
    return None


def implausible(gbps: float | None, copy_gbps: float | None) -> str | None:
    """Why a figure cannot be believed against the device's copy bandwidth (None: it can)."""
    if gbps is None:
        return None
    if not copy_gbps:
        return (f"{gbps:.4g} GB/s cannot be checked: the device's copy bandwidth was not measured in "
                "this worker")
    if gbps > IMPLAUSIBLE_FACTOR * copy_gbps:
        return (f"{gbps:.4g} GB/s is {gbps / copy_gbps:.3g}x the device's copy bandwidth ({copy_gbps:.4g} "
                f"GB/s, measured the same way in the same worker): above {IMPLAUSIBLE_FACTOR:g}x, no op "
                "that moves these bytes can be this fast")
    return None


def lazy_problem(sampled: list[dict], median_s: float) -> str | None:
    """Why the timed calls returned before their results existed (None: they did not).

    Every sampled output must convert in about the time a ready array of its size does; a
    conversion that took longer than half a call and 200 us more than the ready one, for every
    sample of every pass, means the work happened in ``to_numpy``, after the timer stopped. (One
    sample is no evidence: a worker preempted during a conversion looks the same.)

    >>> ready = {"materialize_s": 1e-5, "ready_s": 1e-5}
    >>> lazy = {"materialize_s": 0.01, "ready_s": 1e-5}
    >>> lazy_problem([lazy, lazy], median_s=0.01)[:40]
    'the timed calls returned before their re'
    >>> lazy_problem([lazy, ready], median_s=0.01) is None
    True
    """
    extras = []
    for s in sampled:
        m, r = s.get("materialize_s"), s.get("ready_s") or 0.0
        if not isinstance(m, int | float) or not isinstance(r, int | float):
            return "the worker did not report how long its outputs took to convert"
        extras.append((m - 3 * r, m, r))
    if not extras:
        return None
    least = min(extras)
    if least[0] > max(200e-6, 0.5 * median_s):
        return (f"the timed calls returned before their results were computed: converting a result took "
                f"{least[1] * 1e3:.3g} ms ({least[2] * 1e3:.3g} ms for a ready array of its size) after "
                f"calls timed at {median_s * 1e3:.3g} ms (a lazy result; synchronize() and ready "
                "arrays are the contract)")
    return None


def replay_margin(bytes_moved: int) -> float:
    """Seconds a judged round may take beyond its pass's median before it counts as evidence of a
    replay: :data:`REPLAY_MARGIN_S`, or a cold pass over the workload's bytes, whichever is more."""
    return max(REPLAY_MARGIN_S, bytes_moved / COLD_RATE)


def replay_problem(judged: list[tuple[float, float, float]], margin_s: float = REPLAY_MARGIN_S) -> str | None:
    """Why the unjudged timed calls look like replays of earlier results (None: they do not).

    ``judged`` holds, per judged round, its sample, the median of its pass and the 90th
    percentile of its pass's other rounds. A judged round's input set is one the backend has never
    seen (the others rotate through a pool it has), so an op that caches results by input
    (identity, address or content) does the work only there. When every judged round took more
    than :data:`REPLAY_FACTOR` times its pass's median (and ``margin_s`` more) and more
    than nine in ten of the other rounds, the median measured the cache, not the op. An honest
    op's judged rounds are like any others: on a busy machine some rounds are slow, but every
    judged one (four or more) among the slowest tenth happens about once in 10^4 workloads. A
    replay slowed to just under the bar is still bounded: its figure is at most
    :data:`REPLAY_FACTOR` times the truth.

    >>> replay_problem([(0.060, 0.008, 0.009), (0.058, 0.008, 0.010)])[:44]
    'the calls on inputs the backend had not seen'
    >>> replay_problem([(0.060, 0.008, 0.009), (0.009, 0.008, 0.010)]) is None
    True
    >>> replay_problem([(0.060, 0.008, 0.070), (0.058, 0.008, 0.070)]) is None  # busy: slow rounds
    True
    """
    pairs = [(s, m, q) for s, m, q in judged
             if all(isinstance(v, int | float) for v in (s, m, q)) and m > 0]
    if not pairs or len(pairs) != len(judged):
        return None
    if all(s > REPLAY_FACTOR * m and s - m > margin_s and s > q for s, m, q in pairs):
        ratio = min(s / m for s, m, _ in pairs)
        times = ", ".join(f"{s * 1e3:.3g}" for s, _, _ in pairs)
        medians = ", ".join(sorted({f"{m * 1e3:.3g}" for _, m, _ in pairs}))
        return (f"the calls on inputs the backend had not seen took {ratio:.3g}x or more the median of "
                f"the others ({times} ms; pass medians {medians} ms): the other calls replayed results "
                "cached from earlier calls on the same inputs")
    return None


# -- the output check -----------------------------------------------------------------------------

class InputCache:
    """The seeded inputs of the workload being judged (one workload's base at a time)."""

    def __init__(self) -> None:
        self._key = None
        self._base = None

    def set(self, w: Workload, i: int) -> tuple[np.ndarray, ...]:
        self.set_base(w)
        return w.input_set(i, self._base)

    def rows(self, w: Workload, i: int, rows: list[int]) -> tuple[np.ndarray, ...]:
        """Rows ``rows`` of input set ``i`` (each array: len(rows) x row length), built from the
        base without rolling it whole (what :meth:`Workload.input_set` gives, at those rows)."""
        self.set_base(w)
        n, cols = max(math.prod(w.shape), 1), w.row_length
        shift = 0 if i == 0 else (i * (cols + 1)) % n
        idx = (np.asarray(rows, np.int64)[:, None] * cols + np.arange(cols, dtype=np.int64) - shift) % n
        out = []
        for k, a in enumerate(self._base):
            if k == 1 and w.op in ("cross_entropy", "cross_entropy_grad"):
                out.append(a.reshape(-1)[np.asarray(rows, np.int64) % max(a.size, 1)])
            elif k == 1 and w.op == COPY_OP:
                continue  # the destination's values are not judged
            else:
                out.append(a.reshape(-1)[idx])
        return tuple(out)

    def set_base(self, w: Workload) -> None:
        key = (w.op if w.op == COPY_OP else _kind(w.op), w.dtype, w.shape, w.seed)
        if key != self._key:
            self._key, self._base = key, w.host_inputs()


def _kind(op: str) -> str:
    if op in ("softmax_vjp", "log_softmax_vjp"):
        return "x,dy"
    return "logits,target" if op in ("cross_entropy", "cross_entropy_grad") else "x"


def pick_rows(n_rows: int, rng: np.random.Generator, k: int = JUDGED_ROWS) -> list[int]:
    """Rows to judge: the first, the last and random ones in between."""
    if n_rows <= k:
        return list(range(n_rows))
    middle = rng.choice(np.arange(1, n_rows - 1), size=k - 2, replace=False)
    return sorted({0, n_rows - 1, *(int(i) for i in middle)})


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x):
    s = x - x.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def expected(w: Workload, inputs: tuple[np.ndarray, ...], rows: list[int] | None) -> np.ndarray:
    """The op's result on ``inputs`` (float64), for ``rows`` of it (None: all; scalars whole)."""
    x = np.asarray(inputs[0], np.float64).reshape(-1, w.row_length)
    if w.op == "cross_entropy":  # mean over every row: the whole input
        t = inputs[1].reshape(-1)
        return np.asarray(-_log_softmax(x)[np.arange(x.shape[0]), t].mean())
    sel = slice(None) if rows is None else np.asarray(rows, np.int64)
    xs = x[sel]
    if w.op == COPY_OP:
        return xs
    if w.op == "softmax":
        return _softmax(xs)
    if w.op == "log_softmax":
        return _log_softmax(xs)
    if w.op == "logsumexp":
        m = xs.max(axis=-1, keepdims=True)
        return (m + np.log(np.exp(xs - m).sum(axis=-1, keepdims=True)))
    if w.op in ("softmax_vjp", "log_softmax_vjp"):
        v = np.asarray(inputs[1], np.float64).reshape(-1, w.row_length)[sel]
        y = _softmax(xs)
        if w.op == "softmax_vjp":
            return y * (v - (v * y).sum(axis=-1, keepdims=True))
        return v - y * v.sum(axis=-1, keepdims=True)
    if w.op == "cross_entropy_grad":
        t = inputs[1].reshape(-1)[sel]
        g = _softmax(xs)
        g[np.arange(g.shape[0]), t] -= 1.0
        return g / w.rows  # the mean's divisor: every row of the workload, judged or not
    raise ValueError(f"no expected result for op {w.op!r}")


def tolerance(dtype: str) -> float:
    if dtype == "bfloat16":
        return MAX_TOLERANCE
    return min(MAX_TOLERANCE, 64 * float(np.finfo(np_dtype(dtype)).eps))


def output_problem(w: Workload, inputs: tuple[np.ndarray, ...], actual: np.ndarray, rows: list[int] | None,
                   where: str) -> str | None:
    """Why ``actual`` (the worker's rows of one sampled output) is not the op's result on ``inputs``."""
    exp = expected(w, inputs, rows)
    act = np.asarray(actual)
    if act.size != exp.size:
        return f"{where}: the output has {act.size} values where {exp.size} were expected"
    a = act.astype(np.float64).reshape(exp.shape)
    if w.op == COPY_OP:
        if np.array_equal(a, exp):
            return None
        bad = int(np.argmax((a != exp).reshape(-1)))
        return f"{where}: the copy's destination does not hold the source (first difference at element {bad})"
    tol = tolerance(w.dtype)
    e2 = exp.reshape(exp.shape[0], -1) if exp.ndim > 1 else exp.reshape(1, -1)
    a2 = a.reshape(e2.shape)
    scale = np.abs(e2).max(axis=-1, keepdims=True)
    bound = tol * (np.abs(e2) + scale) + 1e-300
    with np.errstate(invalid="ignore"):
        err = np.abs(a2 - e2)
        bad = ~(err <= bound)  # NaN counts as bad
    if not bad.any():
        return None
    i = np.unravel_index(int(np.argmax(np.where(bad, err / bound, -1.0))), e2.shape)
    return (f"{where}: the output is not the op's result on that input ({int(bad.sum())} of {bad.size} "
            f"judged values off; e.g. {a2[i]:.6g} where {e2[i]:.6g} is expected): skipped, cached or "
            "wrong work")
