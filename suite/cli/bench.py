"""``softmaxbench bench``: the options of the throughput verb, and its glue to the engine
(:func:`softmaxbench.suite.bench.measure.run_bench`): validate, run, print the table."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from softmaxbench.suite.cli.options import selection_options
from softmaxbench.vocabulary import DTYPES, FAILING


@click.command("bench")
@selection_options
@click.option("--out", default="softmaxbench-results/bench", show_default=True, help="Results directory.")
@click.option("--threads", default=None, type=int,
              help="Threads for the CPU frameworks (torch, OpenMP, XLA via NPROC). Default: theirs.")
@click.option("--min-rounds", default=None, type=int, help="Fewest timed rounds per workload.")
@click.option("--timeout", default=None, type=float,
              help="Seconds a workload's preparation (inputs, first call and compiles, warm-up) may take "
                   "before its worker is killed and the workload recorded as a timeout.  [default: 600]")
def bench_cmd(**kwargs) -> int:
    """Throughput in GB/s and as a fraction of the measured copy bandwidth.

    --cases selects workloads by name pattern (e.g. 'sweep-16MiB-*', 'llm-*'). Writes
    DIR/results.jsonl, DIR/run.json and DIR/pytest-benchmark.json; exit 1 when a workload raised."""
    return bench_main(**kwargs)


def bench_main(backends: str | None = None, ops: str | None = None, dtypes: str | None = None,
               cases: str | None = None, plugins: Sequence[str] = (), quick: bool = False,
               out: str = "softmaxbench-results/bench", threads: int | None = None,
               min_rounds: int | None = None, timeout: float | None = None) -> int:
    """The ``bench`` verb: select, run, write DIR/results.jsonl + run.json, print the table."""
    # The engine (numpy, ml_dtypes, the workloads) is imported only when the verb runs: every other
    # verb, and `softmaxbench --help`, starts without it.
    from softmaxbench.errors import InputError
    from softmaxbench.suite import records as rec_mod
    from softmaxbench.suite.bench.measure import (
        PYTEST_BENCHMARK_FILE,
        Settings,
        _load_average,
        _Terminated,
        run_bench,
        table,
    )
    from softmaxbench.suite.bench.workloads import COPY_OP, SELECTABLE_OPS
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
    from softmaxbench.suite.cli.options import bounded_int, usable_out_dir
    from softmaxbench.suite.selection import plugin_paths

    bounded_int(threads, "--threads", 1, 4096)
    bounded_int(min_rounds, "--min-rounds", 1, 100_000)
    if timeout is not None:
        from dataclasses import replace

        from softmaxbench.suite.cli.options import positive_seconds

        if not 1 <= positive_seconds(timeout, "--timeout") <= 86_400:
            raise InputError(f"--timeout must be between 1 and 86400 seconds, got {timeout!r}")
    usable_out_dir(out)
    plugins = plugin_paths(plugins)
    names = split_csv(backends)
    if names:
        from softmaxbench.suite.isolation.channel import name_problem

        for n in names:
            problem = name_problem(n)
            if problem:
                raise InputError(f"--backends: {problem}")
    workload_names = split_csv(cases)
    command = shlex.join(["softmaxbench", "bench", *sys.argv[2:]])
    settings = Settings.for_run(quick, min_rounds)
    if timeout is not None:
        settings = replace(settings, prepare_timeout=float(timeout))
    try:
        rc, records = run_bench(out, names, quick=quick, ops=op_list, dtypes=dtype_list,
                                names=workload_names, plugins=tuple(plugins),
                                settings=settings, threads=threads,
                                echo=lambda line: click.echo(line, err=True), command=command, strict=True)
    except KeyboardInterrupt as exc:
        done = rec_mod.read_results(out) if (Path(out) / rec_mod.RESULTS_FILE).is_file() else []
        click.echo(table(done))
        click.echo(f"softmaxbench bench: interrupted; the {len(done)} finished workloads are in {out}",
                   err=True)
        return 143 if isinstance(exc, _Terminated) else 130
    if not any(r["op"] != COPY_OP for r in records):
        raise InputError("no workload matches the selection "
                         "(--ops/--dtypes/--cases and the backends' dtypes)")
    click.echo(table(records))
    wide = sum(1 for r in records if r.get("warning"))
    if wide:
        click.echo(f"{wide} of {len(records)} workloads have a warning (a wide spread, passes that disagree "
                   "or a busy machine): the machine was busy or the workload is short; see 'warning' in "
                   "results.jsonl.")
        load, cores = _load_average(), os.cpu_count() or 1
        if load is not None and load > cores:
            click.echo(f"The load average is {load:.1f} on {cores} cores: other jobs held the cores. "
                       "Threaded frameworks suffer most (a thread waits for a core at every barrier); "
                       "--threads 1 measures them more steadily.")
    bad = [r for r in records if r.get("verdict") in FAILING or r.get("implausible")]
    if bad:
        click.echo(f"{len(bad)} workloads failed a check, crashed or gave an implausible figure: their "
                   "figures are left out (see 'message' and 'implausible' in results.jsonl).", err=True)
    click.echo(f"results: {Path(out) / rec_mod.RESULTS_FILE}; "
               f"pytest-benchmark: {Path(out) / PYTEST_BENCHMARK_FILE}")
    return rc
