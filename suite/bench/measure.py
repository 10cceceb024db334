"""``softmaxbench bench``: throughput of every backend on the workloads, each backend in its own worker.

The trusted process (this module) never imports backend or framework code. It starts one fresh
worker per backend (``suite.isolation.channel.Worker``) and sends it workloads; the worker times
them with pytest-benchmark and the backend's device timer (``suite.bench.in_worker``) and
reports samples, which are checked here (``suite.bench.judge``) before any figure is published.

Order. Workloads sharing a shape and dtype form a group; each group goes to every backend's
worker in turn (the workers live side by side, only one times at a time): in each worker the
device's copy first (``Backend.copy``, timed the same way: the copy bandwidth of that device
in that process), then each op. A backend's figure therefore does not depend on the other
backends in the run (separate processes: no shared allocator, caches or threads), and drift of
the machine spreads over every backend evenly. Workers free their pools between workloads.

Passes. Each group is timed in ``Settings.passes`` passes (3; fewer when a pass would time less
than ``MIN_PASS_TIME``: ``--quick`` makes one); in each pass every backend takes its turn, the
order rotating by one backend per pass, and each item gets its share of the rounds. A record
holds every pass's samples (its figure is their median) and each pass's median
(``pass_median_s``): one pass spoiled by a burst of load moves the figure less, and drift reaches
every backend alike.

Allocator. The workers run glibc malloc with ``ALLOCATOR_ENV`` (no mmap'd chunks, one arena,
never trimmed by itself): memory a call frees is reused by the next without page faults, in
every worker whatever it allocated before. With glibc's defaults the same numpy softmax on
16 MiB was bimodal per process (0.83 or 1.6 GB/s): whether its temporaries were mapped and
page-faulted anew each call depended on the process's allocation history (the dynamic mmap
threshold, heap trimming, thread arenas' heaps). Figures therefore leave out the kernel's cost
of mapping fresh pages; run.json says so (``bench.allocator``, ``bench.method``).

For each (backend, workload) and pass, three requests, each timed by the parent's clock:

1. ``prepare``: rotating input sets covering twice the last-level cache, with distinct values
   (``workloads.InputPool``), and the judged rounds' input sets (staged); the heap pre-faulted;
   the first call timed apart (compile time apart when the backend's ``compile_times`` hook has
   it); warm-up calls until ``warmup_time`` and a steady state (two calls in a row without page
   faults), whose median sizes the timed rounds;
2. ``time``: the rounds through pytest-benchmark, one input set each; rounds picked here (two
   per workload, one per pass with three) get the staged input sets and their outputs are kept;
3. ``rows``: rows picked here (after the timing) of the kept outputs, judged against results
   computed here from the seeded inputs (those rows only).

A record then carries raw samples, median, IQR, coefficient of variation (a warning over 5%),
GB/s over the fewest bytes the op must move, and the fraction of the copy bandwidth; or verdict
``fail`` (clock or output check failed), ``error`` (the op raised), ``unsupported``, ``crash`` /
``timeout`` (the worker died or went silent: a fresh worker takes the rest), or ``implausible``
(a figure above 2x the copy bandwidth; GB/s then stays empty and ``claimed_gbps`` holds it).

Results: ``DIR/results.jsonl`` (one record per workload, written as it finishes), ``DIR/run.json``
and ``DIR/pytest-benchmark.json`` (pytest-benchmark's format, readable by ``pytest-benchmark
compare``, written here from the checked records).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from softmaxbench.reference.dtypes import DTYPES
from softmaxbench.suite import records as rec_mod
from softmaxbench.suite.bench import judge
from softmaxbench.suite.bench.timers import summarize
from softmaxbench.suite.bench.workloads import COPY_OP, Workload, copy_workload, select
from softmaxbench.suite.isolation.threads import thread_env

PYTEST_BENCHMARK_FILE = "pytest-benchmark.json"
#: Coefficient of variation above which a record carries a warning.
CV_WARNING = 0.05
EXIT_OK, EXIT_ERROR = 0, 1
#: Verdicts of a bench record that make the run fail.
FAILING = ("fail", "error", "crash", "timeout")
#: Timed rounds whose outputs are kept and judged, per workload (at least one per pass).
SAMPLED_ROUNDS = 4
#: Seconds of timed calls a pass's request needs at least (``Settings.effective_passes``).
MIN_PASS_TIME = 0.3
#: A CPU worker on a core for less than this share of its timed calls' wall time: a warning.
BUSY_SHARE = 0.8
#: Pass medians spanning more than this share of their median: a warning.
PASS_SPREAD_WARNING = 0.05
#: A CPU backend's own copy below this share of another backend's copy of the same workload in
#: the run is not its memory's bandwidth (every CPU backend shares the same memory; a jitted
#: JAX copy into a new buffer runs at 0.7-0.8 of NumPy's): the fastest copy is the bar instead.
COPY_CREDIBLE_SHARE = 0.5


#: glibc malloc in every bench worker: chunks never mmapped, the heap never trimmed (see measure's
#: docstring, "Allocator"). Memory a call frees is reused by the next call without page faults,
#: whatever the process allocated before.
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**62), "MALLOC_ARENA_MAX": "1",
                 "MALLOC_TOP_PAD_": str(64 * 2**20)}


#: How a figure is taken, as run.json states it.
METHOD = ("each backend in its own worker process; per shape group, passes in which every backend "
          "takes its turn at its copy, then every backend at its ops (order rotating), each pass: "
          "fresh rotating inputs, warm-up to a steady state (a call without page faults), timed rounds "
          "through pytest-benchmark; the figure is the median of every pass's rounds; the device's "
          "copy is timed the same way in the same worker, in the same pass; a CPU backend's copy "
          "below half another's on the same workload is replaced by the fastest (copy_of); glibc "
          "malloc in the workers reuses freed memory (allocator)")


def allocator_env() -> dict[str, str]:
    """ALLOCATOR_ENV, or nothing with ``SOFTMAXBENCH_ALLOCATOR=default`` (glibc's own dynamic
    behaviour: figures then include mapping fresh pages, and depend on each worker's history)."""
    return {} if os.environ.get("SOFTMAXBENCH_ALLOCATOR") == "default" else dict(ALLOCATOR_ENV)


@dataclass(frozen=True)
class Settings:
    """How long and how often to time each workload."""

    min_rounds: int = 10
    max_rounds: int = 2000
    max_time: float = 1.0            # seconds of timed rounds aimed at per workload
    warmup_time: float = 0.1         # seconds of warm-up calls after the first call
    min_warmup: int = 3
    max_warmup: int = 200
    cache: int | None = None         # last-level cache bytes; None: detect per device (in the worker)
    max_sets: int = 4096             # cap on rotating input sets (tiny shapes)
    start_timeout: float = 300.0     # seconds for a worker to load its backend
    prepare_timeout: float = 600.0   # seconds for pool, first call (compiles) and warm-up
    passes: int = 3                  # passes over each group, the backends' turns rotating (at most)

    @property
    def effective_passes(self) -> int:
        """Passes actually made: each pass's timed request must last MIN_PASS_TIME or more (the
        clock check cannot see through a shorter one), so a short max_time makes fewer."""
        return max(1, min(self.passes, int(self.max_time / MIN_PASS_TIME)))

    @classmethod
    def for_run(cls, quick: bool, min_rounds: int | None = None) -> Settings:
        s = cls(max_time=0.4, warmup_time=0.05) if quick else cls()
        return replace(s, min_rounds=min_rounds) if min_rounds else s


@dataclass(frozen=True)
class Target:
    """One backend as its worker described it (validated metadata; no backend object here)."""

    name: str
    device: str
    dtypes: tuple[str, ...]
    ops: tuple[str, ...]
    framework: str = ""


@dataclass(frozen=True)
class BenchItem:
    """One (backend, workload) to time; ``workload.op == "copy"`` for the device's copy."""

    backend: Target
    workload: Workload

    @property
    def id(self) -> str:
        return f"{self.backend.name}-{self.workload.id}"

    @property
    def is_copy(self) -> bool:
        return self.workload.op == COPY_OP


# ---------------------------------------------------------------------------------------------
# Planning

def plan(targets: Sequence[Target], *, quick: bool = False, ops=None, dtypes=None, names=None,
         workloads: Sequence[Workload] | None = None, copies: bool = True) -> list[list[BenchItem]]:
    """Groups of items (same device, dtype, shape and label), in run order; in each group every
    backend's items are together, its copy first, and the backends take turns.

    ``workloads`` replaces the selection (quick/ops/dtypes/names) when given; ``copies=False``
    leaves out the copies (and with them ``copy_gbps``).
    """
    per_group: dict[tuple, dict[str, list[BenchItem]]] = {}
    for b in targets:
        if workloads is not None:
            work = [w for w in workloads if w.dtype in b.dtypes]
        else:
            # --quick measures float32 unless dtypes are named (every backend has it).
            dts = [d for d in (dtypes or (("float32",) if quick else DTYPES)) if d in b.dtypes]
            work = select(b.device, quick=quick, ops=ops, dtypes=dts, names=names) if dts else []
        for w in work:
            per_group.setdefault((b.device, w.dtype, w.shape, w.label), {}).setdefault(b.name, []).append(
                BenchItem(b, w))
    groups = []
    for n, by_backend in enumerate(per_group.values()):
        order = sorted(by_backend)
        order = order[n % len(order):] + order[:n % len(order)]  # who goes first rotates: drift spreads
        group: list[BenchItem] = []
        for name in order:
            items = sorted(by_backend[name], key=lambda it: it.workload.op)
            if copies:
                group.append(BenchItem(items[0].backend, copy_workload(items[0].workload)))
            group += items
        groups.append(group)
    return groups


# ---------------------------------------------------------------------------------------------
# Backends, through workers

def worker_env(threads: int | None) -> dict[str, str]:
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # JAX takes 75% of a GPU at start otherwise
    env.update(allocator_env())
    if threads is not None:
        env.update(thread_env(threads))
    return env


def discover_names(plugins: Sequence[str] = (), check: bool = True) -> list[tuple[str, str | None]]:
    """(name, why unavailable) of every backend discovery finds, asked of a discovery worker."""
    from softmaxbench.suite.isolation.channel import Worker, name_problem

    w = Worker(None, plugins=tuple(plugins), env={})
    try:
        w.start(timeout_s=300)
        reply = w.request("discover", {"check": check}, [], timeout_s=300)
    finally:
        w.kill()
    out = []
    for e in reply.header.get("entries") or []:
        if not isinstance(e, dict) or name_problem(e.get("name")) is not None:
            continue
        why = e.get("unavailable")
        out.append((e["name"], None if why is None else str(why)[:300]))
    return out


class BackendWorker:
    """The parent's handle on one backend's worker: started, restarted after a loss, killed."""

    def __init__(self, name: str, plugins: Sequence[str], threads: int | None, log_dir: Path | None,
                 settings: Settings):
        self.name, self.plugins, self.threads, self.settings = name, tuple(plugins), threads, settings
        self.log_path = None if log_dir is None else log_dir / f"bench-{name}.log"
        self.worker = None
        self.info = None
        self.lost_note: str | None = None

    def start(self):
        from softmaxbench.suite.isolation.channel import Worker

        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.worker = Worker(self.name, plugins=self.plugins, env=worker_env(self.threads),
                             log_path=self.log_path)
        self.info = self.worker.start(timeout_s=self.settings.start_timeout)
        return self.info

    def request(self, header: dict, *, timeout_s: float):
        if self.worker is None or not self.worker.alive():
            self.start()
        return self.worker.request("bench", header, [], timeout_s=timeout_s)

    def kill(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker = None


def start_workers(names: Sequence[str], plugins: Sequence[str], threads: int | None, log_dir: Path | None,
                  settings: Settings, echo=None) -> tuple[list[BackendWorker], list[Target], list[str]]:
    """Start one worker per backend; returns (workers, their targets, lines about those left out)."""
    from softmaxbench.suite.isolation.channel import WorkerLost, WorkerRefused

    workers, targets, skipped = [], [], []
    for name in names:
        bw = BackendWorker(name, plugins, threads, log_dir, settings)
        try:
            info = bw.start()
        except (WorkerRefused, WorkerLost) as exc:
            bw.kill()
            skipped.append(f"{name}: {getattr(exc, 'note', None) or exc}")
            continue
        if info.unavailable:
            bw.kill()
            skipped.append(f"{name}: {info.unavailable}")
            continue
        workers.append(bw)
        targets.append(Target(info.name, info.device, tuple(info.dtypes), tuple(info.ops), info.framework))
    return workers, targets, skipped


# ---------------------------------------------------------------------------------------------
# One item

def pass_rounds(estimate_s: float, s: Settings, passes: int) -> int:
    """Timed rounds of one pass: the workload's rounds (as many as fill max_time at the warm-up's
    median, within [min_rounds, max_rounds]) shared evenly by the passes.

    >>> pass_rounds(0.01, Settings(), 3), pass_rounds(1.0, Settings(), 3), pass_rounds(1e-6, Settings(), 1)
    (34, 4, 2000)
    """
    total = max(s.min_rounds, min(s.max_rounds, math.ceil(s.max_time / max(estimate_s, 1e-9))))
    return max(1, math.ceil(total / max(1, passes)))


def _pass_spread(medians: Sequence[float]) -> float | None:
    """(largest - smallest) pass median over their median; None with fewer than two passes."""
    if len(medians) < 2:
        return None
    mid = float(np.median(medians))
    return (max(medians) - min(medians)) / mid if mid > 0 else None


@dataclass
class _Pending:
    """An item whose passes are under way: its record so far and each pass's figures."""

    item: BenchItem
    rec: dict
    passes: list = field(default_factory=list)
    duration: float = 0.0


class Runner:
    """Runs the planned items through the workers, checks every reply, keeps the records."""

    def __init__(self, workers: dict[str, BackendWorker], settings: Settings, out_dir: Path | None,
                 threads: int | None, echo, seed: int | None = None):
        self.workers, self.settings, self.out = workers, settings, out_dir
        self.threads, self.echo = threads, echo
        self.copies = True
        self.records: list[dict] = []
        self.copy_gbps: dict[tuple, float] = {}
        self.copy_device: dict[str, str] = {}  # the device of each backend with a copy figure
        self.inputs = judge.InputCache()
        self.rng = np.random.default_rng(seed)
        self.machine = rec_mod.machine_info()["label"]
        self._writer = rec_mod.ResultsWriter(out_dir) if out_dir is not None else None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def add(self, rec: dict) -> None:
        _validate(rec)
        self.records.append(rec)
        if self._writer is not None:
            self._writer.write(rec)
        if self.echo:
            self.echo(progress_line(rec))

    def base_record(self, item: BenchItem) -> dict:
        b, w = item.backend, item.workload
        return rec_mod.new_record(
            "bench", backend=f"copy:{b.name}" if item.is_copy else b.name, device=b.device,
            machine=self.machine, op=w.op, dtype=w.dtype, shape=list(w.shape), axis=-1, workload=w.label,
            bytes=w.bytes_moved, threads=None, verdict=None)

    def release(self, name: str) -> None:
        bw = self.workers[name]
        if bw.worker is not None and bw.worker.alive():
            try:
                bw.worker.request("bench", {"phase": "release"}, [], timeout_s=60)
            except Exception:  # noqa: BLE001 - a worker that cannot release is killed instead
                bw.kill()

    def run_item(self, item: BenchItem) -> dict:
        """Every pass of one item at once (one worker, passes back to back), then its record."""
        p = self.start_item(item)
        for k in range(self.settings.effective_passes):
            self.run_pass(p, k)
        return self.finish_item(p)

    def start_item(self, item: BenchItem) -> _Pending:
        return _Pending(item, self.base_record(item))

    def run_pass(self, p: _Pending, k: int) -> None:
        """One pass of ``p``'s item in its backend's worker (nothing once the item has a verdict)."""
        from softmaxbench.suite.isolation.channel import WorkerLost, WorkerRefused

        item, rec = p.item, p.rec
        if rec.get("verdict") is not None:
            return
        b, w = item.backend, item.workload
        if not item.is_copy and w.op not in b.ops:
            rec.update(verdict="unsupported", message=f"{b.name} does not provide {w.op}")
            return
        started = time.perf_counter()
        bw = self.workers[b.name]
        try:
            got = self._measure(bw, item, rec, self.settings.effective_passes, k)
            if got is not None:
                p.passes.append(got)
        except WorkerLost as exc:
            rec.update(verdict=exc.kind, message=f"the worker of {b.name} was lost on this workload: "
                                                 f"{exc.note}"[:600])
            bw.kill()  # the next item starts a fresh worker
        except WorkerRefused as exc:
            rec.update(verdict="error", message=f"the bench harness failed in {b.name}'s worker: {exc}"[:600])
        p.duration += time.perf_counter() - started

    def finish_item(self, p: _Pending) -> dict:
        """The item's record from its passes (a verdict from any pass is the record's), kept."""
        rec = p.rec
        if rec.get("verdict") is None and p.passes:
            samples = [x for q in p.passes for x in q["samples"]]
            median = summarize(samples).median
            problem = judge.lazy_problem([m for q in p.passes for m in q["sampled"]], median)
            problem = problem or judge.replay_problem([j for q in p.passes for j in q["judged"]],
                                                      judge.replay_margin(p.item.workload.bytes_moved))
            if problem:  # the timing held: it stays in the record, without a figure
                rec.update(verdict="fail", message=problem, samples_s=samples, rounds=len(samples),
                           median_s=median, request_wall_s=sum(q["wall_s"] for q in p.passes),
                           passes=len(p.passes))
            else:
                self._combine(p.item, rec, p.passes)
        elif rec.get("verdict") is None:
            rec.update(verdict="error", message="no pass of this workload was timed")
        rec["duration_s"] = p.duration
        self.add(rec)
        return rec

    def _measure(self, bw: BackendWorker, item: BenchItem, rec: dict, passes: int = 1,
                 pass_index: int = 0) -> dict | None:
        """One pass: prepare, time, check the clock and the outputs. Returns the pass's figures, or
        None with ``rec``'s verdict set (a failed check, an error, unsupported)."""
        b, w, s = item.backend, item.workload, self.settings
        # The judged rounds' input sets (numbers the pool never holds), built in prepare.
        variants = [s.max_sets + 1000 + int(self.rng.integers(0, 10**6))
                    for _ in range(math.ceil(SAMPLED_ROUNDS / passes))]
        header = {"phase": "prepare", "workload": {"label": w.label, "op": w.op, "dtype": w.dtype,
                                                    "shape": list(w.shape), "seed": w.seed},
                  "settings": asdict(s), "threads": self.threads, "variants": variants,
                  "warmup_share": 1.0 if pass_index == 0 else 1.0 / passes}
        prep = bw.request(header, timeout_s=s.prepare_timeout).header
        status = prep.get("status")
        if status == "skip":
            rec.update(verdict="unsupported", message=_text(prep.get("message")))
            return None
        if status in ("unsupported", "raised"):
            rec.update(verdict="unsupported" if status == "unsupported" else "error",
                       message=_text(prep.get("message")))
            return None
        if status != "ready":
            rec.update(verdict="error", message=f"the worker answered prepare with {_text(status)!r}")
            return None
        estimate = _number(prep.get("estimate_s"), 1e-3)
        rounds = pass_rounds(estimate, s, passes)
        k = min(math.ceil(SAMPLED_ROUNDS / passes), rounds)  # SAMPLED_ROUNDS judged over the passes, or more
        sample_rounds = sorted(int(r) for r in self.rng.choice(rounds, size=k, replace=False))
        pool_sets = int(_number(prep.get("pool_sets"), 2))
        variants = variants[:k]
        timeout = 120 + 10 * rounds * max(estimate, 1e-4) + 3 * s.max_time
        pid = bw.worker.proc.pid if bw.worker.proc is not None else None
        threads_before = judge.thread_cpu_s(pid) if pid else {}
        reply = bw.request({"phase": "time", "rounds": rounds, "sample_rounds": sample_rounds,
                            "variants": variants}, timeout_s=timeout)
        busiest = judge.busiest_thread_s(threads_before, judge.thread_cpu_s(pid)) if pid else 0.0
        t = reply.header
        if t.get("status") in ("unsupported", "raised"):
            rec.update(verdict="unsupported" if t["status"] == "unsupported" else "error",
                       message=_text(t.get("message")))
            return None
        samples = t.get("samples")
        if not isinstance(samples, list):
            rec.update(verdict="fail", message="the worker reported no samples")
            return None
        sampled = [m for m in (t.get("sampled") or []) if isinstance(m, dict)][:k]
        out_bytes = sum(_out_bytes(m) for m in sampled)
        allowance = judge.harness_allowance(rounds, out_bytes, k * w.set_bytes, gpu=b.device == "gpu")
        problem = judge.timing_problem(samples, reply.wall_s, rounds, allowance)
        problem = problem or judge.cpu_problem(samples, busiest, allowance)
        rec.update(first_call_s=rec.get("first_call_s") or _number(prep.get("first_call_s")),
                   compile_s=rec.get("compile_s") or _number(prep.get("compile_s")),
                   timer=_text(prep.get("timer"), 60), threads=_int(prep.get("threads")),
                   pool_sets=pool_sets)
        if item.is_copy and prep.get("copy_kernel"):
            rec["copy_kernel"] = _text(prep.get("copy_kernel"), 200)
        if problem:
            rec.update(verdict="fail", message=problem, rounds=len(samples),
                       samples_s=[float(x) for x in samples if isinstance(x, int | float)][:10000])
            return None
        median = summarize(samples).median
        # The work: the kept outputs, judged on rows picked now.
        problem = self._judge_outputs(bw, w, sampled, sample_rounds, variants)
        if problem:  # the timing itself held: it stays in the record, without a figure
            rec.update(verdict="fail", message=problem, samples_s=[float(x) for x in samples],
                       rounds=len(samples), median_s=median, request_wall_s=reply.wall_s)
            return None
        # Lazy results and replays are decided over every pass (finish_item): one slow conversion
        # or one slow judged round is noise, every one of them is evidence.
        return {"samples": [float(x) for x in samples], "median_s": median, "wall_s": reply.wall_s,
                "pid": _int(prep.get("pid")), "huge_pages_mib": _number(prep.get("huge_pages_mib")),
                "sampled": sampled, "judged": _judged_rounds(samples, sample_rounds, median),
                **_diagnostics(t, samples)}

    def _combine(self, item: BenchItem, rec: dict, passes: list[dict]) -> None:
        """The record's figures over every pass: the median of all their samples (each pass the
        same number of rounds), with each pass's median beside it."""
        b, w = item.backend, item.workload
        samples = [x for p in passes for x in p["samples"]]
        stats = summarize(samples)
        rec.update(samples_s=samples, rounds=len(samples), median_s=stats.median, iqr_s=stats.iqr,
                   cv=stats.cv, request_wall_s=sum(p["wall_s"] for p in passes),
                   passes=len(passes), pass_median_s=[p["median_s"] for p in passes])
        for key in ("minor_faults_per_call", "cpu_share", "cpu_median_s"):
            vals = [p[key] for p in passes if p.get(key) is not None]
            if vals:
                rec[key] = float(np.median(vals))
        judged = [s / m for p in passes for s, m, _ in p.get("judged", ()) if m > 0]
        if judged:  # how much slower the calls on unseen inputs were (replay_problem's measure)
            rec["judged_ratio"] = float(min(judged))
        huge = [p["huge_pages_mib"] for p in passes if p.get("huge_pages_mib") is not None]
        if huge:
            rec["huge_pages_mib"] = min(huge)
        gbps = w.bytes_moved / stats.median / 1e9 if stats.median > 0 else None
        key = (b.name, w.dtype, w.shape, w.label)
        warnings = []
        if stats.cv > CV_WARNING:
            warnings.append(f"wide spread: coefficient of variation {stats.cv:.1%} over {stats.n} rounds "
                            "(> 5%)")
        share = rec.get("cpu_share")
        if b.device == "cpu" and share is not None and share < BUSY_SHARE:
            warnings.append(f"busy machine: the worker had a core for {share:.0%} of its timed calls "
                            "(its CPU time over their wall time; other jobs held the cores)")
        spread = _pass_spread(rec["pass_median_s"])
        if spread is not None and spread > PASS_SPREAD_WARNING:
            warnings.append(f"the passes disagree: their medians span {spread:.1%} of the median")
        warning = "; ".join(warnings) or None
        if item.is_copy:
            if gbps:
                self.copy_gbps[key] = gbps
                self.copy_device[b.name] = b.device
            rec.update(gbps=gbps, warning=warning)
            return
        copy = self.copy_gbps.get(key)
        if b.device == "cpu" and copy is not None:
            copy = self._credible_copy(rec, b.name, w, copy)
        # Without copies (copies=False: a caller measuring the harness itself) there is no bar.
        why = judge.implausible(gbps, copy) if copy is not None or self.copies else None
        if why:
            rec.update(implausible=why, claimed_gbps=gbps, gbps=None, copy_gbps=copy, fraction_of_copy=None,
                       warning=warning)
            return
        rec.update(gbps=gbps, copy_gbps=copy, fraction_of_copy=gbps / copy if gbps and copy else None,
                   warning=warning)

    def _credible_copy(self, rec: dict, name: str, w: Workload, own: float) -> float:
        """The copy bandwidth a CPU backend's figure is set against: its own copy, unless that
        ran at less than :data:`COPY_CREDIBLE_SHARE` of a built-in backend's copy of the same
        workload on the same CPU memory in this run (a copy hook made slow would inflate every
        fraction of copy and lower the implausibility bar); then the fastest of those, named in
        the record (``copy_of``, ``own_copy_gbps``). Only built-ins' copies that passed every check
        can be another backend's bar: a plugin's copy never moves a figure but its own. Every copy
        of a group is final before its ops' records (:func:`run_group`)."""
        from softmaxbench.backends.registry import BUILTINS  # names only: no adapter is imported

        others = {n: g for (n, dtype, shape, label), g in self.copy_gbps.items()
                  if n != name and n in BUILTINS and self.copy_device.get(n) == "cpu"
                  and (dtype, shape, label) == (w.dtype, w.shape, w.label)}
        if not others:
            return own
        best_name, best = max(others.items(), key=lambda kv: kv[1])
        if own >= COPY_CREDIBLE_SHARE * best:
            return own
        rec.update(copy_of=f"copy:{best_name}", own_copy_gbps=own)
        return best

    def _judge_outputs(self, bw: BackendWorker, w: Workload, sampled: list[dict], sample_rounds: list[int],
                       variants: list[int]) -> str | None:
        if len(sampled) != len(sample_rounds):
            return (f"the worker kept {len(sampled)} outputs of the {len(sample_rounds)} sampled timed "
                    "rounds")
        expect = dict(zip(sample_rounds, variants, strict=True))
        row_req = []
        for m in sampled:
            if expect.get(m.get("round")) != m.get("set"):
                return (f"the worker says round {_text(m.get('round'))} ran on input set "
                        f"{_text(m.get('set'))}, not the set {expect.get(m.get('round'))} it was given")
            shape = m.get("shape") if isinstance(m.get("shape"), list) else []
            if not shape or w.op == "cross_entropy":
                row_req.append(None)
            else:
                n_rows = int(shape[0]) if isinstance(shape[0], int) else 0
                row_req.append(judge.pick_rows(max(n_rows, 0), self.rng))
        reply = bw.request({"phase": "rows", "rows": row_req}, timeout_s=300)
        arrays = reply.arrays
        if len(arrays) != len(sampled):
            return f"the worker returned {len(arrays)} of the {len(sampled)} sampled outputs"
        for m, rows, actual in zip(sampled, row_req, arrays, strict=True):
            where = f"timed round {m['round']} (input set {m['set']})"
            if rows is None:
                problem = judge.output_problem(w, self.inputs.set(w, int(m["set"])), actual, None, where)
            else:  # only the judged rows of the input set are built
                problem = judge.output_problem(w, self.inputs.rows(w, int(m["set"]), rows), actual,
                                               list(range(len(rows))), where)
            if problem:
                return problem
        return None


def _judged_rounds(samples: list, sample_rounds: list[int], median: float) -> list[tuple[float, ...]]:
    """Per judged round: its sample, the pass's median, and the 90th percentile of the pass's
    other rounds (what :func:`judge.replay_problem` weighs)."""
    judged = set(sample_rounds)
    others = [float(x) for i, x in enumerate(samples) if i not in judged]
    p90 = float(np.quantile(others, 0.9)) if others else 0.0
    return [(float(samples[r]), median, p90) for r in sample_rounds]


def _diagnostics(t: dict, samples: list) -> dict:
    """What the worker says each round cost besides time (its own word: shown, never trusted):
    minor page faults per call (an allocator that maps fresh memory every call makes the kernel's
    page faults part of the figure) and the process's CPU seconds over the wall seconds."""
    out: dict = {}
    faults = [f for f in (t.get("minor_faults") or []) if isinstance(f, int) and not isinstance(f, bool)]
    if faults:
        out["minor_faults_per_call"] = float(np.median(faults))
    cpu = [_number(c) for c in (t.get("cpu_s") or [])]
    if len(cpu) == len(samples) and all(c is not None for c in cpu):
        out["cpu_median_s"] = float(np.median(cpu))
        shares = [c / s for c, s in zip(cpu, samples, strict=True) if isinstance(s, int | float) and s > 0]
        if shares:
            out["cpu_share"] = float(np.median(shares))
    return out


def _out_bytes(m: dict) -> int:
    shape = m.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        return 0
    return math.prod(shape) * 8


def _text(v: Any, cap: int = 500) -> str:
    from softmaxbench.suite.isolation.channel import clean_text

    return clean_text(v if isinstance(v, str) else repr(v), cap)


def _number(v: Any, default: float | None = None) -> float | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else default


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 20 else None


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(rec_mod.schema("results"))


def _validate(rec: dict) -> None:
    err = next(iter(_validator().iter_errors(rec)), None)
    if err is not None:
        raise rec_mod.RecordError(f"invalid result record: {err.message}")


# ---------------------------------------------------------------------------------------------
# The run

def prepare_out_dir(out_dir: Path) -> None:
    """A bench run owns its results: earlier records and pytest-benchmark JSON there are replaced."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (rec_mod.RESULTS_FILE, PYTEST_BENCHMARK_FILE):
        (out_dir / name).unlink(missing_ok=True)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def run_bench(out_dir: str | os.PathLike | None, backends: Sequence[str] | None = None, *,
              quick: bool = False, ops=None, dtypes=None, plugins: Sequence[str] = (),
              threads: int | None = None, command: str | None = None,
              echo: Callable[[str], None] | None = print, names=None,
              workloads: Sequence[Workload] | None = None, settings: Settings | None = None,
              copies: bool = True, pytest_json: bool = True, seed: int | None = None,
              skipped: list[str] | None = None, strict: bool = False) -> tuple[int, list[dict]]:
    """Benchmark the named backends (None: every available one), each in its own worker.

    Returns (exit code, records): 1 when any workload failed a check, raised, crashed, timed out
    or gave an implausible figure, or when a named backend could not run; else 0. With
    ``out_dir``, records go to ``out_dir/results.jsonl`` as they finish, with ``run.json`` and
    (``pytest_json``) ``pytest-benchmark.json``. Ctrl-C and SIGTERM kill the workers, mark
    run.json ``interrupted`` and raise KeyboardInterrupt (the finished records are on disk).
    ``skipped`` (a list) receives one line per backend that could not run; ``strict``: a named
    backend that cannot run is an InputError (exit 2, with close names for an unknown one) before
    anything is written.
    """
    settings = settings or Settings.for_run(quick)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists() and not out.is_dir():
        from softmaxbench.errors import InputError

        raise InputError(f"--out {out}: exists and is not a directory")
    # Workers run in private working directories: plugin files are named by absolute path.
    plugins = tuple(os.path.abspath(p) if p.endswith(".py") or os.sep in p else p for p in plugins)
    previous = signal.getsignal(signal.SIGTERM)
    in_main = _is_main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, _on_sigterm)
    run = None
    lock = None
    workers: list[BackendWorker] = []
    runner = None
    lost_backends: list[str] = []
    try:
        from softmaxbench.errors import InputError
        from softmaxbench.suite.selection import select_backends

        try:  # one selection for every verb (suite.selection): names -> validated descriptions
            chosen, left = select_backends(list(backends) if backends else None, plugins)
        except InputError:
            if strict:
                raise
            chosen, left = [], {}
            for n in backends or ():
                try:
                    chosen += select_backends([n], plugins)[0]
                except InputError as exc:
                    left[n] = str(exc)
        names_to_start = [i.name for i in chosen]
        if strict and not any(not item.is_copy for g in plan(chosen, quick=quick, ops=ops, dtypes=dtypes,
                                                             names=names, workloads=workloads,
                                                             copies=False) for item in g):
            raise InputError("no workload matches the selection "
                             "(--ops/--dtypes/--cases and the backends' dtypes)")
        if out is not None:
            lock = rec_mod.OutLock(out)
            lock.__enter__()
        workers, targets, left_out = start_workers(names_to_start, plugins, threads,
                                                   out / "logs" if out is not None else None, settings)
        if strict and left_out:
            raise _not_runnable(left_out[0], plugins)
        left_out = [f"{n}: {w}" for n, w in left.items()] + left_out
        if out is not None:
            prepare_out_dir(out)
            run = rec_mod.new_run("bench", command or shlex.join(["softmaxbench", "bench", *sys.argv[2:]]),
                                  threads=threads)
            run["bench"] = {"settings": asdict(settings), "load_average_at_start": _load_average(),
                            "isolation": "one worker process per backend",
                            "passes": settings.effective_passes,
                            "allocator": allocator_env() or "glibc defaults (SOFTMAXBENCH_ALLOCATOR=default)",
                            "method": METHOD}
            rec_mod.write_run(out, run)
        for line in left_out:
            if echo:
                echo(f"  skipping {line}")
        if skipped is not None:
            skipped.extend(left_out)
        if backends is not None:
            lost_backends += left_out
        groups = plan(targets, quick=quick, ops=ops, dtypes=dtypes, names=names, workloads=workloads,
                      copies=copies)
        if echo:
            echo(f"softmaxbench bench: {sum(not i.is_copy for g in groups for i in g)} workloads on "
                 f"{len(targets)} backends{' (quick)' if quick else ''}, one worker each"
                 + (f" -> {out}" if out is not None else ""))
        runner = Runner({bw.info.name: bw for bw in workers}, settings, out, threads, echo, seed)
        runner.copies = copies
        if run is not None:
            run["bench"]["workloads"] = sum(len(g) for g in groups)
            run["bench"]["backends"] = [t.name for t in targets]
            rec_mod.write_run(out, run)
        for group in groups:
            run_group(runner, group, settings.effective_passes)
    except KeyboardInterrupt:
        for bw in workers:
            bw.kill()
        if run is not None:
            run["interrupted"] = True
            run["finished"] = rec_mod.now_iso()
            rec_mod.write_run(out, run)
        if runner is not None:
            runner.close()
            if out is not None and pytest_json:
                write_pytest_benchmark(out / PYTEST_BENCHMARK_FILE, runner.records)
        raise
    finally:
        for bw in workers:
            bw.kill()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        if lock is not None:
            lock.__exit__(None, None, None)
    runner.close()
    recs = runner.records
    if out is not None and pytest_json:
        write_pytest_benchmark(out / PYTEST_BENCHMARK_FILE, recs)
    if run is not None:
        run["finished"] = rec_mod.now_iso()
        run["bench"]["not_run"] = lost_backends
        run["bench"]["load_average_at_end"] = _load_average()
        rec_mod.write_run(out, run)
    failed = bool(lost_backends) or any(r.get("verdict") in FAILING or r.get("implausible") for r in recs)
    return (EXIT_ERROR if failed else EXIT_OK), recs


def run_group(runner: Runner, group: Sequence[BenchItem], passes: int) -> list[dict]:
    """Time one group in ``passes`` passes; in each, every backend takes its turn at its copy,
    then every backend at its ops (each in its own worker, the order rotating by one backend per
    pass), so each backend's passes are spread over the group's time, drift of the machine
    reaches all of them alike, and every copy of the group is known before any op's figure is
    set against it. Each record is written as its item's last pass ends."""
    pending = [runner.start_item(item) for item in group]
    turns: dict[str, list[_Pending]] = {}
    for p in pending:
        turns.setdefault(p.item.backend.name, []).append(p)
    order = list(turns)
    done = []
    for k in range(passes):
        rotated = order[k % len(order):] + order[:k % len(order)]
        for copies in (True, False):
            for name in rotated:
                mine = [p for p in turns[name] if p.item.is_copy == copies]
                for p in mine:
                    runner.run_pass(p, k)
                    if k == passes - 1:  # its last pass: the record is complete, written now
                        done.append(runner.finish_item(p))
                if mine:
                    runner.release(name)
    return done


def _not_runnable(line: str, plugins: Sequence[str]):
    """The InputError for a named backend that could not start (close names when it is unknown)."""
    import difflib

    from softmaxbench.errors import InputError

    name, _, why = line.partition(": ")
    if "could not load backend" in why or "unknown backend" in why.lower():
        try:
            known = [n for n, _ in discover_names(plugins, check=False)]
        except Exception:  # noqa: BLE001 - suggestions are a courtesy
            known = []
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return InputError(f"unknown backend {name!r}{hint} (see 'softmaxbench list')")
    return InputError(f"backend {name} cannot run here: {why}".splitlines()[0][:400])


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def write_pytest_benchmark(path: Path, recs: Sequence[dict]) -> None:
    """pytest-benchmark's JSON of the checked records (the samples the workers' pytest-benchmark
    sessions held), for ``pytest-benchmark compare``."""
    from pytest_benchmark import __version__ as pb_version
    from pytest_benchmark.stats import Stats

    benchmarks = []
    for r in recs:
        samples = r.get("samples_s")
        if not samples or r.get("verdict") in FAILING or r.get("implausible"):
            continue
        st = Stats()
        for x in samples:
            st.update(x)
        ident = f"{r['backend']}-{r['op']}-{r['dtype']}-{r.get('workload')}"
        name = f"test_throughput[{ident}]"
        benchmarks.append({
            "group": f"{r['op']} {r['dtype']} {r.get('workload')}", "name": name,
            "fullname": f"bench_suite.py::{name}", "params": {"bench_item": ident}, "param": ident,
            "extra_info": {k: r.get(k) for k in ("backend", "device", "op", "dtype", "shape", "workload",
                                                 "bytes", "timer", "gbps", "fraction_of_copy",
                                                 "compile_s", "first_call_s")},
            "options": {"disable_gc": True, "timer": "softmaxbench.suite.bench.in_worker.HarnessClock",
                        "min_rounds": len(samples), "max_time": None, "min_time": None, "warmup": False},
            "stats": {**st.as_dict(), "data": [float(x) for x in samples], "iterations": 1}})
    doc = {"machine_info": dict(_machine_info_once()), "commit_info": {}, "benchmarks": benchmarks,
           "datetime": rec_mod.now_iso(), "version": pb_version}
    path.write_text(json.dumps(doc, indent=1, default=float), encoding="utf-8")


@functools.cache
def _machine_info_once() -> dict:
    import platform

    return {"node": platform.node(), "processor": platform.processor(), "machine": platform.machine(),
            "python_implementation": platform.python_implementation(),
            "python_version": platform.python_version(), "system": platform.system(),
            "release": platform.release(), "cpu": {"count": os.cpu_count()}}


def load_pytest_benchmark(path: str | os.PathLike) -> dict:
    """pytest-benchmark's JSON of a results directory (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / PYTEST_BENCHMARK_FILE
    return json.loads(p.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Output

def sig(v: Any, digits: int = 3) -> str:
    """A figure with ``digits`` significant figures, never '0.00' for a small one.

    >>> sig(0.001234), sig(12.3456), sig(1234.5), sig(None), sig(0.0)
    ('0.00123', '12.3', '1234', '', '0')
    """
    if v is None or not isinstance(v, int | float) or not math.isfinite(v):
        return ""
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    return f"{v:.{decimals}f}"


def progress_line(rec: dict) -> str:
    """One line per finished workload (stderr while the run goes on)."""
    what = f"{rec['backend']:<16} {rec['op']:<18} {rec['dtype']:<8} {rec.get('workload') or ''}"
    if rec.get("verdict") in ("unsupported", "error", "fail", "crash", "timeout"):
        return f"  {what}: {rec['verdict']}: {rec.get('message') or ''}"
    if rec.get("implausible"):
        return f"  {what}: implausible: {rec['implausible']}"
    frac = rec.get("fraction_of_copy")
    tail = f" ({frac:.0%} of copy)" if frac else ""
    return f"  {what}: {sig(rec.get('gbps'))} GB/s{tail}"


def table(records: Sequence[dict]) -> str:
    """The run's table: one row per record, GB/s and fraction of copy bandwidth (figures that
    failed a check or are implausible are left out, with the reason)."""
    from tabulate import tabulate

    rows = []
    for r in records:
        shape = "x".join(map(str, r.get("shape") or []))
        if r.get("verdict") in ("unsupported", "error", "fail", "crash", "timeout") or r.get("implausible"):
            why = f"{r['verdict']}: {r.get('message') or ''}" if r.get("verdict") else \
                f"implausible: {r['implausible']}"
            rows.append([r["backend"], r["op"], r["dtype"], r.get("workload"), shape, "", "", "", "", "", "",
                         why[:70]])
            continue
        frac = r.get("fraction_of_copy")
        rows.append([r["backend"], r["op"], r["dtype"], r.get("workload"), shape,
                     sig(r["median_s"] * 1e6 if r.get("median_s") else None), sig(r.get("gbps")),
                     sig(r.get("copy_gbps")), "" if frac is None else f"{100 * frac:.0f}",
                     sig(r["cv"] * 100 if r.get("cv") is not None else None, 2), sig(r.get("compile_s")),
                     "wide spread" if r.get("warning") else ""])
    return tabulate(rows, headers=["backend", "op", "dtype", "workload", "shape", "median µs", "GB/s",
                                   "copy GB/s", "% copy", "CV %", "compile s", "note"],
                    disable_numparse=True)


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # not on this platform
        return None
