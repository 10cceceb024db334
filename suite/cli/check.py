"""``softmaxbench check``: the options of the conformance verb (the work: ``suite.conformance.runner``)."""

from __future__ import annotations

import click

from softmaxbench.suite.cli.options import selection_options


@click.command("check")
@selection_options
@click.option("--out", default="softmaxbench-results/check", show_default=True, help="Results directory.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds a single case may run.")
@click.option("--resume", "resume", default=None, metavar="DIR", help="Finish an interrupted run in DIR.")
@click.option("--strict", is_flag=True,
              help="Deviations count as non-conformance too, and so does a known failure that passes now.")
@click.option("--junit-xml", default=None, metavar="PATH", help="Also write JUnit XML.")
@click.option("--seed", default=0, show_default=True, help="Seed recorded in run.json.")
@click.option("--jobs", default=None, type=int, metavar="N",
              help="Worker processes at once (default: one per backend, up to max(4, cores); a "
                   "backend left alone gets more while cores are free).")
@click.option("--baseline", default=None, metavar="DIR",
              help="A previous results directory: its failures are known; exit 1 only on a new one.")
@click.option("--known-failures", "known_failures", multiple=True, metavar="FILE",
              help="TOML file of known failures (backend/op/case/dtype patterns, each with a reason), "
                   "or 'builtin' for the built-in backends' documented findings; repeatable.")
def check_cmd(**kwargs) -> int:
    """Check backends against the reference; write DIR/results.jsonl and DIR/run.json."""
    from softmaxbench.suite.conformance.runner import check_main

    return check_main(**kwargs)
