"""Constructed result records for the report tests (and a check that they are valid records).

The report tests build results directories from these records and compare the report's tables
with what they compute from the same records in plain Python, so a table that drops, double
counts or mislabels a record fails.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from softmaxbench.suite.records import new_record, new_run, schema, write_run

CASES = (("uniform_small", "distribution", [8, 64]), ("large_spread", "extreme", [4, 1000]),
         ("one_posinf", "special", [2, 5]), ("all_neginf", "special", [2, 5]),
         ("nan_in_row", "special", [2, 5]))
OPS = ("softmax", "log_softmax", "softmax_vjp", "cross_entropy_grad")
DTYPES = ("float16", "float32", "float64")
BENCH_ROWS = (256, 4096, 65536)


def make_check_records(backends=("numpy", "scipy"), *, machine: str | None = None,
                       seed: int = 0) -> list[dict]:
    """Check records with known, varied outcomes.

    - every backend x op x case x dtype gets a record (pass by default, ULPs drawn from a seeded RNG);
    - the first backend shows a deviation (NaN row) on ``one_posinf`` and an error on float64
      cross_entropy_grad ``large_spread``;
    - the second backend fails float16 softmax ``large_spread`` (big ULP and ratio) and float16
      log_softmax ``nan_in_row`` (no numbers), and does not support float64 softmax_vjp.
    """
    rng = random.Random(seed)
    recs = []
    for bi, backend in enumerate(backends):
        for op in OPS:
            for case, category, shape in CASES:
                for dtype in DTYPES:
                    ulp = round(rng.uniform(0, 3), 3)
                    rec = {"backend": backend, "device": "cpu", "op": op, "case": case, "category": category,
                           "dtype": dtype, "shape": shape, "axis": -1, "verdict": "pass", "max_ulp": ulp,
                           "median_ulp": round(ulp / 4, 4), "max_error_ratio": round(ulp / 2, 4),
                           "message": "", "repro": None, "check": "check_accuracy",
                           "value_sample": None, "duration_s": 0.001}
                    if category == "special":
                        rec.update(max_ulp=0.0, median_ulp=0.0, max_error_ratio=0.0,
                                   value_sample="[1, 0, 0, 0, 0]" if case == "one_posinf" else
                                   "[nan, nan, nan, nan, nan]")
                    if bi == 0 and case == "one_posinf" and op == "softmax":
                        rec.update(verdict="deviation", deviation="nan_row_for_posinf", max_ulp=None,
                                   median_ulp=None, max_error_ratio=None,
                                   value_sample="[nan, nan, nan, nan, nan]",
                                   message="NaN row where the limit is one-hot")
                    if (bi == 0 and op == "cross_entropy_grad" and case == "large_spread"
                            and dtype == "float64"):
                        rec.update(verdict="error", max_ulp=None, median_ulp=None, max_error_ratio=None,
                                   message="RuntimeError: boom", repro="import numpy as np\nx = np.zeros(3)")
                    if bi == 1 and op == "softmax" and case == "large_spread" and dtype == "float16":
                        rec.update(verdict="fail", max_ulp=4096.0, median_ulp=12.0, max_error_ratio=512.0,
                                   message="max ULP 4096 at [1, 3]", repro="x = ...")
                    if bi == 1 and op == "log_softmax" and case == "nan_in_row" and dtype == "float16":
                        rec.update(verdict="fail", max_ulp=None, median_ulp=None, max_error_ratio=None,
                                   value_sample="[0, 0, 0, 0, 0]", message="finite values where NaN is due")
                    if bi == 1 and op == "softmax_vjp" and dtype == "float64":
                        rec.update(verdict="unsupported", max_ulp=None, median_ulp=None, max_error_ratio=None,
                                   value_sample=None, message="float64 not supported")
                    if machine:
                        rec["machine"] = machine
                    recs.append(new_record("check", **rec))
    return recs


def make_bench_records(backends=("numpy", "scipy"), *, machine: str | None = None,
                       seed: int = 1) -> list[dict]:
    """Bench records: softmax and softmax_vjp, float32, three row lengths, gbps drawn from an RNG."""
    rng = random.Random(seed)
    recs = []
    for backend in backends:
        for op in ("softmax", "softmax_vjp"):
            for n in BENCH_ROWS:
                rows = max(1, 2**20 // n)
                nbytes = rows * n * 4 * (2 if op == "softmax" else 3)
                samples = [rng.uniform(1e-4, 2e-3) for _ in range(5)]
                median = sorted(samples)[2]
                gbps = nbytes / median / 1e9
                copy = 20.0 + n / 65536
                rec = {"backend": backend, "device": "cpu", "op": op, "dtype": "float32", "shape": [rows, n],
                       "axis": -1, "workload": f"rows{rows}x{n}", "bytes": nbytes, "samples_s": samples,
                       "median_s": median, "gbps": gbps, "copy_gbps": copy, "fraction_of_copy": gbps / copy,
                       "threads": 2, "cv": 0.05, "warning": None}
                if machine:
                    rec["machine"] = machine
                recs.append(new_record("bench", **rec))
    return recs


def write_dir(path: Path, records: list[dict], *, label: str = "test-box", kind: str = "check",
              versions: dict | None = None) -> Path:
    """A results directory: results.jsonl + run.json, as the runner writes them."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "results.jsonl", "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    run = new_run(kind, f"softmaxbench {kind} --out {path.name}", seed=0, threads=2, label=label)
    if versions:
        run["versions"] = versions
    write_run(path, run)
    return path


def test_constructed_records_follow_the_schema():
    import jsonschema

    recs = make_check_records() + make_bench_records()
    validator = jsonschema.Draft202012Validator(schema("results"))
    for r in recs:
        validator.validate(r)
    verdicts = {r["verdict"] for r in recs if r["kind"] == "check"}
    assert verdicts == {"pass", "deviation", "fail", "error", "unsupported"}
