"""``softmaxbench bench``: throughput of every backend on the workloads, on pytest-benchmark.

The benchmarks are the shipped pytest module ``softmaxbench/suite/bench_suite.py``: one
``test_throughput`` per (backend, workload), timed by pytest-benchmark's ``pedantic`` mode with
our device-aware timer as its clock (``suite.timers``). ``softmaxbench bench`` runs that module
with ``pytest.main`` and a :class:`BenchSession` plugin object that carries the selection; the
same module runs alone as ``pytest --benchmark-only <path>/bench_suite.py`` (selection from
``SOFTMAXBENCH_BENCH_*`` environment variables, quick by default).

For each workload, on each backend:

1. rotating input sets covering twice the last-level cache are made (``workloads.InputPool``);
2. the first call is timed apart (it holds jit / torch.compile work; a backend's
   ``compile_times`` hook, when it has one, gives the compile time itself);
3. warm-up calls until ``warmup_time`` has passed; their median sizes the timed rounds;
4. ``rounds`` timed calls through pytest-benchmark, one input set each;
5. a bench record: raw samples, median, IQR, coefficient of variation (a warning over 5%),
   GB/s over the fewest bytes the op must move, and the fraction of the device's copy
   bandwidth measured the same way on the same bytes in the same run (copies are timed first
   in each group of workloads sharing a shape and dtype).

Results: ``DIR/results.jsonl`` (one record per workload, written as it finishes), ``DIR/run.json``
and ``DIR/pytest-benchmark.json`` (pytest-benchmark's own, readable by ``pytest-benchmark compare``).

>>> import tempfile, numpy as np
>>> from softmaxbench.backends import Backend
>>> class Numpy(Backend):
...     name = "np-doc"
...     def softmax(self, x, axis=-1):
...         e = np.exp(x - x.max(axis=axis, keepdims=True))
...         return e / e.sum(axis=axis, keepdims=True)
>>> from softmaxbench.suite.bench.workloads import Workload
>>> out = tempfile.mkdtemp()
>>> rc, records = run_bench(out, [Numpy()], [Workload("tiny", "softmax", "float32", (8, 64))],
...                         settings=Settings(min_rounds=5, max_time=0.01, cache=4096), echo=None)
>>> rc, [(r["op"], len(r["samples_s"]) >= 5, r["gbps"] > 0) for r in records if r["backend"] == "np-doc"]
(0, [('softmax', True, True)])
>>> records[0]["backend"]  # the device's copy bandwidth is measured first, then the ops
'copy:numpy'
>>> 0 < records[-1]["fraction_of_copy"]
True
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from softmaxbench.backends.base import Backend
from softmaxbench.reference.dtypes import DTYPES
from softmaxbench.suite import records as rec_mod
from softmaxbench.suite.bench.timers import HarnessClock, summarize, timer_for
from softmaxbench.suite.bench.workloads import (
    COPY_OP,
    SELECTABLE_OPS,
    InputPool,
    Workload,
    cache_bytes,
    clear_host_pool,
    copy_workload,
    pool_size,
    select,
)
from softmaxbench.suite.isolation.threads import (
    THREAD_VARIABLES,
    configure_threads,
    threads_used,
    torch_threads,
)

PYTEST_BENCHMARK_FILE = "pytest-benchmark.json"
#: Coefficient of variation above which a record carries a warning.
CV_WARNING = 0.05
#: The clock pytest-benchmark reads (bench_suite's marker names it): advanced by our timers.
CLOCK = HarnessClock()
EXIT_OK, EXIT_ERROR = 0, 1


@dataclass(frozen=True)
class Settings:
    """How long and how often to time each workload."""

    min_rounds: int = 10
    max_rounds: int = 2000
    max_time: float = 1.0            # seconds of timed rounds aimed at per workload
    warmup_time: float = 0.1         # seconds of warm-up calls after the first call
    min_warmup: int = 3
    max_warmup: int = 200
    cache: int | None = None         # last-level cache bytes; None: detect per device
    max_sets: int = 4096             # cap on rotating input sets (tiny shapes)

    @classmethod
    def for_run(cls, quick: bool, min_rounds: int | None = None) -> Settings:
        s = cls(max_time=0.4, warmup_time=0.05) if quick else cls()
        return replace(s, min_rounds=min_rounds) if min_rounds else s


@dataclass
class BenchItem:
    """One test of the benchmark module: a backend (or a copy kernel) on one workload."""

    backend: Backend
    workload: Workload

    @property
    def id(self) -> str:
        return f"{self.backend.name}-{self.workload.id}"

    @property
    def is_copy(self) -> bool:
        return self.workload.op == COPY_OP


# ---------------------------------------------------------------------------------------------
# Copy kernels: the device's bandwidth, measured by the same harness on the same bytes.

class NumpyCopy(Backend):
    """np.copyto on the CPU (one thread: NumPy's memcpy)."""

    name = "copy:numpy"
    device = "cpu"
    framework = "numpy"

    def asarray(self, a):
        return a.view(np.uint8).reshape(-1)  # a copy moves bytes; the dtype does not matter

    def copy(self, src, dst):
        np.copyto(dst, src)
        return dst


class TorchCopy(Backend):
    """torch ``Tensor.copy_`` on the CPU (threaded) or on the current CUDA device."""

    framework = "torch"

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.name = f"copy:torch-{'cuda' if device == 'gpu' else 'cpu'}"

    def asarray(self, a):
        import torch

        t = torch.from_numpy(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
        return t.to("cuda") if self.device == "gpu" else t

    def copy(self, src, dst):
        return dst.copy_(src)

    def synchronize(self) -> None:
        if self.device == "gpu":
            import torch

            torch.cuda.synchronize()


class CupyCopy(Backend):
    """CuPy ``copyto`` on the current CUDA device."""

    name = "copy:cupy"
    device = "gpu"
    framework = "cupy-cuda12x"

    def asarray(self, a):
        import cupy

        return cupy.asarray(np.ascontiguousarray(a).view(np.uint8).reshape(-1))

    def copy(self, src, dst):
        import cupy

        cupy.copyto(dst, src)
        return dst

    def synchronize(self) -> None:
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def copy_kernels(device: str) -> list[Backend]:
    """The copies a device's bandwidth is measured with; a record's ``copy_gbps`` is the best.

    CPU: np.copyto, and torch's threaded copy_ when torch is installed. GPU: torch copy_ and CuPy
    copyto, whichever has a device here.
    """
    if device != "gpu":
        return [NumpyCopy()] + ([TorchCopy("cpu")] if _has("torch") else [])
    kernels: list[Backend] = []
    try:
        import torch

        if torch.cuda.is_available():
            kernels.append(TorchCopy("gpu"))
    except ImportError:
        pass
    try:
        import cupy

        if cupy.cuda.is_available():
            kernels.append(CupyCopy())
    except ImportError:
        pass
    return kernels


# ---------------------------------------------------------------------------------------------
# The session: what to run, where records go. The plugin object of ``softmaxbench bench``.

_SESSION_KEY = pytest.StashKey["BenchSession"]()


@dataclass(eq=False)  # hashable by identity: pluggy keeps plugins in sets
class BenchSession:
    """Selection and results of one bench run; registered with pytest as a plugin object."""

    items: list[BenchItem]
    settings: Settings = field(default_factory=Settings)
    out_dir: Path | None = None
    threads: int | None = None
    echo: Callable[[str], None] | None = None
    records: list[dict] = field(default_factory=list)
    copy_gbps: dict[tuple, float] = field(default_factory=dict)
    machine: str = field(default_factory=lambda: rec_mod.machine_info()["label"])
    note: str | None = None          # why there is nothing to run, shown as the skip reason
    keep_pool: bool = False          # keep the host input pool for the next session (same workloads)
    _writer: rec_mod.ResultsWriter | None = None

    # pytest hooks (this object is registered as a plugin)
    def pytest_configure(self, config) -> None:
        config.stash[_SESSION_KEY] = self

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        self.close()

    @pytest.hookimpl(tryfirst=True)
    def pytest_benchmark_generate_machine_info(self, config) -> dict:
        """pytest-benchmark's own machine info, computed once per process: py-cpuinfo takes a
        second or more, and the fidelity check runs many bench sessions in one process."""
        return dict(_machine_info_once())

    def add(self, rec: dict) -> None:
        """Keep, write (flushed at once) and announce one record."""
        _validate(rec)
        self.records.append(rec)
        if self.out_dir is not None:
            if self._writer is None:
                self._writer = rec_mod.ResultsWriter(self.out_dir)
            self._writer.write(rec)
        if self.echo:
            self.echo(progress_line(rec))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self.keep_pool:
            clear_host_pool()

    @classmethod
    def from_env(cls) -> BenchSession:
        """The selection of a plain ``pytest bench_suite.py`` run, from SOFTMAXBENCH_BENCH_* variables.

        BACKENDS, OPS, DTYPES, WORKLOADS (comma lists), PLUGINS (comma list of modules/files),
        QUICK (default 1), MIN_ROUNDS, THREADS, OUT (a results directory; none: no records).
        """
        env = os.environ.get

        def csv(name: str) -> list[str] | None:
            v = env(f"SOFTMAXBENCH_BENCH_{name}", "")
            return [s.strip() for s in v.split(",") if s.strip()] or None

        quick = env("SOFTMAXBENCH_BENCH_QUICK", "1").lower() not in ("0", "false", "no", "")
        rounds = env("SOFTMAXBENCH_BENCH_MIN_ROUNDS")
        threads = env("SOFTMAXBENCH_BENCH_THREADS")
        threads_n = int(threads) if threads else None
        configure_threads(threads_n)
        out = env("SOFTMAXBENCH_BENCH_OUT")
        try:
            backends = resolve_backends(csv("BACKENDS"), tuple(csv("PLUGINS") or ()))
            items = plan(backends, quick=quick, ops=csv("OPS"), dtypes=csv("DTYPES"), names=csv("WORKLOADS"))
            note = None if items else "no workload selected"
        except (LookupError, ValueError, ImportError) as exc:
            items, note = [], str(exc)
        session = cls(items=items, settings=Settings.for_run(quick, int(rounds) if rounds else None),
                      out_dir=Path(out) if out else None, threads=threads_n, note=note)
        if session.out_dir is not None:
            prepare_out_dir(session.out_dir)
            run = rec_mod.new_run("bench", shlex.join(sys.argv), threads=threads_n)
            rec_mod.write_run(session.out_dir, run)
        return session


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(rec_mod.schema("results"))


def _validate(rec: dict) -> None:
    """records.validate_record with the validator built once (it re-checks the schema each call)."""
    err = next(iter(_validator().iter_errors(rec)), None)
    if err is not None:
        raise rec_mod.RecordError(f"invalid result record: {err.message}")


@functools.cache
def _machine_info_once() -> dict:
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    return pytest_benchmark_generate_machine_info()


def session_for(config) -> BenchSession:
    """The session of this pytest run: the one ``softmaxbench bench`` passed, else one from env."""
    session = config.stash.get(_SESSION_KEY, None)
    if session is None:
        session = BenchSession.from_env()
        config.stash[_SESSION_KEY] = session
        config.pluginmanager.register(session, "softmaxbench-bench-session")
    return session


# ---------------------------------------------------------------------------------------------
# Planning

def resolve_backends(names: Sequence[str] | None, plugins: Sequence[str] = ()) -> list[Backend]:
    """Backend instances by name (None: every available one). Unknown names raise LookupError."""
    from softmaxbench.backends import registry

    if names:
        return [registry.get(n, plugins=tuple(plugins)) for n in names]
    return [e.backend for e in registry.discover(plugins=tuple(plugins))
            if e.backend is not None and not e.unavailable]


def plan(backends: Iterable[Backend], *, quick: bool = False, ops=None, dtypes=None, names=None,
         workloads: Sequence[Workload] | None = None, copies: bool = True) -> list[BenchItem]:
    """Order the (backend, workload) items: per shape and dtype, the device's copies first, then
    each op on every backend in turn (so they share the input pool and see the same machine).

    ``workloads`` replaces the selection (quick/ops/dtypes/names) when given; ``copies=False``
    leaves out the copy kernels (and with them ``copy_gbps``).
    """
    per_group: dict[tuple, list[BenchItem]] = {}
    for b in backends:
        if workloads is not None:
            work = [w for w in workloads if w.dtype in b.dtypes]
        else:
            # --quick measures float32 unless dtypes are named (every backend has it).
            dts = [d for d in (dtypes or (("float32",) if quick else DTYPES)) if d in b.dtypes]
            work = select(b.device, quick=quick, ops=ops, dtypes=dts, names=names) if dts else []
        for w in work:
            per_group.setdefault((b.device, w.dtype, w.shape, w.label), []).append(BenchItem(b, w))
    items: list[BenchItem] = []
    for (device, _dtype, _shape, _label), group in per_group.items():
        if copies:
            items += [BenchItem(k, copy_workload(group[0].workload)) for k in copy_kernels(device)]
        items += sorted(group, key=lambda it: (it.workload.op, it.backend.name))
    return items


# ---------------------------------------------------------------------------------------------
# Measuring one item (called by bench_suite.test_throughput)

def _base_record(session: BenchSession, item: BenchItem) -> dict:
    b, w = item.backend, item.workload
    return rec_mod.new_record(
        "bench", backend=b.name, device=b.device, machine=session.machine, op=w.op, dtype=w.dtype,
        shape=list(w.shape), axis=-1, workload=w.label, bytes=w.bytes_moved,
        threads=threads_used(b), verdict=None)


def _compile_seconds(backend: Backend, w: Workload) -> float | None:
    times = getattr(backend, "compile_times", None)
    if not isinstance(times, dict):
        return None
    for key in ((w.op, tuple(w.shape), w.dtype), (w.op, list(w.shape), w.dtype)):
        try:
            if key in times:
                return float(times[key])
        except TypeError:  # an unhashable key form
            continue
    return None


def _device_memory_problem(backend: Backend, w: Workload, cache: int | None) -> str | None:
    """Why w's input pool and outputs will not fit on the backend's GPU (None: they fit, or we
    cannot tell). Caching allocators give their idle blocks back first, so they count as free."""
    if getattr(backend, "device", "cpu") != "gpu":
        return None
    sets = pool_size(w.set_bytes, cache if cache is not None else cache_bytes(backend))
    need = sets * w.set_bytes + 3 * w.input_bytes  # the pool, the output and an intermediate or two
    free = None
    framework = str(getattr(backend, "framework", "") or "")
    try:
        if framework.startswith("cupy"):
            import cupy

            cupy.get_default_memory_pool().free_all_blocks()
            free = cupy.cuda.runtime.memGetInfo()[0]
        elif framework.startswith("torch"):
            import torch

            torch.cuda.empty_cache()
            free = torch.cuda.mem_get_info()[0]
    except Exception:  # no such device API here: let the op itself say so
        return None
    if free is not None and need > 0.8 * free:
        return f"needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free on the device"
    return None


def measure(benchmark, session: BenchSession, item: BenchItem, clock: HarnessClock = CLOCK) -> dict:
    """Time one item with pytest-benchmark's ``benchmark`` fixture; add and return its record."""
    b, w, s = item.backend, item.workload, session.settings
    torch_threads(session.threads)
    rec = _base_record(session, item)
    started = time.perf_counter()
    fn = getattr(b, w.op)
    kwargs = w.call_kwargs
    timer = timer_for(b)
    problem = _device_memory_problem(b, w, s.cache)
    if problem:
        pytest.skip(f"{item.id}: {problem}")
    gc_was = gc.isenabled()
    gc.disable()  # a collection inside a timed call is not the op's time
    try:
        pool = InputPool(b, w, cache=s.cache, max_sets=s.max_sets)
        first = timer.time(fn, pool.next(), kwargs)
        warm: list[float] = []
        while len(warm) < s.min_warmup or (sum(warm) < s.warmup_time and len(warm) < s.max_warmup):
            warm.append(timer.time(fn, pool.next(), kwargs))
    except NotImplementedError:
        rec.update(verdict="unsupported", message=f"{b.name} does not provide {w.op}")
        session.add(rec)
        pytest.skip(rec["message"])
    except Exception as exc:
        rec.update(verdict="error", message=f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
        session.add(rec)
        raise
    finally:
        if gc_was:
            gc.enable()
    estimate = float(np.median(warm))
    # As many rounds as fill max_time, within [min_rounds, max_rounds]; min_rounds wins a conflict.
    rounds = int(max(s.min_rounds, min(s.max_rounds, math.ceil(s.max_time / max(estimate, 1e-9)))))

    samples: list[float] = []

    def setup():
        clock.reset()  # pytest-benchmark then reads exactly 0 -> dt
        return pool.next(), kwargs

    def step(*args, **kw):
        dt = timer.time(fn, args, kw)
        samples.append(dt)
        clock.advance(dt)

    benchmark.group = f"{w.op} {w.dtype} {w.label}"
    benchmark.extra_info.update(backend=b.name, device=b.device, op=w.op, dtype=w.dtype,
                                shape=list(w.shape), workload=w.label, bytes=w.bytes_moved,
                                timer=timer.name, pool_sets=len(pool))
    try:
        benchmark.pedantic(step, setup=setup, rounds=rounds, warmup_rounds=0, iterations=1)
    except Exception as exc:
        rec.update(verdict="error", message=f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
        session.add(rec)
        raise

    stats = summarize(samples)
    gbps = w.bytes_moved / stats.median / 1e9 if stats.median > 0 else None
    key = (b.device, w.dtype, w.shape)
    if item.is_copy:
        if gbps:
            session.copy_gbps[key] = max(gbps, session.copy_gbps.get(key, 0.0))
        copy_gbps = fraction = None
    else:
        copy_gbps = session.copy_gbps.get(key)
        fraction = gbps / copy_gbps if gbps and copy_gbps else None
    warning = None
    if stats.cv > CV_WARNING:
        warning = f"wide spread: coefficient of variation {stats.cv:.1%} over {stats.n} rounds (> 5%)"
    compile_s = _compile_seconds(b, w)
    rec.update(samples_s=samples, median_s=stats.median, iqr_s=stats.iqr, cv=stats.cv, gbps=gbps,
               copy_gbps=copy_gbps, fraction_of_copy=fraction, compile_s=compile_s, warning=warning,
               first_call_s=first, rounds=len(samples), timer=timer.name,
               duration_s=time.perf_counter() - started)
    benchmark.extra_info.update(gbps=gbps, fraction_of_copy=fraction, compile_s=compile_s, first_call_s=first)
    session.add(rec)
    return rec


# ---------------------------------------------------------------------------------------------
# Driving pytest

def bench_module_path() -> Path:
    """Path of the shipped benchmark module (for ``pytest --benchmark-only PATH``)."""
    spec = importlib.util.find_spec("softmaxbench.suite.bench.bench_suite")
    if spec is None or not spec.origin:
        raise RuntimeError("softmaxbench.suite.bench.bench_suite is missing from the installation")
    return Path(spec.origin)


def prepare_out_dir(out_dir: Path) -> None:
    """A bench run owns its results: earlier records and pytest-benchmark JSON there are replaced."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (rec_mod.RESULTS_FILE, PYTEST_BENCHMARK_FILE):
        (out_dir / name).unlink(missing_ok=True)


def run_bench(out_dir: str | os.PathLike | None, backends: Sequence[Backend],
              workloads: Sequence[Workload] | None = None, *, quick: bool = False, ops=None,
              dtypes=None, names=None, settings: Settings | None = None, threads: int | None = None,
              echo: Callable[[str], None] | None = print, pytest_json: bool = True,
              command: str | None = None, copies: bool = True,
              keep_pool: bool = False) -> tuple[int, list[dict]]:
    """Benchmark ``backends`` through pytest-benchmark; returns (exit code, records).

    The exit code is 1 when a workload raised (its record says why), else 0. With ``out_dir``,
    records go to ``out_dir/results.jsonl`` as they finish, with ``run.json`` and (when
    ``pytest_json``) pytest-benchmark's ``pytest-benchmark.json``.
    """
    items = plan(backends, quick=quick, ops=ops, dtypes=dtypes, names=names, workloads=workloads,
                 copies=copies)
    settings = settings or Settings.for_run(quick)
    out = Path(out_dir) if out_dir is not None else None
    saved_env = {v: os.environ.get(v) for v in (*THREAD_VARIABLES, "XLA_FLAGS")}
    torch_before = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    configure_threads(threads)
    session = BenchSession(items=items, settings=settings, out_dir=out, threads=threads, echo=echo,
                           keep_pool=keep_pool)
    run = None
    if out is not None:
        prepare_out_dir(out)
        run = rec_mod.new_run("bench", command or shlex.join(["softmaxbench", "bench", *sys.argv[2:]]),
                              threads=threads)
        run["bench"] = {"settings": settings.__dict__, "workloads": len(items),
                        "timers": sorted({timer_for(i.backend).name for i in items}),
                        "load_average_at_start": _load_average()}
        rec_mod.write_run(out, run)
    module = bench_module_path()
    # no:unraisableexception: it runs gc.collect() five times per session, a second or more in
    # a process holding torch and jax; no:softmaxbench, no:hypothesispytest: the conformance
    # plugin and hypothesis (seconds to import) have no part in timing.
    args = [str(module), "-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:unraisableexception",
            "-p", "no:softmaxbench", "-p", "no:hypothesispytest", "-s",
            "--import-mode=importlib", "--rootdir", str(module.parent), "-c", os.devnull,
            "--benchmark-only", "--benchmark-disable-gc", "--benchmark-quiet",
            # pytest-benchmark's "nothing to save" when every workload raised: our records say why.
            "-W", "ignore::pytest_benchmark.logger.PytestBenchmarkWarning"]
    if out is not None and pytest_json:
        args.append(f"--benchmark-json={out / PYTEST_BENCHMARK_FILE}")
    # A caller's PYTEST_ADDOPTS (-x, --junitxml, ...) is meant for its own session, not this one.
    addopts = os.environ.pop("PYTEST_ADDOPTS", None)
    try:
        if items:
            pytest_rc = pytest.main(args, plugins=[session])
        else:
            pytest_rc = pytest.ExitCode.NO_TESTS_COLLECTED
    finally:
        if addopts is not None:
            os.environ["PYTEST_ADDOPTS"] = addopts
        session.close()
        for var, val in saved_env.items():
            if val is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = val
        if torch_before is not None:
            sys.modules["torch"].set_num_threads(torch_before)
    if pytest_rc in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        raise RuntimeError(f"pytest could not run the benchmark module (exit {int(pytest_rc)})")
    if pytest_rc == pytest.ExitCode.INTERRUPTED:
        # pytest swallowed the Ctrl-C; the caller must see it. The finished records are on disk.
        if run is not None:
            run["interrupted"] = True
            rec_mod.write_run(out, run)
        raise KeyboardInterrupt
    if run is not None:
        run["finished"] = rec_mod.now_iso()
        rec_mod.write_run(out, run)
    failed = any(r.get("verdict") == "error" for r in session.records)
    return (EXIT_ERROR if failed else EXIT_OK), session.records


# ---------------------------------------------------------------------------------------------
# Output

def _fmt(v: Any, spec: str, scale: float = 1.0) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v * scale, spec)


def progress_line(rec: dict) -> str:
    """One line per finished workload (stderr while the run goes on)."""
    what = f"{rec['backend']:<16} {rec['op']:<18} {rec['dtype']:<8} {rec.get('workload') or ''}"
    if rec.get("verdict") in ("unsupported", "error"):
        return f"  {what}: {rec['verdict']}: {rec.get('message') or ''}"
    frac = rec.get("fraction_of_copy")
    tail = f" ({frac:.0%} of copy)" if frac else ""
    return f"  {what}: {_fmt(rec.get('gbps'), '.2f')} GB/s{tail}"


def table(records: Sequence[dict]) -> str:
    """The run's table: one row per record, GB/s and fraction of copy bandwidth."""
    from tabulate import tabulate

    rows = []
    for r in records:
        shape = "x".join(map(str, r.get("shape") or []))
        if r.get("verdict") in ("unsupported", "error"):
            rows.append([r["backend"], r["op"], r["dtype"], r.get("workload"), shape, "", "", "", "", "", "",
                         f"{r['verdict']}: {r.get('message') or ''}"[:60]])
            continue
        rows.append([r["backend"], r["op"], r["dtype"], r.get("workload"), shape,
                     _fmt(r.get("median_s"), ".1f", 1e6), _fmt(r.get("gbps"), ".2f"),
                     _fmt(r.get("copy_gbps"), ".2f"), _fmt(r.get("fraction_of_copy"), ".0f", 100),
                     _fmt(r.get("cv"), ".1f", 100), _fmt(r.get("compile_s"), ".2f"),
                     "wide spread" if r.get("warning") else ""])
    return tabulate(rows, headers=["backend", "op", "dtype", "workload", "shape", "median µs", "GB/s",
                                   "copy GB/s", "% copy", "CV %", "compile s", "note"],
                    disable_numparse=True)


# ---------------------------------------------------------------------------------------------
# The verb

def bench_main(backends: str | None = None, ops: str | None = None, dtypes: str | None = None,
               cases: str | None = None, plugins: Sequence[str] = (), quick: bool = False,
               out: str = "softmaxbench-results/bench", threads: int | None = None,
               min_rounds: int | None = None) -> int:
    """The ``bench`` verb: select, run, write DIR/results.jsonl + run.json, print the table."""
    import click

    from softmaxbench.errors import InputError
    from softmaxbench.suite.cli.options import split_csv

    op_list, dtype_list = split_csv(ops), split_csv(dtypes)
    bad = [o for o in op_list or () if o not in SELECTABLE_OPS]
    if bad:
        raise InputError(f"cannot benchmark op {bad[0]!r}; choose from {', '.join(SELECTABLE_OPS)}")
    bad = [d for d in dtype_list or () if d not in DTYPES]
    if bad:
        raise InputError(f"unknown dtype {bad[0]!r}; choose from {', '.join(DTYPES)}")
    if threads is not None and threads < 1:
        raise InputError("--threads must be at least 1")
    if min_rounds is not None and min_rounds < 1:
        raise InputError("--min-rounds must be at least 1")
    # Threads first: XLA and OpenMP read their settings when the frameworks are imported.
    for w in configure_threads(threads):
        click.echo(f"softmaxbench: warning: {w}", err=True)
    # JAX takes 75% of a GPU's memory at start unless told otherwise; torch and CuPy (and the
    # copy kernels) share the device in this process.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        chosen = resolve_backends(split_csv(backends), tuple(plugins))
    except LookupError as exc:
        raise InputError(str(exc).splitlines()[0]) from None
    runnable = []
    for b in chosen:
        why = b.unavailable()
        if why:
            click.echo(f"softmaxbench: skipping {b.name}: {why}", err=True)
        else:
            runnable.append(b)
    if not runnable:
        raise InputError("no selected backend can run here (see 'softmaxbench list')")
    names = split_csv(cases)
    items = plan(runnable, quick=quick, ops=op_list, dtypes=dtype_list, names=names)
    if not any(not i.is_copy for i in items):
        raise InputError("no workload matches the selection "
                         "(--ops/--dtypes/--cases and the backends' dtypes)")
    n_work = sum(not i.is_copy for i in items)
    click.echo(f"softmaxbench bench: {n_work} workloads on {len(runnable)} backends"
               f"{' (quick)' if quick else ''} -> {out}", err=True)
    try:
        rc, records = run_bench(out, runnable, quick=quick, ops=op_list, dtypes=dtype_list, names=names,
                                settings=Settings.for_run(quick, min_rounds), threads=threads,
                                echo=lambda line: click.echo(line, err=True),
                                command=shlex.join(["softmaxbench", "bench", *sys.argv[2:]]))
    except KeyboardInterrupt:
        done = rec_mod.read_results(out) if (Path(out) / rec_mod.RESULTS_FILE).is_file() else []
        click.echo(table(done))
        click.echo(f"softmaxbench bench: interrupted; the {len(done)} finished workloads are in {out}",
                   err=True)
        return 130
    click.echo(table(records))
    wide = sum(1 for r in records if r.get("warning"))
    if wide:
        click.echo(f"{wide} of {len(records)} workloads had a wide spread (coefficient of variation > 5%): "
                   "the machine was busy or the workload is short; see 'warning' in results.jsonl.")
        load, cores = _load_average(), os.cpu_count() or 1
        if load is not None and load > cores:
            click.echo(f"The load average is {load:.1f} on {cores} cores: other jobs held the cores. "
                       "Threaded frameworks suffer most (a thread waits for a core at every barrier); "
                       "--threads 1 measures them more steadily.")
    click.echo(f"results: {Path(out) / rec_mod.RESULTS_FILE}; "
               f"pytest-benchmark: {Path(out) / PYTEST_BENCHMARK_FILE}")
    return rc


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # not on this platform
        return None


def load_pytest_benchmark(path: str | os.PathLike) -> dict:
    """pytest-benchmark's JSON of a results directory (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / PYTEST_BENCHMARK_FILE
    return json.loads(p.read_text(encoding="utf-8"))
