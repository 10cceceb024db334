"""The exit codes every verb shares, and the one exception that means "bad input" (exit 2).

At the bottom of the package: any room may raise :class:`InputError` without importing the CLI,
and the CLI (``softmaxbench.suite.cli.main``) turns it into one line on stderr and exit code 2.

>>> str(InputError("--out x: not a directory"))
'--out x: not a directory'
"""

import click

EXIT_OK, EXIT_NONCONFORMING, EXIT_USAGE = 0, 1, 2


class InputError(click.ClickException):
    """Bad input discovered after parsing (missing file, unknown backend, bad schema): exit 2.

    A ClickException, so that click (and its CliRunner) give it exit code 2 and one line too."""

    exit_code = EXIT_USAGE
