"""Fidelity of the benchmark harness, shown by measurement: ``python -m benchmarks.bench_fidelity``.

Three claims about ``softmaxbench bench`` (one worker process per backend), each printed with its
figures:

1. **Cheap.** The harness adds at most 2% to a 1 MiB op. A no-op backend (this module is its
   plugin) timed through the whole path -- its worker, the byte channel, pytest-benchmark, the
   device timer -- is compared with the same no-op in a bare ``perf_counter`` loop (alternated,
   ``--repeats`` times, medians); the difference is what the harness adds to every sample, set
   against the median time of each backend's 1 MiB ops. Beside it, the share of each timed
   request's wall time (the parent's clock) that is not timed calls: what the channel and the
   per-round bookkeeping cost a run.
2. **Independent.** A backend's figure does not depend on the other backends in the run: each
   backend benched alone and in a run with all the others (alternated, ``--repeats`` times
   each, medians of GB/s), within 5%. Before the worker design, torch-cpu's 64 MiB
   log_softmax_vjp took 131 ms alone and 57 ms after jax-cpu in the same process.
3. **Reproducible.** Two back-to-back ``softmaxbench bench --threads 1`` runs (the user's command,
   in subprocesses) agree within 5% in GB/s at 16 MiB and more.

The machine's load average is printed with the figures: with more runnable jobs than cores, a
sample measures the run queue as much as the op. Around each reproducibility run the host's own
speed is read too (:func:`host_speed`: a fixed loop and a copy, nothing of ours): on a shared
host whose core and memory speed move between the runs, that movement is printed beside the
figures it bounds. Exit 0 when every claim checked holds, 1 when
one does not, 2 for bad arguments. ``--only`` runs some of the checks (a small version: e.g.
``--only overhead --backends numpy``).

>>> noop = NoopBackend()
>>> x = object()
>>> noop.softmax(x, axis=-1) is x
True
>>> agreement(10.0, 10.4) < REPRO_LIMIT
True
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from softmaxbench.backends.base import Backend
from softmaxbench.suite.bench import measure as bench
from softmaxbench.suite.bench.workloads import InputPool, Workload

REPRO_LIMIT = 0.05
INDEPENDENCE_LIMIT = 0.05
OVERHEAD_LIMIT = 0.02
CHECKS = ("overhead", "independence", "reproducibility")

#: Shapes of 16 MiB and more (float32) the run-to-run and alone/together figures are taken at.
LARGE_WORKLOADS: tuple[Workload, ...] = (
    Workload("sweep-16MiB-r1024", "softmax", "float32", (4096, 1024)),
    Workload("sweep-16MiB-r1024", "log_softmax_vjp", "float32", (4096, 1024)),
    Workload("sweep-64MiB-r16384", "softmax", "float32", (1024, 16384)),
    Workload("sweep-64MiB-r16384", "log_softmax_vjp", "float32", (1024, 16384)),
)
#: 1 MiB shapes (float32) the overhead is set against.
SMALL_WORKLOADS: tuple[Workload, ...] = (
    Workload("sweep-1MiB-r1024", "softmax", "float32", (256, 1024)),
    Workload("sweep-1MiB-r1024", "log_softmax", "float32", (256, 1024)),
    Workload("sweep-1MiB-r1024", "softmax_vjp", "float32", (256, 1024)),
)
SMALL_SETTINGS = bench.Settings(min_rounds=50, max_time=0.5, warmup_time=0.1)
LARGE_SETTINGS = bench.Settings(min_rounds=10, max_time=1.0, warmup_time=0.1)
DEFAULT_BACKENDS = ("numpy", "scipy", "torch-cpu", "jax-cpu")


class NoopBackend(Backend):
    """Every op returns its first argument at once: what remains to time is the harness."""

    name = "noop"
    device = "cpu"
    dtypes = ("float32",)
    framework = "numpy"

    def softmax(self, x, axis=-1):
        return x

    log_softmax = logsumexp = softmax

    def softmax_vjp(self, x, cotangent, axis=-1):
        return x

    log_softmax_vjp = softmax_vjp


def backends():
    """This module is the no-op's plugin (``--plugin benchmarks/bench_fidelity.py``)."""
    return [NoopBackend()]


def bare_loop(backend: Backend, w: Workload, rounds: int) -> list[float]:
    """``rounds`` calls timed with nothing but perf_counter around them (same input rotation)."""
    pool = InputPool(backend, w)
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


def agreement(a: float | None, b: float | None) -> float | None:
    """|a - b| over their mean."""
    return abs(a - b) / ((a + b) / 2) if a and b else None


def _paired_rows(first: dict, second: dict, labels: tuple[str, str], limit: float, echo, line) -> dict:
    """One row per (backend, op, workload) measured in both: the two figures, their difference,
    whether it is within ``limit``; the worst difference and whether every row holds."""
    rows = []
    for key in sorted(set(first) & set(second)):
        a, b = first[key], second[key]
        d = agreement(a, b)
        rows.append({"backend": key[0], "op": key[1], "workload": key[2], labels[0]: a, labels[1]: b,
                     "difference": d, "ok": d is not None and d <= limit})
        if echo:
            echo(line(key, a, b, d))
    return {"rows": rows, "worst": max((r["difference"] for r in rows), default=None),
            "ok": bool(rows) and all(r["ok"] for r in rows)}


def _gbps(recs: Sequence[dict]) -> dict[tuple, float]:
    return {(r["backend"], r["op"], r["workload"]): r["gbps"] for r in recs if r.get("gbps")}


def overhead(names: Sequence[str], *, threads: int | None, repeats: int = 3, echo=print) -> dict:
    """The harness's added time per sample, against each backend's 1 MiB ops."""
    w0 = SMALL_WORKLOADS[0]
    harness, bare, walls = [], [], []
    for _ in range(repeats):  # alternated, so both see the same machine
        _, recs = bench.run_bench(
            None,
            ["noop"],
            plugins=[__file__],
            workloads=[w0],
            settings=SMALL_SETTINGS,
            threads=threads,
            echo=None,
            copies=False,
        )
        harness.append(recs[0]["median_s"])
        walls.append(1 - sum(recs[0]["samples_s"]) / recs[0]["request_wall_s"])
        bare.append(statistics.median(bare_loop(NoopBackend(), w0, len(recs[0]["samples_s"]))))
    harness_s, bare_s = statistics.median(harness), statistics.median(bare)
    added = max(0.0, harness_s - bare_s)
    if echo:
        echo(
            f"  no-op through the harness: {harness_s * 1e9:.0f} ns per sample; in a bare perf_counter loop: "
            f"{bare_s * 1e9:.0f} ns; the harness adds {added * 1e9:.0f} ns per sample"
        )
    ops = []
    _, recs = bench.run_bench(
        None,
        list(names),
        workloads=list(SMALL_WORKLOADS),
        settings=SMALL_SETTINGS,
        threads=threads,
        echo=None,
        copies=False,
    )
    for r in recs:
        if not r.get("median_s"):
            continue
        frac = added / r["median_s"]
        untimed = 1 - sum(r["samples_s"]) / r["request_wall_s"]
        ops.append(
            {
                "backend": r["backend"],
                "op": r["op"],
                "workload": r["workload"],
                "median_s": r["median_s"],
                "overhead": frac,
                "untimed_share_of_request": untimed,
                "ok": frac <= OVERHEAD_LIMIT,
            }
        )
        if echo:
            echo(
                f"  {r['backend']:<14} {r['op']:<14} {r['workload']:<17} "
                f"median {r['median_s'] * 1e6:8.1f} µs: "
                f"harness overhead {frac:.3%}; untimed share of the timed request {untimed:.1%}"
            )
    return {
        "noop_harness_s": harness_s,
        "noop_bare_s": bare_s,
        "added_s": added,
        "ops": ops,
        "noop_untimed_share": statistics.median(walls),
        "worst": max((o["overhead"] for o in ops), default=None),
        "ok": bool(ops) and all(o["ok"] for o in ops),
    }


def independence(
    names: Sequence[str], workloads: Sequence[Workload], *, threads: int | None, repeats: int = 2, echo=print
) -> dict:
    """Each backend alone and in a run with all of them, alternated; median GB/s of each."""
    alone: dict[tuple, list[float]] = {}
    together: dict[tuple, list[float]] = {}
    for k in range(repeats):
        order = ("alone", "together") if k % 2 == 0 else ("together", "alone")
        for how in order:
            if how == "together":
                _, recs = bench.run_bench(
                    None,
                    list(names),
                    workloads=list(workloads),
                    settings=LARGE_SETTINGS,
                    threads=threads,
                    echo=None,
                    copies=False,
                )
                for key, g in _gbps(recs).items():
                    together.setdefault(key, []).append(g)
            else:
                for n in names:
                    _, recs = bench.run_bench(
                        None,
                        [n],
                        workloads=list(workloads),
                        settings=LARGE_SETTINGS,
                        threads=threads,
                        echo=None,
                        copies=False,
                    )
                    for key, g in _gbps(recs).items():
                        alone.setdefault(key, []).append(g)
    medians = ({k: statistics.median(v) for k, v in alone.items()},
               {k: statistics.median(v) for k, v in together.items()})
    return _paired_rows(*medians, ("gbps_alone", "gbps_together"), INDEPENDENCE_LIMIT, echo,
                        lambda key, a, t, d: f"  {key[0]:<14} {key[1]:<16} {key[2]:<19} alone {a:.3g} GB/s, "
                                             f"with {len(names) - 1} other backends {t:.3g} GB/s: "
                                             f"difference {d:.1%}")


def reproducibility(
    names: Sequence[str], cases: Sequence[str], ops: Sequence[str], *, threads: int = 1, echo=print
) -> dict:
    """Two back-to-back ``softmaxbench bench --threads N`` runs; GB/s per record, compared."""
    runs, cpu_runs, speeds = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-fidelity-") as tmp:
        for k in range(2):
            out = Path(tmp) / f"run{k}"
            cmd = [
                sys.executable,
                "-m",
                "softmaxbench",
                "bench",
                "--backends",
                ",".join(names),
                "--threads",
                str(threads),
                "--cases",
                ",".join(cases),
                "--ops",
                ",".join(ops),
                "--dtypes",
                "float32",
                "--out",
                str(out),
            ]
            before = host_speed()
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
            took = time.perf_counter() - t0
            speeds.append((before, host_speed()))
            from softmaxbench.suite.records import read_results

            recs = read_results(out) if (out / "results.jsonl").is_file() else []
            shares = [r["cpu_share"] for r in recs if r.get("cpu_share") is not None]
            info = _run_info(out)
            if echo:
                echo(
                    f"  run {k + 1}: {' '.join(cmd[1:])}: exit {proc.returncode} after "
                    f"{took:.0f} s; load {info.get('load_average_at_start')} -> "
                    f"{info.get('load_average_at_end')}; {info.get('passes')} passes; the workers had a core "
                    f"for {min(shares, default=0):.0%}-{max(shares, default=0):.0%} of their timed calls"
                )
                echo(f"    before: {_speed_line(speeds[-1][0])}")
                echo(f"    after:  {_speed_line(speeds[-1][1])}")
            runs.append(_gbps(recs))
            cpu_runs.append({(r["backend"], r["op"], r["workload"]): r["cpu_median_s"] for r in recs
                             if r.get("cpu_median_s")})
    def what(key):
        return f"  {key[0]:<20} {key[1]:<16} {key[2]:<19}"

    result = _paired_rows(runs[0], runs[1], ("gbps_a", "gbps_b"), REPRO_LIMIT, echo,
                          lambda key, a, b, d: f"{what(key)} run 1 {a:.3g} GB/s, run 2 {b:.3g} GB/s: "
                                               f"difference {d:.1%}")
    if echo:
        echo("  the same records' CPU seconds per call (the worker's word; other jobs move it less than "
             "wall time): a worker-dependent mode, e.g. page faults, shows here even on a busy machine")
    cpu = _paired_rows(cpu_runs[0], cpu_runs[1], ("cpu_s_a", "cpu_s_b"), REPRO_LIMIT, echo,
                       lambda key, a, b, d: f"{what(key)} run 1 {a * 1e3:.3g} ms, run 2 {b * 1e3:.3g} ms of "
                                            f"CPU per call: difference {d:.1%}")
    result["cpu_time"] = {"rows": cpu["rows"], "worst": cpu["worst"]}
    # How far the host itself moved over the two runs: the widest spread of the four readings.
    moved = {}
    for key in ("loop_median_ms", "copy_median_ms"):
        vals = [h[key] for pair in speeds for h in pair]
        moved[key] = (max(vals) - min(vals)) / min(vals) if vals and min(vals) > 0 else None
    result["host"] = {"speeds": speeds, "moved": moved}
    if echo and all(v is not None for v in moved.values()):
        echo(f"  the host itself moved {moved['loop_median_ms']:.1%} (core: the fixed loop) and "
             f"{moved['copy_median_ms']:.1%} (memory: the copy) across the four readings")
    return result


def host_speed(seconds: float = 1.0) -> dict:
    """The host's own speed now, with nothing of ours in it: a fixed pure-Python loop (no memory
    traffic; the core's speed) and a 64 MiB NumPy copy (the memory's), each timed over and over
    for ``seconds`` in this process; medians and minima in ms. On a shared host, noisy neighbours
    (another tenant on the core's sibling, on the memory bus) move these as much as any backend:
    two runs can only agree as well as the host did.

    >>> sorted(host_speed(0.05))
    ['copy_median_ms', 'copy_min_ms', 'loop_median_ms', 'loop_min_ms']
    """
    import numpy as np

    src = np.ones(2**24, np.float32)
    dst = np.empty_like(src)
    loop, copy = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(loop) < 3:
        t = time.perf_counter()
        acc = 0
        for i in range(100_000):
            acc += i
        loop.append(time.perf_counter() - t)
        t = time.perf_counter()
        np.copyto(dst, src)
        copy.append(time.perf_counter() - t)
    return {"loop_median_ms": statistics.median(loop) * 1e3, "loop_min_ms": min(loop) * 1e3,
            "copy_median_ms": statistics.median(copy) * 1e3, "copy_min_ms": min(copy) * 1e3}


def _speed_line(h: dict) -> str:
    return (f"host: a fixed loop {h['loop_median_ms']:.3g} ms (min {h['loop_min_ms']:.3g}), a 64 MiB copy "
            f"{h['copy_median_ms']:.3g} ms (min {h['copy_min_ms']:.3g})")


def _run_info(out: Path) -> dict:
    """run.json's ``bench`` section of a results directory ({} when there is none)."""
    try:
        return json.loads((out / "run.json").read_text(encoding="utf-8")).get("bench") or {}
    except (OSError, ValueError):
        return {}


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_fidelity", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--backends", default=",".join(DEFAULT_BACKENDS), help="CPU backends (comma list)")
    parser.add_argument("--threads", type=int, default=1, help="framework threads (default: 1)")
    parser.add_argument("--only", default=",".join(CHECKS), help=f"checks to run, of {', '.join(CHECKS)}")
    parser.add_argument(
        "--cases",
        default="sweep-16MiB-r1024",
        help="workloads (>= 16 MiB) of the reproducibility and independence checks "
        "(also: sweep-64MiB-r16384)",
    )
    parser.add_argument("--ops", default="softmax,log_softmax_vjp", help="ops of those checks")
    parser.add_argument(
        "--repeats", type=int, default=2, help="alternations of the overhead/independence checks"
    )
    parser.add_argument("--json", default=None, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    if args.threads < 1 or args.repeats < 1 or any(c not in CHECKS for c in only):
        parser.error(f"--threads and --repeats at least 1; --only from {', '.join(CHECKS)}")
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    large = [w for w in LARGE_WORKLOADS if w.label in cases and w.op in ops] or [
        Workload(w.label, op, w.dtype, w.shape) for w in LARGE_WORKLOADS[:1] for op in ops[:1]
    ]
    print(
        f"machine: {os.cpu_count()} cores, load average {_load()}; backends {', '.join(names)}; "
        f"threads {args.threads}"
    )
    result: dict = {"threads": args.threads, "backends": names, "load_average": [_load()]}
    ok = True
    if "overhead" in only:
        print(
            f"Overhead: no-op backend through the worker harness vs a bare loop, against 1 MiB ops; "
            f"limit {OVERHEAD_LIMIT:.0%}"
        )
        result["overhead"] = overhead(names, threads=args.threads, repeats=args.repeats)
        ok &= result["overhead"]["ok"]
    if "independence" in only and len(names) > 1:
        print(
            f"Independence: each backend alone and with the others ({', '.join(w.id for w in large)}); "
            f"limit {INDEPENDENCE_LIMIT:.0%}"
        )
        result["independence"] = independence(names, large, threads=args.threads, repeats=args.repeats)
        ok &= result["independence"]["ok"]
    if "reproducibility" in only:
        print(
            f"Reproducibility: two back-to-back 'softmaxbench bench --threads {args.threads}' runs; "
            f"limit {REPRO_LIMIT:.0%}"
        )
        result["reproducibility"] = reproducibility(names, cases, ops, threads=args.threads)
        ok &= result["reproducibility"]["ok"]
    result["load_average"].append(_load())
    result["ok"] = bool(ok)
    for check in CHECKS:
        if check in result:
            worst = result[check]["worst"]
            print(
                f"{check}: worst {'-' if worst is None else f'{worst:.2%}'} -> "
                f"{'holds' if result[check]['ok'] else 'DOES NOT HOLD'}"
            )
            if "cpu_time" in result[check] and result[check]["cpu_time"]["worst"] is not None:
                print(f"{check} of the CPU seconds per call (not the claim, a load-robust witness): worst "
                      f"{result[check]['cpu_time']['worst']:.2%}")
            moved = (result[check].get("host") or {}).get("moved") or {}
            if moved and all(v is not None for v in moved.values()):
                print(f"{check}: the host's own speed moved {moved['loop_median_ms']:.1%} (core) and "
                      f"{moved['copy_median_ms']:.1%} (memory) around the runs: where it moved more "
                      f"than {REPRO_LIMIT:.0%}, no benchmark on it can agree within {REPRO_LIMIT:.0%}")
    print(f"load average before / after: {result['load_average'][0]} / {result['load_average'][1]}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
