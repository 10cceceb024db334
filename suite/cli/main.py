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


#: Environment variables the suite reads: name -> (what it must be, its check).
def _positive_number(v: str) -> bool:
    try:
        f = float(v)
    except ValueError:
        return False
    return f > 0 and f < float("inf")


def _thread_counts(v: str) -> bool:  # OpenMP allows a nested list: "4,2"
    return all(p.strip().isdigit() and int(p) > 0 for p in v.split(","))


def _size(v: str) -> bool:
    import re

    return re.fullmatch(r"\s*\d+(\.\d+)?\s*([KMG]i?B?|B)?\s*", v, re.IGNORECASE) is not None


ENV_RULES = {
    "SOFTMAXBENCH_DISCOVERY_TIMEOUT": ("a positive number of seconds", _positive_number),
    "SOFTMAXBENCH_CACHE_BYTES": ("a size such as 32M or 33554432", _size),
    "SOFTMAXBENCH_WORKER_MEMORY": ("a positive number of bytes", _positive_number),
    "OMP_NUM_THREADS": ("a positive integer (or a comma-separated list of them)", _thread_counts),
    "MKL_NUM_THREADS": ("a positive integer", _thread_counts),
    "OPENBLAS_NUM_THREADS": ("a positive integer", _thread_counts),
    "NPROC": ("a positive integer", lambda v: v.strip().isdigit() and int(v) > 0),
}


def check_environment(environ=None) -> None:
    """Bad values of the environment variables the suite reads are bad input (exit 2), not a
    traceback deep in a worker or a silently ignored setting."""
    import os

    from softmaxbench.errors import InputError
    from softmaxbench.suite.isolation.channel import clean_text

    environ = os.environ if environ is None else environ
    for name, (what, ok) in ENV_RULES.items():
        value = environ.get(name)
        if value is not None and value.strip() and not ok(value):
            raise InputError(f"environment variable {name}={clean_text(value, 60)!r}: must be {what}")


def _stdout_gone(exc: OSError) -> None:
    """stdout closed or full under us (``| head -0``, /dev/full): one line on stderr, exit 2,
    and no second complaint when the interpreter flushes it at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    try:
        click.echo(f"softmaxbench: error: cannot write the output: {exc.strerror or exc}", err=True)
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_USAGE)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: maps every usage/input error to one line + exit 2."""
    from softmaxbench.errors import InputError

    try:
        check_environment()
    except InputError as exc:
        click.echo(f"softmaxbench: error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        rc = cli.main(args=argv, prog_name="softmaxbench", standalone_mode=False)
    except BrokenPipeError as exc:
        _stdout_gone(exc)
    except SystemExit as exc:
        _epipe_exit(exc)
        raise
    except OSError as exc:
        if exc.errno in (28, 9) and _is_stdout_error(exc):  # ENOSPC, EBADF on stdout
            _stdout_gone(exc)
        raise
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
    try:
        sys.stdout.flush()
    except BrokenPipeError as exc:
        _stdout_gone(exc)
    except SystemExit as exc:
        _epipe_exit(exc)
        raise
    except OSError as exc:
        _stdout_gone(exc)
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)


def _epipe_exit(exc: SystemExit) -> None:
    """click answers a broken stdout pipe with a silent exit 1 (read as non-conformance): say it."""
    from click.utils import PacifyFlushWrapper

    if exc.code == 1 and isinstance(sys.stdout, PacifyFlushWrapper):
        _stdout_gone(BrokenPipeError(32, "Broken pipe"))


def _is_stdout_error(exc: OSError) -> bool:
    """Was ``exc`` raised writing to stdout (its traceback ends in a write to it)?"""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].name in ("echo", "write", "flush", "print")


if __name__ == "__main__":
    main()
