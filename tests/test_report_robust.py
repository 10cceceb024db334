"""The report on records nobody planned for, and the questions it must answer.

- huge, infinite and NaN figures (a one-rounding error next to an exact 0 scores 1e35..1e78 ULP;
  garbage scores inf; a figure may be NaN): no traceback, through the real console entry point;
- failures grouped by cause (backend, verdict, check, message pattern), known findings apart;
- the special row's values when the judge records them, the deciding element otherwise;
- every deviation that occurred explained, whatever its category;
- the machine's load stated, a busy machine said to be busy, "not recorded" where it was not;
- two bench folders of one machine both kept; repeated checks said to be replaced;
- Markdown and CSV escape what they take from records (images, links, HTML, formulas);
- plots that draw points and whose tick labels do not overlap (checked from matplotlib's boxes);
- "fastest conforming" is never a backend that fails.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
from markdown_it import MarkdownIt
from test_report_records import make_bench_records, make_check_records, write_dir

from softmaxbench.reports import plots
from softmaxbench.reports.build import write_report
from softmaxbench.reports.tables import cause_pattern
from softmaxbench.suite.records import new_record, read_run, write_run


def check(backend="kern", op="softmax", dtype="float32", case="c", verdict="pass", **kw) -> dict:
    return new_record("check", backend=backend, device="cpu", op=op, dtype=dtype, case=case,
                      category=kw.pop("category", "distribution"), shape=kw.pop("shape", [4, 8]), axis=-1,
                      verdict=verdict, **kw)


def csv(out, key) -> pd.DataFrame:
    return pd.read_csv(out / f"{key}.csv", keep_default_na=False, na_values=[""])


def strict_json(text: str):
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=no_constants)


HUGE = [1e35, 6.65e35, 1e78, float("inf"), float("nan")]


def huge_records() -> list[dict]:
    recs = [check(case="fine", max_ulp=0.5, median_ulp=0.1, max_error_ratio=0.2)]
    for i, v in enumerate(HUGE):
        for op in ("softmax", "softmax_vjp"):
            recs.append(check(op=op, case=f"huge{i}", verdict="fail", max_ulp=v, median_ulp=v,
                              max_error_ratio=v, message=f"{op}: error ratio {v} > 4 (float32)"))
            recs.append(check(op=op, case=f"passing{i}", verdict="pass", max_ulp=v, max_error_ratio=0.3))
    return recs


def odd_bench() -> list[dict]:
    recs = make_bench_records(("kern",))
    recs[0].update(gbps=1e300, samples_s=[0.0, -1.0, float("nan")])        # nothing usable in samples
    recs[1].update(copy_gbps=0.0, fraction_of_copy=None)                  # a copy of zero GB/s
    recs[2].update(gbps=float("inf"), samples_s=[])
    recs[3].update(gbps=None, samples_s=[1e-3] * 3)
    return recs


def test_huge_infinite_and_nan_figures_never_crash(tmp_path):
    write_dir(tmp_path / "check", huge_records())
    write_dir(tmp_path / "bench", odd_bench(), kind="bench")
    text = (tmp_path / "check" / "results.jsonl").read_text()
    assert "Infinity" in text and "NaN" in text and "1e+78" in text          # as the runner writes them
    proc = subprocess.run([sys.executable, "-m", "softmaxbench.suite.cli.main", "report",
                           str(tmp_path / "check"), str(tmp_path / "bench"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    out = tmp_path / "out"
    summary = strict_json((out / "summary.json").read_text())
    assert summary["checks"]["total"] == len(huge_records())
    # The figures survive to the CSV (1e78 and inf are data, not errors) ...
    acc = csv(out, "accuracy")
    assert acc["max ULP"].max() == math.inf
    # ... and every plot drew its points with legible axes.
    assert summary["plots"] and all(p["points"] > 0 and p["tick_overlaps"] == [] for p in summary["plots"])
    errors = next(p for p in summary["plots"] if p["key"].startswith("errors-"))
    assert errors["points"] == len(huge_records())


def test_huge_ulp_at_a_pass_is_explained(tmp_path):
    recs = [check(op="log_softmax", case=f"c{i}", max_ulp=1.66e7 if i == 0 else 0.7, max_error_ratio=0.6)
            for i in range(3)]
    write_report([write_dir(tmp_path / "c", recs)], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text().split("## Accuracy (forward ops)")[1]
    row = next(ln for ln in text.splitlines() if ln.startswith("| kern"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # The figure that decided the verdict comes first; the huge ULP is marked and explained.
    header = next(ln for ln in text.splitlines() if "max error ratio" in ln and "max ULP" in ln)
    assert header.index("max error ratio") < header.index("max ULP")
    assert "1.66e+07 †" in cells and "† max ULP counts the error in units of the exact value" in text


def failing_records() -> list[dict]:
    recs = []
    for op in ("softmax", "log_softmax", "logsumexp"):
        for dtype in ("float16", "float32"):
            recs.append(check(op=op, dtype=dtype, case="special_neginf_all", verdict="fail", check="values",
                              message=f"{op}: error ratio inf > 4 ({dtype}), worst at index ({len(op)},): "
                                      f"expected -inf, got nan (inf ULP)",
                              repro=f"# repro of {op} {dtype}", category="special"))
    recs.append(check(op="softmax", dtype="float64", case="dist_normal_scale_1", verdict="fail",
                      check="output_dtype", message="softmax returned dtype float32 for float64 input"))
    recs.append(check(op="softmax", dtype="float64", case="dist_normal_scale_10", verdict="fail",
                      check="output_dtype", message="softmax returned dtype float32 for float64 input",
                      known="issue #12: float64 is computed in float32 (baseline)"))
    return recs


def test_failures_are_grouped_by_cause(tmp_path):
    summary = write_report([write_dir(tmp_path / "c", failing_records())], tmp_path / "out")
    df = csv(tmp_path / "out", "failures")
    assert len(df) == 3                      # six NaN-row failures, one new and one known dtype failure
    nan_rows = df[df["check"] == "values"].iloc[0]
    assert nan_rows["checks"] == 6 and nan_rows["status"] == "new"
    assert nan_rows["ops"] == "softmax, log_softmax, logsumexp" and nan_rows["dtypes"] == "float16, float32"
    assert nan_rows["cases"] == "special_neginf_all"
    assert nan_rows["cause"] == ("<op>: error ratio inf > # (<dtype>), worst at index (…): "
                                 "expected -inf, got nan (inf ULP)")
    assert nan_rows["repro"].startswith("# repro of ") and nan_rows["worst error ratio"] == math.inf
    dtype = df[df["check"] == "output_dtype"].set_index("status")
    assert dtype.loc["new", "checks"] == 1 and dtype.loc["known", "checks"] == 1
    assert "issue #12" in dtype.loc["known", "known reason"]
    # New causes first; known counted apart everywhere.
    assert list(df["status"]) == ["new", "new", "known"]
    assert summary["checks"]["known_failing"] == 1 and summary["checks"]["new_failing"] == 7
    assert len(csv(tmp_path / "out", "failed_checks")) == 8


def test_conventions_known_failures_are_marked(tmp_path):
    recs = [check(backend="numpy", case="shape_empty_rows", verdict="error", check="no_exception",
                  message="softmax raised ValueError: zero-size array (at /x/y.py:3)", shape=[3, 0]),
            check(backend="numpy", case="dist_normal_scale_1", verdict="fail", message="a new one"),
            check(backend="my-numpy", case="shape_empty_rows", verdict="error", message="not a built-in")]
    summary = write_report([write_dir(tmp_path / "c", recs)], tmp_path / "out")
    df = csv(tmp_path / "out", "failures").set_index(["backend", "status"])
    assert df.loc[("numpy", "known"), "known reason"].startswith("conventions.toml: ")
    assert ("numpy", "new") in df.index and ("my-numpy", "new") in df.index
    assert summary["checks"]["known_failing"] == 1


def test_cause_pattern_strips_what_varies():
    a = cause_pattern("softmax raised ValueError: axis -1 is out of bounds (at /a/b/c.py:12 in f)",
                      op="softmax")
    b = cause_pattern("logsumexp raised ValueError: axis -2 is out of bounds (at /d/e.py:99 in g)",
                      op="logsumexp")
    assert a == b == "<op> raised ValueError: axis # is out of bounds (at …)"
    assert cause_pattern("expected 0, got nan") != cause_pattern("expected 0, got -inf")


def test_special_row_and_deciding_element(tmp_path):
    recs = [check(case="special_posinf_one", category="special", verdict="deviation",
                  deviation="nan_row_for_posinf", value_sample="[0.1, 0.2, 0.3, 0.4]",
                  special_row={"index": 1, "input": [1.0, math.inf, 2.0], "output": [math.nan] * 3}),
            check(case="special_neginf_all", category="special", verdict="fail", value_sample="[1, 2, 3]",
                  message="softmax: error ratio inf > 4 (float32), worst at index (2, 0): "
                          "expected nan, got 0"),
            check(case="special_nan_one", category="special", value_sample="[0.25, nan, 0.75]")]
    write_report([write_dir(tmp_path / "c", recs)], tmp_path / "out")
    sv = csv(tmp_path / "out", "special_values").set_index("case")["kern"]
    assert sv["special_posinf_one"] == "≈ row 1: [1, inf, 2] → [nan, nan, nan] (nan_row_for_posinf)"
    assert sv["special_neginf_all"] == "✗ at (2, 0): got 0, exact nan"
    assert sv["special_nan_one"] == "✓ [0.25, nan, 0.75]"
    note = (tmp_path / "out" / "report.md").read_text()
    assert "special\\_nan\\_one" in note or "special_nan_one" in note
    assert "empty axes" not in note     # the caption names the cases checked, nothing it does not show


def test_every_deviation_is_explained(tmp_path):
    recs = [check(case="extreme_outputs_subnormal", category="extreme", verdict="deviation",
                  deviation="flushed_subnormals", message="subnormal outputs flushed"),
            check(op="cross_entropy", case="ce_prob_zero_mass_neginf", category="cross_entropy",
                  verdict="deviation", deviation="nan_for_zero_mass_neginf"),
            check(case="x", category="special", verdict="deviation", deviation="my_own_convention")]
    write_report([write_dir(tmp_path / "c", recs)], tmp_path / "out")
    dev = csv(tmp_path / "out", "deviations").set_index("deviation")
    assert set(dev.index) == {"flushed_subnormals", "nan_for_zero_mass_neginf", "my_own_convention"}
    assert "subnormal" in dev.loc["flushed_subnormals", "meaning"]
    assert "0 * -inf" in dev.loc["nan_for_zero_mass_neginf", "meaning"]
    assert dev.loc["my_own_convention", "meaning"] == "(no description recorded)"


def test_load_and_threads_are_stated(tmp_path):
    cdir = write_dir(tmp_path / "check", make_check_records(("numpy",)), label="box")
    bdir = write_dir(tmp_path / "bench", make_bench_records(("numpy",)), label="box", kind="bench")
    run = read_run(bdir)
    run["machine"]["cpu_count"] = 2
    run["bench"] = {"load_average_at_start": 7.7}
    write_run(bdir, run)
    summary = write_report([cdir, bdir], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Check: load average not recorded" in text
    assert "Bench: load average 7.70 at the start on 2 cores" in text and "BUSY" in text
    assert "threads: 2" in text
    html = (tmp_path / "out" / "report.html").read_text()
    assert "7.7 busy" in html
    bench = next(s for s in summary["setting"] if s["kind"] == "bench")
    assert bench["busy"] is True and bench["threads"] == {"numpy": [2]}


def test_two_bench_folders_of_one_machine_are_both_kept(tmp_path):
    one = make_bench_records(("numpy",))
    for r in one:
        r["threads"] = 1
    a = write_dir(tmp_path / "threads1", one, label="box", kind="bench")
    b = write_dir(tmp_path / "default", make_bench_records(("numpy",), seed=5), label="box", kind="bench")
    c1 = write_dir(tmp_path / "check1", make_check_records(("numpy",)), label="box")
    c2 = write_dir(tmp_path / "check2", make_check_records(("numpy",), seed=9), label="box")
    summary = write_report([a, b, c1, c2], tmp_path / "out")
    thr = csv(tmp_path / "out", "throughput")
    assert sorted(set(thr["series"])) == ["numpy [threads=1]", "numpy [threads=2]"]
    assert len(thr) == 2 * len(one)
    assert any("both are kept" in w for w in summary["warnings"])
    assert any("later directory" in w and "check2" in w for w in summary["warnings"])
    assert summary["checks"]["total"] == len(make_check_records(("numpy",)))


def test_fastest_conforming_is_never_a_failing_backend(tmp_path):
    checks = [check(backend=b, op="softmax", case="c", verdict=v, max_ulp=0.5, max_error_ratio=0.2)
              for b, v in (("fast", "fail"), ("slow", "pass"), ("slower", "pass"))]
    bench = []
    for b, gbps in (("fast", 30.0), ("slow", 10.0), ("slower", 5.0)):
        bench += [r | {"backend": b, "gbps": gbps, "samples_s": [1.0] * 20, "fraction_of_copy": gbps / 40}
                  for r in make_bench_records(("x",)) if r["op"] == "softmax"]
    dirs = [write_dir(tmp_path / "c", checks), write_dir(tmp_path / "b", bench, kind="bench")]
    summary = write_report(dirs, tmp_path / "out")
    assert {w["backend"] for w in summary["fastest_conforming"]} == {"slow"}
    rank = csv(tmp_path / "out", "ranking")
    first = rank[rank["rank"] == 1]
    assert set(first["series"]) == {"fast"} and not first["fastest conforming"].any()
    ov = csv(tmp_path / "out", "overview")
    assert set(ov.loc[ov["series"] == "fast", "conforms"]) == {False}


EVIL_MD = "![x](http://e.vil/p.png) [click](https://e.vil/) <b>b</b> www.e.vil `code` *em* | cell"
FORMULA = '=HYPERLINK("http://e.vil","x")'


def test_markdown_and_csv_escape_record_strings(tmp_path):
    recs = [check(backend=FORMULA, verdict="fail", message=EVIL_MD, case="+cmd|' /C calc'!A0"),
            check(backend="@SUM(1+1)", verdict="error", message="-2+3")]
    write_report([write_dir(tmp_path / "c", recs)], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    renderers = [MarkdownIt("commonmark").enable("table")]
    try:                                 # GFM's autolinks too, where linkify-it-py is installed
        import linkify_it  # noqa: F401

        renderers.append(MarkdownIt("gfm-like"))
    except ImportError:
        pass
    for renderer in renderers:
        html = renderer.render(md)
        assert "<img" not in html and "<a " not in html and "<b>" not in html and "<code>" not in html
        assert "<em>em</em>" not in html
    # Each record string stays in its cell: the pipe is escaped, the row has the header's cell count.
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "`code` *em* | cell</td>" in html
    for name in ("failures", "failed_checks", "conformance"):
        text = (tmp_path / "out" / f"{name}.csv").read_text()
        for line in text.splitlines()[1:]:
            for cell in line.split(","):
                assert not cell.lstrip('"').startswith(("=", "+", "-", "@")), (name, cell)
    df = csv(tmp_path / "out", "failed_checks")
    assert set(df["backend"]) == {"'" + FORMULA, "'@SUM(1+1)"}
    assert "'-2+3" in set(df["message"])


def test_compare_markdown_escapes_names(tmp_path):
    from softmaxbench.reports.compare import write_outputs

    row = {"backend": "a|b\nc ![i](http://e.vil/x.png)", "op": "softmax", "dtype": "float32",
           "workload": "w", "shape": "1x2", "base_gbps": 1.0, "new_gbps": 2.0, "change": 1.0, "p": 0.1,
           "verdict": "improvement"}
    md, _ = write_outputs(tmp_path, [row], base="b|ase", new="n`ew", summary="ok")
    html = MarkdownIt("commonmark").enable("table").render(md.read_text())
    assert "<img" not in html and html.count("<tr>") == 2 and html.count("<td>") == 10


def test_tick_overlap_check_can_fail():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_xticks(range(16), [f"10^{k}" for k in range(16)])     # the old error plot's strip of labels
    assert plots.tick_overlaps(fig)
    plt.close(fig)


def test_plots_draw_points_and_legible_ticks(tmp_path):
    from softmaxbench.reports.build import prepare
    from softmaxbench.reports.load import load_results

    tmp = tmp_path
    cdir = write_dir(tmp / "c", make_check_records(("numpy", "scipy", "torch-cpu", "jax-cpu")))
    bdir = write_dir(tmp / "b", make_bench_records(("numpy", "scipy", "torch-cpu", "jax-cpu")), kind="bench")
    res = prepare(load_results([cdir, bdir]))
    thr = plots.throughput_plots(res.bench)
    err = plots.error_plots(res.checks)
    assert len(thr) == 1 and thr[0].points == len(res.bench) and thr[0].overlaps == []
    assert len(err) == 1 and err[0].overlaps == []
    assert err[0].points == int(res.checks["verdict"].isin(["pass", "fail"]).sum())


def random_record(rng) -> dict:
    """Any record the schema accepts: every optional field absent, null or an odd value of its type."""
    import random as _random  # noqa: F401 - rng is a random.Random

    def number():
        return rng.choice([None, 0.0, -0.0, 1e-320, 0.5, 3.0, 1e35, 1e78, 1.7e308, -1e78, float("inf"),
                           float("-inf"), float("nan"), 7, -3])

    def text():
        return rng.choice([None, "", "x", "| a | b |", "line\nbreak", "=cmd()", "<b>", "![i](http://e/x.png)",
                           "é∞☠", "a" * 500, "expected nan, got 0", "error ratio inf > 4 (float16)"])

    kind = rng.choice(["check", "bench"])
    shape = rng.choice([[], [0], [3, 0], [0, 5], [4, 8], [1], [2, 3, 4], [128, 32000]])
    rec = new_record(kind, backend=rng.choice(["numpy", "k|x", "<i>b</i>", "=HYPERLINK(1)", ""]),
                     device=rng.choice(["cpu", "cuda:0", ""]), op=rng.choice(["softmax", "copy", "weird_op",
                                                                             "cross_entropy_grad", ""]),
                     dtype=rng.choice(["float32", "float16", "bfloat16", "float64", "int8", ""]), shape=shape)
    optional = {"axis": lambda: rng.choice([None, -1, 0, 1, 5, -7]), "case": text, "category": text,
                "check": text, "deviation": text, "message": text, "repro": text, "found_by": text,
                "value_sample": text, "workload": text, "warning": text, "timer": text,
                "verdict": lambda: rng.choice(["pass", "deviation", "fail", "error", "unsupported", "timeout",
                                               "crash", None]),
                "max_ulp": number, "median_ulp": number, "max_error_ratio": number, "duration_s": number,
                "median_s": number, "iqr_s": number, "gbps": number, "copy_gbps": number,
                "fraction_of_copy": number, "compile_s": number, "first_call_s": number, "cv": number,
                "bytes": lambda: rng.choice([None, 0, 1, 2**40]), "rounds": lambda: rng.choice([None, 0, 3]),
                "threads": lambda: rng.choice([None, 0, 1, 64]),
                "samples_s": lambda: rng.choice([[], [0.0], [1e-3] * 7, [float("inf"), 1e-3], [-1.0, 2.0]]),
                "machine": lambda: rng.choice(["a", "b", "<m>"]),
                "known": lambda: rng.choice([None, "", "baseline: known", "é∞☠ | =cmd()"]),
                "special_row": lambda: rng.choice([None, {}, {"index": 1, "input": [1, "inf"],
                                                              "output": None},
                                                   {"output": [float("nan")] * 20}])}
    for name, make in optional.items():
        if rng.random() < 0.7:
            rec[name] = make()
    return rec


@pytest.mark.parametrize("seed", [1, 2])
def test_any_valid_record_makes_a_report(tmp_path, seed):
    import random

    import jsonschema

    from softmaxbench.suite.records import schema

    rng = random.Random(seed)
    recs = [random_record(rng) for _ in range(300)]
    validator = jsonschema.Draft202012Validator(schema("results"))
    recs = [r for r in recs if validator.is_valid(r)]
    assert len(recs) > 250
    half = len(recs) // 2
    dirs = [write_dir(tmp_path / "a", recs[:half], label="box"),
            write_dir(tmp_path / "b", recs[half:], label="box", kind="bench")]
    summary = write_report(dirs, tmp_path / "out")
    strict_json((tmp_path / "out" / "summary.json").read_text())
    assert summary["checks"]["total"] + summary["benchmarks"] > 0
    assert all(p["tick_overlaps"] == [] for p in summary["plots"])
