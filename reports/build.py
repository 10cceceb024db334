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
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from softmaxbench.reports import html_page, markdown, plots, tables
from softmaxbench.reports.known import mark_known
from softmaxbench.reports.load import Results, load_results
from softmaxbench.suite.records import FAILING, SCHEMA_VERSION, VERDICTS, RecordError, now_iso

REPORT_MD, REPORT_HTML, SUMMARY_JSON = "report.md", "report.html", "summary.json"


def _deviation_descriptions() -> dict[str, str]:
    """Meanings of the deviation names: the reference's texts when installed, plus the reason the
    built-in backends' conventions data gives (a file, read as data)."""
    out: dict[str, str] = {}
    try:
        from softmaxbench.reference.special import DEVIATIONS
        out.update(DEVIATIONS)
    except Exception:   # reports must work from records alone, e.g. on a machine with only pandas
        pass
    try:
        import importlib.util
        import tomllib

        spec = importlib.util.find_spec("softmaxbench.backends")
        for base in (spec.submodule_search_locations or []) if spec else []:
            path = Path(base) / "conventions.toml"
            if path.is_file():
                for e in tomllib.loads(path.read_text(encoding="utf-8")).get("deviation", []):
                    name, reason = e.get("name"), " ".join(str(e.get("reason") or "").split())
                    if name and reason:
                        out[name] = (out[name] + ". Why: " + reason) if name in out else reason
                break
    except Exception:   # noqa: BLE001 - explanations are a courtesy; never fail a report for them
        pass
    return out


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


def prepare(res: Results) -> Results:
    """Known findings marked on the checks, intervals and copy figures added to the bench rows,
    and the conformance per backend, op and dtype (``res.conf``), computed once."""
    res.checks = mark_known(res.checks)
    res.bench = tables.with_intervals(res.bench)
    res.conf = tables.op_conformance(res.checks)
    return res


def _conf(res: Results) -> pd.DataFrame:
    conf = getattr(res, "conf", None)
    return conf if conf is not None else tables.op_conformance(res.checks)


def build_tables(res: Results, compare: dict | list | None = None) -> list[tables.Table]:
    """Every table of the report, in page order (the first screen first)."""
    if "gbps_lo" not in res.bench:
        res = prepare(res)
    conf = _conf(res)
    special, deviations = tables.special_values(res.checks, _deviation_descriptions())
    out = [tables.overview(res.checks, res.bench, conf), tables.ranking(res.bench, conf),
           tables.conformance(res.checks), tables.failures(res.checks), tables.accuracy(res.checks),
           tables.gradient_accuracy(res.checks), special, deviations, tables.throughput(res.bench)]
    if not res.checks.empty and (res.checks["found_by"] == "hunt").any():
        out.append(tables.max_known_error(res.checks))
    if compare is not None:
        try:
            out.append(tables.compare_table(compare))
        except ValueError as exc:
            raise RecordError(f"--compare: {exc}") from None
    out.append(tables.environment(res.runs))
    out.append(tables.failed_checks(res.checks))
    return out


def summarize(res: Results) -> dict:
    """Per-backend verdict counts and throughput headline, for summary.json and the terminal."""
    if "gbps_lo" not in res.bench:
        res = prepare(res)
    checks = res.checks
    # Copy kernels (op "copy") measure the device, not a backend: they are the yardstick only.
    bench = res.bench[~res.bench["op"].eq("copy")] if not res.bench.empty else res.bench
    ranked = tables.rank_workloads(res.bench, _conf(res))
    per_backend = []
    keys = ["machine", "backend"]
    frames = [f[keys] for f in (checks, bench) if not f.empty]
    pairs = pd.concat(frames).drop_duplicates() if frames else pd.DataFrame(columns=keys)
    known = checks["known"].notna() if not checks.empty else pd.Series(dtype=bool)
    for _, pair in pairs.iterrows():
        sel = (checks["machine"] == pair["machine"]) & (checks["backend"] == pair["backend"]) \
            if not checks.empty else None
        c = checks[sel] if sel is not None else checks
        b = bench[(bench["machine"] == pair["machine"]) & (bench["backend"] == pair["backend"])
                  & bench["gbps"].notna()] if not bench.empty else bench
        counts = {v: int((c["verdict"] == v).sum()) if not c.empty else 0 for v in VERDICTS}
        failing = int(c["verdict"].isin(FAILING).sum()) if not c.empty else 0
        known_failing = int((c["verdict"].isin(FAILING) & known[c.index]).sum()) if not c.empty else 0
        checked = len(c) - counts["unsupported"] if len(c) else 0
        mine = [w for w in ranked if w["machine"] == pair["machine"]
                and any(e["backend"] == pair["backend"] for e in w["entries"])]
        fastest = sum(1 for w in mine if w["fastest"] is not None
                      and w["fastest"]["backend"] == pair["backend"])
        per_backend.append({
            "machine": pair["machine"], "backend": pair["backend"], "checks": int(len(c)),
            "verdicts": counts, "conforms": (not failing) if checked else None,
            "failing": failing, "known_failing": known_failing, "new_failing": failing - known_failing,
            "benchmarks": int(len(b)),
            "max_gbps": None if b.empty else float(b["gbps"].max()),
            "median_gbps": None if b.empty else float(b["gbps"].median()),
            "median_fraction_of_copy": None if b.empty or b["frac"].isna().all()
            else float(b["frac"].median()),
            "fastest_conforming_on": fastest, "workloads": len(mine)})
    per_backend.sort(key=lambda r: (str(r["machine"]), str(r["backend"])))
    totals = {v: int((checks["verdict"] == v).sum()) if not checks.empty else 0 for v in VERDICTS}
    failing = int(checks["verdict"].isin(FAILING).sum()) if not checks.empty else 0
    known_failing = int((checks["verdict"].isin(FAILING) & known).sum()) if not checks.empty else 0
    return {"checks": {"total": int(len(checks)), "verdicts": totals, "failing": failing,
                       "known_failing": known_failing, "new_failing": failing - known_failing},
            "benchmarks": int(len(bench)),
            "backends": per_backend,
            "fastest_conforming": [{"machine": w["machine"], "op": w["op"], "dtype": w["dtype"],
                                    "workload": w["workload"],
                                    "backend": None if w["fastest"] is None else w["fastest"]["series"],
                                    "gbps": None if w["fastest"] is None else w["fastest"]["gbps"],
                                    "tie": w["tie"]} for w in ranked],
            "setting": setting(res),
            "conforming": all(r["conforms"] is not False for r in per_backend)}


def setting(res: Results) -> list[dict]:
    """Per results directory: machine, cores, load average at the start, threads, busy or not."""
    out = []
    for info in res.runs:
        run = info.run or {}
        kind = info.kind or ("bench" if (res.bench["source"] == info.source).any() else "check")
        recs = res.bench[res.bench["source"] == info.source] if not res.bench.empty else res.bench
        threads = {}
        if not recs.empty:
            for series, t in zip(recs["series"], recs["threads"]):
                if t is not None and t == t:
                    threads.setdefault(str(series), set()).add(int(t))
        # Busy matters to timings only: a check's verdicts do not depend on the load.
        out.append({"source": info.source, "kind": kind, "machine": info.machine, "cores": info.cores,
                    "load_average": info.load_average, "busy": info.busy and kind == "bench",
                    "threads_setting": run.get("threads"),
                    "threads": {k: sorted(v) for k, v in sorted(threads.items())}})
    return out


def setting_lines(res: Results) -> list[str]:
    """Plain-text lines: the machine, its load at the start of each run, the threads."""
    lines = []
    for m in res.machines or ["unknown"]:
        run = next((r.run for r in res.runs if r.machine == m and r.run), {})
        mach = run.get("machine") or {}
        facts = [str(mach[k]) for k in ("platform", "processor") if mach.get(k)]
        if mach.get("cpu_count"):
            facts.append(f"{mach['cpu_count']} cores")
        if mach.get("memory_gib"):
            facts.append(f"{mach['memory_gib']} GiB")
        lines.append(f"Machine {m}" + (f": {', '.join(facts)}" if facts else " (no run.json)") + ".")
    for s in setting(res):
        kind = s["kind"] or "results"
        where = f"{s['machine']} {kind}" if len(res.machines) > 1 else kind
        if s["load_average"] is None:
            load = "load average not recorded"
        else:
            load = f"load average {s['load_average']:.2f} at the start" + (
                f" on {s['cores']} cores" if s["cores"] else "")
        t = s["threads_setting"]
        threads = "threads: the frameworks' default" if t is None else f"threads: {t}"
        if s["threads"]:
            threads += " (per backend as measured: " + ", ".join(
                f"{k} {'/'.join(map(str, v))}" for k, v in s["threads"].items()) + ")"
        line = f"{where.capitalize()}: {load}; {threads}."
        if s["busy"]:
            line += (" BUSY: more runnable work than cores while it ran, so these figures are lower "
                     "and noisier than on an idle machine (threaded frameworks suffer most; "
                     "--threads 1 measures them more steadily).")
        lines.append(line)
    return lines


def _intro(res: Results, head: dict, sources: list[str]) -> tuple[list[str], str]:
    """Markdown intro lines (escaped) and the plain-text meta line of the HTML page."""
    from softmaxbench import __version__

    machines = res.machines
    meta = (f"Generated {now_iso()} by softmaxbench {__version__} from {len(sources)} results "
            f"director{'y' if len(sources) == 1 else 'ies'}; machine{'s' if len(machines) != 1 else ''}: "
            f"{', '.join(machines) or 'unknown'}.")
    lines = [f"*{markdown.md_text(meta)}*", ""]
    lines += [markdown.md_text(ln) for ln in setting_lines(res)]
    lines += [""] + verdict_lines(head, machines)
    if head["benchmarks"]:
        lines.append(f"**{head['benchmarks']} benchmark results**; plots are in report.html.")
    lines = [ln + "  " if ln else ln for ln in lines]    # hard line breaks in GFM
    for w in res.warnings:
        lines += ["", f"> ⚠ {markdown.md_text(w)}"]
    return lines, meta


def verdict_lines(head: dict, machines: list[str]) -> list[str]:
    """'**N checks**: ...', the conforming and the not conforming backends (Markdown, escaped)."""
    lines = []
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
            def fails(r):
                k = r.get("known_failing") or 0
                n = sum(r["verdicts"][x] for x in FAILING)
                return f"{n} failing" + (f", {k} of them known" if k else "")
            lines.append("**Not conforming: " + markdown.md_text(", ".join(
                f"{name(r)} ({fails(r)})" for r in bad)) + "**.")
    return lines


def _cards(head: dict, res: Results) -> list[tuple[str, str, str]]:
    v = head["checks"]["verdicts"]
    cards = [("checks", str(head["checks"]["total"]), "")]
    cards += [(k, str(v[k]), "good" if k == "pass" else "dev" if k == "deviation" else "bad" if k in FAILING
               else "") for k in VERDICTS if v[k]]
    if head["checks"]["known_failing"]:
        cards.append(("of the failing: known", str(head["checks"]["known_failing"]), "dev"))
    if head["benchmarks"]:
        cards.append(("benchmark results", str(head["benchmarks"]), ""))
    bad = sum(1 for r in head["backends"] if r["conforms"] is False)
    cards.append(("backends not conforming", str(bad), "bad" if bad else "good"))
    loads = [s for s in head["setting"] if s["load_average"] is not None]
    for s in loads:
        cards.append((f"load at {s['kind'] or 'run'} start" + (f", {s['cores']} cores" if s["cores"] else ""),
                      f"{s['load_average']:.1f}" + (" busy" if s["busy"] else ""),
                      "bad" if s["busy"] else ""))
    if not loads:
        cards.append(("load average", "not recorded", ""))
    return cards


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (=, +, -, @ first) get a leading apostrophe.

    >>> csv_safe(pd.DataFrame({"m": ["=HYPERLINK(1)", "ok", "-x"], "n": [-1.5, 2, 3]}))["m"].tolist()
    ["'=HYPERLINK(1)", 'ok', "'-x"]
    """
    out = df.copy()
    for col in out.columns:     # every column: pandas 3 keeps text in a str dtype, not object
        values = list(out[col])
        if any(isinstance(v, str) and v.startswith(_FORMULA_START) for v in values):
            out[col] = pd.Series([("'" + v) if isinstance(v, str) and v.startswith(_FORMULA_START) else v
                                  for v in values], index=out.index, dtype=object)
    out.columns = [("'" + c) if isinstance(c, str) and c.startswith(_FORMULA_START) else c
                   for c in out.columns]
    return out


def write_report(dirs: Iterable[str | os.PathLike], out: str | os.PathLike, *,
                 compare: dict | list | None = None,
                 warn: Callable[[str], None] | None = None, collect: dict | None = None) -> dict:
    """Write the report of ``dirs`` into ``out``; returns what summary.json holds.

    Raises RecordError (one line) on a damaged or foreign input; ``warn`` receives recoverable
    problems (a results file cut off by a killed run).
    """
    sources = [str(d) for d in dirs]
    res = load_results(sources, warn=warn)
    if res.checks.empty and res.bench.empty:
        raise RecordError(f"no result records in {', '.join(sources)}")
    res = prepare(res)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)

    all_tables = build_tables(res, compare)
    machines = res.machines
    for t in all_tables:
        csv_safe(t.df).to_csv(out_dir / f"{t.key}.csv", index=False)
        t.view = tables.drop_single_machine(t.view, machines)
    shown = [t for t in all_tables if not t.csv_only]
    if collect is not None:
        collect["tables"] = {t.key: t for t in all_tables}

    head = summarize(res)
    intro, meta = _intro(res, head, sources)
    md, cap = markdown.render("softmaxbench report", intro, shown,
                              plots_note="*Plots: see report.html.*")
    (out_dir / REPORT_MD).write_text(md, encoding="utf-8")

    figures = plots.throughput_plots(res.bench, _conf(res)) + plots.error_plots(res.checks)
    fail_table = next(t for t in all_tables if t.key == "failures")
    repros = {i: r for i, r in enumerate(fail_table.df["repro"]) if isinstance(r, str) and r}
    page = html_page.render("softmaxbench report", meta, _cards(head, res), shown, figures,
                            warnings=res.warnings, details={"failures": repros},
                            lead=setting_lines(res))
    (out_dir / REPORT_HTML).write_text(page, encoding="utf-8")

    from softmaxbench import __version__

    summary = {"schema_version": SCHEMA_VERSION, "generated": now_iso(), "softmaxbench_version": __version__,
               "sources": sources, "machines": machines, **head,
               "tables": {t.key: {"rows": len(t.df), "csv": f"{t.key}.csv"} for t in all_tables},
               "files": {"markdown": REPORT_MD, "html": REPORT_HTML,
                         "plots": [p.key for p in figures]},
               "plots": [{"key": p.key, "points": p.points, "tick_overlaps": p.overlaps} for p in figures],
               "markdown_row_cap": cap, "warnings": res.warnings}
    (out_dir / SUMMARY_JSON).write_text(json.dumps(_finite_json(summary), indent=1, allow_nan=False,
                                                   default=str),
                                        encoding="utf-8")
    return summary


def _finite_json(obj):
    """JSON without NaN/Infinity (strict parsers reject them): non-finite numbers become strings."""
    import math

    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [_finite_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if obj != obj else ("inf" if obj > 0 else "-inf")
    if hasattr(obj, "item") and not isinstance(obj, str | bytes):   # numpy scalars
        try:
            return _finite_json(obj.item())
        except (TypeError, ValueError):
            return str(obj)
    return obj


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
