"""``softmaxbench compare BASE NEW``: the throughput regression gate.

Two bench results (directories holding ``results.jsonl``, or the files) are matched workload by
workload (backend, op, dtype, shape, workload label). A workload *regressed* when its median
throughput fell by more than ``--max-regression`` **and** the raw samples say the change is
real: a one-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``) of NEW's call times
against BASE's gives a p-value under ``--p-value``. A slow-down beyond the threshold that the
samples cannot tell from noise is reported as ``noise``, never as a regression; a workload that
raised in NEW but ran in BASE is an ``error`` and fails the gate too. Copy-bandwidth rows are
shown (they tell whether the machine itself changed) but never fail the gate.

Exit codes: 0 no regression, 1 regression, 2 bad input (one line on stderr).

``--out DIR`` writes ``DIR/compare.md`` and ``DIR/compare.json``; the JSON is what
``softmaxbench report --compare`` shows::

    {"base": ..., "new": ..., "max_regression": "10%", "threshold": 0.1, "p_value": 0.01,
     "verdict": "regression" | "ok", "summary": "...", "rows": [{"backend", "op", "dtype",
     "workload", "shape", "base_gbps", "new_gbps", "change", "p", "verdict"}, ...]}

>>> base = [{"kind": "bench", "backend": "b", "device": "cpu", "op": "softmax", "dtype": "float32",
...          "shape": [4, 8], "workload": "w", "bytes": 256, "samples_s": [1.0, 1.1, 0.9, 1.0, 1.05]}]
>>> new = [dict(base[0], samples_s=[2.0, 2.1, 1.9, 2.0, 2.05])]
>>> rows = compare_records(base, new, threshold=0.10, alpha=0.05)
>>> rows[0]["verdict"], round(rows[0]["change"], 2)
('regression', -0.5)
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

from softmaxbench.suite.records import RecordError, read_results

COPY_OP = "copy"
#: Verdicts that fail the gate.
FAILING = ("regression", "error")


def parse_threshold(text: str | float) -> float:
    """'10%' -> 0.10; '0.1' -> 0.1. A bare number of 1 or more is ambiguous and refused.

    >>> parse_threshold("10%"), parse_threshold("0.05"), parse_threshold("2.5 %")
    (0.1, 0.05, 0.025)
    """
    s = str(text).strip()
    try:
        if s.endswith("%"):
            value = float(s[:-1].strip()) / 100
        else:
            value = float(s)
            if value >= 1:
                raise ValueError
    except ValueError:
        raise ValueError(f"--max-regression {text!r}: write a percentage such as 10% (or a fraction "
                         f"such as 0.1)") from None
    if not 0 <= value < 1 or math.isnan(value):
        raise ValueError(f"--max-regression {text!r}: must be between 0% and 100%")
    return round(value, 12)


def _key(rec: dict) -> tuple:
    return (rec.get("backend"), rec.get("op"), rec.get("dtype"), tuple(rec.get("shape") or ()),
            rec.get("workload") or "")


def _bench_records(records: Sequence[dict]) -> dict[tuple, dict]:
    """Bench records by workload key; the last of duplicates wins (an appended re-run)."""
    out: dict[tuple, dict] = {}
    for r in records:
        if r.get("kind") == "bench":
            out[_key(r)] = r
    return out


def _median_gbps(rec: dict) -> float | None:
    samples = rec.get("samples_s") or []
    nbytes = rec.get("bytes")
    if samples and nbytes:
        med = statistics.median(samples)
        return nbytes / med / 1e9 if med > 0 else None
    return rec.get("gbps")


def _p_slower(base: Sequence[float], new: Sequence[float]) -> float | None:
    """One-sided Mann-Whitney U: p-value of 'NEW's call times are not larger than BASE's'."""
    if len(base) < 2 or len(new) < 2:
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(new, base, alternative="greater").pvalue)


def _p_faster(base: Sequence[float], new: Sequence[float]) -> float | None:
    if len(base) < 2 or len(new) < 2:
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(new, base, alternative="less").pvalue)


def compare_records(base: Sequence[dict], new: Sequence[dict], *, threshold: float = 0.10,
                    alpha: float = 0.01) -> list[dict]:
    """One row per workload in either set: medians in GB/s, change, p-value, verdict.

    ``change`` is new/base - 1 in throughput (-0.2: 20% slower). Verdicts: regression, noise
    (slower beyond the threshold, not significant), improvement, unchanged, error (raised in
    NEW), unsupported, only in base, only in new.
    """
    b_map, n_map = _bench_records(base), _bench_records(new)
    rows = []
    for key in list(b_map) + [k for k in n_map if k not in b_map]:
        b, n = b_map.get(key), n_map.get(key)
        backend, op, dtype, shape, workload = key
        row = {"backend": backend, "op": op, "dtype": dtype, "workload": workload,
               "shape": "x".join(map(str, shape)), "base_gbps": None, "new_gbps": None,
               "change": None, "p": None, "verdict": None, "gate": op != COPY_OP}
        b_gbps = _median_gbps(b) if b else None
        n_gbps = _median_gbps(n) if n else None
        row["base_gbps"], row["new_gbps"] = b_gbps, n_gbps
        if b is None:
            row["verdict"] = "only in new"
        elif n is None:
            row["verdict"] = "only in base"
        elif n.get("verdict") == "error":
            row["verdict"] = "error" if b_gbps else "error in both"
        elif not b_gbps or not n_gbps:
            row["verdict"] = "unsupported"
        else:
            change = n_gbps / b_gbps - 1
            row["change"] = change
            bs, ns = b.get("samples_s") or [], n.get("samples_s") or []
            if change < -threshold:
                p = _p_slower(bs, ns)
                row["p"] = p
                row["verdict"] = "regression" if p is not None and p < alpha else "noise"
            elif change > threshold:
                p = _p_faster(bs, ns)
                row["p"] = p
                row["verdict"] = "improvement" if p is not None and p < alpha else "unchanged"
            else:
                row["verdict"] = "unchanged"
        if not row["gate"] and row["verdict"] in FAILING:
            row["verdict"] += " (machine)"  # copy bandwidth: context, not a backend's regression
        rows.append(row)
    return rows


def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def table_rows(rows: Sequence[dict]) -> list[list[str]]:
    return [[r["backend"], r["op"], r["dtype"], r["workload"], r["shape"], _fmt(r["base_gbps"], ".2f"),
             _fmt(r["new_gbps"], ".2f"), _fmt(r["change"] is not None and r["change"] * 100, "+.1f"),
             _fmt(r["p"], ".2g"), r["verdict"]] for r in rows]


HEADERS = ["backend", "op", "dtype", "workload", "shape", "base GB/s", "new GB/s", "change %", "p", "verdict"]


def _load(path: str, which: str) -> list[dict]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{which} {path}: no such results directory or file")
    records = read_results(p)
    if not any(r.get("kind") == "bench" for r in records):
        raise RecordError(f"{which} {path}: holds no bench records (is it a 'softmaxbench check' run?)")
    return records


def compare_main(base: str, new: str, max_regression: str = "10%", out: str | None = None,
                 p_value: float = 0.01) -> int:
    """The ``compare`` verb: print the table of changes; exit 1 on a real regression."""
    import click
    from tabulate import tabulate

    from softmaxbench.errors import InputError

    try:
        threshold = parse_threshold(max_regression)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if not 0 < p_value < 1:
        raise InputError(f"--p-value {p_value}: must be between 0 and 1")
    try:
        base_recs, new_recs = _load(base, "BASE"), _load(new, "NEW")
    except (FileNotFoundError, RecordError) as exc:
        raise InputError(str(exc)) from None
    rows = compare_records(base_recs, new_recs, threshold=threshold, alpha=p_value)
    matched = [r for r in rows if r["verdict"] not in ("only in base", "only in new")]
    if not matched:
        raise InputError(f"BASE {base} and NEW {new} have no workload in common")

    click.echo(tabulate(table_rows(rows), headers=HEADERS, disable_numparse=True))
    failing = [r for r in rows if r["verdict"] in FAILING]
    noisy = [r for r in rows if r["verdict"] == "noise"]
    pct = f"{threshold:.0%}" if threshold * 100 == round(threshold * 100) else f"{threshold:.1%}"
    summary = (f"{len(failing)} regression(s) beyond {pct} (p < {p_value:g}) among {len(matched)} "
               f"workloads compared")
    if noisy:
        summary += f"; {len(noisy)} slower beyond {pct} but not significant (noise)"
    verdict = "regression" if failing else "ok"
    click.echo(summary)
    for r in failing:
        what = f"{r['backend']} {r['op']} {r['dtype']} {r['workload']}"
        if r["verdict"] == "error":
            click.echo(f"REGRESSION: {what} raised in NEW (it ran in BASE)", err=True)
        else:
            click.echo(f"REGRESSION: {what}: {r['base_gbps']:.2f} -> {r['new_gbps']:.2f} GB/s "
                       f"({r['change']:+.1%}, p = {r['p']:.2g})", err=True)
    if out:
        write_outputs(out, rows, base=base, new=new, max_regression=str(max_regression),
                      threshold=threshold, p_value=p_value, verdict=verdict, summary=summary)
    return 1 if failing else 0


def write_outputs(out: str | os.PathLike, rows: Sequence[dict], **meta) -> tuple[Path, Path]:
    """Write ``compare.md`` and ``compare.json`` in the directory ``out``."""
    from tabulate import tabulate

    from softmaxbench.reports.markdown import md_text

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    md = d / "compare.md"
    # Every cell and path is escaped (md_text): a '|', a newline or markup in a record's name cannot
    # break the table or become a link, an image or HTML.
    cells = [[md_text(c) for c in row] for row in table_rows(rows)]
    md.write_text(f"# Throughput comparison\n\nBASE: {md_text(meta.get('base'))}  \n"
                  f"NEW: {md_text(meta.get('new'))}\n\n"
                  + tabulate(cells, headers=HEADERS, tablefmt="github", disable_numparse=True)
                  + f"\n\n{md_text(meta.get('summary', ''))}\n", encoding="utf-8")
    js = d / "compare.json"
    js.write_text(json.dumps({**meta, "rows": list(rows)}, indent=1), encoding="utf-8")
    return md, js
