"""``softmaxbench report``: the options of the report verb (the work: ``reports.build``)."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("results", nargs=-1, required=True)
@click.option("--out", required=True, help="Report directory.")
@click.option("--compare", "compare_json", multiple=True, metavar="COMPARE_JSON",
              help="Include a `compare --out` output (repeatable: one per machine).")
@click.option("--gate", is_flag=True,
              help="Exit 1 when any check record is fail, error, crash or timeout (the CI gate).")
@click.option("--strict", is_flag=True, help="With --gate: deviations fail the gate too.")
def report_cmd(**kwargs) -> int:
    """Markdown, HTML, CSV and summary.json from one or more results directories."""
    from softmaxbench.reports.build import report_main

    return report_main(**kwargs)
