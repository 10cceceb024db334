"""The worker's side of ``softmaxbench bench``: time one backend on one workload, on pytest-benchmark.

This module runs in the backend's worker process (``suite.isolation.worker`` resolves the
request kind ``"bench"`` to :func:`handle_bench`); nothing here runs in the trusted process. The
parent sends one workload at a time, in phases, and times each request with its own clock:

``prepare``  build the rotating input pool (:class:`~softmaxbench.suite.bench.workloads.InputPool`:
             distinct memory and values per set), poison free device memory, time the first call
             apart (compile time, when the backend's ``compile_times`` hook has it), then warm-up
             calls until ``warmup_time``; reply: first-call and compile seconds, the warm-up
             median (which sizes the rounds), pool size, timer name, threads.
``time``     ``rounds`` timed calls through pytest-benchmark (``benchmark.pedantic`` with our
             device timer as its clock: :class:`~softmaxbench.suite.bench.timers.HarnessClock`),
             one input set each. The rounds the parent names in ``sample_rounds`` get a fresh
             input set (``variants``: set numbers the pool has not held) and their outputs are
             kept: converted with ``to_numpy`` after the timer stopped, the conversion timed
             beside that of a ready array of the same size (a lazy result takes the op's time to
             convert). Reply: the samples, and per kept output its round, input set, type and
             conversion times.
``rows``     the rows of the kept outputs the parent asks for now (it picks them after the
             timing, so no call knows which rows are judged), as arrays.
``release``  drop the pool and the kept outputs (between workloads, so an idle worker holds no
             memory the timing one could use).

pytest-benchmark runs in one pytest session per worker, in a thread of its own, started by the
first ``time`` request: each ``time`` request runs the shipped module's one test
(``bench_suite.py::test_throughput``) once more through that session, so pytest's start-up
(a quarter of a second) is paid once, outside every timed request.

Everything this module reports is checked by the parent (``suite.bench.judge``): the samples
against its clock, the kept outputs against the reference, the figures against the device's
copy bandwidth measured the same way in this worker.
"""

from __future__ import annotations

import gc
import math
import os
import queue
import resource
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from softmaxbench.backends.base import Backend
from softmaxbench.suite.bench.judge import staged
from softmaxbench.suite.bench.timers import HarnessClock, timer_for
from softmaxbench.suite.bench.workloads import COPY_OP, InputPool, Workload, cache_bytes, pool_size

#: The clock pytest-benchmark reads (bench_suite's marker names it): advanced by our timers.
CLOCK = HarnessClock()
#: Minor page faults a warm-up call may take and count as steady (its memory reused).
STEADY_FAULTS = 64
#: Seconds of warm-up calls spent at most looking for that steady state (or 4x warmup_time).
STEADY_CAP_S = 0.5
#: Heap touched before the first call of a CPU workload: this many input sets' bytes (at most
#: PREFAULT_MAX), room for the op's temporaries and output.
PREFAULT_SETS, PREFAULT_MAX = 10, 256 * 2**20
#: A released worker holding more resident memory than this gives its free heap back.
TRIM_ABOVE = 2**30
_PREFAULTED = [0]  # heap bytes pre-faulted since the last trim
_perf = time.perf_counter
_cpu = time.process_time


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0][:300]}" if msg else type(exc).__name__


@dataclass
class _State:
    """What the worker holds for the workload in progress."""

    workload: Workload
    fn: Any
    kwargs: dict
    pool: InputPool
    timer: Any
    target: Any                                # the backend, or the host copy's fallback
    copy_kernel: str | None = None
    kept: list = field(default_factory=list)   # host outputs of the sampled rounds


_STATE: dict[str, _State] = {}


class _NumpyHost(Backend):
    """Host arrays for the copy's fallback (a backend whose own copy hook cannot run)."""

    name = "copy-fallback"


def handle_bench(backend, header: dict, arrays: list) -> tuple[dict, list]:
    """The ``bench`` request: dispatch on ``header["phase"]``."""
    phase = header.get("phase")
    if phase == "prepare":
        return _prepare(backend, header), []
    if phase == "time":
        return _time(backend, header), []
    if phase == "rows":
        return _rows(header)
    if phase == "release":
        _release()
        return {"status": "released"}, []
    raise ValueError(f"unknown bench phase {phase!r}")


def _release() -> None:
    _STATE.clear()
    gc.collect()
    if _resident_bytes() > TRIM_ABOVE:
        _malloc_trim()


def _resident_bytes() -> int:
    """The worker's resident memory (Linux /proc), 0 when it cannot be read."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _malloc_trim() -> None:
    """Give the freed heap back to the system (the bench workers' glibc never trims on its own:
    ``measure.ALLOCATOR_ENV``), between workloads when the worker holds more than TRIM_ABOVE,
    outside every timed request. Below that the mapped heap is kept: the next pass or workload
    reuses it without faulting it in again."""
    _PREFAULTED[0] = 0
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to give back this way
        pass


def _prefault(nbytes: int) -> None:
    """Touch ``nbytes`` of heap and free them: with the bench workers' allocator (never trimmed)
    the op's temporaries and outputs then come from pages already mapped, from the first call."""
    n = min(int(nbytes), PREFAULT_MAX)
    if n > _PREFAULTED[0]:  # once per size until the heap is given back
        block = bytearray(n)  # zero-filled: every page written
        del block
        _PREFAULTED[0] = n


def _huge_pages_mib() -> float | None:
    """Transparent huge pages the worker holds (MiB), read from /proc (Linux), else None."""
    try:
        with open("/proc/self/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _workload(h: dict) -> Workload:
    return Workload(str(h["label"]), str(h["op"]), str(h["dtype"]), tuple(int(n) for n in h["shape"]),
                    int(h.get("seed", 0)))


def _device_memory_problem(backend, w: Workload, cache: int) -> str | None:
    """Why w's pool and outputs will not fit on the device (None: they fit, or unknown)."""
    if getattr(backend, "device", "cpu") != "gpu":
        return None
    try:
        free = backend.free_memory()
    except Exception:  # noqa: BLE001 - no such device API here: let the op itself say so
        return None
    need = pool_size(w.set_bytes, cache) * w.set_bytes + 3 * w.input_bytes
    if free is not None and need > 0.8 * free:
        return f"needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free on the device"
    return None


def _poisoner(backend):
    """The backend's poison hook, or None where it keeps the base class's no-op."""
    own = getattr(type(backend), "poison_free_memory", None)
    return None if own is None or own is Backend.poison_free_memory else backend.poison_free_memory


def _prepare(backend, h: dict) -> dict:
    _release()
    # pytest's start-up (a quarter of a second or more) happens here, outside every timed request.
    session().started.wait(120)
    w = _workload(h["workload"])
    s = h.get("settings") or {}
    threads = h.get("threads")
    if threads:
        backend.set_threads(int(threads))
    cache = s.get("cache") or cache_bytes(backend)
    problem = _device_memory_problem(backend, w, cache)
    if problem:
        return {"status": "skip", "message": problem}
    copy_kernel = None
    target = backend
    if w.op == COPY_OP:
        fn, kwargs = backend.copy, {}
        copy_kernel = f"{getattr(backend, 'name', '?')}.copy"
    else:
        fn, kwargs = getattr(backend, w.op), w.call_kwargs
    poison = _poisoner(backend)
    gc_was = gc.isenabled()
    gc.disable()  # a collection inside a timed call is not the op's time
    try:
        try:
            pool = InputPool(target, w, cache=cache, max_sets=int(s.get("max_sets", 4096)))
            timer = timer_for(target)
            if poison:
                poison()
            first, _ = timer.call(fn, pool.next(), kwargs)
        except (NotImplementedError, TypeError, AttributeError) as exc:
            if w.op != COPY_OP or getattr(backend, "device", "cpu") == "gpu":
                raise
            # The backend's copy hook cannot copy its arrays: the host copy measures the same memory.
            target = _NumpyHost()
            fn, copy_kernel = target.copy, f"numpy.copyto (the backend's copy raised {_one_line(exc)})"
            pool = InputPool(target, w, cache=cache, max_sets=int(s.get("max_sets", 4096)))
            timer = timer_for(target)
            first, _ = timer.call(fn, pool.next(), kwargs)
        if getattr(target, "device", "cpu") == "cpu":
            _prefault(PREFAULT_SETS * w.set_bytes)
        warm: list[float] = []
        min_warm, max_warm = int(s.get("min_warmup", 3)), int(s.get("max_warmup", 200))
        # Later passes of a workload warm up for their share of warmup_time (the steady-state
        # condition below still holds for each).
        warm_time = float(s.get("warmup_time", 0.1)) * min(1.0, max(0.0, float(h.get("warmup_share", 1.0))))
        faults, steady = 1 << 30, 0
        cap = max(4 * warm_time, STEADY_CAP_S)
        # Steady state: at least warmup_time, and on until two calls in a row page-faulted no more
        # than STEADY_FAULTS times each (their memory was reused, not freshly mapped), within cap.
        while len(warm) < max_warm and (len(warm) < min_warm or sum(warm) < warm_time
                                        or (steady < 2 and sum(warm) < cap)):
            f0 = _minflt()
            warm.append(timer.call(fn, pool.next(), kwargs)[0])
            faults = _minflt() - f0
            steady = steady + 1 if faults <= STEADY_FAULTS else 0
    except NotImplementedError as exc:
        return {"status": "unsupported", "message": f"{backend.name} does not provide {w.op}"
                                                    + (f" ({_one_line(exc)})" if str(exc) else "")}
    except Exception as exc:  # noqa: BLE001 - whatever the backend raises is data
        return {"status": "raised", "message": _one_line(exc)}
    finally:
        if gc_was:
            gc.enable()
    variants = [int(v) for v in (h.get("variants") or [])][:8]
    if variants and staged(len(variants) * w.set_bytes):
        pool.stage(variants)  # the judged rounds' input sets, built outside the timed request
    _STATE["current"] = _State(w, fn, kwargs, pool, timer, target, copy_kernel)
    threads_now = None
    try:
        threads_now = target.threads_in_use()
    except Exception:  # noqa: BLE001 - an unknown count is recorded as such
        pass
    return {"status": "ready", "first_call_s": first, "compile_s": _compile_seconds(backend, w),
            "warmup_s": warm, "estimate_s": float(np.median(warm)), "pool_sets": len(pool),
            "timer": timer.name, "threads": threads_now, "copy_kernel": copy_kernel,
            "pid": os.getpid(), "warmup_faults": faults if faults < 1 << 30 else None,
            "huge_pages_mib": _huge_pages_mib()}


def _compile_seconds(backend, w: Workload) -> float | None:
    times = getattr(backend, "compile_times", None)
    if not isinstance(times, dict):
        return None
    for key in ((w.op, tuple(w.shape), w.dtype), (w.op, list(w.shape), w.dtype)):
        try:
            if key in times:
                return float(times[key])
        except (TypeError, ValueError):
            continue
    return None


# -- the timed rounds, through one pytest session per worker ------------------------------------------

@dataclass
class Job:
    """One ``time`` request, run by ``bench_suite.test_throughput`` in the pytest thread."""

    state: _State
    backend: Any
    rounds: int
    sample_rounds: dict[int, int]            # round -> input set to refresh it with
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)      # process CPU seconds per round (every thread)
    faults: list[int] = field(default_factory=list)     # minor page faults per round
    sampled: list[dict] = field(default_factory=list)
    error: str | None = None
    stats: dict | None = None
    done: threading.Event = field(default_factory=threading.Event)


class PytestSession:
    """pytest (with pytest-benchmark) running in a thread of the worker, one test run per job.

    It is also the pytest plugin of that session: its ``pytest_runtestloop`` runs the module's
    single collected test once per job instead of once in all.
    """

    def __init__(self) -> None:
        self.jobs: queue.Queue = queue.Queue()
        self.current: Job | None = None
        self.failure: str | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._main, name="softmaxbench-pytest", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        import pytest

        from softmaxbench.suite.bench import bench_suite

        path = bench_suite.__file__
        args = [path, "-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:unraisableexception",
                "-p", "no:softmaxbench", "-p", "no:hypothesispytest", "-p", "no:faulthandler",
                "-p", "no:threadexception", "-s",
                "--import-mode=importlib", "--rootdir", os.path.dirname(path), "-c", os.devnull,
                "--benchmark-only", "--benchmark-disable-gc", "--benchmark-quiet",
                "-W", "ignore::pytest_benchmark.logger.PytestBenchmarkWarning"]
        os.environ.pop("PYTEST_ADDOPTS", None)
        try:
            pytest.main(args, plugins=[self])
        except BaseException as exc:  # noqa: BLE001 - reported to every job that waits
            self.failure = _one_line(exc)
        self.failure = self.failure or "the pytest session ended"
        self.started.set()
        while True:  # answer whatever is still queued
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            job.error = f"pytest-benchmark could not run: {self.failure}"
            job.done.set()

    # pytest hooks (this object is the session's plugin)
    def pytest_runtestloop(self, session) -> bool:
        from _pytest.runner import runtestprotocol

        self.started.set()
        items = [i for i in session.items if i.name == "test_throughput"]
        if not items:
            self.failure = "bench_suite.py has no test_throughput"
            return True
        item = items[0]
        while True:
            job = self.jobs.get()
            if job is None:
                return True
            self.current = job
            try:
                item._initrequest()  # a fresh fixture request (and benchmark fixture) per run
                reports = runtestprotocol(item, nextitem=None, log=False)
                bad = [r for r in reports if r.failed]
                if bad and job.error is None:
                    job.error = str(bad[0].longrepr).strip().splitlines()[-1][:300]
            except Exception as exc:  # noqa: BLE001 - the job says what went wrong
                job.error = job.error or _one_line(exc)
            finally:
                self.current = None
                job.done.set()

    def run(self, job: Job) -> Job:
        if self.failure:
            job.error = f"pytest-benchmark could not run: {self.failure}"
            return job
        self.jobs.put(job)
        while not job.done.wait(0.5):
            if not self.thread.is_alive():
                job.error = job.error or f"pytest-benchmark could not run: {self.failure}"
                break
        return job


_SESSION: list[PytestSession] = []


def session() -> PytestSession:
    if not _SESSION or not _SESSION[0].thread.is_alive():
        _SESSION[:] = [PytestSession()]
    return _SESSION[0]


def current_job() -> Job | None:
    """The job of the running test (None under a plain ``pytest bench_suite.py``)."""
    return _SESSION[0].current if _SESSION else None


def run_job(benchmark, job: Job) -> None:
    """The body of ``bench_suite.test_throughput``: ``rounds`` timed calls through ``benchmark``."""
    st, backend = job.state, job.backend
    pool, fn, kwargs, timer = st.pool, st.fn, st.kwargs, st.timer
    poison = _poisoner(st.target)
    w = st.workload
    counter = {"round": 0}
    in_type = type(pool.sets[0][0]).__name__ if pool.sets and pool.sets[0] else ""

    def setup():
        r = counter["round"]
        v = job.sample_rounds.get(r)
        if v is not None:  # a judged round: a fresh input set, and no stale result to find on the device
            pool.refresh(v)
            if poison is not None:
                poison()
        CLOCK.reset()  # pytest-benchmark then reads exactly 0 -> dt
        return pool.next(), kwargs

    def step(*args, **kw):
        r = counter["round"]
        counter["round"] = r + 1
        f0, c0 = _minflt(), _cpu()
        dt, out = timer.call(fn, args, kw)
        job.cpu.append(_cpu() - c0)
        job.faults.append(_minflt() - f0)
        job.samples.append(dt)
        CLOCK.advance(dt)
        if r in job.sample_rounds:
            _keep(st, st.target, out, r, pool.last_index, in_type, job)
        del out

    benchmark.group = f"{w.op} {w.dtype} {w.label}"
    benchmark.extra_info.update(backend=getattr(backend, "name", "?"), op=w.op, dtype=w.dtype,
                                shape=list(w.shape), workload=w.label, bytes=w.bytes_moved,
                                timer=timer.name, pool_sets=len(pool))
    try:
        benchmark.pedantic(step, setup=setup, rounds=job.rounds, warmup_rounds=0, iterations=1)
    except NotImplementedError:
        job.error = f"{getattr(backend, 'name', '?')} does not provide {w.op}"
        return
    except Exception as exc:  # noqa: BLE001 - whatever the backend raises is data
        job.error = _one_line(exc)
        return
    try:
        stats = benchmark.stats.stats
        job.stats = {"rounds": int(stats.rounds), "median": float(stats.median),
                     "data_matches": list(stats.data) == job.samples}
    except Exception:  # noqa: BLE001 - pytest-benchmark's own figures are a cross-check only
        job.stats = None


def _keep(st: _State, backend, out, r: int, set_index: int, in_type: str, job: Job) -> None:
    """Convert a sampled round's output (the timer has stopped) and time the conversion beside
    that of a ready array of the same size."""
    t0 = _perf()
    host = np.asarray(backend.to_numpy(out))
    materialize = _perf() - t0
    ready_s = None
    try:
        ready = backend.asarray(np.zeros(host.shape, host.dtype))
        backend.synchronize()
        t0 = _perf()
        backend.to_numpy(ready)
        ready_s = _perf() - t0
    except Exception:  # noqa: BLE001 - the parent then has the conversion time alone
        pass
    st.kept.append(host)
    job.sampled.append({"round": r, "set": set_index, "materialize_s": materialize, "ready_s": ready_s,
                        "type": type(out).__name__, "input_type": in_type,
                        "dtype": str(host.dtype), "shape": list(host.shape)})


def _time(backend, h: dict) -> dict:
    st = _STATE.get("current")
    if st is None:
        raise RuntimeError("bench: 'time' before 'prepare'")
    rounds = max(1, int(h["rounds"]))
    sample_rounds = {int(r): int(v) for r, v in zip(h.get("sample_rounds") or [], h.get("variants") or [],
                                                   strict=False) if 0 <= int(r) < rounds}
    st.kept.clear()
    job = Job(st, backend, rounds, sample_rounds)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        session().run(job)
    finally:
        if gc_was:
            gc.enable()
    if job.error:
        status = "unsupported" if "does not provide" in job.error else "raised"
        return {"status": status, "message": job.error, "samples": job.samples}
    return {"status": "timed", "samples": job.samples, "sampled": job.sampled,
            "pytest_benchmark": job.stats, "cpu_s": job.cpu, "minor_faults": job.faults}


def _rows(h: dict) -> tuple[dict, list]:
    """The rows the parent picked of each kept output (2-D view: rows x rest; 0-d whole)."""
    st = _STATE.get("current")
    if st is None:
        raise RuntimeError("bench: 'rows' before 'time'")
    out = []
    for host, rows in zip(st.kept, h.get("rows") or [], strict=False):
        a = np.ascontiguousarray(host)
        if a.ndim == 0 or rows is None:
            out.append(a)
            continue
        flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
        idx = np.asarray([int(i) for i in rows if 0 <= int(i) < flat.shape[0]], dtype=np.int64)
        out.append(np.ascontiguousarray(flat[idx]))
    return {"status": "rows", "n": len(out)}, out


def rounds_for(estimate_s: float, settings: dict) -> int:
    """As many rounds as fill max_time, within [min_rounds, max_rounds]; min_rounds wins a conflict."""
    lo, hi = int(settings.get("min_rounds", 10)), int(settings.get("max_rounds", 2000))
    return int(max(lo, min(hi, math.ceil(float(settings.get("max_time", 1.0)) / max(estimate_s, 1e-9)))))
