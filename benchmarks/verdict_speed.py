"""How long a conformance verdict takes: times ``softmaxbench check`` on the CPU matrix.

A benchmark command, not a test: it runs the full matrix (numpy, scipy, torch-cpu and jax-cpu x
every dtype x every op x every case) and the --quick subset, each into a temporary directory,
and prints wall time, checks per second and how many reference results were computed, against
the budgets (120 s full, 20 s quick, on a 2-core machine). Exit code 1 when a budget is missed.

    python -m benchmarks.verdict_speed              # both
    python -m benchmarks.verdict_speed --quick      # the quick subset only
    python -m benchmarks.verdict_speed --quick --cold        # with empty caches (a fresh CI runner)
    python -m benchmarks.verdict_speed --quick --cold --warm # cold, then again on what it cached

Warm (the default) uses the user's caches as they are, ``$XDG_CACHE_HOME/softmaxbench/``
(``~/.cache/softmaxbench/``): discovery, JAX's compilation cache and the jax backends'
executables. ``--cold`` points ``XDG_CACHE_HOME`` at a new empty directory for the run (workers
inherit it), so nothing a previous run computed is reused; ``--warm`` after it runs again on
the caches the cold run filled (the warm figure of that fresh environment).

>>> BUDGETS_S["quick"], BUDGETS_S["full"]
(20.0, 120.0)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

CPU_MATRIX = ("numpy", "scipy", "torch-cpu", "jax-cpu")
BUDGETS_S = {"quick": 20.0, "full": 120.0}


def time_check(quick: bool, backends=CPU_MATRIX, out_dir: str | None = None, jobs: int | None = None,
               cache_home: str | None = None) -> dict:
    """Run the check once; return wall time, record counts and the run's own figures.

    ``cache_home``: the ``XDG_CACHE_HOME`` of the run (None: the user's, as it is)."""
    if cache_home is not None:
        saved = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = cache_home
        try:
            r = time_check(quick, backends, out_dir, jobs)
        finally:
            if saved is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = saved
        r["cache_home"] = cache_home
        return r
    from softmaxbench.suite.conformance.runner import run_check
    from softmaxbench.suite.records import read_results, read_run

    out = Path(out_dir or tempfile.mkdtemp(prefix="softmaxbench-verdict-"))
    load = os.getloadavg()[0]
    cpu0, me0 = _cpu_seconds(), _cpu_seconds(children=False)
    t0 = time.perf_counter()
    code = run_check(out, backends=list(backends), quick=quick, display="none", jobs=jobs,
                     command=f"verdict_speed {'--quick' if quick else 'full'}")
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    me = _cpu_seconds(children=False) - me0
    records = read_results(out)
    run = read_run(out)
    return {"mode": "quick" if quick else "full", "wall_s": round(wall, 2), "exit_code": code,
            "records": len(records), "executed": sum(r["verdict"] != "unsupported" for r in records),
            "verdicts": dict(Counter(r["verdict"] for r in records)),
            "references_computed": run.get("references_computed"), "out": str(out),
            "cpu_s": round(cpu, 1), "load_before": round(load, 2),
            "cpu_split_s": {"parent": round(me, 1), "workers": round(cpu - me, 1)},
            "worker_cpu_s": run.get("worker_cpu_s"),
            "budget_s": BUDGETS_S["quick" if quick else "full"], "cores": os.cpu_count(),
            "caches": "user", "load_after": round(os.getloadavg()[0], 2)}


def _cpu_seconds(children: bool = True) -> float:
    """CPU seconds of this process and (``children``) its finished children (the workers),
    user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + (kids.ru_utime + kids.ru_stime if children else 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verdict_speed",
                                     description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="only the --quick subset")
    mode.add_argument("--full", action="store_true", help="only the full matrix")
    parser.add_argument("--backends", default=",".join(CPU_MATRIX), help="comma-separated backends")
    parser.add_argument("--jobs", type=int, default=None, help="backends checked at once")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--cold", action="store_true",
                        help="run with empty caches (a fresh XDG_CACHE_HOME, as on a fresh CI runner)")
    parser.add_argument("--warm", action="store_true",
                        help="with --cold: run again on the caches the cold run filled")
    args = parser.parse_args(argv)
    if args.warm and not args.cold:
        parser.error("--warm goes with --cold (without --cold the run is warm already)")
    modes = [True] if args.quick else [False] if args.full else [True, False]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    results = []
    fresh = tempfile.mkdtemp(prefix="softmaxbench-cold-cache-") if args.cold else None
    for quick in modes:
        if args.cold:  # each mode starts from empty caches
            home = tempfile.mkdtemp(dir=fresh)
            runs = [("cold", home)] + ([("warm", home)] if args.warm else [])
        else:
            runs = [("user", None)]
        for caches, home in runs:
            r = time_check(quick, backends, jobs=args.jobs, cache_home=home)
            r["caches"] = caches
            results.append(r)
    for r in results:
        if not args.json:
            rate = r["executed"] / r["wall_s"] if r["wall_s"] else 0.0
            met = "within" if r["wall_s"] <= r["budget_s"] else "OVER"
            print(f"{r['mode']:5} ({r['caches']} caches): {r['wall_s']:7.1f} s wall ({met} the "
                  f"{r['budget_s']:g} s budget) for "
                  f"{r['records']} records ({r['executed']} executed, {rate:.0f}/s), "
                  f"{r['references_computed']} reference results, exit {r['exit_code']}")
            print(f"       {r['cpu_s']:.0f} CPU-s on {r['cores']} cores ("
                  f"{r['cpu_split_s']}); load average before: {r['load_before']}, after: {r['load_after']}")
            print(f"       worker CPU-s per backend: {r['worker_cpu_s']}")
            print(f"       verdicts: {r['verdicts']}  results: {r['out']}")
    if fresh:
        shutil.rmtree(fresh, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0 if all(r["wall_s"] <= r["budget_s"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
