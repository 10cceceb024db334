"""``softmaxbench report``: results directories -> report.md, report.html, one CSV per table, summary.json.

Everything comes from the result records (``reports.load``); tables are built once
(``reports.tables``) and laid out twice (``reports.markdown``, ``reports.html_page``).

>>> import json, pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> recs = [{"schema_version": 1, "kind": "check", "backend": "numpy", "device": "cpu",
...          "op": "softmax", "dtype": dt, "shape": [4, 8], "verdict": "pass", "max_ulp": 0.5}
...         for dt in ("float32", "float64")]
>>> _ = (d / "results.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in recs))
>>> summary = write_report([d], d / "report")
>>> summary["checks"]["verdicts"]["pass"], summary["conforming"]
(2, True)
>>> sorted(p.name for p in (d / "report").iterdir())[:3]
['accuracy.csv', 'conformance.csv', 'deviations.csv']
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from softmaxbench.reports import html_page, markdown, plots, tables
from softmaxbench.reports.load import Results, load_results
from softmaxbench.suite.records import FAILING, SCHEMA_VERSION, VERDICTS, RecordError, now_iso

REPORT_MD, REPORT_HTML, SUMMARY_JSON = "report.md", "report.html", "summary.json"


def _deviation_descriptions() -> dict[str, str]:
    """Meanings of the deviation names, from the reference's documentation when installed."""
    try:
        from softmaxbench.reference.special import DEVIATIONS
    except Exception:   # reports must work from records alone, e.g. on a machine with only pandas
        return {}
    return dict(DEVIATIONS)


def load_compare(path: str | os.PathLike) -> dict | list:
    """The JSON written by ``softmaxbench compare --out`` (a file, or the directory holding it)."""
    p = Path(path)
    if p.is_dir():
        found = sorted(p.glob("compare*.json")) or sorted(p.glob("*.json"))
        if not found:
            raise RecordError(f"{p}: no compare JSON in this directory")
        p = found[0]
    if not p.is_file():
        raise RecordError(f"{p}: no such compare file")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RecordError(f"{p}: not JSON; not a softmaxbench compare output") from None


def build_tables(res: Results, compare: dict | list | None = None) -> list[tables.Table]:
    """Every table of the report, in page order."""
    special, deviations = tables.special_values(res.checks, _deviation_descriptions())
    out = [tables.conformance(res.checks), tables.accuracy(res.checks), special, deviations,
           tables.gradient_accuracy(res.checks), tables.failures(res.checks), tables.throughput(res.bench)]
    if not res.checks.empty and (res.checks["found_by"] == "hunt").any():
        out.append(tables.max_known_error(res.checks))
    if compare is not None:
        try:
            out.append(tables.compare_table(compare))
        except ValueError as exc:
            raise RecordError(f"--compare: {exc}") from None
    out.append(tables.environment(res.runs))
    return out


def summarize(res: Results) -> dict:
    """Per-backend verdict counts and throughput headline, for summary.json and the terminal."""
    checks = res.checks
    # Copy kernels (op "copy") measure the device, not a backend: they are the yardstick only.
    bench = res.bench[~res.bench["op"].eq("copy")] if not res.bench.empty else res.bench
    per_backend = []
    keys = ["machine", "backend"]
    frames = [f[keys] for f in (checks, bench) if not f.empty]
    pairs = pd.concat(frames).drop_duplicates() if frames else pd.DataFrame(columns=keys)
    for _, pair in pairs.iterrows():
        c = checks[(checks["machine"] == pair["machine"]) & (checks["backend"] == pair["backend"])] \
            if not checks.empty else checks
        b = bench[(bench["machine"] == pair["machine"]) & (bench["backend"] == pair["backend"])
                  & bench["gbps"].notna()] if not bench.empty else bench
        counts = {v: int((c["verdict"] == v).sum()) if not c.empty else 0 for v in VERDICTS}
        per_backend.append({
            "machine": pair["machine"], "backend": pair["backend"], "checks": int(len(c)),
            "verdicts": counts, "conforms": (not any(counts[v] for v in FAILING)) if len(c) else None,
            "benchmarks": int(len(b)),
            "max_gbps": None if b.empty else float(b["gbps"].max()),
            "median_fraction_of_copy": None if b.empty or b["fraction_of_copy"].isna().all()
            else float(b["fraction_of_copy"].median())})
    per_backend.sort(key=lambda r: (str(r["machine"]), str(r["backend"])))
    totals = {v: int((checks["verdict"] == v).sum()) if not checks.empty else 0 for v in VERDICTS}
    return {"checks": {"total": int(len(checks)), "verdicts": totals}, "benchmarks": int(len(bench)),
            "backends": per_backend,
            "conforming": all(r["conforms"] is not False for r in per_backend)}


def _intro(res: Results, head: dict, sources: list[str]) -> tuple[list[str], str]:
    """Markdown intro lines (escaped) and the plain-text meta line of the HTML page."""
    from softmaxbench import __version__

    machines = res.machines
    meta = (f"Generated {now_iso()} by softmaxbench {__version__} from {len(sources)} results "
            f"director{'y' if len(sources) == 1 else 'ies'}; machine{'s' if len(machines) != 1 else ''}: "
            f"{', '.join(machines) or 'unknown'}.")
    lines = [f"*{markdown.md_text(meta)}*", ""]
    v = head["checks"]["verdicts"]
    if head["checks"]["total"]:
        counts = ", ".join(f"{v[k]} {k}" for k in VERDICTS if v[k])
        lines.append(f"**{head['checks']['total']} checks**: {counts}.")
        bad = [r for r in head["backends"] if r["conforms"] is False]
        good = [r for r in head["backends"] if r["conforms"] is True]
        name = (lambda r: f"{r['machine']}/{r['backend']}") if len(machines) > 1 else (lambda r: r["backend"])
        if good:
            lines.append(f"Conforming: {markdown.md_text(', '.join(name(r) for r in good))}.")
        if bad:
            lines.append("**Not conforming: " + markdown.md_text(", ".join(
                f"{name(r)} ({sum(r['verdicts'][k] for k in FAILING)} failing)" for r in bad)) + "**.")
    if head["benchmarks"]:
        lines.append(f"**{head['benchmarks']} benchmark results**; plots are in report.html.")
    lines = [ln + "  " if ln else ln for ln in lines]    # hard line breaks in GFM
    for w in res.warnings:
        lines += ["", f"> ⚠ {markdown.md_text(w)}"]
    return lines, meta


def _cards(head: dict) -> list[tuple[str, str, str]]:
    v = head["checks"]["verdicts"]
    cards = [("checks", str(head["checks"]["total"]), "")]
    cards += [(k, str(v[k]), "good" if k == "pass" else "dev" if k == "deviation" else "bad" if k in FAILING
               else "") for k in VERDICTS if v[k]]
    if head["benchmarks"]:
        cards.append(("benchmark results", str(head["benchmarks"]), ""))
    bad = sum(1 for r in head["backends"] if r["conforms"] is False)
    cards.append(("backends not conforming", str(bad), "bad" if bad else "good"))
    return cards


def write_report(dirs: Iterable[str | os.PathLike], out: str | os.PathLike, *,
                 compare: dict | list | None = None,
                 warn: Callable[[str], None] | None = None) -> dict:
    """Write the report of ``dirs`` into ``out``; returns what summary.json holds.

    Raises RecordError (one line) on a damaged or foreign input; ``warn`` receives recoverable
    problems (a results file cut off by a killed run).
    """
    sources = [str(d) for d in dirs]
    res = load_results(sources, warn=warn)
    if res.checks.empty and res.bench.empty:
        raise RecordError(f"no result records in {', '.join(sources)}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)

    all_tables = build_tables(res, compare)
    machines = res.machines
    for t in all_tables:
        t.df.to_csv(out_dir / f"{t.key}.csv", index=False)
        t.view = tables.drop_single_machine(t.view, machines)

    head = summarize(res)
    intro, meta = _intro(res, head, sources)
    md, cap = markdown.render("softmaxbench report", intro, all_tables,
                              plots_note="*Plots: see report.html.*")
    (out_dir / REPORT_MD).write_text(md, encoding="utf-8")

    figures = plots.throughput_plots(res.bench) + plots.error_plots(res.checks)
    fail_table = next(t for t in all_tables if t.key == "failures")
    repros = {i: r for i, r in enumerate(fail_table.df["repro"]) if isinstance(r, str) and r}
    page = html_page.render("softmaxbench report", meta, _cards(head), all_tables, figures,
                            warnings=res.warnings, details={"failures": repros})
    (out_dir / REPORT_HTML).write_text(page, encoding="utf-8")

    from softmaxbench import __version__

    summary = {"schema_version": SCHEMA_VERSION, "generated": now_iso(), "softmaxbench_version": __version__,
               "sources": sources, "machines": machines, **head,
               "tables": {t.key: {"rows": len(t.df), "csv": f"{t.key}.csv"} for t in all_tables},
               "files": {"markdown": REPORT_MD, "html": REPORT_HTML,
                         "plots": [p.key for p in figures]},
               "markdown_row_cap": cap, "warnings": res.warnings}
    (out_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=1, allow_nan=False, default=str),
                                        encoding="utf-8")
    return summary


def report_main(results: Iterable[str], out: str, compare_json: Iterable[str] | str | None = (),
                gate: bool = False, strict: bool = False) -> int:
    """The ``report`` verb: write the report, print where it is.

    Exit 0, or 2 on bad input; with ``gate``, 1 when the merged check records do not conform
    (the same judgement as ``check``'s exit code: ``suite.records.gate``).
    """
    import click

    from softmaxbench.errors import EXIT_OK, InputError
    from softmaxbench.suite.records import gate as conformance_gate

    def warn(msg: str) -> None:
        click.echo(f"softmaxbench: warning: {msg}", err=True)

    paths = [compare_json] if isinstance(compare_json, str) else list(compare_json or ())
    try:
        compare = merge_compares([load_compare(p) for p in paths]) if paths else None
        summary = write_report(list(results), out, compare=compare, warn=warn)
    except RecordError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    n_csv = len(summary["tables"])
    click.echo(f"report: {Path(out) / REPORT_HTML} (and {REPORT_MD}, {n_csv} CSV files, {SUMMARY_JSON})")
    if not summary["conforming"]:
        bad = [f"{r['backend']}" for r in summary["backends"] if r["conforms"] is False]
        click.echo(f"not conforming: {', '.join(bad)}")
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


def merge_compares(parts: list[dict | list]) -> dict | list:
    """Several ``compare.json`` outputs (one per machine or backend group) as one table's data."""
    if len(parts) == 1:
        return parts[0]
    rows: list[dict] = []
    for part in parts:
        part_rows = part.get("rows") if isinstance(part, dict) else part
        if not isinstance(part_rows, list):
            raise RecordError("--compare: not a softmaxbench compare output (expected a list of rows)")
        rows.extend(part_rows)
    return {"rows": rows}
