"""Fidelity of the benchmark harness, shown by measurement: ``python -m benchmarks.bench_fidelity``.

Two claims, each printed with its figures:

1. **Reproducible.** Two runs of the bench (the real path: pytest, pytest-benchmark,
   rotation, records) on the CPU backends agree within 5% in median GB/s at shapes of 16 MiB
   and more. Each (backend, workload) pair runs in a fresh process, as a user's bench does;
   each run is made of complete harness measurements, and the two runs' measurements
   alternate back to back (A B B A, then B A A B, ...): a neighbour's job that starts or
   stops during the check weighs on both runs alike. Sessions are added until the standard
   error of the paired difference is 1.5% (or a time budget is spent). Pairing matters: on a
   shared virtual machine even a plain 64 MiB copy into a reused buffer drifts by 10-20% in
   phases of a second or so, and such phases cancel between A and B of one session, not
   between two runs minutes apart.
2. **Cheap.** The harness adds at most 2% to a 1 MiB op. A no-op backend timed through the
   harness is compared with the same no-op in a bare ``perf_counter`` loop (alternated, several
   times, medians); the difference is what the harness adds to every sample, and it is set
   against the median time of each CPU backend's 1 MiB ops.

The machine's load average is printed with the figures: with more runnable jobs than cores, a
sample measures the run queue as much as the op, and no method makes two runs agree closely.

Exit 0 when both hold, 1 when one does not. ``--threads 1`` is the default: on a small machine
shared with other jobs, a second framework thread waits for a core someone else holds, and that
measures the neighbours, not the harness (pass ``--threads N`` to check N).

>>> noop = NoopBackend()
>>> x = object()
>>> noop.softmax(x, axis=-1) is x
True
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import mstats

from softmaxbench.backends.base import Backend
from softmaxbench.suite.bench import measure as bench
from softmaxbench.suite.bench.workloads import InputPool, Workload, clear_host_pool

REPRO_LIMIT = 0.05
OVERHEAD_LIMIT = 0.02

#: Shapes of 16 MiB and more (float32): a forward and a backward op, short and long rows, and
#: cross-entropy at an LLM vocabulary.
REPRO_WORKLOADS: tuple[Workload, ...] = (
    Workload("sweep-16MiB-r1024", "softmax", "float32", (4096, 1024)),
    Workload("sweep-64MiB-r16384", "log_softmax_vjp", "float32", (1024, 16384)),
    Workload("llm-t128-v50257", "cross_entropy", "float32", (128, 50257)),
)
#: 1 MiB shapes (float32) the overhead is set against.
SMALL_WORKLOADS: tuple[Workload, ...] = (
    Workload("sweep-1MiB-r1024", "softmax", "float32", (256, 1024)),
    Workload("sweep-1MiB-r1024", "log_softmax", "float32", (256, 1024)),
    Workload("sweep-1MiB-r1024", "softmax_vjp", "float32", (256, 1024)),
)
#: One measurement of a run: short, so that the two runs alternate quickly.
REPRO_SETTINGS = bench.Settings(min_rounds=4, max_time=0.2, warmup_time=0.0, min_warmup=1)
SMALL_SETTINGS = bench.Settings(min_rounds=50, max_time=0.5, warmup_time=0.1)


class NoopBackend(Backend):
    """Every op returns its first argument at once: what remains to time is the harness."""

    name = "noop"
    device = "cpu"
    framework = "numpy"

    def softmax(self, x, axis=-1):
        return x

    log_softmax = logsumexp = softmax

    def softmax_vjp(self, x, cotangent, axis=-1):
        return x

    log_softmax_vjp = softmax_vjp

    def cross_entropy(self, logits, target, **options):
        return logits

    cross_entropy_grad = cross_entropy


def bare_loop(backend: Backend, w: Workload, rounds: int, pool: InputPool | None = None) -> list[float]:
    """``rounds`` calls timed with nothing but perf_counter around them (same input rotation)."""
    pool = pool or InputPool(backend, w)
    fn = getattr(backend, w.op)
    kwargs = w.call_kwargs
    pc = time.perf_counter
    samples = []
    for _ in range(rounds):
        args = pool.next()
        t0 = pc()
        fn(*args, **kwargs)
        samples.append(pc() - t0)
    return samples


#: Share of blocks trimmed from each end of the paired log(A/B) (Yuen's 20% trimmed mean).
TRIM = 0.2


def run_times(sessions: Sequence[dict[str, Sequence[float]]]) -> tuple[float | None, float | None, float]:
    """Each run's time and the standard error of their log ratio, from sessions of samples.

    ``sessions`` holds, per bench session, run A's and run B's samples (seconds), in the order
    they ran: A B B A, B A A B, A B B A, ... Two consecutive sessions make a block in which A and
    B each held every place once, so what comes with a place (the first measurement of a
    session paying for what warms up) cancels within the block. Per block, each run's time is
    the geometric mean of its two session medians (A and B of one session saw the same machine),
    and the block's log ratio is log(A/B).

    The blocks whose ratio is among the 20% highest or the 20% lowest are set aside (a 20%
    trimmed mean: one measurement that lands on a host hiccup, 185 ms among 115 ms ones, makes
    a ratio of 1.5 that would otherwise swing the mean by 5%), and a run's time is averaged
    geometrically over the blocks kept. So A's time over B's is exactly the trimmed mean ratio,
    and the standard error is Yuen's, from the winsorized variance
    (``scipy.stats.mstats.trimmed_stde``). A lone last session (an odd count) is left out.

    >>> a, b, se = run_times([{"A": [1.0, 1.1, 1.0], "B": [1.1, 1.0, 1.1]},
    ...                       {"A": [2.2, 2.0, 2.2], "B": [2.0, 2.2, 2.0]}] * 2)
    >>> round(a, 3), round(b, 3), round(se, 3)
    (1.483, 1.483, 0.0)
    >>> run_times([{"A": [1.0], "B": [1.0]}] * 3)[2]
    inf
    """
    both = [sn for sn in sessions if sn.get("A") and sn.get("B")]
    blocks = list(zip(both[0::2], both[1::2], strict=False))
    if not blocks:
        return None, None, math.inf
    log_a = np.array([np.log([statistics.median(sn["A"]) for sn in blk]).mean() for blk in blocks])
    log_b = np.array([np.log([statistics.median(sn["B"]) for sn in blk]).mean() for blk in blocks])
    ratios = log_a - log_b
    n = len(ratios)
    cut = int(TRIM * n)
    keep = np.argsort(ratios, kind="stable")[cut:n - cut]
    se = float(mstats.trimmed_stde(ratios, limits=(TRIM, TRIM))) if n >= 2 else math.inf
    return math.exp(log_a[keep].mean()), math.exp(log_b[keep].mean()), se


def reproducibility(backends: Sequence[Backend], workloads: Sequence[Workload] = REPRO_WORKLOADS, *,
                    out_dir: Path | None, threads: int | None, settings: bench.Settings = REPRO_SETTINGS,
                    budget_s: float = 60.0, precision: float = 0.015, echo=print) -> list[dict]:
    """Two runs of the bench per (backend, workload), interleaved; rows with both runs' median GB/s.

    Each run is made of complete harness measurements of the workload (each its own
    pytest-benchmark test with its own input pool, first call, warm-up and timed rounds); the
    two runs' measurements alternate back to back, A B B A in one bench session, then B A A B,
    and so on: load that comes and goes lands on both runs alike instead of on whichever ran
    second.

    A run's figure is its median time in each session, averaged (geometrically, over blocks of
    two sessions, 20% trimmed on the paired ratio: :func:`run_times`), turned into GB/s. Not the median of
    all its samples pooled: this machine's memory bandwidth has states (a 64 MiB torch-compile
    VJP takes 120 ms for seconds on end, then 96 ms), the pooled samples are bimodal, and their
    median sits on the edge between the modes, where two more slow samples in one run move it
    by 20%. The per-session median is stable (A and B of one session see the same state), and
    the average weighs each state by the time the run spent in it.

    Enough rounds: after one uncounted warm-up session, sessions are added (six at least, in
    pairs) until the standard error of the runs' difference is under ``precision`` (1.5%: a 5%
    difference is then over three standard errors from none) or ``budget_s`` is spent. The
    standard error is taken from the blocks' paired log(A/B), not from the spread of the samples
    or of each run alone: samples of one measurement share the machine's state of the moment,
    so they are not independent, and the slow drift of a shared machine is common to A and B of
    a session. The stopping rule looks at the uncertainty, never at the difference itself.
    """
    rows = []
    for w in workloads:
        for b in backends:
            if w.dtype not in b.dtypes or w.op not in b.supported_ops():
                continue
            sessions: list[dict[str, list[float]]] = []  # per session, each run's samples
            measurements = {"A": 0, "B": 0}
            # A warm-up session first, not counted: the first measurements after the input pool
            # is made reuse the memory its making freed (a 64 MiB jax VJP took 79 ms there,
            # 150 ms after), which would set A against B by 50% in the first block.
            bench.run_bench(None, [b], [replace(w, label=f"{w.label}@warm-up")], settings=settings,
                            threads=threads, echo=None, pytest_json=False, copies=False, keep_pool=True)
            started, batch = time.perf_counter(), 0
            time_a, time_b, se = None, None, math.inf
            # Whole blocks of two sessions (see run_times), three blocks at least.
            while batch < 6 or batch % 2 or (se > precision and time.perf_counter() - started < budget_s):
                order = ("A", "B", "B", "A") if batch % 2 == 0 else ("B", "A", "A", "B")
                parts = [replace(w, label=f"{w.label}@{run}{batch}.{k}") for k, run in enumerate(order)]
                target = out_dir / f"{b.name}-{w.id}-{batch}" if out_dir else None
                _, recs = bench.run_bench(target, [b], parts, settings=settings, threads=threads, echo=None,
                                          pytest_json=False, copies=False, keep_pool=True)
                sessions.append({"A": [], "B": []})
                for r in recs:
                    if r.get("samples_s"):
                        run = r["workload"].rsplit("@", 1)[1][0]
                        sessions[-1][run] += r["samples_s"]
                        measurements[run] += 1
                batch += 1
                time_a, time_b, se = run_times(sessions)
            a, b_ = (w.bytes_moved / t / 1e9 if t else None for t in (time_a, time_b))
            diff = abs(a - b_) / ((a + b_) / 2) if a and b_ else None
            n_samples = sum(len(sn["A"]) for sn in sessions)
            rows.append({"backend": b.name, "op": w.op, "dtype": w.dtype, "workload": w.label, "gbps_a": a,
                         "gbps_b": b_, "difference": diff, "standard_error": se,
                         "samples": n_samples, "measurements": measurements["A"], "sessions": len(sessions),
                         "ok": diff is not None and diff <= REPRO_LIMIT})
            if echo:
                echo(f"  {b.name:<14} {w.op:<16} {w.label:<19} run A {_f(a)} GB/s, run B {_f(b_)} GB/s"
                     f" ({measurements['A']} measurements, {n_samples} samples each; "
                     f"s.e. {_pct(se)}): difference {_pct(diff)}")
        clear_host_pool()
    return rows


def _pair_child(name: str, plugins: Sequence[str], w: Workload, threads: int | None, out_dir: Path | None,
                settings: bench.Settings, budget_s: float, quiet: bool) -> list[dict]:
    """One (backend, workload) pair's two runs, in a process of its own (see below)."""
    bench.configure_threads(threads)
    (backend,) = cpu_backends([name], plugins)
    rows = reproducibility([backend], [w], out_dir=out_dir, threads=threads, settings=settings,
                           budget_s=budget_s, echo=None if quiet else _echo_flush)
    return [{**r, "pid": os.getpid()} for r in rows]


def _echo_flush(line: str) -> None:
    print(line, flush=True)


def reproducibility_apart(names: Sequence[str], workloads: Sequence[Workload] = REPRO_WORKLOADS, *,
                          plugins: Sequence[str] = (), out_dir: Path | None, threads: int | None,
                          settings: bench.Settings = REPRO_SETTINGS, budget_s: float = 60.0,
                          quiet: bool = False) -> list[dict]:
    """:func:`reproducibility` for each (backend, workload) pair in a fresh process, as a user's
    ``softmaxbench bench`` runs.

    Why: a large op's time depends on what the process did before. A 64 MiB torch VJP
    allocates its outputs afresh on every call, and 60% of its time is the kernel's page
    faults for them (``getrusage``: 3.0 s system against 1.9 s user over 40 calls; torch's
    ``THP_MEM_ALLOC_ENABLE=1`` halves the time). After other workloads have run in the same
    process, the allocator's state makes that cost come and go, and the two runs' difference
    swung by 5-8% with a standard error as large; in a fresh process the same pair agreed
    within 1.1% with a 0.6% standard error.
    """
    ctx = multiprocessing.get_context("spawn")
    rows: list[dict] = []
    for w in workloads:
        for name in names:
            with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                job = pool.submit(_pair_child, name, tuple(plugins), w, threads, out_dir, settings, budget_s,
                                  quiet)
                rows += job.result()
    return rows


def overhead(backends: Sequence[Backend], *, threads: int | None, repeats: int = 3,
             workloads: Sequence[Workload] = SMALL_WORKLOADS, echo=print) -> dict:
    """The harness's added time per sample (no-op through the harness minus no-op in a bare loop),
    against the median time of each backend's 1 MiB ops timed by the harness."""
    noop = NoopBackend()
    w0 = workloads[0]
    harness_medians, bare_medians = [], []
    for _ in range(repeats):  # alternated, so both see the same machine
        _, recs = bench.run_bench(None, [noop], [w0], settings=SMALL_SETTINGS, threads=threads, echo=None,
                                  copies=False)
        harness_medians.append(recs[0]["median_s"])
        pool = InputPool(noop, w0)
        bare_medians.append(statistics.median(bare_loop(noop, w0, len(recs[0]["samples_s"]), pool)))
        del pool
    harness_s, bare_s = statistics.median(harness_medians), statistics.median(bare_medians)
    added = max(0.0, harness_s - bare_s)
    if echo:
        echo(f"  no-op through the harness: {harness_s * 1e9:.0f} ns per sample; in a bare perf_counter loop:"
             f" {bare_s * 1e9:.0f} ns; the harness adds {added * 1e9:.0f} ns")
    ops = []
    _, recs = bench.run_bench(None, list(backends), list(workloads), settings=SMALL_SETTINGS, threads=threads,
                              echo=None, copies=False)
    for r in recs:
        if not r.get("median_s"):
            continue
        frac = added / r["median_s"]
        ops.append({"backend": r["backend"], "op": r["op"], "workload": r["workload"],
                    "median_s": r["median_s"], "overhead": frac, "bound": harness_s / r["median_s"],
                    "ok": frac <= OVERHEAD_LIMIT})
        if echo:
            echo(f"  {r['backend']:<16} {r['op']:<16} {r['workload']:<18} "
                 f"median {r['median_s'] * 1e6:8.1f} µs: harness overhead {frac:.3%} "
                 f"(whole no-op sample: {harness_s / r['median_s']:.3%})")
    return {"noop_harness_s": harness_s, "noop_bare_s": bare_s, "added_s": added, "ops": ops,
            "worst": max((o["overhead"] for o in ops), default=None),
            "ok": bool(ops) and all(o["ok"] for o in ops)}


def _load() -> float | None:
    """1-minute load average (the other jobs this check shares the machine with)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1%}" if v >= 0.01 else f"{v:.3%}"


def cpu_backends(names: Sequence[str] | None, plugins: Sequence[str] = ()) -> list[Backend]:
    """The available CPU backends (or the named ones)."""
    chosen = bench.resolve_backends(names, plugins)
    return [b for b in chosen if b.device == "cpu" and not b.unavailable()]


def fidelity(backends: Sequence[Backend], *, threads: int | None = 1, out_dir: Path | None = None,
             repro_workloads: Sequence[Workload] = REPRO_WORKLOADS, budget_s: float = 60.0,
             fresh_processes: bool = False, plugins: Sequence[str] = (), echo=print) -> dict:
    """Both checks; returns the figures (also what ``--json`` writes). ``out_dir`` keeps every
    session's results (none are written without it). ``fresh_processes``: each pair of runs in a
    process of its own (the command line does; the backends are then found again by name)."""
    bench.configure_threads(threads)
    load_before = _load()
    if echo:
        echo(f"machine: {os.cpu_count()} cores, load average {load_before}")
        echo(f"Reproducibility: two interleaved bench runs per backend and workload (>= 16 MiB, "
             f"threads={threads}, up to {budget_s:g} s each); limit {REPRO_LIMIT:.0%}")
    if fresh_processes:
        repro = reproducibility_apart([b.name for b in backends], repro_workloads, plugins=plugins,
                                      out_dir=out_dir, threads=threads, budget_s=budget_s, quiet=echo is None)
    else:
        repro = reproducibility(backends, repro_workloads, out_dir=out_dir, threads=threads,
                                budget_s=budget_s, echo=echo)
    if echo:
        echo("Overhead: no-op backend, harness vs bare loop, against 1 MiB ops; "
             f"limit {OVERHEAD_LIMIT:.0%}")
    over = overhead(backends, threads=threads, echo=echo)
    diffs = [r["difference"] for r in repro if r["difference"] is not None]
    result = {"threads": threads, "load_average": [load_before, _load()], "reproducibility": repro,
              "worst_difference": max(diffs, default=None),
              "reproducible": bool(repro) and all(r["ok"] for r in repro), "overhead": over}
    result["ok"] = result["reproducible"] and over["ok"]
    if echo:
        echo(f"worst run-to-run difference: {_pct(result['worst_difference'])} (limit {REPRO_LIMIT:.0%}) -> "
             f"{'holds' if result['reproducible'] else 'DOES NOT HOLD'}")
        echo(f"worst harness overhead at 1 MiB: {_pct(over['worst'])} (limit {OVERHEAD_LIMIT:.0%}) -> "
             f"{'holds' if over['ok'] else 'DOES NOT HOLD'}")
        echo(f"load average before / after: {result['load_average'][0]} / {result['load_average'][1]} "
             f"(above {os.cpu_count()}, jobs wait for a core, this check's too)")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_fidelity",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=None, help="CPU backends (default: every available one)")
    parser.add_argument("--plugin", action="append", default=[], help="third-party backend module or file")
    parser.add_argument("--threads", type=int, default=1, help="framework threads (default: 1)")
    parser.add_argument("--out", default=None, help="keep the bench runs' results here")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds at most per backend and workload pair of runs (default: 60)")
    parser.add_argument("--json", default=None, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    # Threads before any framework is imported (XLA reads its flags at import).
    bench.configure_threads(args.threads)
    names = [n.strip() for n in args.backends.split(",")] if args.backends else None
    try:
        backends = cpu_backends(names, args.plugin)
    except (LookupError, ImportError) as exc:
        print(f"bench_fidelity: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if not backends:
        print("bench_fidelity: error: no CPU backend can run here", file=sys.stderr)
        return 2
    print(f"CPU backends: {', '.join(b.name for b in backends)}")
    result = fidelity(backends, threads=args.threads, out_dir=Path(args.out) if args.out else None,
                      budget_s=args.budget, fresh_processes=True, plugins=args.plugin)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
