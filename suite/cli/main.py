"""The ``softmaxbench`` command line: one click group; each verb's options live in a module of its own.

    softmaxbench list | cases | check | bench | report | compare | run | hunt

Usage and input errors (:class:`softmaxbench.errors.InputError`) become one line on stderr and
exit code 2, never a traceback. Exit codes: 0 all selected backends conform (or no regression),
1 non-conformance or regression, 2 usage or input error.
"""

from __future__ import annotations

import sys

import click

from softmaxbench import __version__
from softmaxbench.errors import EXIT_OK, EXIT_USAGE
from softmaxbench.suite.cli import bench, cases, check, compare, hunt, report, run
from softmaxbench.suite.cli import list as list_verb


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="softmaxbench")
def cli() -> None:
    """Conformance and throughput of softmax, log_softmax, logsumexp, cross-entropy and their
    gradients, measured against a certified high-precision reference."""


for _verb in (list_verb.list_cmd, cases.cases_cmd, check.check_cmd, bench.bench_cmd, report.report_cmd,
              compare.compare_cmd, run.run_cmd, hunt.hunt_cmd):
    cli.add_command(_verb)


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
