"""``softmaxbench bench``: the options of the throughput verb (the work: ``suite.bench.measure``)."""

from __future__ import annotations

import click

from softmaxbench.suite.cli.options import selection_options


@click.command("bench")
@selection_options
@click.option("--out", default="softmaxbench-results/bench", show_default=True, help="Results directory.")
@click.option("--threads", default=None, type=int,
              help="Threads for the CPU frameworks (torch, OpenMP, XLA via NPROC). Default: theirs.")
@click.option("--min-rounds", default=None, type=int, help="Fewest timed rounds per workload.")
def bench_cmd(**kwargs) -> int:
    """Throughput in GB/s and as a fraction of the measured copy bandwidth.

    --cases selects workloads by name pattern (e.g. 'sweep-16MiB-*', 'llm-*'). Writes
    DIR/results.jsonl, DIR/run.json and DIR/pytest-benchmark.json; exit 1 when a workload raised."""
    from softmaxbench.suite.bench.measure import bench_main

    return bench_main(**kwargs)
