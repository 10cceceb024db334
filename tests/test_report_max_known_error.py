"""The "max known error" table: worst search-found error per backend, op and dtype."""

from __future__ import annotations

import math

import pandas as pd
from test_report_records import write_dir

from softmaxbench.reports import tables
from softmaxbench.reports.build import write_report
from softmaxbench.suite.records import new_record


def hunt_record(backend, op, dtype, case, verdict, ratio, ulp, found_by="hunt"):
    return new_record("check", backend=backend, device="cpu", op=op, dtype=dtype, shape=[1, 8], axis=-1,
                      case=case, category="found", verdict=verdict, max_error_ratio=ratio, max_ulp=ulp,
                      message="", repro=f"# repro of {case}", found_by=found_by)


def test_worst_ratio_and_ulp_per_backend_op_dtype(tmp_path):
    recs = [hunt_record("numpy", "softmax", "float32", "found-a", "pass", 0.5, 3.0),
            hunt_record("numpy", "softmax", "float32", "found-b", "pass", 2.5, 1.0),
            hunt_record("numpy", "softmax", "float16", "found-c", "fail", None, None),  # NaN output
            hunt_record("numpy", "softmax", "float32", "dist_x", "pass", 9.0, 99.0, found_by="catalogue")]
    d = write_dir(tmp_path / "hunt", recs)
    summary = write_report([d], tmp_path / "report")
    df = pd.read_csv(tmp_path / "report" / "max_known_error.csv")
    f32 = df[df["dtype"] == "float32"].iloc[0]
    assert f32["worst error ratio"] == 2.5 and f32["case (ratio)"] == "found-b"
    assert f32["worst ULP"] == 3.0 and f32["case (ULP)"] == "found-a"
    assert f32["repro"] == "# repro of found-b"
    f16 = df[df["dtype"] == "float16"].iloc[0]
    assert math.isinf(f16["worst error ratio"]) and f16["verdict"] == "fail"
    assert "Max known error" in (tmp_path / "report" / "report.md").read_text()
    assert "max_known_error" in summary["tables"]


def test_no_table_without_search_findings():
    checks = pd.DataFrame([hunt_record("numpy", "softmax", "float32", "dist_x", "pass", 0.1, 0.2,
                                       found_by="catalogue")])
    checks["machine"] = "m"
    assert tables.max_known_error(checks).df.empty
