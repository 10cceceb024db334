"""``softmaxbench compare``: the options of the bench regression gate (the work: ``reports.compare``)."""

from __future__ import annotations

import click


@click.command("compare")
@click.argument("base")
@click.argument("new")
@click.option("--max-regression", default="10%", show_default=True,
              help="Throughput drop beyond which a real change fails (e.g. 10%).")
@click.option("--p-value", default=0.01, show_default=True, type=float,
              help="A drop counts as real when the one-sided Mann-Whitney U p-value is below this.")
@click.option("--out", default=None, metavar="DIR",
              help="Also write the comparison table to DIR/compare.md and DIR/compare.json.")
@click.option("--strict", is_flag=True,
              help="Refuse (exit 2) when the two runs' machine, devices, versions or threads differ.")
def compare_cmd(**kwargs) -> int:
    """Compare two bench results (directories or results.jsonl); exit 1 on a real throughput
    regression or a workload of BASE missing from NEW, 2 on bad input."""
    from softmaxbench.reports.compare import compare_runs

    result = compare_runs(**kwargs)
    for line in result.notes:
        click.echo(line, err=True)
    click.echo(result.table)
    click.echo(result.summary)
    for line in result.problems:
        click.echo(line, err=True)
    return result.exit_code
