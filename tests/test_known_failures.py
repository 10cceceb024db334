"""Known failures and baselines: check exits 1 only on a new failure, a fixed one fails --strict,
a bad known-failures file is one line and exit 2, and nothing checked never conforms.

Real runs of numpy, torch-cpu and one-file plugin kernels through the CLI (workers and all)."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

import pytest

from softmaxbench.suite.conformance import known as kf
from softmaxbench.suite.conformance.summary import gate, summarize
from softmaxbench.suite.records import read_results, read_run


def cli(capsys, *argv) -> tuple[int, str, str]:
    from softmaxbench.suite.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def one_line_exit_2(capsys, *argv, expect: str) -> None:
    rc, _, err = cli(capsys, *argv)
    assert rc == 2, err
    assert expect in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def rec(verdict="fail", **kw) -> dict:
    r = {"schema_version": 1, "kind": "check", "backend": "k", "op": "softmax", "case": "c",
         "dtype": "float32", "verdict": verdict, "message": f"{verdict} here", "shape": [2, 3]}
    r.update(kw)
    return r


# -- the file format ------------------------------------------------------------------------------
GOOD = """
[[known_failure]]
backend = "k"
op = ["softmax", "log_*"]
case = "shape_empty*"
dtype = "*"
verdict = "error"
reason = "raises on an empty axis"

[[known_failure]]
backends = ["k"]          # the plural spelling of conventions.toml works too
cases = ["special_*"]
reason = "NaN rows"
"""


def test_patterns_match_backend_op_case_dtype_and_verdict():
    known = kf.parse_known_failures(GOOD, origin="known.toml")
    assert len(known) == 2
    empty = rec("error", case="shape_empty_rows", op="log_softmax")
    assert known.match(empty).reason == "raises on an empty axis"
    assert known.match(dict(empty, verdict="fail")) is None, "the entry covers errors only"
    assert known.match(dict(empty, op="logsumexp")) is None
    assert known.match(dict(empty, backend="other")) is None
    assert known.match(rec("fail", case="special_nan_one", dtype="float16")).reason == "NaN rows"
    assert kf.classify(rec("fail", case="dist_normal_scale_1"), known) == "new"
    assert kf.classify(rec("deviation", case="special_nan_one"), known) == "fixed"
    assert kf.classify(rec("deviation", case="dist_x"), known) is None
    assert kf.classify(rec("deviation", case="dist_x"), known, strict=True) == "new"


@pytest.mark.parametrize("text, expect", [
    ("[[known_failure]]\nbackend = 'k'\n", "needs a reason"),
    ("[[known_failure]]\nbackend = 'k'\nreason = '  '\n", "needs a reason"),
    ("[[known_failure]]\nbackend = 'k'\nreason = 'r'\ncolour = 'red'\n", "unknown key 'colour'"),
    ("[[known_failure]]\nop = 'sofmax'\nreason = 'r'\n", "did you mean softmax"),
    ("[[known_failure]]\ndtype = 'float8'\nreason = 'r'\n", "matches no dtype"),
    ("[[known_failure]]\nverdict = 'pass'\nreason = 'r'\n", "matches no verdict"),
    ("[[known_failure]]\nbackend = 3\nreason = 'r'\n", "must be a pattern or a list"),
    ("[[known_failure]]\nbackend = 'k'\nbackends = ['k']\nreason = 'r'\n", "both 'backend' and 'backends'"),
    ("[known_failure]\nreason = 'r'\n", "write each entry as [[known_failure]]"),
    ("[[known_failures]]\nreason = 'r'\n", "unknown top-level key 'known_failures'"),
    ("[[known_failure]\n", "not valid TOML"),
])
def test_a_bad_file_is_one_line_and_exit_2(tmp_path, capsys, text, expect):
    path = tmp_path / "known.toml"
    path.write_text(text)
    one_line_exit_2(capsys, "check", "--backends", "numpy", "--ops", "softmax", "--dtypes", "float32",
                    "--cases", "dist_normal_scale_1", "--known-failures", str(path),
                    "--out", str(tmp_path / "out"), expect=expect)
    assert not (tmp_path / "out").exists(), "a bad file stops the run before any work"


def test_missing_file_and_bad_baseline_are_one_line_exit_2(tmp_path, capsys):
    args = ["check", "--backends", "numpy", "--ops", "softmax", "--dtypes", "float32",
            "--cases", "dist_normal_scale_1", "--out", str(tmp_path / "out")]
    one_line_exit_2(capsys, *args, "--known-failures", str(tmp_path / "nope.toml"), expect="no such file")
    one_line_exit_2(capsys, *args, "--baseline", str(tmp_path / "nope"), expect="no such results directory")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "results.jsonl").write_text("not json\n")
    one_line_exit_2(capsys, *args, "--baseline", str(junk), expect="not a softmaxbench results file")


def test_every_builtin_entry_is_valid():
    known = kf.load_known_failures("builtin")
    assert len(known.entries) >= 10 and known.sources == ["builtin"]
    assert all(e.reason and e.backends for e in known.entries)
    # the package's hunt-found cases that failed where they were found are known for that backend
    assert all(k[2].startswith("found-") and k[0] == e.backends[0] for k, e in known.exact.items())


# -- classification over a run -----------------------------------------------------------------------
def test_an_entry_is_fixed_only_when_nothing_it_names_fails():
    known = kf.parse_known_failures(GOOD.split("[[known_failure]]\nbackends")[0])
    still = [rec("error", case="shape_empty_rows"), rec("pass", case="shape_empty_batch")]
    kf.annotate(still, known)
    assert still[0]["known"] and "fixed" not in still[1], "a broad entry that still fails is not fixed"
    gone = [rec("pass", case="shape_empty_rows"), rec("pass", case="shape_empty_batch")]
    kf.annotate(gone, known)
    assert all(r["fixed"] == "raises on an empty axis" for r in gone)
    assert gate(gone) == (0, []) and gate(gone, strict=True)[0] == 1
    assert "fixed" in gate(gone, strict=True)[1][0]
    s = summarize(gone, ["k"], strict=True)["k"]
    assert s["fixed"] == 2 and not s["conforms"]


def test_baseline_knows_its_failures_and_a_changed_kind_of_failure(tmp_path):
    from softmaxbench.suite.records import ResultsWriter

    with ResultsWriter(tmp_path) as w:
        for r in (rec("fail", case="a"), rec("deviation", case="b"), rec("pass", case="c"),
                  rec("error", case="d"), rec("pass", case="d")):  # d: a resumed run's last word
            w.write(r)
    known = kf.baseline_known_failures(tmp_path)
    now = [rec("error", case="a"), rec("fail", case="b"), rec("fail", case="c"), rec("fail", case="d"),
           rec("deviation", case="b2")]
    kf.annotate(now, known, strict=True)
    assert [kf.KNOWN if r.get("known") else kf.NEW for r in now] == ["known", "new", "new", "new", "new"]
    assert "fail in the baseline" in now[0]["known"]


def test_gate_reads_annotations_and_tolerates_report_nans():
    nan = float("nan")
    recs = [rec("fail", known="accepted", fixed=nan), rec("pass", known=nan, fixed=nan, case="d")]
    assert gate(recs) == (0, [])
    assert gate([rec("fail", known=nan)])[0] == 1


def test_nothing_checked_never_conforms():
    recs = [rec("unsupported"), rec("unsupported", case="d")]
    code, lines = gate(recs)
    assert code == 1 and "nothing checked" in lines[0]
    assert not summarize(recs, ["k"])["k"]["conforms"]


# -- real runs -------------------------------------------------------------------------------------
NUMPY = ["--backends", "numpy", "--ops", "softmax,logsumexp", "--dtypes", "float32",
         "--cases", "dist_normal_scale_1,shape_empty_rows,special_neginf_all"]


@pytest.fixture(scope="module")
def numpy_runs(tmp_path_factory):
    """numpy alone (it raises on empty axes and gives NaN for logsumexp of all -inf), then with its
    documented findings, then against the first run as a baseline."""
    from softmaxbench.suite.cli.check import check_main

    d = tmp_path_factory.mktemp("numpy")
    plain = check_main("numpy", "softmax,logsumexp", "float32", NUMPY[-1], out=str(d / "plain"))
    builtin = check_main("numpy", "softmax,logsumexp", "float32", NUMPY[-1], out=str(d / "builtin"),
                         known_failures=("builtin",), junit_xml=str(d / "junit.xml"))
    baseline = check_main("numpy", "softmax,logsumexp", "float32", NUMPY[-1], out=str(d / "again"),
                          baseline=str(d / "plain"))
    return d, plain, builtin, baseline


def test_numpy_is_green_on_its_documented_findings_and_its_baseline(numpy_runs):
    d, plain, builtin, baseline = numpy_runs
    assert (plain, builtin, baseline) == (1, 0, 0)
    records = read_results(d / "builtin")
    known = [r for r in records if r.get("known")]
    assert {(r["op"], r["case"]) for r in known} == {("softmax", "shape_empty_rows"),
                                                      ("logsumexp", "shape_empty_rows"),
                                                      ("logsumexp", "special_neginf_all")}
    assert all("empty axis" in r["known"] or "infinite" in r["known"] for r in known)
    run = read_run(d / "builtin")
    assert run["summary"]["numpy"]["known"] == 3 and run["summary"]["numpy"]["new"] == 0
    assert run["known_failures"] == ["builtin"] and run["exit_code"] == 0
    # JUnit: known failures are skipped, with their reason
    root = ET.parse(d / "junit.xml").getroot()
    skipped = [tc.find("skipped") for tc in root.iter("testcase") if tc.find("skipped") is not None]
    assert root.get("failures") == "0" and root.get("errors") == "0"
    assert sum(1 for s in skipped if s.get("type") == "known") == 3
    assert any("known failure: The textbook x.max(axis)" in s.get("message") for s in skipped)
    again = [r for r in read_results(d / "again") if r.get("known")]
    assert len(again) == 3 and all("in the baseline" in r["known"] for r in again)


def test_report_gate_honours_the_annotations(numpy_runs, capsys):
    d = numpy_runs[0]
    rc, out, err = cli(capsys, "report", str(d / "builtin"), "--out", str(d / "report-ok"), "--gate")
    assert rc == 0, out + err
    rc, out, err = cli(capsys, "report", str(d / "plain"), "--out", str(d / "report-bad"), "--gate")
    assert rc == 1 and "numpy softmax shape_empty_rows float32: error" in err


def test_torch_cpu_float16_overflow_is_known(tmp_path, capsys):
    args = ["check", "--backends", "torch-cpu", "--ops", "log_softmax", "--dtypes", "float16",
            "--cases", "dist_equal_float16_65536,dist_normal_scale_1"]
    rc, out, _ = cli(capsys, *args, "--out", str(tmp_path / "plain"))
    assert rc == 1 and "NEW torch-cpu log_softmax dist_equal_float16_65536 float16" in out
    rc, out, _ = cli(capsys, *args, "--out", str(tmp_path / "known"), "--known-failures", "builtin")
    assert rc == 0, out
    assert "1 known failure(s) (from builtin)" in out and "exceeds float16's 65504" in out


KERNEL = textwrap.dedent('''
    import numpy as np
    from softmaxbench.backends import Backend

    class Kernel(Backend):
        name = "my-kernel"
        dtypes = ("float32",)
        def softmax(self, x, axis=-1):
            e = np.exp(x - x.max(axis=axis, keepdims=True))   # raises on an empty axis
            return e / e.sum(axis=axis, keepdims=True)
        LOG_SOFTMAX

    def backends():
        return [Kernel()]
''')
KNOWN = """
[[known_failure]]
backend = "my-kernel"
op = "softmax"
case = "shape_empty*"
verdict = "error"
reason = "x.max(axis) has no identity on an empty axis (issue #1)"
"""
SELECT = ["--ops", "softmax,log_softmax", "--dtypes", "float32",
          "--cases", "dist_normal_scale_1,shape_empty_rows,shape_rank4_axis1"]


def plugin(tmp_path, name: str, log_softmax: str = "") -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(KERNEL.replace("LOG_SOFTMAX", log_softmax or "pass"))
    return str(path)


def test_known_defect_green_new_defect_red_fixed_fails_strict(tmp_path, capsys):
    known_file = tmp_path / "known.toml"
    known_file.write_text(KNOWN)
    base = ["check", "--backends", "my-kernel", *SELECT, "--known-failures", str(known_file)]
    rc, out, _ = cli(capsys, *base, "--plugin", plugin(tmp_path, "v1"), "--out", str(tmp_path / "v1"))
    assert rc == 0, out
    assert "known failure(s)" in out and "issue #1" in out and "NEW" not in out
    # a new defect: log_softmax returns softmax
    wrong = ("def log_softmax(self, x, axis=-1):\n"
             "            return self.softmax(x, axis)")
    rc, out, _ = cli(capsys, *base, "--plugin", plugin(tmp_path, "v2", wrong), "--out", str(tmp_path / "v2"))
    assert rc == 1
    new_at, known_at = out.index("NEW failure(s)"), out.index("known failure(s)")
    assert new_at < known_at, "new failures come first"
    assert "NEW my-kernel log_softmax dist_normal_scale_1 float32: fail" in out
    assert "repro:" in out[new_at:known_at] and "log_softmax(" in out[new_at:known_at]
    # the defect fixed: passes, is reported as fixed, and fails only under --strict
    fixed = ("def softmax(self, x, axis=-1):\n"
             "            e = np.exp(x - x.max(axis=axis, keepdims=True, initial=-np.inf))\n"
             "            return e / e.sum(axis=axis, keepdims=True)")
    v3 = plugin(tmp_path, "v3", fixed)
    rc, out, _ = cli(capsys, *base, "--plugin", v3, "--out", str(tmp_path / "v3"))
    assert rc == 0 and "FIXED my-kernel softmax shape_empty_rows float32" in out
    rc, out, _ = cli(capsys, *base, "--plugin", v3, "--out", str(tmp_path / "v3s"), "--strict",
                     "--junit-xml", str(tmp_path / "v3s.xml"))
    assert rc == 1 and "fails the run under --strict" in out
    failures = [f for f in ET.parse(tmp_path / "v3s.xml").getroot().iter("failure")]
    assert [f.get("type") for f in failures] == ["fixed"]


def test_nothing_checked_is_an_input_error(tmp_path, capsys):
    # numpy declares no bfloat16
    one_line_exit_2(capsys, "check", "--backends", "numpy", "--dtypes", "bfloat16", "--quick",
                    "--out", str(tmp_path / "a"), expect="nothing to check")
    # a plugin that overrides no op
    bare = tmp_path / "bare.py"
    bare.write_text("from softmaxbench.backends import Backend\n\n"
                    "class Bare(Backend):\n    name = 'bare'\n    dtypes = ('float32',)\n\n"
                    "def backends():\n    return [Bare()]\n")
    one_line_exit_2(capsys, "check", "--plugin", str(bare), "--backends", "bare", "--quick",
                    "--out", str(tmp_path / "b"), expect="nothing to check: bare declares none")
    # a plugin whose every op raises NotImplementedError: all records unsupported after the run
    lazy = tmp_path / "lazy.py"
    lazy.write_text(textwrap.dedent('''
        from softmaxbench.backends import Backend

        class Lazy(Backend):
            name = "lazy"
            dtypes = ("float32",)
            def softmax(self, x, axis=-1):
                raise NotImplementedError("not yet")

        def backends():
            return [Lazy()]
    '''))
    out = tmp_path / "lazy-out"
    one_line_exit_2(capsys, "check", "--plugin", str(lazy), "--backends", "lazy", "--ops", "softmax",
                    "--dtypes", "float32", "--cases", "dist_normal_scale_1", "--out", str(out),
                    expect="nothing was checked")
    assert read_run(out)["exit_code"] == 2
    # beside a backend that checks something, it is reported as such and fails the run
    rc, stdout, _ = cli(capsys, "check", "--plugin", str(lazy), "--backends", "lazy,numpy", "--ops",
                        "softmax", "--dtypes", "float32", "--cases", "dist_normal_scale_1",
                        "--out", str(tmp_path / "c"))
    assert rc == 1 and "lazy: nothing checked" in stdout
    assert read_run(tmp_path / "c")["summary"]["lazy"] == {
        "counts": {"unsupported": 1}, "checked": 0, "known": 0, "new": 0, "fixed": 0, "conforms": False}


def test_written_file_round_trips(numpy_runs, tmp_path, capsys):
    d = numpy_runs[0]
    assert kf.main([str(d / "plain")]) == 0
    text = capsys.readouterr().out
    path = tmp_path / "known.toml"
    path.write_text(text)
    known = kf.load_known_failures(path)
    assert len(known) == 2  # numpy: shape_empty_rows errors, special_neginf_all fails
    records = kf.annotate(read_results(d / "plain"), known)
    assert gate(records) == (0, [])
    assert json.dumps(records)  # still JSON


def test_resume_keeps_the_known_failures_it_started_with(numpy_runs, capsys):
    d = numpy_runs[0]
    rc, out, err = cli(capsys, "check", "--resume", str(d / "builtin"))
    assert rc == 0, out + err
    assert read_run(d / "builtin")["known_from"] == {"known_failures": ["builtin"], "baseline": None}
    assert sum(1 for r in read_results(d / "builtin") if r.get("known")) == 3
