"""How long a conformance verdict takes: times ``softmaxbench check`` on the CPU matrix.

A benchmark command, not a test: it runs the full matrix (numpy, scipy, torch-cpu and jax-cpu x
every dtype x every op x every case) and the --quick subset, each into a temporary directory,
and prints wall time, checks per second and how many reference results were computed, against
the budgets (120 s full, 20 s quick, on a 2-core machine). Exit code 1 when a budget is missed.

    python -m benchmarks.verdict_speed              # both
    python -m benchmarks.verdict_speed --quick      # the quick subset only

>>> BUDGETS_S["quick"], BUDGETS_S["full"]
(20.0, 120.0)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

CPU_MATRIX = ("numpy", "scipy", "torch-cpu", "jax-cpu")
BUDGETS_S = {"quick": 20.0, "full": 120.0}


def time_check(quick: bool, backends=CPU_MATRIX, out_dir: str | None = None, jobs: int | None = None) -> dict:
    """Run the check once; return wall time, record counts and the run's own figures."""
    from softmaxbench.suite.conformance.runner import run_check
    from softmaxbench.suite.records import read_results, read_run

    out = Path(out_dir or tempfile.mkdtemp(prefix="softmaxbench-verdict-"))
    load = os.getloadavg()[0]
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    code = run_check(out, backends=list(backends), quick=quick, display="none", jobs=jobs,
                     command=f"verdict_speed {'--quick' if quick else 'full'}")
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    records = read_results(out)
    run = read_run(out)
    return {"mode": "quick" if quick else "full", "wall_s": round(wall, 2), "exit_code": code,
            "records": len(records), "executed": sum(r["verdict"] != "unsupported" for r in records),
            "verdicts": dict(Counter(r["verdict"] for r in records)),
            "references_computed": run.get("references_computed"), "out": str(out),
            "cpu_s": round(cpu, 1), "load_before": round(load, 2), "cpu_split_s": run.get("cpu_s"),
            "budget_s": BUDGETS_S["quick" if quick else "full"], "cores": os.cpu_count()}


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the workers), user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verdict_speed",
                                     description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="only the --quick subset")
    mode.add_argument("--full", action="store_true", help="only the full matrix")
    parser.add_argument("--backends", default=",".join(CPU_MATRIX), help="comma-separated backends")
    parser.add_argument("--jobs", type=int, default=None, help="backends checked at once")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    modes = [True] if args.quick else [False] if args.full else [True, False]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    results = []
    for quick in modes:
        r = time_check(quick, backends, jobs=args.jobs)
        results.append(r)
        if not args.json:
            rate = r["executed"] / r["wall_s"] if r["wall_s"] else 0.0
            met = "within" if r["wall_s"] <= r["budget_s"] else "OVER"
            print(f"{r['mode']:5}: {r['wall_s']:7.1f} s wall ({met} the {r['budget_s']:g} s budget) for "
                  f"{r['records']} records ({r['executed']} executed, {rate:.0f}/s), "
                  f"{r['references_computed']} reference results, exit {r['exit_code']}")
            print(f"       {r['cpu_s']:.0f} CPU-s on {r['cores']} cores (this process's lifetime split: "
                  f"{r['cpu_split_s']}); load average before: {r['load_before']}")
            print(f"       verdicts: {r['verdicts']}  results: {r['out']}")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0 if all(r["wall_s"] <= r["budget_s"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
