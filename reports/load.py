"""Results directories -> pandas DataFrames: the one place reports read result records.

Several directories (a check run and a bench run, or runs from different machines in a CI matrix)
merge into one set of frames with a ``machine`` column. The machine of a record is its own
``machine`` field, else the label in its directory's ``run.json``, else the host name there, else
the directory's name. Records are validated against the shipped schema so that every later step
can trust the columns it reads; a damaged or foreign file raises ``RecordError`` with one line.

>>> import tempfile, json, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> rec = {"schema_version": 1, "kind": "check", "backend": "numpy", "device": "cpu",
...        "op": "softmax", "dtype": "float32", "shape": [4, 8], "axis": -1, "verdict": "pass"}
>>> _ = (d / "results.jsonl").write_text(json.dumps(rec) + "\\n")
>>> res = load_results([d])
>>> res.checks[["backend", "op", "verdict", "row_length"]].to_dict("records")
[{'backend': 'numpy', 'op': 'softmax', 'verdict': 'pass', 'row_length': 8}]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd

from softmaxbench.suite.records import RecordError, read_results, read_run, schema

#: Columns every check / bench frame has (absent fields become None / NaN), in display order.
CHECK_COLUMNS = ("machine", "backend", "device", "op", "case", "category", "dtype", "shape", "axis",
                 "row_length", "verdict", "deviation", "check", "max_ulp", "median_ulp",
                 "max_error_ratio", "value_sample", "message", "repro", "found_by", "duration_s",
                 "source")
BENCH_COLUMNS = ("machine", "backend", "device", "op", "dtype", "workload", "shape", "axis",
                 "row_length", "bytes", "median_s", "iqr_s", "cv", "gbps", "copy_gbps",
                 "fraction_of_copy", "compile_s", "threads", "warning", "samples_s", "source")


@dataclass
class RunInfo:
    """One results directory: where it is, its machine label and its run.json (may be {})."""

    source: str
    machine: str
    run: dict


@dataclass
class Results:
    """Every record of the given directories, split by kind, plus their run metadata."""

    checks: pd.DataFrame
    bench: pd.DataFrame
    runs: list[RunInfo]
    warnings: list[str] = field(default_factory=list)

    @property
    def machines(self) -> list[str]:
        """Machine labels of the records, in first-seen order."""
        seen = list(self.checks["machine"]) + list(self.bench["machine"])
        return list(dict.fromkeys(m for m in seen if m))


@cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(schema("results"))


def _machine_label(run: dict, source: Path) -> str:
    machine = run.get("machine") or {}
    return str(machine.get("label") or machine.get("hostname") or source.name or source.resolve().name)


def _row_length(shape, axis) -> int | None:
    """Length of the reduced (class) axis: what throughput is plotted against."""
    if not isinstance(shape, list | tuple) or not shape:
        return None
    try:
        return int(shape[axis if isinstance(axis, int) else -1])
    except IndexError:
        return None


def load_results(dirs: Iterable[str | os.PathLike], *,
                 warn: Callable[[str], None] | None = None) -> Results:
    """Read and merge the result records of ``dirs`` (each a directory or a results.jsonl file).

    Raises RecordError (one line) for a missing, foreign, invalid or unknown-version file; a
    last line cut off by a killed run is dropped and reported through ``warn`` and
    ``Results.warnings``.
    """
    warnings: list[str] = []

    def _warn(msg: str) -> None:
        warnings.append(msg)
        if warn:
            warn(msg)

    runs: list[RunInfo] = []
    rows: list[dict] = []
    for d in dirs:
        path = Path(d)
        run_dir = path if path.is_dir() else path.parent
        run = read_run(run_dir) if run_dir.is_dir() else {}
        label = _machine_label(run, run_dir)
        records = read_results(path, warn=_warn)
        if not records:
            _warn(f"{path}: no result records")
        for i, rec in enumerate(records, 1):
            err = next(iter(_validator().iter_errors(rec)), None)
            if err is not None:
                where = "/".join(map(str, err.absolute_path)) or "record"
                raise RecordError(f"{path}: record {i} is not a valid result record ({where}: {err.message})")
            row = dict(rec)
            row["machine"] = str(rec.get("machine") or label)
            row["source"] = str(run_dir)
            row["row_length"] = _row_length(rec.get("shape"), rec.get("axis"))
            rows.append(row)
        runs.append(RunInfo(source=str(run_dir), machine=label, run=run))

    checks = _frame([r for r in rows if r["kind"] == "check"], CHECK_COLUMNS)
    bench = _frame([r for r in rows if r["kind"] == "bench"], BENCH_COLUMNS)
    # A resumed run appends to the same file: the last record of a check wins.
    checks = checks.drop_duplicates(["machine", "backend", "op", "case", "dtype", "shape_text"], keep="last")
    bench = bench.drop_duplicates(["machine", "backend", "op", "dtype", "workload", "shape_text"],
                                  keep="last")
    return Results(checks=checks.reset_index(drop=True), bench=bench.reset_index(drop=True),
                   runs=runs, warnings=warnings)


def _frame(rows: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(dict.fromkeys(columns + tuple(k for r in rows for k in r))))
    df = df.astype(object).where(df.notna(), None)
    df["shape_text"] = [shape_text(s) for s in df["shape"]]
    for col in ("max_ulp", "median_ulp", "max_error_ratio", "median_s", "iqr_s", "cv", "gbps", "copy_gbps",
                "fraction_of_copy", "compile_s", "duration_s"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["row_length"] = pd.to_numeric(df["row_length"], errors="coerce").astype("Int64")
    return df


def shape_text(shape) -> str:
    """[4, 1024] -> '4x1024'; [] -> '()'.

    >>> shape_text([4, 1024])
    '4x1024'
    """
    if not isinstance(shape, list | tuple):
        return ""
    return "x".join(str(s) for s in shape) or "()"
