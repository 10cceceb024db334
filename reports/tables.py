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
    csv_only: bool = False        # written as CSV, not laid out on the pages

    def __len__(self) -> int:
        return len(self.view)


# -- formatting -------------------------------------------------------------------------------

def fmt_num(x, *, fixed: int | None = None) -> str:
    """Compact number text: 3 significant digits, 'inf', '' for missing.

    >>> [fmt_num(v) for v in (0.5, 12.345, 1234.5, 3e7, None, float("inf"))]
    ['0.5', '12.3', '1234', '3.00e+07', '', 'inf']
    """
    if x is None or x is pd.NA:
        return ""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return ""
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
        return "good" if text == "yes" else "na" if text == "nothing checked" else "bad"
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
        # Nothing checked (every record unsupported) is not "conforms".
        df["conforms"] = ["no" if any(r[v] for v in FAILING) else
                          "nothing checked" if r["checks"] == r["unsupported"] else "yes"
                          for _, r in df.iterrows()]
        df = _sort(df, keys)
    df.columns.name = None
    return Table("conformance", "Conformance summary", df, _strings(df),
                 note="Checks per backend and dtype by verdict. A backend conforms when no check "
                      "fails, errors, times out or crashes; deviations are documented conventions.",
                 cell_class=_verdict_class)


def _ratio_from_message(message) -> float | None:
    """'error ratio inf > 4 (float16)' -> inf: the figure a record without a number still names."""
    m = re.search(r"error ratio ([-+]?(?:inf|nan|\d+\.?\d*(?:e[-+]?\d+)?))", str(message or ""), re.I)
    if not m:
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return None


def effective_ratio(checks: pd.DataFrame) -> pd.Series:
    """The error ratio that decided each verdict: the record's, else the one its message names,
    else inf for a fail without numbers (NaN where a value exists)."""
    if checks.empty:
        return pd.Series(dtype=float)
    out = []
    for ratio, verdict, msg in zip(checks["max_error_ratio"], checks["verdict"], checks["message"]):
        if ratio is not None and not (isinstance(ratio, float) and math.isnan(ratio)):
            out.append(float(ratio))
            continue
        parsed = _ratio_from_message(msg)
        out.append(parsed if parsed is not None else (math.inf if verdict == "fail" else math.nan))
    return pd.Series(out, index=checks.index, dtype=float)


#: A max ULP at or above this with a passing error ratio is a count at an exact 0 or 1 (or a tiny
#: value next to a large row), not an inaccuracy: the view marks it with a dagger.
HUGE_ULP = 2.0 ** 16
_ULP_FOOTER = ("† max ULP counts the error in units of the exact value's own last place. Where the exact "
               "value is 0, exactly 1, or tiny next to the row's scale (the log_softmax of the dominant "
               "entry, a gradient entry that cancels), one rounding of the row's size is millions of such "
               "units (float32: 1.7e7 at log_softmax ≈ -6e-8; float64: 9e15). The verdict does not use it: "
               "it uses the error ratio (the error divided by what a backward-stable algorithm attains), "
               "shown first.")


def _accuracy(checks: pd.DataFrame, gradient: bool) -> pd.DataFrame:
    keys = ["machine", "backend", "op", "dtype"]
    cols = keys + ["checks", "max error ratio", "max ULP", "median ULP", "fails", "known fails", "worst case",
                   "error kinds", "max ULP at a pass"]
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
    sel["_ratio"] = effective_ratio(sel)
    known = sel["known"].notna() if "known" in sel else pd.Series(False, index=sel.index)
    rows = []
    for key, g in sel.groupby(keys, sort=False, dropna=False):
        worst = g.sort_values(["_rank_ratio", "_rank_ulp"], ascending=False, kind="stable").iloc[0]
        kinds = sorted({str(k) for k in g.get("error_kind", pd.Series(dtype=object)).dropna() if k})
        ulp_rec = g.loc[g["max_ulp"].idxmax()] if g["max_ulp"].notna().any() else None
        rows.append(dict(zip(keys, key)) | {
            "checks": len(g), "max error ratio": g["_ratio"].max(), "max ULP": g["max_ulp"].max(),
            "median ULP": g["_median"].median(), "fails": int(failed[g.index].sum()),
            "known fails": int((failed & known)[g.index].sum()), "worst case": worst["case"] or "",
            "error kinds": ", ".join(kinds),
            "max ULP at a pass": bool(ulp_rec is not None and ulp_rec["verdict"] == "pass")})
    return _sort(pd.DataFrame(rows, columns=cols), ["machine", "op", "dtype", "backend"])


def _ulp_text(row) -> str:
    text = fmt_num(row["max ULP"])
    if text and row["max ULP at a pass"] and _finite(row["max ULP"]) and row["max ULP"] >= HUGE_ULP:
        text += " †"
    return text


_ACCURACY_NOTE = ("Error ratio first: the error divided by what a backward-stable algorithm attains on that "
                  "input (condition-aware); a check passes at or below its dtype's threshold. Max ULP is "
                  "the largest error in units in the last place of the exact value, over every checked "
                  "element; median ULP the median over cases of each case's median. Worst case: the case "
                  "with the largest error ratio (a fail first). Known fails: failures already known "
                  "(the record's known field, or backends/conventions.toml).")


def _accuracy_table(key: str, title: str, df: pd.DataFrame) -> Table:
    view = _strings(df, {"max error ratio": fmt_num, "median ULP": fmt_num})
    if not df.empty:
        view["max ULP"] = [_ulp_text(r) for _, r in df.iterrows()]
    view = view.drop(columns="max ULP at a pass")
    if not df.empty and not df["error kinds"].astype(bool).any():
        view = view.drop(columns="error kinds")
    footer = [_ULP_FOOTER] if any(t.endswith("†") for t in view.get("max ULP", [])) else []
    return Table(key, title, df, view, note=_ACCURACY_NOTE, footer=footer, cell_class=_verdict_class)


def accuracy(checks: pd.DataFrame) -> Table:
    """Forward ops: backend x op x dtype -> max error ratio, max/median ULP, worst case."""
    return _accuracy_table("accuracy", "Accuracy (forward ops)", _accuracy(checks, gradient=False))


def gradient_accuracy(checks: pd.DataFrame) -> Table:
    """Gradient ops (vjp, cross-entropy gradient): the same measures as :func:`accuracy`."""
    return _accuracy_table("gradient_accuracy", "Gradient accuracy", _accuracy(checks, gradient=True))


def _clip(text: str, n: int = 44) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


_FLOAT = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?|inf|nan)(?![\w.])", re.I)


def _short_values(sample: str) -> str:
    """'[0.510776, 0. , 1.  ]' -> '[0.511, 0, 1]': 3 significant digits, so a cell shows a row."""
    out = _FLOAT.sub(lambda m: f"{float(m.group()):.3g}", str(sample))
    return re.sub(r"\s+,", ",", re.sub(r"\s+", " ", out)).replace("[ ", "[").replace(" ]", "]")


def special_values(checks: pd.DataFrame, descriptions: dict[str, str] | None = None) -> tuple[Table, Table]:
    """The special-values matrix (case x backend: symbol and value returned) and the deviations.

    A cell shows the worst verdict over the dtypes checked; when dtypes disagree it names the
    dtypes that got that verdict. The value shown is the special row's (the record's
    ``special_row``: index, input, output) where the judge recorded it, else the first elements
    returned (``value_sample``), which the caption then says. ``descriptions`` maps deviation
    names to their meaning; every deviation that occurred in any category is explained.
    """
    sel = checks[checks["category"].eq("special")] if not checks.empty else checks
    multi = checks["machine"].nunique() > 1 if not checks.empty else False
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
    has_row = bool(not sel.empty and sel["special_row"].map(lambda v: isinstance(v, dict)).any())
    legend = "Legend: " + ", ".join(f"{s} {v}" for v, s in SYMBOLS.items()) + \
        ". A cell shows the worst verdict over the dtypes and the value returned; [dtypes] when only " \
        "some dtypes got it, then the verdicts of the others."
    where = ("the special row: its input → what came back" if has_row else
             "the first elements returned (the records carry no special_row, so the special row itself "
             "may not be among them; its full output is in the repro)")
    cases = sorted(set(sel["case"].dropna())) if not sel.empty else []
    note = (f"The special-value cases checked ({len(cases)}: {_listing(cases, 8)}): what each backend "
            f"returned. Values shown: {where}." if cases else "No special-value case was checked.")
    matrix = Table("special_values", "Special values", df, df.copy(), note=note, footer=[legend],
                   cell_class=_symbol_class)

    devs = checks[checks["verdict"].eq("deviation")] if not checks.empty else checks
    drows = []
    for name, g in (devs.groupby(devs["deviation"].fillna("(unnamed)"), sort=True) if not devs.empty else []):
        meaning = (descriptions or {}).get(name) or next((m for m in g["message"] if m), "") or \
            "(no description recorded)"
        drows.append({"deviation": name, "meaning": meaning,
                      "backends": ", ".join(sorted(set(label(r) for _, r in g.iterrows()))),
                      "ops": ", ".join(_order(g["op"].dropna(), OP_ORDER)),
                      "dtypes": ", ".join(_order(g["dtype"].dropna(), DTYPE_ORDER)),
                      "checks": len(g),
                      "cases": ", ".join(sorted(g["case"].dropna().unique()))})
    ddf = pd.DataFrame(drows, columns=["deviation", "meaning", "backends", "ops", "dtypes", "checks",
                                       "cases"])
    explained = Table("deviations", "Deviations explained", ddf, ddf.copy(),
                      note="Every accepted convention that occurred (any category): what the backend "
                           "does instead of the reference's value, and where. Accepted, reported apart "
                           "from passes; --strict counts them as failures.")
    return matrix, explained


def _listing(names, n: int = 6) -> str:
    names = [str(x) for x in names]
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _values(values, n: int = 8) -> str:
    """A list of numbers (or their texts) as a short row: '[inf, 1, 2]'."""
    if not isinstance(values, list | tuple):
        return _short_values(str(values))
    shown = [_short_values(str(v)) if not isinstance(v, int | float) or isinstance(v, bool)
             else ("nan" if v != v else fmt_num(v)) for v in values[:n]]
    return "[" + ", ".join(shown) + (", …" if len(values) > n else "") + "]"


def _special_row_text(row: dict) -> str:
    """{'index': 1, 'input': [1, inf], 'output': [nan, nan]} -> 'row 1: [1, inf] → [nan, nan]'."""
    idx = row.get("index")
    where = f"row {idx}: " if idx is not None else ""
    out = _values(row.get("output")) if "output" in row else "?"
    if "expected" in row:
        out += f" (exact {_values(row.get('expected'))})"
    return f"{where}{_values(row.get('input'))} → {out}" if "input" in row else f"{where}{out}"


def _sample_text(sample: str, n: int = 48) -> str:
    """The value returned, short: 3 digits a number, cut at an element boundary."""
    text = _short_values(sample)
    if len(text) <= n:
        return text
    cut = text.rfind(", ", 0, n - 4)
    return (text[:cut] if cut > 0 else text[: n - 4]) + ", …]"


_WORST_AT = re.compile(r"worst at index \((?P<index>[^)]*)\): "
                       r"expected (?P<expected>[^,]+), got (?P<got>[^ ,;]+)")


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
    special = worst.get("special_row")
    hit = _WORST_AT.search(str(worst.get("message") or "")) if worst["verdict"] in FAILING else None
    if isinstance(special, dict):
        text += " " + _special_row_text(special)
    elif hit:       # the element that decided the verdict: where it is, what came back, the exact value
        text += f" at ({hit.group('index').strip()}): got {hit.group('got')}, exact {hit.group('expected')}"
    elif worst["value_sample"]:
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


def with_intervals(bench: pd.DataFrame) -> pd.DataFrame:
    """Bench frame + the figures the report shows: GB/s interval, the copy bandwidth of the same
    workload (and its interval) and the fraction of copy with its interval.

    Columns added: gbps_lo, gbps_hi, copy, copy_lo, copy_hi, frac, frac_lo, frac_hi. The copy is
    the record's ``copy_gbps`` (what the bench measured as the device's copy on that workload);
    its interval comes from the copy record whose GB/s it is (``op == "copy"``, same machine,
    device, dtype and workload), else the fastest such copy record gives both.
    """
    from softmaxbench.reports.load import BENCH_COLUMNS
    from softmaxbench.reports.stats import gbps_interval

    b = bench.copy()
    for col in BENCH_COLUMNS + ("shape_text",):
        if col not in b:
            b[col] = None
    if b.empty:
        for c in ("gbps_lo", "gbps_hi", "copy", "copy_lo", "copy_hi", "frac", "frac_lo", "frac_hi"):
            b[c] = pd.Series(dtype=float)
        if "series" not in b:
            b["series"] = pd.Series(dtype=object)
        return b
    b["series"] = [s if isinstance(s, str) and s else be for s, be in zip(b["series"], b["backend"])]
    lo, hi = zip(*[gbps_interval(g, smp) for g, smp in zip(b["gbps"], b["samples_s"])])
    b["gbps_lo"], b["gbps_hi"] = pd.Series(lo, index=b.index, dtype=float), pd.Series(hi, index=b.index,
                                                                                       dtype=float)
    copies = b[b["op"].eq("copy") & b["gbps"].notna()]
    cgroups = {k: g for k, g in copies.groupby(["machine", "device", "dtype", "workload"], dropna=False)}
    cp, cp_lo, cp_hi = [], [], []
    for _, r in b.iterrows():
        g = cgroups.get((r["machine"], r["device"], r["dtype"], r["workload"]))
        point = r["copy_gbps"] if r["op"] != "copy" else None
        if point is not None and math.isnan(point):
            point = None
        match = None
        if g is not None and not g.empty:
            if point is not None:
                match = g.loc[(g["gbps"] - point).abs().idxmin()]
                if abs(match["gbps"] - point) > 1e-6 * max(point, 1.0):
                    match = None
            else:
                match = g.loc[g["gbps"].idxmax()]
                point = float(match["gbps"]) if r["op"] != "copy" else None
        cp.append(point)
        cp_lo.append(match["gbps_lo"] if match is not None and point is not None else None)
        cp_hi.append(match["gbps_hi"] if match is not None and point is not None else None)
    b["copy"] = pd.Series(cp, index=b.index, dtype=float)
    b["copy_lo"] = pd.Series(cp_lo, index=b.index, dtype=float).fillna(b["copy"])
    b["copy_hi"] = pd.Series(cp_hi, index=b.index, dtype=float).fillna(b["copy"])
    frac = b["fraction_of_copy"].where(b["fraction_of_copy"].notna(), b["gbps"] / b["copy"])
    b["frac"] = frac
    b["frac_lo"] = frac * (b["gbps_lo"] / b["gbps"]) * (b["copy"] / b["copy_hi"])
    b["frac_hi"] = frac * (b["gbps_hi"] / b["gbps"]) * (b["copy"] / b["copy_lo"])
    return b


def speed_text(r, *, copy: bool = True) -> str:
    """'11.6 GB/s [11.2–12.0], 85% of copy [80–88]' for one bench row of :func:`with_intervals`."""
    if r is None or r.get("gbps") is None or not math.isfinite(r.get("gbps") or math.nan):
        return ""
    text = f"{fmt_num(r['gbps'])} GB/s"
    if _finite(r.get("gbps_lo")) and _finite(r.get("gbps_hi")):
        text += f" [{fmt_num(r['gbps_lo'])}–{fmt_num(r['gbps_hi'])}]"
    if copy and _finite(r.get("frac")):
        text += f", {100 * r['frac']:.0f}% of copy"
        if _finite(r.get("frac_lo")) and _finite(r.get("frac_hi")):
            text += f" [{100 * r['frac_lo']:.0f}–{100 * r['frac_hi']:.0f}]"
    return text


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _measured(bench: pd.DataFrame) -> pd.DataFrame:
    """Bench rows of ops (not the copy yardstick) that have a GB/s figure."""
    if bench.empty:
        return bench
    return bench[bench["gbps"].notna() & ~bench["op"].eq("copy")]


def throughput(bench: pd.DataFrame) -> Table:
    """Workload x backend: GB/s with its interval and the fraction of copy (view pivoted)."""
    cols = ["machine", "op", "dtype", "workload", "shape", "row length", "backend", "series", "device",
            "threads", "median µs", "GB/s", "GB/s low", "GB/s high", "copy GB/s", "% of copy",
            "% of copy low", "% of copy high", "samples", "cv %", "compile s", "warning"]
    if bench.empty or "gbps_lo" not in bench:
        bench = with_intervals(bench)
    sel = _measured(bench)
    if sel.empty:
        df = pd.DataFrame(columns=cols)
        return Table("throughput", "Throughput", df, _strings(df))
    df = pd.DataFrame({
        "machine": sel["machine"], "op": sel["op"], "dtype": sel["dtype"],
        "workload": sel["workload"].fillna(""), "shape": sel["shape_text"],
        "row length": sel["row_length"], "backend": sel["backend"], "series": sel["series"],
        "device": sel["device"], "threads": sel["threads"],
        "median µs": sel["median_s"] * 1e6, "GB/s": sel["gbps"], "GB/s low": sel["gbps_lo"],
        "GB/s high": sel["gbps_hi"], "copy GB/s": sel["copy"], "% of copy": sel["frac"] * 100,
        "% of copy low": sel["frac_lo"] * 100, "% of copy high": sel["frac_hi"] * 100,
        "samples": [len(x) if isinstance(x, list) else 0 for x in sel["samples_s"]],
        "cv %": sel["cv"] * 100, "compile s": sel["compile_s"], "warning": sel["warning"].fillna("")})
    # Row length, then total size: how one reads a sweep (labels would sort "16MiB" before "1MiB").
    df["_elements"] = [math.prod(s) if isinstance(s, list | tuple) else 0 for s in sel["shape"]]
    df = _sort(df, ["machine", "op", "dtype", "row length", "_elements", "series"]).drop(columns="_elements")

    # The view: one row per workload, one column per backend, plus the copy bandwidth of each
    # device: what one pastes to compare backends on the same work.
    keys = ["machine", "op", "dtype", "workload", "shape"]
    series = sorted(df["series"].unique(), key=str)
    devices = sorted(df["device"].dropna().unique(), key=str)
    by_key = {(r["machine"], r["op"], r["dtype"], r["workload"], r["shape_text"], r["series"]): r
              for _, r in sel.iterrows()}
    rows = []
    for key, g in df.groupby(keys, sort=False):
        row = dict(zip(keys, key))
        for b in series:
            r = by_key.get((*key, b))
            row[b] = speed_text(r) if r is not None else ""
        for dev in devices:
            copy = g.loc[g["device"] == dev, "copy GB/s"].median()
            name = "copy GB/s" if len(devices) == 1 else f"copy GB/s ({dev})"
            row[name] = fmt_num(copy)
        rows.append(row)
    view = pd.DataFrame(rows)
    footer = ["Intervals: 95% confidence interval of the median time (order statistics of the timed "
              "samples), as GB/s; the fraction of copy combines it with the copy's interval."]
    wide = int(df["warning"].astype(bool).sum())
    if wide:
        footer.append(f"{wide} of {len(df)} measurements had a coefficient of variation above 5% "
                      "(the warning column of throughput.csv); their intervals show how much that matters.")
    return Table("throughput", "Throughput", df, view,
                 note="Median GB/s over the timed rounds (fewest bytes the op must move / median time) "
                      "and the fraction of the copy bandwidth the same harness measured on the same "
                      "device and workload in the same run.", footer=footer)


# -- conformance per op x dtype, the first screen, the ranking ------------------------------

def op_conformance(checks: pd.DataFrame) -> pd.DataFrame:
    """Per machine, backend, op, dtype: checks, failing (new / known), deviations, unsupported."""
    cols = ["machine", "backend", "op", "dtype", "checks", "checked", "failing", "known failing",
            "deviation", "unsupported", "conforms"]
    if checks.empty:
        return pd.DataFrame(columns=cols)
    known = checks["known"].notna() if "known" in checks else pd.Series(False, index=checks.index)
    failing = checks["verdict"].isin(FAILING)
    rows = []
    for key, g in checks.groupby(["machine", "backend", "op", "dtype"], sort=False, dropna=False):
        f, k = failing[g.index], (failing & known)[g.index]
        checked = int((~g["verdict"].isin(["unsupported"]) & g["verdict"].notna()).sum())
        rows.append(dict(zip(["machine", "backend", "op", "dtype"], key)) | {
            "checks": len(g), "checked": checked, "failing": int(f.sum()), "known failing": int(k.sum()),
            "deviation": int(g["verdict"].eq("deviation").sum()),
            "unsupported": int(g["verdict"].eq("unsupported").sum()),
            "conforms": None if not checked else not bool(f.any())})
    return pd.DataFrame(rows, columns=cols)


def _conf_text(c) -> str:
    if c is None:
        return "not checked"
    if not c["checked"]:
        return "– unsupported"
    if c["failing"]:
        new = c["failing"] - c["known failing"]
        if not new:
            return f"✗ {c['failing']} known failing"
        return f"✗ {new} failing" + (f" (+{c['known failing']} known)" if c["known failing"] else "")
    return "✓ conforms" + (f" ({c['deviation']} dev.)" if c["deviation"] else "")


def rank_workloads(bench: pd.DataFrame, conf: pd.DataFrame) -> list[dict]:
    """Per workload, the series fastest first, each with its speed and conformance.

    Returns dicts: machine, op, dtype, workload, shape, entries (list of bench rows as dicts with
    ``conforms`` added, fastest first), fastest (the first conforming entry or None), tie (names
    of conforming entries whose interval overlaps the fastest's).
    """
    from softmaxbench.reports.stats import overlaps

    if bench.empty or "gbps_lo" not in bench:
        bench = with_intervals(bench)
    sel = _measured(bench)
    verdict = {(r["machine"], r["backend"], r["op"], r["dtype"]): r["conforms"] for _, r in conf.iterrows()}
    out = []
    keys = ["machine", "op", "dtype", "workload", "shape_text"]
    for key, g in sel.groupby(keys, sort=False, dropna=False):
        entries = []
        for _, r in g.sort_values("gbps", ascending=False, kind="stable").iterrows():
            e = r.to_dict()
            e["conforms"] = verdict.get((r["machine"], r["backend"], r["op"], r["dtype"]))
            entries.append(e)
        good = [e for e in entries if e["conforms"]]
        fastest = good[0] if good else None
        tie = [e["series"] for e in good[1:] if fastest is not None and overlaps(
            (fastest["gbps_lo"], fastest["gbps_hi"]), (e["gbps_lo"], e["gbps_hi"]))]
        rows = math.prod(r for r in g["shape"].iloc[0]) if isinstance(g["shape"].iloc[0], list) else 0
        out.append(dict(zip(["machine", "op", "dtype", "workload", "shape"], key)) | {
            "entries": entries, "fastest": fastest, "tie": tie, "_elements": rows,
            "row_length": g["row_length"].iloc[0]})
    rank = {o: i for i, o in enumerate(OP_ORDER)}
    drank = {d: i for i, d in enumerate(DTYPE_ORDER)}
    out.sort(key=lambda w: (str(w["machine"]), rank.get(w["op"], 99), drank.get(w["dtype"], 99),
                            w["row_length"] if w["row_length"] is not None and w["row_length"] is not pd.NA
                            else 0, w["_elements"]))
    return out


def ranking(bench: pd.DataFrame, conf: pd.DataFrame) -> Table:
    """Per workload: the fastest conforming backend, then every backend fastest first."""
    cols = ["machine", "op", "dtype", "workload", "shape", "fastest conforming", "its speed", "ranking"]
    rows, full = [], []
    for w in rank_workloads(bench, conf):
        f = w["fastest"]
        name = "none conforms" if f is None else f["series"] + (f" (tie with {', '.join(w['tie'])})"
                                                                 if w["tie"] else "")
        parts = []
        for i, e in enumerate(w["entries"], 1):
            mark = {True: "✓", False: "✗", None: "?"}[e["conforms"]]
            parts.append(f"{i}. {e['series']} {mark} {fmt_num(e['gbps'])}"
                         + (f" ({100 * e['frac']:.0f}%)" if _finite(e.get("frac")) else ""))
            full.append({k: w[k] for k in ("machine", "op", "dtype", "workload", "shape")} | {
                "rank": i, "series": e["series"], "backend": e["backend"], "conforms": e["conforms"],
                "GB/s": e["gbps"], "GB/s low": e["gbps_lo"], "GB/s high": e["gbps_hi"],
                "% of copy": 100 * e["frac"] if _finite(e.get("frac")) else None,
                "fastest conforming": f is not None and e["series"] == f["series"]})
        rows.append({k: w[k] for k in ("machine", "op", "dtype", "workload", "shape")} | {
            "fastest conforming": name, "its speed": speed_text(f) if f is not None else "",
            "ranking": " · ".join(parts)})
    df = pd.DataFrame(full, columns=["machine", "op", "dtype", "workload", "shape", "rank", "series",
                                     "backend",
                                     "conforms", "GB/s", "GB/s low", "GB/s high", "% of copy",
                                     "fastest conforming"])
    view = pd.DataFrame(rows, columns=cols)
    return Table("ranking", "Ranking per workload", df, view,
                 note="Every backend measured on the workload, fastest first (GB/s, % of copy); ✓ when "
                      "it conforms on that op and dtype (no failing check, known failures included), "
                      "✗ when not, ? when not checked. 'Fastest conforming' names the first ✓; a tie "
                      "when the next one's 95% interval overlaps it.",
                 cell_class=lambda col, text: ("bad" if text == "none conforms" else "good")
                 if col == "fastest conforming" else None)


def overview(checks: pd.DataFrame, bench: pd.DataFrame, conf: pd.DataFrame | None = None) -> Table:
    """The first screen: per op x dtype, each backend's conformance and speed, and the fastest
    conforming one. Speed is at the op and dtype's largest workload (named). ``conf``: the
    :func:`op_conformance` of ``checks`` when already computed."""
    conf = op_conformance(checks) if conf is None else conf
    if bench.empty or "gbps_lo" not in bench:
        bench = with_intervals(bench)
    sel = _measured(bench)
    series_of: dict[str, list[str]] = {}
    for b, s in zip(sel.get("backend", []), sel.get("series", [])):
        series_of.setdefault(b, [])
        if s not in series_of[b]:
            series_of[b].append(s)
    backends = sorted(set(conf["backend"]) | set(series_of), key=str)
    columns = [s for b in backends for s in (sorted(series_of[b], key=str) if b in series_of else [b])]
    backend_of = {s: b for b in backends for s in series_of.get(b, [b])}
    cmap = {(r["machine"], r["backend"], r["op"], r["dtype"]): r for _, r in conf.iterrows()}
    largest: dict[tuple, dict] = {}
    for w in rank_workloads(bench, conf):
        k = (w["machine"], w["op"], w["dtype"])
        if k not in largest or w["_elements"] > largest[k]["_elements"]:
            largest[k] = w
    keys = sorted({(m, o, d) for m, _, o, d in cmap} | set(largest),
                  key=lambda k: (str(k[0]), OP_ORDER.index(k[1]) if k[1] in OP_ORDER else 99,
                                 DTYPE_ORDER.index(k[2]) if k[2] in DTYPE_ORDER else 99))
    rows, data = [], []
    for m, o, d in keys:
        w = largest.get((m, o, d))
        speed = {e["series"]: e for e in (w["entries"] if w else [])}
        row = {"machine": m, "op": o, "dtype": d}
        for s in columns:
            c = cmap.get((m, backend_of[s], o, d))
            text = _conf_text(c)
            e = speed.get(s)
            if e is not None:
                text += " · " + speed_text(e)
            row[s] = "" if c is None and e is None else text
            if c is not None or e is not None:
                data.append({"machine": m, "op": o, "dtype": d, "series": s, "backend": backend_of[s],
                             "conforms": None if c is None else c["conforms"],
                             "failing": None if c is None else c["failing"],
                             "known failing": None if c is None else c["known failing"],
                             "workload": w["workload"] if w else None,
                             "GB/s": None if e is None else e["gbps"],
                             "GB/s low": None if e is None else e["gbps_lo"],
                             "GB/s high": None if e is None else e["gbps_hi"],
                             "% of copy": None if e is None or not _finite(e.get("frac"))
                             else 100 * e["frac"],
                             "% of copy low": None if e is None or not _finite(e.get("frac_lo"))
                             else 100 * e["frac_lo"],
                             "% of copy high": None if e is None or not _finite(e.get("frac_hi"))
                             else 100 * e["frac_hi"]})
        f = w["fastest"] if w else None
        row["speed at"] = "" if w is None else f"{w['workload']} ({w['shape']})"
        row["fastest conforming"] = ("—" if w is None else "none conforms" if f is None
                                     else f["series"] + (f" (tie: {', '.join(w['tie'])})"
                                                         if w["tie"] else ""))
        rows.append(row)
    view = pd.DataFrame(rows, columns=["machine", "op", "dtype", *columns, "speed at", "fastest conforming"])
    df = pd.DataFrame(data)

    def cls(col: str, text: str) -> str | None:
        if text.startswith("✗") and " known failing" in text.split("·")[0] and "(+" not in text:
            return "dev"        # only known failures: not conforming, but nothing new
        if text.startswith("✗") or text == "none conforms":
            return "bad"
        if text.startswith("✓"):
            return "good"
        if text.startswith("–"):
            return "na"
        return None

    return Table("overview", "Which is right, which is fastest", df, view,
                 note="Per op and dtype: does each backend conform (✓: no check failed, errored, crashed "
                      "or timed out; ✗: how many did, known ones apart), and how fast it is on the "
                      "largest workload measured for that op and dtype (GB/s with its 95% interval, and "
                      "the fraction of the copy bandwidth of the same workload). The ranking per "
                      "workload follows below.", cell_class=cls)


# -- failures ---------------------------------------------------------------------------------

_FAILURE_VERDICTS = ("crash", "timeout", "error", "fail")
_AT_PATH = re.compile(r"\(at [^)]*\)|(?:[A-Za-z]:)?(?:[/\\][\w.\-+]+){2,}(?::\d+)?")
_INDEX = re.compile(r"(index|at|element) \([^)]*\)", re.I)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)(?![\w.])", re.I)
_HEX = re.compile(r"\b0x[0-9a-f]+\b", re.I)


def cause_pattern(message, *, op=None, dtype=None, case=None) -> str:
    """A failure message with what varies between checks of one cause taken out: the op, dtype and
    case names, element indices, file paths and finite numbers (inf and nan stay: they are the
    finding).

    >>> cause_pattern("logsumexp: error ratio inf > 4 (float16), worst at index (2,): expected -inf, "
    ...               "got nan (inf ULP)", op="logsumexp", dtype="float16")
    '<op>: error ratio inf > # (<dtype>), worst at index (…): expected -inf, got nan (inf ULP)'
    """
    text = " ".join(str(message or "").split("\n")[0].split()) or "(no message)"
    for name, tag in ((case, "<case>"), (op, "<op>"), (dtype, "<dtype>")):
        if name:
            text = re.sub(rf"(?<![\w-]){re.escape(str(name))}(?![\w-])", tag, text)
    text = _AT_PATH.sub(lambda m: "(at …)" if m.group().startswith("(") else "…", text)
    text = _INDEX.sub(lambda m: f"{m.group(1)} (…)", text)
    text = _HEX.sub("#", text)
    text = _NUMBER.sub("#", text)
    return text[:240]


def failed_checks(checks: pd.DataFrame) -> Table:
    """Every non-conforming check, one row each, worst verdict first (CSV only: the page groups them)."""
    cols = ["machine", "backend", "op", "dtype", "case", "verdict", "check", "max error ratio", "max ULP",
            "error kind", "known", "message", "repro"]
    sel = checks[checks["verdict"].isin(_FAILURE_VERDICTS)] if not checks.empty else checks
    df = pd.DataFrame({"machine": sel.get("machine"), "backend": sel.get("backend"), "op": sel.get("op"),
                       "dtype": sel.get("dtype"), "case": sel.get("case"), "verdict": sel.get("verdict"),
                       "check": sel.get("check"),
                       "max error ratio": effective_ratio(sel) if not sel.empty
                       else sel.get("max_error_ratio"),
                       "max ULP": sel.get("max_ulp"), "error kind": sel.get("error_kind"),
                       "known": sel.get("known"),
                       "message": sel.get("message"), "repro": sel.get("repro")}, columns=cols)
    if not df.empty:
        df["_sev"] = -df["verdict"].map(SEVERITY)
        df = _sort(df, ["_sev", "machine", "backend", "op", "dtype", "case"]).drop(columns="_sev")
    view = _strings(df.drop(columns="repro"), {"max ULP": fmt_num, "max error ratio": fmt_num})
    return Table("failed_checks", "Failed checks", df, view, csv_only=True)


def failures(checks: pd.DataFrame) -> Table:
    """Failing checks grouped by cause: backend, verdict, check and message pattern; new before known."""
    cols = ["machine", "backend", "verdict", "check", "cause", "status", "checks", "ops", "dtypes", "cases",
            "worst error ratio", "error kinds", "example", "known reason", "repro"]
    sel = checks[checks["verdict"].isin(_FAILURE_VERDICTS)].copy() if not checks.empty else checks
    groups: dict[tuple, list] = {}
    if not sel.empty:
        sel["_ratio"] = effective_ratio(sel)
        for i, r in sel.iterrows():
            known = r.get("known")
            # The judge's error kind (a rounding at an exact 0 or 1 vs garbage) splits a cause too.
            kind = r.get("error_kind")
            key = (r["machine"], r["backend"], r["verdict"], r["check"] or "",
                   cause_pattern(r["message"], op=r["op"], dtype=r["dtype"], case=r["case"])
                   + (f" [{kind}]" if isinstance(kind, str) and kind else ""),
                   "known" if isinstance(known, str) and known else "new")
            groups.setdefault(key, []).append(i)
    rows = []
    for (machine, backend, verdict, check, cause, status), idx in groups.items():
        g = sel.loc[idx]
        first = g.iloc[0]
        with_repro = g[g["repro"].map(lambda x: isinstance(x, str) and bool(x))]
        cases = sorted(g["case"].dropna().astype(str).unique())
        ratios = g["_ratio"].dropna()
        kinds = sorted({str(k) for k in g.get("error_kind", pd.Series(dtype=object)).dropna() if k})
        reasons = sorted({str(k) for k in g["known"].dropna()}) if status == "known" else []
        rows.append({"machine": machine, "backend": backend, "verdict": verdict, "check": check,
                     "cause": cause, "status": status, "checks": len(g),
                     "ops": ", ".join(_order(g["op"].dropna(), OP_ORDER)),
                     "dtypes": ", ".join(_order(g["dtype"].dropna(), DTYPE_ORDER)),
                     "cases": _listing(cases, 6),
                     "worst error ratio": ratios.max() if not ratios.empty else None,
                     "error kinds": ", ".join(kinds),
                     "example": f"{first['op']} {first['dtype']} {first['case']}: "
                                + " ".join(str(first["message"] or "").split()),
                     "known reason": "; ".join(reasons),
                     "repro": with_repro["repro"].iloc[0] if not with_repro.empty else None})
    df = pd.DataFrame(rows, columns=cols)
    if not df.empty:
        df["_new"] = df["status"].ne("new")
        df["_sev"] = -df["verdict"].map(SEVERITY)
        df["_n"] = -df["checks"]
        df = _sort(df, ["_new", "machine", "backend", "_sev", "_n"]).drop(columns=["_new", "_sev", "_n"])
    view = _strings(df.drop(columns="repro"), {"worst error ratio": fmt_num})
    if not df.empty:
        view["example"] = [_clip(m, 200) for m in view["example"]]
        view["known reason"] = [_clip(m, 120) for m in view["known reason"]]
        if not df["error kinds"].astype(bool).any():
            view = view.drop(columns="error kinds")
        if not df["known reason"].astype(bool).any():
            view = view.drop(columns="known reason")
    n_checks = int(df["checks"].sum()) if not df.empty else 0
    new = int(df.loc[df["status"] == "new", "checks"].sum()) if not df.empty else 0
    return Table("failures", "Failures by cause", df, view,
                 note=f"{n_checks} failing checks in {len(df)} causes ({new} new, {n_checks - new} known). "
                      "A cause is one backend, verdict, check and message pattern (the message with the "
                      "op, dtype, case, indices, paths and finite numbers taken out); new causes first. "
                      "Known: the record's known field (a baseline) or backends/conventions.toml. "
                      "The repro of one check per cause is under 'show'; failures.csv has it too, "
                      "failed_checks.csv every failing check.",
                 cell_class=lambda col, text: _verdict_class(col, text) or (
                     ("bad" if text == "new" else "dev") if col == "status" else None))


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
