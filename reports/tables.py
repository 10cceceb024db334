"""Result frames -> the report's tables: compact, sorted, units in the headers.

Each builder takes the frames of ``reports.load`` and returns a :class:`Table`: ``df`` holds the
full numeric data (what the CSV gets), ``view`` what Markdown and HTML show (formatted strings,
possibly pivoted). Renderers never compute anything; they only lay tables out.

>>> import pandas as pd
>>> from softmaxbench.reports.load import CHECK_COLUMNS
>>> checks = pd.DataFrame([dict.fromkeys(CHECK_COLUMNS) | {"machine": "m", "backend": "numpy",
...     "dtype": "float32", "op": "softmax", "verdict": v} for v in ("pass", "pass", "fail")])
>>> conformance(checks).df[["backend", "dtype", "checks", "pass", "fail", "conforms"]].to_dict("records")
[{'backend': 'numpy', 'dtype': 'float32', 'checks': 3, 'pass': 2, 'fail': 1, 'conforms': 'no'}]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from softmaxbench.suite.records import FAILING, VERDICTS
from softmaxbench.vocabulary import DTYPES, REFERENCE_OPS

DTYPE_ORDER = DTYPES
OP_ORDER = REFERENCE_OPS
#: One symbol per verdict for the special-values matrix (legend printed under it).
SYMBOLS = {"pass": "✓", "deviation": "≈", "fail": "✗", "error": "⚠", "unsupported": "–",
           "timeout": "∞", "crash": "☠"}
#: Worst first: the verdict a matrix cell shows when dtypes disagree.
SEVERITY = {"crash": 6, "timeout": 5, "error": 4, "fail": 3, "deviation": 2, "pass": 1, "unsupported": 0}


@dataclass
class Table:
    """One table of the report: full data for the CSV, a formatted view for Markdown/HTML."""

    key: str                      # CSV file stem and HTML anchor
    title: str
    df: pd.DataFrame              # full data, raw numbers
    view: pd.DataFrame            # strings, what is shown
    note: str = ""                # one paragraph under the title (plain text)
    footer: list[str] = field(default_factory=list)   # lines under the table (plain text)
    cell_class: Callable[[str, str], str | None] | None = None   # (column, shown text) -> CSS class

    def __len__(self) -> int:
        return len(self.view)


# -- formatting -------------------------------------------------------------------------------

def fmt_num(x, *, fixed: int | None = None) -> str:
    """Compact number text: 3 significant digits, 'inf', '' for missing.

    >>> [fmt_num(v) for v in (0.5, 12.345, 1234.5, 3e7, None, float("inf"))]
    ['0.5', '12.3', '1234', '3.00e+07', '', 'inf']
    """
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return ""
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if fixed is not None:
        return f"{x:.{fixed}f}"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.2e}"
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _order(values, order) -> list:
    """Known names in their canonical order, unknown ones after, alphabetically."""
    rank = {v: i for i, v in enumerate(order)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), str(v)))


def _sort(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sort by columns, dtypes and ops in canonical order, the rest as text/number."""
    if df.empty:
        return df

    def key(col: pd.Series) -> pd.Series:
        if col.name == "dtype":
            return col.map({d: i for i, d in enumerate(_order(col, DTYPE_ORDER))})
        if col.name == "op":
            return col.map({o: i for i, o in enumerate(_order(col, OP_ORDER))})
        return col.astype(str) if col.dtype == object else col

    return df.sort_values(by, key=key, kind="stable").reset_index(drop=True)


def is_gradient(op: str) -> bool:
    """Gradient ops (their accuracy gets its own table)."""
    return str(op).endswith(("_vjp", "_grad"))


def _verdict_class(col: str, text: str) -> str | None:
    if col in ("fail", "error", "timeout", "crash", "fails") and text not in ("", "0"):
        return "bad"
    if col == "deviation" and text not in ("", "0"):
        return "dev"
    if col == "conforms":
        return "good" if text == "yes" else "bad"
    return None


def _strings(df: pd.DataFrame, formats: dict[str, Callable] | None = None) -> pd.DataFrame:
    formats = formats or {}
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        f = formats.get(col)
        out[col] = [f(v) if f else ("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
                    for v in df[col]]
    return out.reset_index(drop=True)


# -- the tables -------------------------------------------------------------------------------

def conformance(checks: pd.DataFrame) -> Table:
    """Backend x dtype: how many checks ended in each verdict, and whether the pair conforms."""
    keys = ["machine", "backend", "dtype"]
    if checks.empty:
        df = pd.DataFrame(columns=keys + ["checks", *VERDICTS, "conforms"])
    else:
        counts = checks.groupby(keys)["verdict"].value_counts().unstack(fill_value=0)
        counts = counts.reindex(columns=list(VERDICTS), fill_value=0).astype(int)
        df = counts.reset_index()
        df.insert(3, "checks", counts.sum(axis=1).to_numpy())
        df["conforms"] = ["no" if any(r[v] for v in FAILING) else "yes" for _, r in df.iterrows()]
        df = _sort(df, keys)
    df.columns.name = None
    return Table("conformance", "Conformance summary", df, _strings(df),
                 note="Checks per backend and dtype by verdict. A backend conforms when no check "
                      "fails, errors, times out or crashes; deviations are documented conventions.",
                 cell_class=_verdict_class)


def _accuracy(checks: pd.DataFrame, gradient: bool) -> pd.DataFrame:
    keys = ["machine", "backend", "op", "dtype"]
    cols = keys + ["checks", "max ULP", "median ULP", "max error ratio", "fails", "worst case"]
    if checks.empty:
        return pd.DataFrame(columns=cols)
    # Passes with numbers, and every fail: a fail without numbers (NaN where a value exists,
    # wrong shape) still counts in "fails" and can be the worst case.
    measured = checks["max_ulp"].notna() | checks["max_error_ratio"].notna()
    sel = checks[((checks["verdict"].eq("pass") & measured) | checks["verdict"].eq("fail"))
                 & (checks["op"].map(is_gradient) == gradient)].copy()
    if sel.empty:
        return pd.DataFrame(columns=cols)
    # Rank records worst first: a fail beats a pass, then the larger error ratio, then ULPs;
    # a fail with no number (NaN where a value exists) ranks as infinitely wrong.
    failed = sel["verdict"].eq("fail")
    sel["_rank_ratio"] = sel["max_error_ratio"].where(sel["max_error_ratio"].notna(),
                                                      failed.map({True: math.inf, False: -1.0}))
    sel["_rank_ulp"] = sel["max_ulp"].fillna(-1.0)
    sel["_median"] = sel["median_ulp"].fillna(sel["max_ulp"])
    rows = []
    for key, g in sel.groupby(keys, sort=False):
        worst = g.sort_values(["_rank_ratio", "_rank_ulp"], ascending=False, kind="stable").iloc[0]
        rows.append(dict(zip(keys, key)) | {
            "checks": len(g), "max ULP": g["max_ulp"].max(), "median ULP": g["_median"].median(),
            "max error ratio": g["max_error_ratio"].max(), "fails": int(failed[g.index].sum()),
            "worst case": worst["case"] or ""})
    return _sort(pd.DataFrame(rows, columns=cols), ["machine", "op", "dtype", "backend"])


_ACCURACY_FORMATS = {"max ULP": fmt_num, "median ULP": fmt_num, "max error ratio": fmt_num}
_ACCURACY_NOTE = ("ULP error against the certified reference (max over all checked elements, median over "
                  "cases of each case's median) and the condition-aware error ratio (error / what a "
                  "backward-stable algorithm attains; pass at or below the dtype's threshold). "
                  "Worst case: the case with the largest error ratio.")


def accuracy(checks: pd.DataFrame) -> Table:
    """Forward ops: backend x op x dtype -> max/median ULP, max error ratio, worst case."""
    df = _accuracy(checks, gradient=False)
    return Table("accuracy", "Accuracy (forward ops)", df, _strings(df, _ACCURACY_FORMATS),
                 note=_ACCURACY_NOTE, cell_class=_verdict_class)


def gradient_accuracy(checks: pd.DataFrame) -> Table:
    """Gradient ops (vjp, cross-entropy gradient): the same measures as :func:`accuracy`."""
    df = _accuracy(checks, gradient=True)
    return Table("gradient_accuracy", "Gradient accuracy", df, _strings(df, _ACCURACY_FORMATS),
                 note=_ACCURACY_NOTE, cell_class=_verdict_class)


def _clip(text: str, n: int = 44) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


_FLOAT = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?|inf|nan)(?![\w.])", re.I)


def _short_values(sample: str) -> str:
    """'[0.510776, 0. , 1.  ]' -> '[0.511, 0, 1]': 3 significant digits, so a cell shows a row."""
    out = _FLOAT.sub(lambda m: f"{float(m.group()):.3g}", str(sample))
    return re.sub(r"\s+,", ",", re.sub(r"\s+", " ", out)).replace("[ ", "[").replace(" ]", "]")


def special_values(checks: pd.DataFrame, descriptions: dict[str, str] | None = None) -> tuple[Table, Table]:
    """The special-values matrix (case x backend: symbol and value returned) and its deviations.

    A cell shows the worst verdict over the dtypes checked; when dtypes disagree it names the
    dtypes that got that verdict. ``descriptions`` maps deviation names to their meaning.
    """
    sel = checks[checks["category"].eq("special")] if not checks.empty else checks
    multi = sel["machine"].nunique() > 1 if not sel.empty else False
    label = (lambda r: f"{r['machine']}/{r['backend']}") if multi else (lambda r: r["backend"])
    cells: dict[tuple[str, str], dict[str, str]] = {}
    if not sel.empty:
        sel = sel.assign(_label=[label(r) for _, r in sel.iterrows()])
    for (case, op), g in (sel.groupby(["case", "op"], sort=False) if not sel.empty else []):
        row = cells.setdefault((case, op), {})
        for b, gb in g.groupby("_label", sort=False):
            row[b] = _matrix_cell(gb)
    cols = sorted(set(sel["_label"]), key=str) if not sel.empty else []
    rows = [{"case": c, "op": o} | {b: cells[(c, o)].get(b, "") for b in cols} for (c, o) in cells]
    df = _sort(pd.DataFrame(rows, columns=["case", "op", *cols]), ["case", "op"])
    legend = "Legend: " + ", ".join(f"{s} {v}" for v, s in SYMBOLS.items()) + \
        ". A cell shows the worst verdict over the dtypes and the value returned; [dtypes] when only " \
        "some dtypes got it, then the verdicts of the others."
    matrix = Table("special_values", "Special values", df, df.copy(),
                   note="Inputs with NaN, ±inf, all -inf rows, empty axes, n = 1 and subnormals: what "
                        "each backend returned.", footer=[legend], cell_class=_symbol_class)

    devs = sel[sel["verdict"].eq("deviation")] if not sel.empty else sel
    drows = []
    for name, g in (devs.groupby(devs["deviation"].fillna("(unnamed)"), sort=True) if not devs.empty else []):
        meaning = (descriptions or {}).get(name) or next((m for m in g["message"] if m), "")
        drows.append({"deviation": name, "meaning": meaning,
                      "backends": ", ".join(sorted(set(label(r) for _, r in g.iterrows()))),
                      "cases": ", ".join(sorted(g["case"].dropna().unique()))})
    ddf = pd.DataFrame(drows, columns=["deviation", "meaning", "backends", "cases"])
    explained = Table("deviations", "Deviations explained", ddf, ddf.copy(),
                      note="Documented conventions that differ from the reference's expected value "
                           "(accepted, reported apart from passes).")
    return matrix, explained


def _sample_text(sample: str, n: int = 48) -> str:
    """The value returned, short: 3 digits a number, cut at an element boundary."""
    text = _short_values(sample)
    if len(text) <= n:
        return text
    cut = text.rfind(", ", 0, n - 4)
    return (text[:cut] if cut > 0 else text[: n - 4]) + ", …]"


def _matrix_cell(g: pd.DataFrame) -> str:
    """'✗ [nan, 1] [float16] · ✓ float32,float64': worst verdict, its value, then the others.

    Dtypes the backend does not support are left out (the conformance table counts them)."""
    supported = g[g["verdict"] != "unsupported"]
    if supported.empty:
        return SYMBOLS["unsupported"]
    g = supported
    sev = g["verdict"].map(lambda v: SEVERITY.get(v, 0))
    worst = g.loc[sev.idxmax()]
    text = SYMBOLS.get(worst["verdict"], "?")
    if worst["value_sample"]:
        text += " " + _sample_text(worst["value_sample"])
    if worst["verdict"] == "deviation" and worst["deviation"]:
        text += f" ({worst['deviation']})"
    if g["verdict"].nunique() > 1:
        by_verdict = {v: _order(g.loc[g["verdict"] == v, "dtype"].dropna(), DTYPE_ORDER)
                      for v in sorted(g["verdict"].unique(), key=lambda v: -SEVERITY.get(v, 0))}
        text += " [" + ",".join(by_verdict.pop(worst["verdict"])) + "] · " + "; ".join(
            f"{SYMBOLS.get(v, '?')} {','.join(d)}" for v, d in by_verdict.items())
    return text


def _symbol_class(col: str, text: str) -> str | None:
    for verdict, sym in SYMBOLS.items():
        if text.startswith(sym):
            return {"pass": "good", "deviation": "dev", "unsupported": "na"}.get(verdict, "bad")
    return None


def throughput(bench: pd.DataFrame) -> Table:
    """Backend x workload: GB/s and fraction of copy bandwidth (view pivoted by backend)."""
    cols = ["machine", "op", "dtype", "workload", "shape", "row length", "backend", "device",
            "median µs", "GB/s", "copy GB/s", "% of copy", "cv %", "compile s", "warning"]
    sel = bench[bench["gbps"].notna() & ~bench["op"].eq("copy")] if not bench.empty else bench
    if sel.empty:
        df = pd.DataFrame(columns=cols)
        return Table("throughput", "Throughput", df, _strings(df))
    df = pd.DataFrame({
        "machine": sel["machine"], "op": sel["op"], "dtype": sel["dtype"],
        "workload": sel["workload"].fillna(""), "shape": sel["shape_text"],
        "row length": sel["row_length"], "backend": sel["backend"], "device": sel["device"],
        "median µs": sel["median_s"] * 1e6, "GB/s": sel["gbps"], "copy GB/s": sel["copy_gbps"],
        "% of copy": sel["fraction_of_copy"].where(sel["fraction_of_copy"].notna(),
                                                   sel["gbps"] / sel["copy_gbps"]) * 100,
        "cv %": sel["cv"] * 100, "compile s": sel["compile_s"], "warning": sel["warning"].fillna("")})
    # Row length, then total size: how one reads a sweep (labels would sort "16MiB" before "1MiB").
    df["_elements"] = [math.prod(s) if isinstance(s, list | tuple) else 0 for s in sel["shape"]]
    df = _sort(df, ["machine", "op", "dtype", "row length", "_elements", "backend"]).drop(columns="_elements")

    # The view: one row per workload, one "GB/s (% of copy)" column per backend, plus the copy
    # bandwidth of each device: what one pastes to compare backends on the same work.
    keys = ["machine", "op", "dtype", "workload", "shape"]
    backends = sorted(df["backend"].unique(), key=str)
    devices = sorted(df["device"].dropna().unique(), key=str)
    rows = []
    for key, g in df.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        for b in backends:
            hit = g[g["backend"] == b]
            if hit.empty:
                row[f"{b} GB/s (% copy)"] = ""
            else:
                r = hit.iloc[0]
                pct = "" if pd.isna(r["% of copy"]) else f" ({r['% of copy']:.0f}%)"
                row[f"{b} GB/s (% copy)"] = fmt_num(r["GB/s"]) + pct + (" ⚠" if r["warning"] else "")
        for dev in devices:
            copy = g.loc[g["device"] == dev, "copy GB/s"].median()
            name = "copy GB/s" if len(devices) == 1 else f"copy GB/s ({dev})"
            row[name] = fmt_num(copy)
        rows.append(row)
    view = pd.DataFrame(rows)
    footer = []
    if df["warning"].astype(bool).any():
        footer.append("⚠: the timing spread was wide (see the warning column of throughput.csv).")
    return Table("throughput", "Throughput", df, view,
                 note="Median GB/s over the timed rounds (fewest bytes the op must move / median time) "
                      "and, in brackets, the fraction of the copy bandwidth the same harness measured "
                      "on the same device in the same run.", footer=footer)


_FAILURE_VERDICTS = ("crash", "timeout", "error", "fail")


def failures(checks: pd.DataFrame) -> Table:
    """Every non-conforming check, worst verdict first, with its message (repro in the CSV)."""
    cols = ["machine", "backend", "op", "dtype", "case", "verdict", "max ULP", "max error ratio", "message",
            "repro"]
    sel = checks[checks["verdict"].isin(_FAILURE_VERDICTS)] if not checks.empty else checks
    df = pd.DataFrame({"machine": sel.get("machine"), "backend": sel.get("backend"), "op": sel.get("op"),
                       "dtype": sel.get("dtype"), "case": sel.get("case"), "verdict": sel.get("verdict"),
                       "max ULP": sel.get("max_ulp"), "max error ratio": sel.get("max_error_ratio"),
                       "message": sel.get("message"), "repro": sel.get("repro")}, columns=cols)
    if not df.empty:
        df["_sev"] = -df["verdict"].map(SEVERITY)
        df = _sort(df, ["_sev", "machine", "backend", "op", "dtype", "case"]).drop(columns="_sev")
    view = _strings(df.drop(columns="repro"), {"max ULP": fmt_num, "max error ratio": fmt_num})
    view["message"] = [_clip(m, 160) for m in view["message"]]
    return Table("failures", "Failures", df, view,
                 note="Checks that failed, raised, timed out or crashed. failures.csv has the "
                      "copy-paste repro of each.", cell_class=_verdict_class)


def max_known_error(checks: pd.DataFrame) -> Table:
    """The worst error found by search per backend, op and dtype (Zimmermann-style table).

    From the records of the regression cases ``softmaxbench hunt`` saved (``found_by == "hunt"``,
    whether written by the hunt itself or by a later ``check``). A missing metric on a fail or
    error counts as infinite (the output was NaN/inf where a value exists). The CSV keeps the
    copy-paste repro of the worst-ratio input.
    """
    cols = ["machine", "backend", "op", "dtype", "worst error ratio", "case (ratio)", "worst ULP",
            "case (ULP)", "verdict", "repro"]
    found = checks[checks["found_by"] == "hunt"] if "found_by" in checks else checks.iloc[0:0]
    rows = []
    for (machine, backend, op, dtype), g in found.groupby(["machine", "backend", "op", "dtype"], sort=False):
        bad = g["verdict"].isin(["fail", "error"])
        ratio = pd.to_numeric(g["max_error_ratio"], errors="coerce").where(
            ~(bad & g["max_error_ratio"].isna()), float("inf"))
        ulp = pd.to_numeric(g["max_ulp"], errors="coerce").where(~(bad & g["max_ulp"].isna()), float("inf"))
        r_i = ratio.fillna(-1).idxmax()
        u_i = ulp.fillna(-1).idxmax()
        rows.append({"machine": machine, "backend": backend, "op": op, "dtype": dtype,
                     "worst error ratio": ratio[r_i], "case (ratio)": g.at[r_i, "case"],
                     "worst ULP": ulp[u_i], "case (ULP)": g.at[u_i, "case"],
                     "verdict": g.at[r_i, "verdict"], "repro": g.at[r_i, "repro"]})
    df = pd.DataFrame(rows, columns=cols)
    if not df.empty:
        df = _sort(df, ["machine", "backend", "op", "dtype"])
    view = _strings(df.drop(columns="repro"), {"worst error ratio": fmt_num, "worst ULP": fmt_num})
    return Table("max_known_error", "Max known error (found by search)", df, view,
                 note="Worst error ratio and worst ULP error over the inputs `softmaxbench hunt` found "
                      "and saved (reference/found/). max_known_error.csv has the repro of each "
                      "worst-ratio input.", cell_class=_verdict_class)


_RUN_FIELDS = (
    ("machine", lambda r: (r.get("machine") or {}).get("label")),
    ("hostname", lambda r: (r.get("machine") or {}).get("hostname")),
    ("platform", lambda r: (r.get("machine") or {}).get("platform")),
    ("processor", lambda r: (r.get("machine") or {}).get("processor")),
    ("CPU cores", lambda r: (r.get("machine") or {}).get("cpu_count")),
    ("memory GiB", lambda r: (r.get("machine") or {}).get("memory_gib")),
    ("devices", lambda r: _devices((r.get("machine") or {}).get("devices"))),
    ("backends", lambda r: _backends(r.get("backends"))),
    ("unavailable", lambda r: "; ".join(f"{k}: {v}" for k, v in (r.get("unavailable") or {}).items())
     if isinstance(r.get("unavailable"), dict) else r.get("unavailable")),
    ("softmaxbench", lambda r: r.get("softmaxbench_version")),
    ("threads", lambda r: r.get("threads")),
    ("seed", lambda r: r.get("seed")),
    ("command", lambda r: r.get("command")),
    ("started", lambda r: r.get("started")),
    ("finished", lambda r: r.get("finished")),
)


def _backends(backends) -> str:
    """run.json's {name: {device, version, ...}} -> 'numpy 2.4.0 (cpu), torch-cpu 2.13.0 (cpu)'."""
    if not isinstance(backends, dict):
        return "" if backends is None else str(backends)
    return ", ".join(f"{name} {info.get('version') or ''} ({info.get('device') or '?'})".replace("  ", " ")
                     if isinstance(info, dict) else str(name) for name, info in backends.items())


def _devices(devs) -> str:
    if not devs:
        return ""
    out = []
    for d in devs:
        if isinstance(d, dict):
            out.append(" ".join(str(d[k]) for k in ("name", "memory_gib", "driver") if d.get(k) is not None)
                       or ", ".join(f"{k}={v}" for k, v in d.items()))
        else:
            out.append(str(d))
    return "; ".join(out)


def environment(runs) -> Table:
    """Field x run: machine, devices, framework versions, threads, command, date of each run."""
    columns, data = [], {}
    for i, info in enumerate(runs):
        run = info.run or {}
        kind = run.get("kind") or ""
        name = f"{info.machine} {kind}".strip()
        while name in data:     # two runs of one kind on one machine: keep both apart
            name = f"{name} ({i + 1})"
        col = {f: ("" if get(run) is None else str(get(run))) for f, get in _RUN_FIELDS}
        col["machine"] = col["machine"] or info.machine
        col["results"] = info.source
        for pkg, ver in (run.get("versions") or {}).items():
            col[pkg] = str(ver)
        if not run:
            col["command"] = "(no run.json)"
        data[name] = col
        columns.append(name)
    fields = list(dict.fromkeys([f for f, _ in _RUN_FIELDS] + ["results"]
                                + [k for c in data.values() for k in c]))
    df = pd.DataFrame([{"field": f} | {c: data[c].get(f, "") for c in columns} for f in fields],
                      columns=["field", *columns])
    # Rows empty for every run (e.g. no GPU devices anywhere) are noise.
    if columns:
        df = df[df[columns].astype(bool).any(axis=1)].reset_index(drop=True)
    return Table("environment", "Environment", df, df.copy(),
                 note="From each results directory's run.json.")


#: Verdicts of ``softmaxbench compare`` and their colours; failing ones sort first.
_COMPARE_CLASS = {"regression": "bad", "error": "bad", "noise": "dev", "improvement": "good"}


def compare_table(data) -> Table:
    """The regression table of ``softmaxbench compare --out`` (its compare.json).

    Rows of the known shape (base_gbps, new_gbps, change, p, verdict) get units and are sorted
    worst first; any other list of rows is shown as given.
    """
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("not a softmaxbench compare output (expected its JSON with a list of rows)")
    note = ""
    if isinstance(data, dict):
        parts = [f"{k}: {data[k]}" for k in ("base", "new", "max_regression", "verdict", "summary")
                 if isinstance(data.get(k), str | int | float | bool)]
        note = "; ".join(parts)
    raw = pd.DataFrame(rows)
    known = {"base_gbps", "new_gbps", "change", "verdict"} <= set(raw.columns)
    if not known:
        fmts = {c: fmt_num for c in raw.columns if pd.api.types.is_float_dtype(raw[c])}
        return Table("compare", "Comparison with a baseline", raw, _strings(raw, fmts), note=note)
    df = pd.DataFrame({c: raw.get(c) for c in ("backend", "op", "dtype", "workload", "shape")})
    df["base GB/s"] = pd.to_numeric(raw["base_gbps"], errors="coerce")
    df["new GB/s"] = pd.to_numeric(raw["new_gbps"], errors="coerce")
    df["change %"] = pd.to_numeric(raw["change"], errors="coerce") * 100
    df["p"] = pd.to_numeric(raw.get("p"), errors="coerce") if "p" in raw else float("nan")
    df["verdict"] = raw["verdict"]
    rank = {"regression": 0, "error": 1, "noise": 2}
    df["_rank"] = df["verdict"].map(lambda v: rank.get(v, 3))
    df = df.sort_values(["_rank", "change %"], kind="stable", na_position="last").drop(columns="_rank")
    df = df.reset_index(drop=True)
    view = _strings(df, {"base GB/s": fmt_num, "new GB/s": fmt_num, "p": fmt_num,
                         "change %": lambda v: "" if pd.isna(v) else f"{v:+.1f}"})
    return Table("compare", "Comparison with a baseline", df, view, note=note,
                 cell_class=lambda col, text: _COMPARE_CLASS.get(text) if col == "verdict" else None)


def drop_single_machine(view: pd.DataFrame, machines: list[str]) -> pd.DataFrame:
    """The machine column says nothing when every result comes from one machine."""
    if len(machines) <= 1 and "machine" in view.columns:
        return view.drop(columns="machine")
    return view
