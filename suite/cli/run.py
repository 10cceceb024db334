"""``softmaxbench run``: the main job. Check, bench, report, in one results directory.

With no arguments it checks every available backend on the quick case subset, benchmarks the
quick workloads, and writes everything to ``./softmaxbench-results/<timestamp>/``::

    <timestamp>/check/results.jsonl, run.json     the conformance records
    <timestamp>/bench/results.jsonl, run.json     the throughput records
    <timestamp>/report.md, report.html, *.csv, summary.json

The console shows one progress line per stage, then per backend: its verdict counts and its top
failure causes (not one line per failing check), the per-backend table, and last where the report
is. The exit code says whether the report was made: 0 when it was (a backend that does not
conform is a finding, and the report says so), 2 on bad input, 130 when interrupted. With
``--gate`` the conformance decides: 1 when a check failed that is not a known finding.

>>> default_out_dir(now=__import__("datetime").datetime(2025, 1, 2, 3, 4, 5)).as_posix()
'softmaxbench-results/20250102-030405'
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click

from softmaxbench.suite.cli.options import selection_options

RESULTS_ROOT = "softmaxbench-results"
FAILING = ("fail", "error", "timeout", "crash")


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


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):    # not on this platform
        return None


class CheckProgress:
    """Follows check/results.jsonl while the check runs: one status line, counts per backend.

    On a terminal the line is rewritten in place; elsewhere (CI logs) a line every ``every_s``.
    Never a line per failing check: those are grouped by cause at the end.
    """

    def __init__(self, path: Path, *, every_s: float | None = None, stream=None):
        self.path, self.stream = path, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not os.environ.get("CI")
        self.every_s = every_s if every_s is not None else (1.0 if self.tty else 30.0)
        self.counts: dict[str, Counter] = {}
        self._offset, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> CheckProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                fh.seek(self._offset)
                while True:
                    line = fh.readline()
                    if not line.endswith("\n"):
                        break
                    self._offset += len(line.encode("utf-8", "replace"))
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(rec, dict):
                        c = self.counts.setdefault(str(rec.get("backend")), Counter())
                        c[str(rec.get("verdict"))] += 1
        except OSError:
            pass

    def line(self) -> str:
        parts = []
        for b, c in self.counts.items():
            bad = sum(c[v] for v in FAILING)
            parts.append(f"{b} {sum(c.values())}" + (f" ({bad} failing)" if bad else ""))
        return "checked: " + (", ".join(parts) if parts else "starting workers…")

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._read()
            text = self.line()
            if self.tty:
                width = shutil.get_terminal_size((100, 20)).columns - 1
                self.stream.write("\r\033[K" + text[:width])
            else:
                self.stream.write(text + "\n")
            self.stream.flush()


def summary_table(summary: dict) -> str:
    """The closing table: one row per backend (and machine): verdict counts, throughput medians.

    GB/s and % of copy are both medians over the backend's workloads; "fastest" counts the
    workloads where it is the fastest conforming backend.

    >>> print(summary_table({"machines": ["m"], "backends": [{"machine": "m", "backend": "numpy",
    ...     "checks": 3, "verdicts": {"pass": 2, "deviation": 0, "fail": 1, "error": 0,
    ...     "unsupported": 0, "timeout": 0, "crash": 0}, "conforms": False, "known_failing": 1,
    ...     "median_gbps": 8.25, "median_fraction_of_copy": 0.41, "fastest_conforming_on": 0,
    ...     "workloads": 2}]}))
    backend      checks    pass    dev.  failing (known)      unsupp.  conforms      GB/s  % of copy    fastest
    ---------  --------  ------  ------  -----------------  ---------  ----------  ------  -----------  ---------
    numpy             3       2       0  1 (1)                      0  NO            8.25  41%          0 of 2
    """  # noqa: E501
    from tabulate import tabulate

    from softmaxbench.reports.tables import fmt_num

    multi = len(summary.get("machines") or []) > 1
    rows = []
    for b in summary["backends"]:
        v = b["verdicts"]
        frac = b.get("median_fraction_of_copy")
        failing = sum(v[k] for k in FAILING)
        known = b.get("known_failing") or 0
        rows.append(([b["machine"]] if multi else []) + [
            b["backend"], b["checks"], v["pass"], v["deviation"],
            f"{failing} ({known})" if known else str(failing),
            v["unsupported"], {True: "yes", False: "NO", None: "-"}[b["conforms"]],
            fmt_num(b.get("median_gbps")) or "-", "-" if frac is None else f"{100 * frac:.0f}%",
            f"{b.get('fastest_conforming_on', 0)} of {b['workloads']}" if b.get("workloads") else "-"])
    headers = (["machine"] if multi else []) + ["backend", "checks", "pass", "dev.", "failing (known)",
                                                  "unsupp.", "conforms", "GB/s", "% of copy", "fastest"]
    return tabulate(rows, headers=headers, disable_numparse=[4, 8, 9] if not multi else [5, 9, 10])


def _n(k: int, what: str) -> str:
    return f"{k} {what}{'' if k == 1 else 's'}"


def causes_text(failures_df, *, top: int = 3, width: int = 150) -> list[str]:
    """Per backend: its failure causes, most checks first, at most ``top`` lines, new ones marked."""
    lines: list[str] = []
    if failures_df is None or failures_df.empty:
        return lines
    for backend, g in failures_df.groupby("backend", sort=True):
        g = g.sort_values(["status", "checks"], ascending=[False, False], kind="stable")
        new = int(g.loc[g["status"] == "new", "checks"].sum())
        known = int(g["checks"].sum()) - new
        lines.append(f"{backend}: {_n(new + known, 'failing check')} in {_n(len(g), 'cause')}"
                     + (f" ({new} new, {known} known)" if known else ""))
        for _, r in g.head(top).iterrows():
            text = f"  {r['checks']:>4} x {r['verdict']} [{r['status']}] {r['cause']}"
            if len(text) > width:       # cut at a word, never inside a name or number
                text = text[: text.rfind(" ", 0, width - 1)] + " …"
            lines.append(text)
        if len(g) > top:
            lines.append(f"       … and {len(g) - top} more causes (the report's 'Failures by cause')")
    return lines


def _bench(out_dir: Path, backends: list[str] | None, ops: list[str] | None, dtypes: list[str] | None,
           plugins: tuple[str, ...], quick: bool, command: str, threads: int | None) -> bool:
    """The benchmark stage; returns True when it was interrupted (what finished is kept)."""
    from softmaxbench.suite.bench.measure import run_bench

    try:
        # Each backend runs in its own worker; names that cannot run there are skipped with a line.
        rc, _ = run_bench(out_dir, backends, quick=quick, ops=ops, dtypes=dtypes, plugins=plugins,
                          command=command, threads=threads, echo=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        return True
    if rc:
        _warn(f"some workloads raised (benchmark exit code {rc}); their records say why")
    return False


def _note_load(check_dir: Path, load: float | None) -> None:
    """The check's run.json gets the load average taken before it started (the report states it)."""
    from softmaxbench.suite.records import read_run, write_run

    try:
        run = read_run(check_dir)
    except Exception:    # noqa: BLE001 - a damaged run.json is the report's to say
        return
    if run and "load_average_at_start" not in run:
        run["load_average_at_start"] = load
        write_run(check_dir, run)


def _tidy(out_dir: Path) -> None:
    """No stray folders: worker log folders with nothing logged."""
    for d in (out_dir / "check" / "logs", out_dir / "bench" / "logs"):
        if d.is_dir() and not any(f.stat().st_size for f in d.rglob("*") if f.is_file()):
            shutil.rmtree(d, ignore_errors=True)


def run_main(backends: str | None = None, ops: str | None = None, dtypes: str | None = None,
             cases: str | None = None, plugins: Sequence[str] = (), quick: bool = False,
             out: str | None = None, full: bool = False, threads: int | None = None,
             gate: bool = False) -> int:
    """The ``run`` verb. Options are the CLI's (comma-separated selections); returns the exit code."""
    from softmaxbench.errors import EXIT_NONCONFORMING, EXIT_OK, InputError
    from softmaxbench.reports.build import write_report
    from softmaxbench.suite.cli.options import split_csv
    from softmaxbench.suite.records import RecordError

    if quick and full:
        raise click.UsageError("--quick and --full exclude each other (run is quick unless --full)")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    from softmaxbench.suite.cli.options import bounded_int, usable_out_dir
    from softmaxbench.suite.selection import plugin_paths

    bounded_int(threads, "--threads", 1, 4096)
    plugins = plugin_paths(plugins)
    quick = not full
    if out is not None:
        usable_out_dir(out)
    out_dir = Path(out) if out else default_out_dir()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(f"{out_dir} is not empty; choose a new --out (run never mixes two runs' records)")
    existed = out_dir.exists()
    backend_names, op_names, dtype_names = split_csv(backends), split_csv(ops), split_csv(dtypes)
    check_dir, bench_dir = out_dir / "check", out_dir / "bench"
    command = shlex.join(["softmaxbench", "run", *sys.argv[2:]][:64])

    from softmaxbench.suite.conformance.runner import run_check
    from softmaxbench.suite.selection import select_backends, validate_names

    # Bad input is one line before any stage starts (discovery is cached: the check asks again).
    validate_names(op_names, dtype_names, split_csv(cases), quick)
    select_backends(backend_names, plugins)

    _stage(1, "conformance check" + (" (quick cases)" if quick else ""), check_dir)
    load = _load_average()
    try:
        with CheckProgress(check_dir / "results.jsonl"):
            # Ctrl-C there returns 130; its own per-record lines are replaced by the grouped summary.
            check_rc = run_check(check_dir, backends=backend_names, ops=op_names, dtypes=dtype_names,
                                 cases=split_csv(cases), plugins=tuple(plugins), quick=quick, command=command,
                                 display="none")
    except BaseException:
        # Nothing was run (bad input): leave no empty results folder behind.
        if not existed and out_dir.is_dir() and not any(p.is_file() for p in out_dir.rglob("*")):
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    interrupted = check_rc == 130
    if check_dir.is_dir():
        _note_load(check_dir, load)

    # pytest-benchmark makes ./.benchmarks (its storage) in the working directory: not ours to leave.
    storage = Path.cwd() / ".benchmarks"
    storage_existed = storage.exists()
    if not interrupted:
        _stage(2, "throughput benchmark" + (" (quick workloads)" if quick else "")
               + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""), bench_dir)
        try:
            interrupted = _bench(bench_dir, backend_names, op_names, dtype_names, tuple(plugins), quick,
                                 command, threads)
        except click.ClickException as exc:     # e.g. no workload fits the selection
            _warn(f"benchmark skipped: {exc.format_message()}")
        except Exception as exc:  # noqa: BLE001 - a broken benchmark must not lose the conformance report
            _warn(f"the benchmark failed ({type(exc).__name__}: {exc}); reporting the checks only")

    if not storage_existed and storage.is_dir():
        shutil.rmtree(storage, ignore_errors=True)
    _stage(3, "report", out_dir)
    _tidy(out_dir)
    dirs = [d for d in (check_dir, bench_dir) if (d / "results.jsonl").is_file()]
    if not dirs:
        raise InputError("no results were written; nothing to report")
    try:
        made: dict = {}
        summary = write_report(dirs, out_dir, warn=_warn, collect=made)
        failures = made["tables"]["failures"].df
    except RecordError as exc:
        raise InputError(str(exc)) from None

    click.echo("")
    for line in causes_text(failures):
        click.echo(line)
    click.echo("")
    click.echo(summary_table(summary))
    busy = [s for s in summary.get("setting", []) if s.get("busy")]
    for s in busy:
        click.echo(f"note: the load average was {s['load_average']:.1f} on {s['cores']} cores at the "
                   "start of the benchmark: its figures are lower and noisier than on an idle machine"
                   + ("; --threads 1 measures threaded frameworks more steadily" if not threads else ""))
    new = summary["checks"].get("new_failing", 0)
    known = summary["checks"].get("known_failing", 0)
    if new or known:
        click.echo(f"{_n(new + known, 'failing check')} ({new} new, {known} known): the report groups "
                   "them by cause" + ("" if gate else "; --gate makes them the exit code"))
    click.echo("")
    click.echo(f"Report: {out_dir / 'report.html'}  (Markdown: {out_dir / 'report.md'}; "
               f"tables: {out_dir}/*.csv)")
    if interrupted:
        click.echo("softmaxbench: interrupted; the report covers what finished", err=True)
        raise click.Abort()
    if gate:
        click.echo(f"conformance gate: {'FAILED' if new else 'passed'} ({new} new failing checks"
                   + (f", {known} known" if known else "") + ")")
        return EXIT_NONCONFORMING if new else EXIT_OK
    return EXIT_OK


@click.command("run")
@selection_options
@click.option("--out", default=None, help="Default: ./softmaxbench-results/<timestamp>/")
@click.option("--full", is_flag=True, help="Full workloads instead of the quick ones.")
@click.option("--threads", default=None, type=int,
              help="Threads for the CPU frameworks in the benchmark (torch, OpenMP, XLA). Default: theirs. "
                   "On a busy machine --threads 1 measures threaded frameworks more steadily.")
@click.option("--gate", is_flag=True,
              help="Exit 1 when a check failed that is not a known finding (the CI gate). Without it the "
                   "exit code says only whether the report was made.")
def run_cmd(**kwargs) -> int:
    """The main job: check + bench (quick) on every available backend, then the report.

    Exit 0 when the report was made (non-conformance is in the report), 1 with --gate on a new
    failure, 2 on bad input."""
    return run_main(**kwargs)
