"""``softmaxbench compare BASE NEW``: the throughput regression gate.

Two bench results (directories holding ``results.jsonl``, or the files) are matched workload by
workload (backend, op, dtype, shape, workload label). A workload *regressed* when its median
throughput fell by more than ``--max-regression`` **and** the raw samples say the change is
real: a one-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``) of NEW's call times
against BASE's gives a p-value under ``--p-value``. A slow-down beyond the threshold that the
samples cannot tell from noise is reported as ``noise``, never as a regression; a workload that
raised in NEW but ran in BASE is an ``error`` and fails the gate too. Copy-bandwidth rows are
shown (they tell whether the machine itself changed) but never fail the gate.

A workload of BASE that NEW lacks (a truncated file, a backend that stopped running, a
renamed workload) is ``missing`` and fails the gate too, listed by name: a comparison that
matched only part of BASE is not a pass. Both inputs are validated against the results schema
(and every sample must be a positive, finite number of seconds) before anything is compared.
The two ``run.json`` files are read: when the machine, a device, the package versions or the
thread counts differ, ``compare`` says so (the numbers may not be comparable), and under
``--strict`` refuses to compare (exit 2).

Exit codes: 0 no regression, 1 regression or missing workload, 2 bad input (one line on stderr).

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
from dataclasses import dataclass
from pathlib import Path

from softmaxbench.suite.records import RecordError, read_results, read_run, schema

COPY_OP = "copy"
#: Verdicts that fail the gate.
FAILING = ("regression", "error", "missing")


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
    NEW), unsupported, missing (in BASE, not in NEW: fails the gate), only in new.
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
            row["verdict"] = "missing"  # NEW lost it: never a pass
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
    """The records of BASE or NEW, validated: RecordError (one line) on anything unusable."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{which} {path}: no such results directory or file")
    records = read_results(p)
    validator = _validator()
    for i, rec in enumerate(records, 1):
        err = next(iter(validator.iter_errors(rec)), None)
        if err is not None:
            where = ".".join(str(x) for x in err.absolute_path) or "the record"
            raise RecordError(f"{which} {path}: record {i} ({_name(rec)}) does not follow the results "
                              f"schema: {where}: {_short(err.message, 120)}")
        if rec.get("kind") == "bench":
            _check_bench(rec, f"{which} {path}: record {i} ({_name(rec)})")
    if not any(r.get("kind") == "bench" for r in records):
        raise RecordError(f"{which} {path}: holds no bench records (is it a 'softmaxbench check' run?)")
    return records


def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(schema("results"))


def _check_bench(rec: dict, where: str) -> None:
    """What the schema cannot say: samples are positive finite seconds, bytes a positive count."""
    for s in rec.get("samples_s") or []:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
            raise RecordError(f"{where}: samples_s holds {s!r}; every sample must be a positive, finite "
                              f"number of seconds")
    nbytes = rec.get("bytes")
    if nbytes is not None and nbytes <= 0:
        raise RecordError(f"{where}: bytes must be positive, got {nbytes!r}")
    gbps = rec.get("gbps")
    if gbps is not None and not (math.isfinite(gbps) and gbps >= 0):
        raise RecordError(f"{where}: gbps must be a finite number, got {gbps!r}")


def _name(row: dict) -> str:
    shape = row.get("shape")
    shape = "x".join(map(str, shape)) if isinstance(shape, (list, tuple)) else str(shape or "")
    return " ".join(str(x) for x in (row.get("backend"), row.get("op"), row.get("dtype"),
                                     row.get("workload") or shape) if x)


def _run_of(path: str) -> dict:
    """run.json next to the results (the directory, or the folder of a results.jsonl); {} if none."""
    p = Path(path)
    try:
        return read_run(p if p.is_dir() else p.parent)
    except RecordError:
        return {}


def run_differences(base: str, new: str, base_recs: Sequence[dict] = (),
                    new_recs: Sequence[dict] = ()) -> list[str]:
    """What differs between the two runs' conditions: machine, devices, versions, threads.

    >>> a = {"machine": {"label": "m1", "processor": "x86_64", "cpu_count": 8, "devices": []},
    ...      "versions": {"numpy": "2.3.0"}, "threads": 8}
    >>> b = {"machine": {"label": "m2", "processor": "x86_64", "cpu_count": 8, "devices": []},
    ...      "versions": {"numpy": "2.4.0"}, "threads": 4}
    >>> _differences(a, b, [], [])
    ['machine: label m1 vs m2', 'versions: numpy 2.3.0 vs 2.4.0', 'threads: 8 vs 4']
    """
    b_run, n_run = _run_of(base), _run_of(new)
    missing = [w for w, r in (("BASE", b_run), ("NEW", n_run)) if not r]
    if missing:
        return [f"no run.json beside {' and '.join(missing)}: cannot tell whether machine, devices, "
                f"versions and threads match"]
    return _differences(b_run, n_run, base_recs, new_recs)


def _differences(b_run: dict, n_run: dict, base_recs: Sequence[dict], new_recs: Sequence[dict]) -> list[str]:
    out = []
    bm, nm = b_run.get("machine") or {}, n_run.get("machine") or {}
    machine = [f"{k} {bm.get(k)} vs {nm.get(k)}" for k in ("label", "hostname", "platform", "processor",
                                                            "cpu_count", "memory_gib")
               if k in bm and k in nm and bm.get(k) != nm.get(k)]
    if machine:
        out.append("machine: " + "; ".join(machine))
    devices = []
    if bm.get("devices") != nm.get("devices"):
        devices.append(f"{_short(bm.get('devices'))} vs {_short(nm.get('devices'))}")
    b_dev = {r.get("backend"): r.get("device") for r in base_recs if r.get("kind") == "bench"}
    n_dev = {r.get("backend"): r.get("device") for r in new_recs if r.get("kind") == "bench"}
    devices += [f"{k} on {b_dev[k]} vs {n_dev[k]}" for k in b_dev if k in n_dev and b_dev[k] != n_dev[k]]
    if devices:
        out.append("devices: " + "; ".join(devices))
    bv, nv = b_run.get("versions") or {}, n_run.get("versions") or {}
    versions = [f"{k} {bv.get(k, 'absent')} vs {nv.get(k, 'absent')}" for k in dict.fromkeys([*bv, *nv])
                if bv.get(k) != nv.get(k)]
    if versions:
        out.append("versions: " + "; ".join(versions))
    b_sb, n_sb = b_run.get("softmaxbench_version"), n_run.get("softmaxbench_version")
    if b_sb != n_sb:
        out.append(f"softmaxbench: {b_sb} vs {n_sb}")
    threads = []
    if b_run.get("threads") != n_run.get("threads"):
        threads.append(f"{b_run.get('threads')} vs {n_run.get('threads')}")
    b_thr = {_key(r): r.get("threads") for r in base_recs if r.get("kind") == "bench"}
    n_thr = {_key(r): r.get("threads") for r in new_recs if r.get("kind") == "bench"}
    per = sorted({f"{b_thr[k]} vs {n_thr[k]}" for k in b_thr if k in n_thr and b_thr[k] != n_thr[k]})
    if per:
        threads.append("per workload " + ", ".join(per))
    if threads:
        out.append("threads: " + "; ".join(threads))
    return out


def _short(value, width: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass
class CompareResult:
    """What ``compare`` found: the rows, the notes (run differences) and problems (one line per
    failing workload) to print on stderr, the summary line and the gate's exit code."""

    rows: list[dict]
    table: str
    notes: list[str]
    summary: str
    problems: list[str]
    exit_code: int


def compare_runs(base: str, new: str, max_regression: str = "10%", out: str | None = None,
                 p_value: float = 0.01, strict: bool = False) -> CompareResult:
    """The ``compare`` verb's work (the CLI prints it): compare BASE with NEW, write ``out`` when
    given; exit code 1 on a real regression or a workload of BASE missing from NEW. Bad input
    (and, with ``strict``, runs whose machine, devices, versions or threads differ) raises
    :class:`~softmaxbench.errors.InputError`."""
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
        raise InputError(" ".join(str(exc).split())) from None
    differences = run_differences(base, new, base_recs, new_recs)
    if differences and strict:
        raise InputError(f"--strict: BASE and NEW ran under different conditions, not compared: "
                         f"{' | '.join(differences)}")
    rows = compare_records(base_recs, new_recs, threshold=threshold, alpha=p_value)
    matched = [r for r in rows if r["verdict"] not in ("missing", "only in new")]
    if not any(r["gate"] for r in rows if r["verdict"] != "only in new"):
        raise InputError(f"BASE {base} holds no workload to compare (only copy-bandwidth rows)")

    failing = [r for r in rows if r["verdict"] in FAILING]
    missing = [r for r in failing if r["verdict"] == "missing"]
    noisy = [r for r in rows if r["verdict"] == "noise"]
    pct = f"{threshold:.0%}" if threshold * 100 == round(threshold * 100) else f"{threshold:.1%}"
    regressions = len(failing) - len(missing)
    summary = (f"{regressions} regression(s) beyond {pct} (p < {p_value:g}) among {len(matched)} "
               f"workloads compared")
    if missing:
        summary += f"; {len(missing)} workload(s) of BASE missing from NEW"
    if noisy:
        summary += f"; {len(noisy)} slower beyond {pct} but not significant (noise)"
    if differences:
        summary += "; the runs differ (" + "; ".join(d.split(":")[0] for d in differences) + ")"
    problems = []
    for r in failing:
        what = _name(r)
        if r["verdict"] == "missing":
            problems.append(f"MISSING: {what}: in BASE, not in NEW (lost, renamed or not run)")
        elif r["verdict"] == "error":
            problems.append(f"REGRESSION: {what} raised in NEW (it ran in BASE)")
        else:
            problems.append(f"REGRESSION: {what}: {r['base_gbps']:.2f} -> {r['new_gbps']:.2f} GB/s "
                            f"({r['change']:+.1%}, p = {r['p']:.2g})")
    if out:
        write_outputs(out, rows, base=base, new=new, max_regression=str(max_regression),
                      threshold=threshold, p_value=p_value,
                      verdict="regression" if failing else "ok", summary=summary,
                      missing=[_name(r) for r in missing], differences=differences)
    return CompareResult(rows, tabulate(table_rows(rows), headers=HEADERS, disable_numparse=True),
                         [f"note: BASE and NEW differ: {d}" for d in differences], summary, problems,
                         1 if failing else 0)


def write_outputs(out: str | os.PathLike, rows: Sequence[dict], **meta) -> tuple[Path, Path]:
    """Write ``compare.md`` and ``compare.json`` in the directory ``out``."""
    from tabulate import tabulate

    from softmaxbench.reports.markdown import md_text

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    md = d / "compare.md"
    cells = [[md_text(c) for c in row] for row in table_rows(rows)]
    notes = "".join(f"- {md_text(d)}\n" for d in meta.get("differences") or [])
    notes = f"\nThe runs differ (the numbers may not be comparable):\n\n{notes}" if notes else ""
    md.write_text(f"# Throughput comparison\n\nBASE: {md_text(meta.get('base'))}  \n"
                  f"NEW: {md_text(meta.get('new'))}\n\n"
                  + tabulate(cells, headers=HEADERS, tablefmt="github", disable_numparse=True)
                  + f"\n\n{md_text(meta.get('summary', ''))}\n{notes}", encoding="utf-8")
    js = d / "compare.json"
    js.write_text(json.dumps({**meta, "rows": list(rows)}, indent=1), encoding="utf-8")
    return md, js
