"""``softmaxbench report``: the options of the report verb and its glue (the work:
:func:`softmaxbench.reports.build.write_report`; the gate: ``suite.conformance.summary.gate``)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

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
    return report_main(**kwargs)


def report_main(results: Iterable[str], out: str, compare_json: Iterable[str] | str | None = (),
                gate: bool = False, strict: bool = False) -> int:
    """The ``report`` verb: write the report, print where it is.

    Exit 0, or 2 on bad input; with ``gate``, 1 when the merged check records do not conform
    (the same judgement as ``check``'s exit code: ``suite.conformance.summary.gate``).
    """
    # The engine (pandas, matplotlib) is imported only when the verb runs.
    from softmaxbench.errors import EXIT_OK, InputError
    from softmaxbench.reports.build import (
        REPORT_HTML,
        REPORT_MD,
        SUMMARY_JSON,
        load_compare,
        merge_compares,
        write_report,
    )
    from softmaxbench.reports.load import load_results
    from softmaxbench.suite.cli.options import usable_out_dir
    from softmaxbench.suite.conformance.summary import gate as conformance_gate
    from softmaxbench.suite.records import RecordError

    warnings: list[str] = []  # printed once the report is written (bad input: the error alone)

    def warn(msg: str) -> None:
        warnings.append(msg)

    try:
        usable_out_dir(out)
    except InputError as exc:
        raise InputError(f"cannot write the report to {out}: {exc.format_message()}") from None
    paths = [compare_json] if isinstance(compare_json, str) else list(compare_json or ())
    try:
        compare = merge_compares([load_compare(p) for p in paths]) if paths else None
        summary = write_report(list(results), out, compare=compare, warn=warn)
    except RecordError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    for msg in warnings:
        click.echo(f"softmaxbench: warning: {msg}", err=True)
    n_csv = len(summary["tables"])
    click.echo(f"report: {Path(out) / REPORT_HTML} (and {REPORT_MD}, {n_csv} CSV files, {SUMMARY_JSON})")
    if not summary["conforming"]:
        bad = [f"{r['backend']}" for r in summary["backends"] if r["conforms"] is False]
        c = summary["checks"]
        n, k = summary["tables"]["failures"]["rows"], c["failing"]
        click.echo(f"not conforming: {', '.join(bad)} ({k} failing check{'s' * (k != 1)} "
                   f"in {n} cause{'s' * (n != 1)}; {c['known_failing']} of them known)")
    sys.stdout.flush()
    if gate:
        checks = load_results(list(results)).checks  # deduplicated: a resumed check's last word
        rc, lines = conformance_gate([{**r, "kind": "check"} for r in checks.to_dict("records")],
                                     strict=strict)
        for line in lines[:50]:
            click.echo(f"gate: {line}", err=True)
        if len(lines) > 50:
            click.echo(f"gate: ... and {len(lines) - 50} more (see the report's failures table)", err=True)
        click.echo(f"conformance gate: {'FAILED' if rc else 'passed'} ({len(lines)} offending checks)")
        return rc
    return EXIT_OK
