"""``softmaxbench run``: the main job. Check, bench, report, in one results directory.

With no arguments it checks every available backend on the quick case subset, benchmarks the
quick workloads, and writes everything to ``./softmaxbench-results/<timestamp>/``::

    <timestamp>/check/results.jsonl, run.json     the conformance records
    <timestamp>/bench/results.jsonl, run.json     the throughput records
    <timestamp>/report.md, report.html, *.csv, summary.json

It ends by printing where the report is and a per-backend summary. The exit code is that of the
check (1 when a backend does not conform): throughput never fails the job. A benchmark stage that
breaks or is interrupted still leaves a report of what was measured.

>>> default_out_dir(now=__import__("datetime").datetime(2025, 1, 2, 3, 4, 5)).as_posix()
'softmaxbench-results/20250102-030405'
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click

from softmaxbench.suite.cli.options import selection_options

RESULTS_ROOT = "softmaxbench-results"


def default_out_dir(root: str | os.PathLike = RESULTS_ROOT, now: datetime | None = None) -> Path:
    """``root/<YYYYmmdd-HHMMSS>``, with a -2, -3 ... suffix if a run of the same second exists."""
    base = Path(root) / (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def _stage(i: int, what: str, where: Path | None = None) -> None:
    click.secho(f"softmaxbench run [{i}/3] {what}" + (f" -> {where}" if where else ""), bold=True, err=True)


def _warn(msg: str) -> None:
    click.echo(f"softmaxbench: warning: {msg}", err=True)


def summary_table(summary: dict) -> str:
    """The closing table: one row per backend (and machine), verdict counts and throughput.

    >>> print(summary_table({"machines": ["m"], "backends": [{"machine": "m", "backend": "numpy",
    ...     "checks": 3, "verdicts": {"pass": 2, "deviation": 0, "fail": 1, "error": 0,
    ...     "unsupported": 0, "timeout": 0, "crash": 0}, "conforms": False, "max_gbps": 8.25,
    ...     "median_fraction_of_copy": 0.41}]}))
    backend      checks    pass    deviation    failing    unsupported  conforms      best GB/s  % of copy
    ---------  --------  ------  -----------  ---------  -------------  ----------  -----------  -----------
    numpy             3       2            0          1              0  NO                 8.25  41%
    """
    from tabulate import tabulate

    from softmaxbench.reports.tables import fmt_num
    from softmaxbench.suite.records import FAILING

    multi = len(summary.get("machines") or []) > 1
    rows = []
    for b in summary["backends"]:
        v = b["verdicts"]
        frac = b.get("median_fraction_of_copy")
        rows.append(([b["machine"]] if multi else []) + [
            b["backend"], b["checks"], v["pass"], v["deviation"], sum(v[k] for k in FAILING),
            v["unsupported"], {True: "yes", False: "NO", None: "-"}[b["conforms"]],
            fmt_num(b.get("max_gbps")) or "-", "-" if frac is None else f"{100 * frac:.0f}%"])
    headers = (["machine"] if multi else []) + ["backend", "checks", "pass", "deviation", "failing",
                                                  "unsupported", "conforms", "best GB/s", "% of copy"]
    return tabulate(rows, headers=headers)


def _bench(out_dir: Path, backends: list[str] | None, ops: list[str] | None, dtypes: list[str] | None,
           plugins: tuple[str, ...], quick: bool, command: str) -> bool:
    """The benchmark stage; returns True when it was interrupted (what finished is kept)."""
    from softmaxbench.suite.bench.measure import run_bench

    try:
        # Each backend runs in its own worker; names that cannot run there are skipped with a line.
        rc, _ = run_bench(out_dir, backends, quick=quick, ops=ops, dtypes=dtypes, plugins=plugins,
                          command=command, echo=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        return True
    if rc:
        _warn(f"some workloads raised (benchmark exit code {rc}); their records say why")
    return False


def run_main(backends: str | None = None, ops: str | None = None, dtypes: str | None = None,
             cases: str | None = None, plugins: Sequence[str] = (), quick: bool = False,
             out: str | None = None, full: bool = False) -> int:
    """The ``run`` verb. Options are the CLI's (comma-separated selections); returns the exit code."""
    from softmaxbench.errors import InputError
    from softmaxbench.reports.build import write_report
    from softmaxbench.suite.cli.options import split_csv
    from softmaxbench.suite.records import RecordError

    if quick and full:
        raise click.UsageError("--quick and --full exclude each other (run is quick unless --full)")
    quick = not full
    out_dir = Path(out) if out else default_out_dir()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InputError(f"{out_dir} is not empty; choose a new --out (run never mixes two runs' records)")
    backend_names, op_names, dtype_names = split_csv(backends), split_csv(ops), split_csv(dtypes)
    check_dir, bench_dir = out_dir / "check", out_dir / "bench"
    command = shlex.join(["softmaxbench", "run", *sys.argv[2:]][:64])

    from softmaxbench.suite.conformance.runner import run_check

    _stage(1, "conformance check" + (" (quick cases)" if quick else ""), check_dir)
    # run_check prints its own progress and per-backend table; Ctrl-C there returns 130.
    check_rc = run_check(check_dir, backends=backend_names, ops=op_names, dtypes=dtype_names,
                         cases=split_csv(cases), plugins=tuple(plugins), quick=quick, command=command)
    interrupted = check_rc == 130

    if not interrupted:
        _stage(2, "throughput benchmark" + (" (quick workloads)" if quick else ""), bench_dir)
        try:
            interrupted = _bench(bench_dir, backend_names, op_names, dtype_names, tuple(plugins), quick,
                                 command)
        except click.ClickException as exc:     # e.g. no workload fits the selection
            _warn(f"benchmark skipped: {exc.format_message()}")
        except Exception as exc:  # noqa: BLE001 - a broken benchmark must not lose the conformance report
            _warn(f"the benchmark failed ({type(exc).__name__}: {exc}); reporting the checks only")

    _stage(3, "report", out_dir)
    dirs = [d for d in (check_dir, bench_dir) if (d / "results.jsonl").is_file()]
    if not dirs:
        raise InputError("no results were written; nothing to report")
    try:
        summary = write_report(dirs, out_dir, warn=_warn)
    except RecordError as exc:
        raise InputError(str(exc)) from None

    click.echo("")
    click.echo(summary_table(summary))
    click.echo("")
    click.echo(f"Report: {out_dir / 'report.html'}  (Markdown: {out_dir / 'report.md'}; "
               f"tables: {out_dir}/*.csv)")
    if interrupted:
        click.echo("softmaxbench: interrupted; the report covers what finished", err=True)
        raise click.Abort()
    return check_rc


@click.command("run")
@selection_options
@click.option("--out", default=None, help="Default: ./softmaxbench-results/<timestamp>/")
@click.option("--full", is_flag=True, help="Full workloads instead of the quick ones.")
def run_cmd(**kwargs) -> int:
    """The main job: check + bench (quick) on every available backend, then the report."""
    return run_main(**kwargs)
