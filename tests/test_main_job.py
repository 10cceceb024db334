"""`softmaxbench run`: check, bench, report in one directory; the exit code says whether the report
was made (``--gate``: whether a check failed that is not known).

Most tests stand in for the producers (suite.conformance.runner.run_check,
suite.bench.measure.run_bench) with fakes
that write constructed records, so the orchestration is tested on its own: stages, selection
passed through, exit codes, a broken or interrupted stage. The last test runs the real thing on a
tiny selection.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest
from test_report_records import make_bench_records, make_check_records, write_dir

from softmaxbench.suite.cli.main import main


class Producers:
    """Fake runner and bench modules; records what they were called with."""

    def __init__(self, check_rc=0, bench_error: Exception | None = None):
        self.check_rc, self.bench_error = check_rc, bench_error
        self.check_kwargs: dict | None = None
        self.bench_kwargs: dict | None = None

    def run_check(self, out_dir, backends=None, ops=None, dtypes=None, cases=None, plugins=(), quick=False,
                  timeout=60.0, resume=False, strict=False, junit_xml=None, seed=0, jobs=None, command=None,
                  display="auto"):
        self.check_kwargs = dict(backends=backends, ops=ops, dtypes=dtypes, cases=cases, plugins=plugins,
                                 quick=quick, command=command)
        self.check_display = display
        write_dir(out_dir, make_check_records(), label="fake-box")
        return self.check_rc

    def resolve_backends(self, names, plugins=()):
        return [types.SimpleNamespace(name=n, unavailable=lambda: None) for n in names or ("numpy", "scipy")]

    def run_bench(self, out_dir, backends=None, *, quick=False, ops=None, dtypes=None, plugins=(),
                  threads=None, command=None, echo=print, **more):
        # measure.run_bench takes backend names (None: every available one); each runs in a worker
        self.bench_kwargs = dict(backends=list(backends or ("numpy", "scipy")), quick=quick, ops=ops,
                                 dtypes=dtypes)
        self.bench_threads = threads
        if self.bench_error:
            raise self.bench_error
        recs = make_bench_records()
        write_dir(out_dir, recs, label="fake-box", kind="bench")
        return 0, recs


@pytest.fixture
def producers(monkeypatch):
    p = Producers()
    runner = types.ModuleType("softmaxbench.suite.conformance.runner")
    runner.run_check = p.run_check
    bench = types.ModuleType("softmaxbench.suite.bench.measure")
    bench.run_bench, bench.resolve_backends = p.run_bench, p.resolve_backends
    monkeypatch.setitem(sys.modules, "softmaxbench.suite.conformance.runner", runner)
    monkeypatch.setitem(sys.modules, "softmaxbench.suite.bench.measure", bench)
    return p


def run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["run", *args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("check_rc", [0, 1])
def test_run_writes_everything_and_exits_0_when_the_report_is_made(tmp_path, capsys, producers, check_rc):
    producers.check_rc = check_rc
    rc, out, err = run(["--out", str(tmp_path / "r")], capsys)
    assert rc == 0          # non-conformance of the measured frameworks is in the report, not the exit code
    r = tmp_path / "r"
    for f in ("check/results.jsonl", "check/run.json", "bench/results.jsonl", "report.md", "report.html",
              "summary.json", "conformance.csv", "throughput.csv", "overview.csv", "failures.csv"):
        assert (r / f).is_file(), f
    assert [line.split("]")[0] for line in err.splitlines() if "softmaxbench run [" in line] == \
        ["softmaxbench run [1/3", "softmaxbench run [2/3", "softmaxbench run [3/3"]
    # The console ends with where the report is.
    assert out.rstrip().splitlines()[-1].startswith(f"Report: {r / 'report.html'}")
    # The check's own per-record lines are off; the load average before the check is in its run.json.
    assert producers.check_display == "none"
    assert "load_average_at_start" in json.loads((r / "check" / "run.json").read_text())
    # The closing table: one row per backend with its verdict counts and median throughput.
    summary = json.loads((r / "summary.json").read_text())
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.startswith(("numpy ", "scipy "))}
    for b in summary["backends"]:
        row = lines[b["backend"]]
        assert row[1:4] == [str(b["checks"]), str(b["verdicts"]["pass"]), str(b["verdicts"]["deviation"])]
        assert row[4] == str(sum(b["verdicts"][v] for v in ("fail", "error", "timeout", "crash")))
        assert row[6] == "NO" and float(row[7]) == pytest.approx(b["median_gbps"], rel=0.01)
        assert row[8] == f"{100 * b['median_fraction_of_copy']:.0f}%"


def test_console_groups_failures_per_backend(tmp_path, capsys, producers):
    rc, out, _ = run(["--out", str(tmp_path / "r")], capsys)
    causes = json.loads((tmp_path / "r" / "summary.json").read_text())["tables"]["failures"]["rows"]
    # One heading line per backend with failures, then its causes (at most 3 each): no line per check.
    assert "numpy: 1 failing check in 1 cause" in out
    assert "scipy: 2 failing checks in 2 causes" in out
    assert sum(1 for ln in out.splitlines() if " x fail [new]" in ln or " x error [new]" in ln) == causes
    assert not any(ln.startswith(("  FAIL", "  ERROR")) for ln in out.splitlines())


@pytest.mark.parametrize("check_rc", [0, 1])
def test_gate_makes_new_failures_the_exit_code(tmp_path, capsys, producers, check_rc):
    producers.check_rc = check_rc
    rc, out, _ = run(["--out", str(tmp_path / "r"), "--gate"], capsys)
    assert rc == 1 and "conformance gate: FAILED (3 new failing checks)" in out


def test_threads_reach_the_benchmark(tmp_path, capsys, producers):
    rc, _, err = run(["--out", str(tmp_path / "r"), "--threads", "1"], capsys)
    assert rc == 0 and producers.bench_threads == 1 and "1 thread" in err
    rc, _, err = run(["--out", str(tmp_path / "s"), "--threads", "0"], capsys)
    assert rc == 2 and "--threads must be at least 1" in err and not (tmp_path / "s").exists()


def test_no_stray_folders(tmp_path, capsys, producers, monkeypatch):
    monkeypatch.chdir(tmp_path)
    original = producers.run_bench

    def bench_that_makes_storage(*args, **kwargs):      # what pytest-benchmark does in the cwd
        (tmp_path / ".benchmarks").mkdir(exist_ok=True)
        return original(*args, **kwargs)

    producers.run_bench = bench_that_makes_storage
    sys.modules["softmaxbench.suite.bench.measure"].run_bench = bench_that_makes_storage
    rc, _, _ = run(["--out", "r"], capsys)
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_run_is_quick_unless_full_and_passes_the_selection(tmp_path, capsys, producers):
    rc, _, _ = run(["--out", str(tmp_path / "a"), "--backends", "numpy", "--ops", "softmax,log_softmax",
                    "--dtypes", "float32", "--cases", "dist_normal_scale_1,special_posinf_one"], capsys)
    assert rc == 0
    assert producers.check_kwargs | {"command": None} == dict(
        backends=["numpy"], ops=["softmax", "log_softmax"], dtypes=["float32"],
        cases=["dist_normal_scale_1", "special_posinf_one"],
        plugins=(), quick=True, command=None)
    assert producers.bench_kwargs == dict(backends=["numpy"], quick=True, ops=["softmax", "log_softmax"],
                                          dtypes=["float32"])
    run(["--out", str(tmp_path / "b"), "--full"], capsys)
    assert producers.check_kwargs["quick"] is False and producers.bench_kwargs["quick"] is False


def test_default_directory_is_timestamped(tmp_path, capsys, producers, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run([], capsys)
    assert rc == 0
    (made,) = (tmp_path / "softmaxbench-results").iterdir()
    assert len(made.name) == len("20250102-030405") and made.name[8] == "-"
    assert (made / "report.html").is_file() and f"Report: softmaxbench-results/{made.name}/report.html" in out


def test_broken_benchmark_keeps_the_conformance_report(tmp_path, capsys, producers):
    producers.check_rc = 1
    producers.bench_error = RuntimeError("pytest could not run the benchmark module")
    rc, out, err = run(["--out", str(tmp_path / "r")], capsys)
    assert rc == 0
    assert "warning: the benchmark failed (RuntimeError: pytest could not run" in err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["benchmarks"] == 0 and summary["checks"]["total"] == len(make_check_records())


def test_interrupted_check_still_reports_and_skips_the_bench(tmp_path, capsys, producers):
    producers.check_rc = 130
    rc, out, err = run(["--out", str(tmp_path / "r")], capsys)
    assert rc == 130
    assert producers.bench_kwargs is None
    assert (tmp_path / "r" / "report.html").is_file() and "interrupted" in err


def test_usage_errors(tmp_path, capsys, producers):
    rc, _, err = run(["--quick", "--full"], capsys)
    assert rc == 2 and "exclude each other" in err
    write_dir(tmp_path / "used", make_check_records(("numpy",)))
    rc, _, err = run(["--out", str(tmp_path / "used")], capsys)
    assert rc == 2 and "is not empty" in err and err.count("\n") == 1
    assert producers.check_kwargs is None


def test_real_run_on_a_tiny_selection(tmp_path):
    """The real producers: numpy, softmax, float32, quick."""
    import softmaxbench.backends.registry  # noqa: F401 - a missing module is a failure
    import softmaxbench.suite.bench  # noqa: F401 - a missing module is a failure
    import softmaxbench.suite.conformance.runner  # noqa: F401 - a missing module is a failure
    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-m", "softmaxbench.suite.cli.main", "run", "--backends", "numpy",
                           "--ops", "softmax", "--dtypes", "float32", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checks"]["total"] > 0 and summary["benchmarks"] > 0
    assert [b["backend"] for b in summary["backends"]] == ["numpy"]
    assert f"Report: {out / 'report.html'}" in proc.stdout
    assert (out / "throughput.csv").read_text().count("\n") > 1
