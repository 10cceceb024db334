"""The report's tables checked against the constructed records they come from, computed here
independently in plain Python; the Markdown rendered by markdown-it-py (GFM tables); several
machines merged; a compare output included; untrusted strings escaped."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict

import pandas as pd
import pytest
from markdown_it import MarkdownIt
from test_report_records import CASES, make_bench_records, make_check_records, write_dir

from softmaxbench.reports import markdown
from softmaxbench.reports.build import build_tables, write_report
from softmaxbench.reports.load import load_results
from softmaxbench.reports.tables import fmt_num, is_gradient

FAILING = {"fail", "error", "timeout", "crash"}
#: Tables laid out on the pages (each also a CSV); failed_checks.csv is written but not laid out.
TABLE_KEYS = ["overview", "ranking", "conformance", "failures", "accuracy", "gradient_accuracy",
              "special_values", "deviations", "throughput", "environment"]
CSV_ONLY = ["failed_checks"]


def md_to_html(text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(text)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    checks, bench = make_check_records(), make_bench_records()
    cdir = write_dir(tmp / "check", checks, label="box")
    bdir = write_dir(tmp / "bench", bench, label="box", kind="bench")
    summary = write_report([cdir, bdir], tmp / "out")
    return tmp / "out", checks, bench, summary


def csv(out, key) -> pd.DataFrame:
    return pd.read_csv(out / f"{key}.csv", keep_default_na=False, na_values=[""])


def test_every_output_is_written(report):
    out, *_ = report
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "summary.json"} | {f"{k}.csv" for k in TABLE_KEYS + CSV_ONLY} <= names


def test_conformance_counts_every_record(report):
    out, checks, _, _ = report
    expected = Counter((r["backend"], r["dtype"], r["verdict"]) for r in checks)
    df = csv(out, "conformance")
    assert len(df) == len({(b, d) for b, d, _ in expected})
    for _, row in df.iterrows():
        for verdict in ("pass", "deviation", "fail", "error", "unsupported", "timeout", "crash"):
            assert row[verdict] == expected[(row["backend"], row["dtype"], verdict)], (row.to_dict(), verdict)
        assert row["checks"] == sum(n for (b, d, _), n in expected.items()
                                    if (b, d) == (row["backend"], row["dtype"]))
        failing = any(expected[(row["backend"], row["dtype"], v)] for v in FAILING)
        assert row["conforms"] == ("no" if failing else "yes")
    # Sorted: backend, then dtype in the canonical order.
    assert list(df["backend"]) == sorted(df["backend"])
    assert list(df.loc[df["backend"] == "numpy", "dtype"]) == ["float16", "float32", "float64"]


def _expected_accuracy(checks, gradient):
    groups = defaultdict(list)
    for r in checks:
        measured = r["max_ulp"] is not None or r["max_error_ratio"] is not None
        counted = (r["verdict"] == "pass" and measured) or r["verdict"] == "fail"
        if is_gradient(r["op"]) == gradient and counted:
            groups[(r["backend"], r["op"], r["dtype"])].append(r)
    return groups


@pytest.mark.parametrize("key,gradient", [("accuracy", False), ("gradient_accuracy", True)])
def test_accuracy_tables(report, key, gradient):
    out, checks, _, _ = report
    groups = _expected_accuracy(checks, gradient)
    df = csv(out, key)
    assert len(df) == len(groups)
    assert set(df["op"].map(is_gradient)) == {gradient}
    for _, row in df.iterrows():
        recs = groups[(row["backend"], row["op"], row["dtype"])]
        assert row["checks"] == len(recs)
        measured = [r for r in recs if r["max_ulp"] is not None]      # a fail may have no numbers
        assert row["max ULP"] == pytest.approx(max(r["max_ulp"] for r in measured))
        assert row["median ULP"] == pytest.approx(statistics.median(r["median_ulp"] for r in measured))
        # The ratio that decided the verdict: a fail without numbers counts as infinitely wrong.
        ratios = [r["max_error_ratio"] if r["max_error_ratio"] is not None else float("inf")
                  for r in recs if r["max_error_ratio"] is not None or r["verdict"] == "fail"]
        assert row["max error ratio"] == pytest.approx(max(ratios))
        assert row["fails"] == sum(r["verdict"] == "fail" for r in recs)
        # Worst: a fail first (one without numbers counts as infinitely wrong), then the ratio.
        worst = max(recs, key=lambda r: (r["verdict"] == "fail", r["max_error_ratio"] is None,
                                         r["max_error_ratio"] or 0))
        assert row["worst case"] == worst["case"]


def test_accuracy_names_the_failing_case(report):
    out, *_ = report
    df = csv(out, "accuracy")
    row = df[(df["backend"] == "scipy") & (df["op"] == "softmax") & (df["dtype"] == "float16")].iloc[0]
    assert (row["max ULP"], row["fails"], row["worst case"]) == (4096, 1, "large_spread")
    # The error case is not an accuracy measurement: numpy's float64 cross_entropy_grad lost one.
    g = csv(out, "gradient_accuracy")
    n = g[(g["backend"] == "numpy") & (g["op"] == "cross_entropy_grad") & (g["dtype"] == "float64")]
    assert n["checks"].item() == len(CASES) - 1


def test_special_values_matrix(report):
    out, checks, _, _ = report
    special = {(r["case"], r["op"]) for r in checks if r["category"] == "special"}
    df = csv(out, "special_values").fillna("")
    assert len(df) == len(special)
    assert list(df.columns) == ["case", "op", "numpy", "scipy"]
    cell = df[(df["case"] == "one_posinf") & (df["op"] == "softmax")]
    assert cell["numpy"].item() == "≈ [nan, nan, nan, nan, nan] (nan_row_for_posinf)"
    assert cell["scipy"].item() == "✓ [1, 0, 0, 0, 0]"
    # scipy fails float16 only: the cell shows that value and says which dtypes got which verdict.
    row = df[(df["case"] == "nan_in_row") & (df["op"] == "log_softmax")]
    assert row["scipy"].item() == "✗ [0, 0, 0, 0, 0] [float16] · ✓ float32,float64"
    assert row["numpy"].item() == "✓ [nan, nan, nan, nan, nan]"
    # An unsupported dtype (scipy, float64 softmax_vjp) is not repeated in every cell.
    assert df[(df["case"] == "nan_in_row") & (df["op"] == "softmax_vjp")]["scipy"].item() == \
        "✓ [nan, nan, nan, nan, nan]"
    dev = csv(out, "deviations")
    assert dev[["deviation", "backends", "cases"]].values.tolist() == [["nan_row_for_posinf", "numpy",
                                                                        "one_posinf"]]
    assert "NaN" in dev["meaning"].item()


def test_failures_table(report):
    out, checks, _, _ = report
    every = csv(out, "failed_checks")
    bad = [r for r in checks if r["verdict"] in FAILING]
    assert len(every) == len(bad) == 3
    assert list(every["verdict"]) == ["error", "fail", "fail"]          # worst verdict first
    assert every["repro"].iloc[0] == "import numpy as np\nx = np.zeros(3)"
    # Grouped by cause: the three records have three different messages, so three causes.
    df = csv(out, "failures")
    assert sorted(df["checks"]) == [1, 1, 1] and set(df["status"]) == {"new"}
    assert df.loc[df["verdict"] == "error", "repro"].item() == "import numpy as np\nx = np.zeros(3)"


def test_throughput(report):
    out, _, bench, _ = report
    df = csv(out, "throughput")
    assert len(df) == len(bench)
    by_key = {(r["backend"], r["op"], r["workload"]): r for r in bench}
    for _, row in df.iterrows():
        rec = by_key[(row["backend"], row["op"], row["workload"])]
        assert row["GB/s"] == pytest.approx(rec["gbps"])
        assert row["% of copy"] == pytest.approx(100 * rec["fraction_of_copy"])
        assert row["median µs"] == pytest.approx(rec["median_s"] * 1e6)
        assert row["row length"] == rec["shape"][-1]
        # Five samples: no two order statistics reach 95%, so the interval of the median is the
        # range of the samples, as GB/s (the slowest sample is the low end).
        med = statistics.median(rec["samples_s"])
        assert row["GB/s low"] == pytest.approx(rec["gbps"] * med / max(rec["samples_s"]))
        assert row["GB/s high"] == pytest.approx(rec["gbps"] * med / min(rec["samples_s"]))
        assert row["samples"] == len(rec["samples_s"])
    # The view: one row per workload, a column per backend: GB/s [interval], % of copy [interval].
    res = load_results([out.parent / "bench"])
    view = next(t for t in build_tables(res) if t.key == "throughput").view
    assert len(view) == len({(r["op"], r["workload"]) for r in bench})
    rec = by_key[("scipy", "softmax", "rows256x4096")]
    row = view[(view["op"] == "softmax") & (view["workload"] == "rows256x4096")].iloc[0]
    med = statistics.median(rec["samples_s"])
    lo, hi = rec["gbps"] * med / max(rec["samples_s"]), rec["gbps"] * med / min(rec["samples_s"])
    assert row["scipy"] == (f"{fmt_num(rec['gbps'])} GB/s [{fmt_num(lo)}–{fmt_num(hi)}], "
                            f"{100 * rec['fraction_of_copy']:.0f}% of copy "
                            f"[{100 * rec['fraction_of_copy'] * lo / rec['gbps']:.0f}–"
                            f"{100 * rec['fraction_of_copy'] * hi / rec['gbps']:.0f}]")


def test_environment(report):
    out, *_ = report
    df = csv(out, "environment").fillna("")
    assert list(df.columns) == ["field", "box check", "box bench"]
    fields = dict(zip(df["field"], df["box bench"]))
    assert fields["command"] == "softmaxbench bench --out bench"
    assert fields["numpy"] == __import__("numpy").__version__
    assert fields["CPU cores"] == str(__import__("os").cpu_count())


def test_summary_json(report):
    out, checks, bench, summary = report
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"]["verdicts"] == {v: sum(r["verdict"] == v for r in checks) for v in
                                             ("pass", "deviation", "fail", "error", "unsupported", "timeout",
                                              "crash")}
    assert on_disk["benchmarks"] == len(bench)
    assert on_disk["conforming"] is False
    numpy_row = next(b for b in on_disk["backends"] if b["backend"] == "numpy")
    assert numpy_row["max_gbps"] == pytest.approx(max(r["gbps"] for r in bench if r["backend"] == "numpy"))
    assert on_disk["tables"]["conformance"]["rows"] == 6


def test_markdown_renders_as_tables(report):
    out, *_ = report
    text = (out / "report.md").read_text()
    assert len(text.encode()) < 1 << 20
    html = md_to_html(text)
    assert html.count("<table>") == len(TABLE_KEYS)
    assert "<th>backend</th>" in html and "<td>nan_row_for_posinf</td>" in html
    assert "machine" not in html.split("<table>")[1].split("</thead>")[0]   # one machine: no column
    assert "**Not conforming: numpy (1 failing), scipy (2 failing)**" in text


def test_markdown_is_capped_under_the_limit(tmp_path, monkeypatch):
    # 400 failures with long messages, each a cause of its own (about 130 kB of table rows), against a
    # 40 kB limit (the real one is 1 MiB: same code, a 25th of the records to build; the failures
    # table costs some 20 ms per cause).
    monkeypatch.setattr(markdown, "MAX_BYTES", 40_000)
    recs = []
    for i in range(400):
        word = "".join(chr(97 + (i // 26**k) % 26) for k in range(3))     # a cause of its own each
        r = make_check_records(("numpy",))[0] | {"case": f"case{i:05d}", "verdict": "fail",
                                                 "message": f"element {word} is wrong: " + "x" * 300}
        recs.append(r)
    summary = write_report([write_dir(tmp_path / "c", recs)], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert len(text.encode()) <= markdown.MAX_BYTES
    assert summary["markdown_row_cap"] is not None
    assert "of 400 rows; all rows are in `failures.csv`" in text
    assert len(pd.read_csv(tmp_path / "out" / "failures.csv")) == 400       # the CSV keeps them all
    assert len(pd.read_csv(tmp_path / "out" / "failed_checks.csv")) == 400
    assert md_to_html(text).count("<table>") >= 3


def test_render_shrinks_until_it_fits(report):
    res = load_results([report[0].parent / "check"])
    tables = build_tables(res)
    text, cap = markdown.render("t", [], tables, max_bytes=6_000)
    assert len(text.encode()) <= 6_000 and cap is not None and cap < 50
    assert "Showing the first" in text


def test_several_machines_merge(tmp_path):
    a = write_dir(tmp_path / "cpu", make_check_records(("numpy",)), label="cpu-runner")
    b = write_dir(tmp_path / "gpu", make_check_records(("torch-cuda",), seed=3), label="gpu-runner")
    c = write_dir(tmp_path / "gpu-bench", make_bench_records(("torch-cuda",), machine="gpu-runner"),
                  label="ignored-label", kind="bench")
    summary = write_report([a, b, c], tmp_path / "out")
    assert summary["machines"] == ["cpu-runner", "gpu-runner"]
    df = csv(tmp_path / "out", "conformance")
    assert sorted(set(zip(df["machine"], df["backend"]))) == [("cpu-runner", "numpy"),
                                                              ("gpu-runner", "torch-cuda")]
    thr = csv(tmp_path / "out", "throughput")
    assert set(thr["machine"]) == {"gpu-runner"}        # the record's own machine field wins
    html = md_to_html((tmp_path / "out" / "report.md").read_text())
    assert "<th>machine</th>" in html
    sv = csv(tmp_path / "out", "special_values")
    assert {"cpu-runner/numpy", "gpu-runner/torch-cuda"} <= set(sv.columns)


def test_compare_output_is_included(tmp_path):
    d = write_dir(tmp_path / "b", make_bench_records(("numpy",)), kind="bench")
    row = {"backend": "numpy", "op": "softmax", "dtype": "float32", "workload": "rows256x4096",
           "shape": "256x4096", "p": 0.001, "gate": True}
    compare = {"base": "main", "new": "pr-42", "max_regression": "10%", "verdict": "regression",
               "summary": "1 regression(s) beyond 10%", "rows": [
                   row | {"op": "log_softmax", "base_gbps": 7.0, "new_gbps": 7.1, "change": 7.1 / 7 - 1,
                          "verdict": "unchanged"},
                   row | {"base_gbps": 8.0, "new_gbps": 6.0, "change": -0.25, "verdict": "regression"}]}
    (tmp_path / "compare.json").write_text(json.dumps(compare))
    from softmaxbench.reports.build import load_compare

    summary = write_report([d], tmp_path / "out", compare=load_compare(tmp_path / "compare.json"))
    assert summary["tables"]["compare"]["rows"] == 2
    df = csv(tmp_path / "out", "compare")
    assert list(df["verdict"]) == ["regression", "unchanged"]           # failing rows first
    assert list(df["change %"]) == pytest.approx([-25.0, 100 / 70])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Comparison with a baseline" in text and "base: main; new: pr-42" in text
    assert "| -25.0 " in text
    html = (tmp_path / "out" / "report.html").read_text()
    assert '<td class="bad">regression</td>' in html


def test_report_includes_what_compare_wrote(tmp_path, capsys):
    """End to end with the real `softmaxbench compare --out` (another part's verb)."""
    import softmaxbench.reports.compare  # noqa: F401 - a missing module is a failure
    from softmaxbench.suite.cli.main import main

    fast = make_bench_records(("numpy",), seed=1)
    for r in fast:      # ten tight samples, so that a 3x slow-down is significant
        r["samples_s"] = [r["median_s"] * (1 + 0.001 * i) for i in range(-5, 5)]
    slow = json.loads(json.dumps(fast))
    for r in slow:      # every call 3x slower: a real regression
        r["samples_s"] = [3 * t for t in r["samples_s"]]
        r["median_s"] *= 3
        r["gbps"] /= 3
    base = write_dir(tmp_path / "base", fast, kind="bench")
    new = write_dir(tmp_path / "new", slow, kind="bench")
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(base), str(new), "--out", str(tmp_path / "cmp")])
    assert exc.value.code == 1
    with pytest.raises(SystemExit) as exc:
        main(["report", str(new), "--out", str(tmp_path / "out"), "--compare", str(tmp_path / "cmp")])
    assert exc.value.code == 0
    written = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    df = csv(tmp_path / "out", "compare")
    assert len(df) == len(written["rows"])
    assert set(df["verdict"]) == {r["verdict"] for r in written["rows"]}
    assert "regression" in set(df["verdict"])
    capsys.readouterr()


EVIL = "<script>alert('x')</script>"


def test_untrusted_strings_are_escaped(tmp_path):
    recs = make_check_records(("numpy", EVIL))
    for r in recs:
        if r["verdict"] == "fail":
            r["message"] = "wrong | <img src=x onerror=alert(1)> & more"
            r["case"] = "a|b<i>"
    run_dir = write_dir(tmp_path / "c", recs, label="<b>box</b>")
    write_report([run_dir], tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<script" not in html and "<img src=x" not in html and "<b>box" not in html and "<i>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "wrong | &lt;img src=x onerror=alert(1)&gt; &amp; more" in html
    text = (tmp_path / "out" / "report.md").read_text()
    rendered = md_to_html(text)
    assert "<script" not in rendered and "<img" not in rendered and "<i>" not in rendered
    assert "&lt;script&gt;" in rendered
    # The escaped pipe keeps the failures table at its columns: one cell holds the whole message.
    assert "wrong | &lt;img src=x onerror=alert(1)&gt; &amp; more</td>" in rendered
