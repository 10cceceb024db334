"""The ``softmaxbench`` command line: one click group, one thin function per verb.

Each verb parses its options and calls into the module that does the work. Usage and input
errors become one line on stderr and exit code 2, never a traceback:

    softmaxbench list | cases | check | bench | report | compare | run | hunt

Exit codes: 0 all selected backends conform (or no regression), 1 non-conformance or
regression, 2 usage or input error.
"""

from __future__ import annotations

import sys

import click

from softmaxbench import __version__

EXIT_OK, EXIT_NONCONFORMING, EXIT_USAGE = 0, 1, 2


class InputError(click.ClickException):
    """Bad input discovered after parsing (missing file, unknown backend, bad schema): exit 2."""

    exit_code = EXIT_USAGE


def split_csv(value: str | None) -> list[str] | None:
    """'a,b, c' -> ['a', 'b', 'c']; None or '' -> None (meaning: all)."""
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="softmaxbench")
def cli() -> None:
    """Conformance and throughput of softmax, log_softmax, logsumexp, cross-entropy and their
    gradients, measured against a certified high-precision reference."""


@cli.command("cases")
@click.option("--category", default=None, help="Only cases of this category.")
@click.option("--quick", is_flag=True, help="Only the cases of the quick subset.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cases_cmd(category: str | None, quick: bool, as_json: bool) -> None:
    """List the case catalogue: name, category, shape, axis, ops and dtypes."""
    import json

    from softmaxbench.reference.cases import CATEGORIES, CE_OPS, NON_CE_OPS, catalogue

    if category is not None and category not in CATEGORIES:
        raise InputError(f"no case has category {category!r}; choose from {', '.join(CATEGORIES)}")
    cases = [c for c in catalogue() if (category is None or c.category == category)
             and (not quick or c.quick)]
    if as_json:
        click.echo(json.dumps([c.summary() for c in cases], indent=1))
        return
    from tabulate import tabulate

    op_names = {CE_OPS: "cross-entropy", NON_CE_OPS: "all but cross-entropy"}
    rows = [(c.name, c.category, "x".join(map(str, c.shape)) or "()", c.axis,
             op_names.get(c.ops, ",".join(c.ops) if len(c.ops) < 7 else "all"),
             ",".join(c.dtypes) if len(c.dtypes) < 4 else "all",
             "yes" if c.quick else "", "raises" if c.expect_error else "") for c in cases]
    click.echo(tabulate(rows, headers=["case", "category", "shape", "axis", "ops", "dtypes", "quick",
                                       "expect"]))
    click.echo(f"{len(cases)} cases")


# ---------------------------------------------------------------------------------------------
# Verbs. Each body only translates options and delegates to the module that owns the work.
# Shared selection options:
def selection_options(f):
    """--backends/--ops/--dtypes/--cases/--plugin/--quick, shared by check, bench, run, hunt."""
    f = click.option("--quick", is_flag=True, help="Small representative subset.")(f)
    f = click.option("--plugin", "plugins", multiple=True, metavar="MODULE_OR_FILE.py",
                     help="Load third-party backends from a module or .py file (repeatable).")(f)
    f = click.option("--cases", default=None, metavar="A,B", help="Case names (default: all).")(f)
    f = click.option("--dtypes", default=None, metavar="A,B",
                     help="float16,bfloat16,float32,float64 (default: all the backend supports).")(f)
    f = click.option("--ops", default=None, metavar="A,B", help="Ops (default: all).")(f)
    f = click.option("--backends", default=None, metavar="A,B",
                     help="Backend names (default: every available backend).")(f)
    return f


@cli.command("list")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE_OR_FILE.py")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(plugins: tuple[str, ...], as_json: bool) -> None:
    """List every backend: device, framework version, dtypes, ops, and why it is unavailable."""
    from softmaxbench.backends.listing import list_main

    return list_main(plugins=plugins, as_json=as_json)


@cli.command("check")
@selection_options
@click.option("--out", default="softmaxbench-results/check", show_default=True, help="Results directory.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds a single case may run.")
@click.option("--resume", "resume", default=None, metavar="DIR", help="Finish an interrupted run in DIR.")
@click.option("--strict", is_flag=True, help="Deviations count as non-conformance too.")
@click.option("--junit-xml", default=None, metavar="PATH", help="Also write JUnit XML.")
@click.option("--seed", default=0, show_default=True, help="Seed recorded in run.json.")
@click.option("--jobs", default=None, type=int, metavar="N",
              help="Worker processes at once (default: one per backend, up to max(4, cores); a "
                   "backend left alone gets more while cores are free).")
def check_cmd(**kwargs) -> int:
    """Check backends against the reference; write DIR/results.jsonl and DIR/run.json."""
    from softmaxbench.suite.runner import check_main

    return check_main(**kwargs)


@cli.command("bench")
@selection_options
@click.option("--out", default="softmaxbench-results/bench", show_default=True, help="Results directory.")
@click.option("--threads", default=None, type=int,
              help="Threads for the CPU frameworks (torch, OpenMP, XLA via NPROC). Default: theirs.")
@click.option("--min-rounds", default=None, type=int, help="Fewest timed rounds per workload.")
def bench_cmd(**kwargs) -> int:
    """Throughput in GB/s and as a fraction of the measured copy bandwidth.

    --cases selects workloads by name pattern (e.g. 'sweep-16MiB-*', 'llm-*'). Writes
    DIR/results.jsonl, DIR/run.json and DIR/pytest-benchmark.json; exit 1 when a workload raised."""
    from softmaxbench.suite.bench import bench_main

    return bench_main(**kwargs)


@cli.command("compare")
@click.argument("base")
@click.argument("new")
@click.option("--max-regression", default="10%", show_default=True,
              help="Throughput drop beyond which a real change fails (e.g. 10%).")
@click.option("--p-value", default=0.01, show_default=True, type=float,
              help="A drop counts as real when the one-sided Mann-Whitney U p-value is below this.")
@click.option("--out", default=None, metavar="DIR",
              help="Also write the comparison table to DIR/compare.md and DIR/compare.json.")
def compare_cmd(**kwargs) -> int:
    """Compare two bench results (directories or results.jsonl); exit 1 on a real throughput
    regression, 2 on bad input."""
    from softmaxbench.reports.compare import compare_main

    return compare_main(**kwargs)


@cli.command("report")
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


@cli.command("run")
@selection_options
@click.option("--out", default=None, help="Default: ./softmaxbench-results/<timestamp>/")
@click.option("--full", is_flag=True, help="Full workloads instead of the quick ones.")
def run_cmd(**kwargs) -> int:
    """The main job: check + bench (quick) on every available backend, then the report."""
    from softmaxbench.reports.main_job import run_main

    return run_main(**kwargs)


@cli.command("hunt")
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
    from softmaxbench.suite.hunt import hunt_main

    return hunt_main(**kwargs)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: maps every usage/input error to one line + exit 2."""
    try:
        rc = cli.main(args=argv, prog_name="softmaxbench", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, --version
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("softmaxbench: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see 'softmaxbench {exc.ctx.command_path.split(' ', 1)[-1]} --help')" if (
            exc.ctx and " " in exc.ctx.command_path) else " (see 'softmaxbench --help')"
        click.echo(f"softmaxbench: error: {exc.format_message()}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        click.echo(f"softmaxbench: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)


if __name__ == "__main__":
    main()
