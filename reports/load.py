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
                 "known", "error_kind", "special_row", "source")
BENCH_COLUMNS = ("machine", "backend", "device", "op", "dtype", "workload", "shape", "axis",
                 "row_length", "bytes", "median_s", "iqr_s", "cv", "gbps", "copy_gbps",
                 "fraction_of_copy", "compile_s", "threads", "warning", "samples_s", "known", "source",
                 "series")


@dataclass
class RunInfo:
    """One results directory: where it is, its machine label and its run.json (may be {})."""

    source: str
    machine: str
    run: dict

    @property
    def kind(self) -> str:
        return str(self.run.get("kind") or "")

    @property
    def cores(self) -> int | None:
        n = (self.run.get("machine") or {}).get("cpu_count")
        return n if isinstance(n, int) and n > 0 else None

    @property
    def load_average(self) -> float | None:
        """The 1-minute load average when the run started, where the run recorded one."""
        bench = self.run.get("bench") if isinstance(self.run.get("bench"), dict) else {}
        machine = self.run.get("machine") if isinstance(self.run.get("machine"), dict) else {}
        for v in (bench.get("load_average_at_start"), self.run.get("load_average_at_start"),
                  bench.get("load_average"), self.run.get("load_average"), machine.get("load_average")):
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v and v >= 0:
                return float(v)
        return None

    @property
    def busy(self) -> bool:
        """More runnable work than cores when the run started: figures slower and noisier."""
        load, cores = self.load_average, self.cores
        return load is not None and cores is not None and load > cores


@dataclass
class Results:
    """Every record of the given directories, split by kind, plus their run metadata."""

    checks: pd.DataFrame
    bench: pd.DataFrame
    runs: list[RunInfo]
    warnings: list[str] = field(default_factory=list)
    conf: pd.DataFrame | None = None    # conformance per backend, op, dtype (reports.build.prepare)

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
    # A resumed run appends to the same file: within one directory the last record of a check wins.
    ckeys = ["machine", "backend", "op", "case", "dtype", "shape_text"]
    bkeys = ["machine", "backend", "op", "dtype", "workload", "shape_text"]
    checks = checks.drop_duplicates(ckeys + ["source"], keep="last")
    bench = bench.drop_duplicates(bkeys + ["source"], keep="last")
    # Two directories of one machine with the same check: the judge is deterministic, so the later
    # directory's record is kept, and the report says so.
    dup = checks.duplicated(ckeys, keep="last")
    if dup.any():
        kept = checks.loc[~dup & checks.duplicated(ckeys, keep=False), "source"]
        _warn(f"{int(dup.sum())} check records appear in more than one results directory of the same "
              f"machine ({', '.join(sorted(set(checks.loc[dup, 'source'])))}); the later directory's "
              f"({', '.join(sorted(set(kept)))}) are kept")
        checks = checks[~dup]
    bench = _series(bench, bkeys, _warn)
    return Results(checks=checks.reset_index(drop=True), bench=bench.reset_index(drop=True),
                   runs=runs, warnings=warnings)


def _series(bench: pd.DataFrame, keys: list[str], warn: Callable[[str], None]) -> pd.DataFrame:
    """Name what was measured: the backend, plus the setting that tells two runs of it apart.

    Two bench directories of one machine that measured the same workload on the same backend (a
    run with ``--threads 1`` next to one with the frameworks' default, or a rerun) are both kept:
    each record's ``series`` is ``backend [threads=N]`` when the thread settings differ, else
    ``backend [directory]``.
    """
    if bench.empty:
        bench["series"] = pd.Series(dtype=object)
        return bench
    bench = bench.copy()
    bench["series"] = bench["backend"]
    clash = bench.duplicated(keys, keep=False)
    if not clash.any():
        return bench
    pairs = set(zip(bench.loc[clash, "machine"], bench.loc[clash, "backend"]))
    every = bench[[(m, b) in pairs for m, b in zip(bench["machine"], bench["backend"])]]
    for (machine, backend), g in every.groupby(["machine", "backend"], sort=False):
        threads = {str(t) for t in g["threads"]}
        by_threads = len(threads) > 1 and g.groupby("source")["threads"].nunique().max() == 1
        for i, r in g.iterrows():
            tag = f"threads={r['threads']}" if by_threads else Path(str(r["source"])).name
            bench.at[i, "series"] = f"{backend} [{tag}]"
        warn(f"{machine}: {backend} was measured in {g['source'].nunique()} results directories "
             f"({', '.join(sorted(set(g['source'])))}); both are kept, as "
             f"{', '.join(sorted(set(bench.loc[g.index, 'series'])))}")
    return bench


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
