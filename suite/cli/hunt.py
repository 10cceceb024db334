"""``softmaxbench hunt``: the options of the worst-case search (the work: ``suite.hunt.search``)."""

from __future__ import annotations

import click

from softmaxbench.suite.cli.options import selection_options


@click.command("hunt")
@selection_options
@click.option("--budget", default=60.0, show_default=True, type=float,
              help="Seconds per backend x op x dtype (--quick: at most 10).")
@click.option("--evals", default=None, type=int, metavar="N",
              help="Rows per backend x op x dtype instead of seconds: fully deterministic.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-len", default=16384, show_default=True, type=int, help="Longest row to try.")
@click.option("--hypothesis", "hypothesis_examples", default=32, show_default=True, type=int, metavar="N",
              help="Inputs hypothesis draws (target()-guided) before the guided search; 0: none.")
@click.option("--out", default=None,
              help="Results dir [default: softmaxbench-results/hunt]; when given, cases go to OUT/found.")
@click.option("--save/--no-save", default=True,
              help="Save new worst cases as regression cases (default: in reference/found/).")
@click.option("--fresh", is_flag=True, help="Do not start from saved cases (replay an earlier hunt).")
def hunt_cmd(**kwargs) -> int:
    """Search for inputs that maximise each backend's error ratio and ULP error; save the worst
    as regression cases that check runs, and print the max-known-error table. --cases: catalogue
    cases to start from (default: a sample of all); --quick: softmax, log_softmax, logsumexp."""
    from softmaxbench.suite.hunt.search import hunt_main

    return hunt_main(**kwargs)
