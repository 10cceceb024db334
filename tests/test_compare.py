"""The regression gate ``softmaxbench compare``: a slowed backend trips it, the same one does not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from softmaxbench.reports import compare
from softmaxbench.suite.bench import measure as bench
from softmaxbench.suite.bench.workloads import Workload
from softmaxbench.suite.records import new_record

SETTINGS = bench.Settings(min_rounds=15, max_rounds=15, max_time=0.0, warmup_time=0.0, min_warmup=2,
                          cache=64 * 1024)
WORK = [Workload("tiny", "softmax", "float32", (64, 1024))]


#: The backends, as a plugin the bench workers load (the code under test never runs in this process).
PLUGIN = """
import time
import numpy as np
from softmaxbench.backends import Backend


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class Sleeper(Backend):
    \"\"\"A kernel whose time is a sleep: steady medians even on a busy machine.\"\"\"

    name = "sleeper"
    dtypes = ("float32",)
    seconds = 0.02  # long beside the softmax it also computes (its output is judged)

    def softmax(self, x, axis=-1):
        time.sleep(self.seconds)
        return _softmax(x, axis)


class SlowSleeper(Sleeper):
    seconds = 0.03  # 50% more time: a third less throughput


class Textbook(Backend):
    name = "textbook"
    dtypes = ("float32",)
    repeats = 1

    def softmax(self, x, axis=-1):
        for _ in range(self.repeats):  # the slowed version repeats the work
            y = _softmax(x, axis)
        return y


class Slowed(Textbook):
    repeats = 4
"""


def _bench(path, backend_cls: str, name=None):
    """Bench the plugin's class ``backend_cls`` (named ``name``: a slowed version stands in for the
    same backend in a later run)."""
    plugin = path.parent / f"plugin_{path.name}.py"
    cls_name = name or {"Sleeper": "sleeper", "SlowSleeper": "sleeper", "Textbook": "textbook",
                        "Slowed": "textbook"}[backend_cls]
    plugin.write_text(PLUGIN + f"\n\ndef backends():\n    b = {backend_cls}()\n    b.name = {cls_name!r}\n"
                      "    return [b]\n")
    rc, recs = bench.run_bench(path, [cls_name], plugins=[str(plugin)], workloads=WORK, settings=SETTINGS,
                               echo=None, copies=False)
    assert rc == 0, recs
    return str(path)


def _cli(*argv):
    from softmaxbench.suite.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return exc.value.code


def test_same_backend_twice_passes(tmp_path, capsys):
    base, new = _bench(tmp_path / "a", "Sleeper"), _bench(tmp_path / "b", "Sleeper")
    assert _cli("compare", base, new, "--max-regression", "10%") == 0
    out = capsys.readouterr().out
    assert "sleeper" in out and "unchanged" in out and "0 regression(s)" in out


def test_slowed_backend_trips_the_gate(tmp_path, capsys):
    base, new = _bench(tmp_path / "a", "Sleeper"), _bench(tmp_path / "b", "SlowSleeper", name="sleeper")
    assert _cli("compare", base, new, "--max-regression", "10%", "--out", str(tmp_path / "cmp")) == 1
    captured = capsys.readouterr()
    assert "regression" in captured.out and "REGRESSION: sleeper softmax float32 tiny" in captured.err
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["verdict"] == "regression" and data["max_regression"] == "10%"
    (row,) = data["rows"]
    assert row["verdict"] == "regression" and row["change"] < -0.2 and row["p"] < 0.01
    assert "| sleeper" in (tmp_path / "cmp" / "compare.md").read_text()
    # Improvements pass: the other direction.
    assert _cli("compare", new, base) == 0
    assert "improvement" in capsys.readouterr().out


def test_repeated_work_trips_the_gate(tmp_path):
    base, new = _bench(tmp_path / "a", "Textbook"), _bench(tmp_path / "b", "Slowed", name="textbook")
    assert _cli("compare", base, new) == 1


def test_compare_output_is_readable_by_the_report(tmp_path):
    import softmaxbench.reports.tables as tables
    base, new = _bench(tmp_path / "a", "Sleeper"), _bench(tmp_path / "b", "SlowSleeper", name="sleeper")
    _cli("compare", base, new, "--out", str(tmp_path / "cmp"))
    table = tables.compare_table(json.loads((tmp_path / "cmp" / "compare.json").read_text()))
    assert "regression" in table.view.to_string()


def _rec(samples, **kw):
    fields = dict(backend="b", device="cpu", op="softmax", dtype="float32", shape=[4, 8], workload="w",
                  bytes=256, samples_s=samples)
    fields.update(kw)
    return new_record("bench", **fields)


def test_slower_but_not_significant_is_noise():
    rows = compare.compare_records([_rec([1.0, 1.2])], [_rec([1.3, 1.5])], threshold=0.1, alpha=0.01)
    assert rows[0]["verdict"] == "noise" and rows[0]["p"] > 0.01


def test_small_real_change_within_threshold_passes():
    base = [_rec(list(np.linspace(1.0, 1.01, 30)))]
    new = [_rec(list(np.linspace(1.05, 1.06, 30)))]  # 5% slower, certainly real, under 10%
    assert compare.compare_records(base, new, threshold=0.1)[0]["verdict"] == "unchanged"
    assert compare.compare_records(base, new, threshold=0.02)[0]["verdict"] == "regression"


def test_error_in_new_fails_and_copy_rows_never_do():
    base = [_rec([1.0] * 5), _rec([1.0] * 5, backend="copy:numpy", op="copy")]
    new = [_rec([], verdict="error", message="boom"), _rec([3.0] * 5, backend="copy:numpy", op="copy")]
    rows = {r["backend"]: r["verdict"] for r in compare.compare_records(base, new)}
    assert rows == {"b": "error", "copy:numpy": "regression (machine)"}


def test_workloads_in_one_side_only_are_listed():
    rows = compare.compare_records([_rec([1.0] * 3, workload="x")], [_rec([1.0] * 3, workload="y")])
    assert sorted(r["verdict"] for r in rows) == ["missing", "only in new"]


@pytest.mark.parametrize("text,value", [("10%", 0.1), ("0.25", 0.25), ("5 %", 0.05), ("0%", 0.0)])
def test_threshold_parsing(text, value):
    assert compare.parse_threshold(text) == value


@pytest.mark.parametrize("text", ["10", "ten", "150%", "-5%"])
def test_bad_thresholds_are_refused(text):
    with pytest.raises(ValueError, match="max-regression"):
        compare.parse_threshold(text)


def _one_line_exit_2(capsys, *argv, expect: str) -> None:
    assert _cli("compare", *argv) == 2
    err = capsys.readouterr().err
    assert expect in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_inputs_are_one_line_and_exit_2(tmp_path, capsys):
    good = _bench(tmp_path / "good", "Sleeper")
    _one_line_exit_2(capsys, str(tmp_path / "missing"), good, expect="no such results directory")
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    _one_line_exit_2(capsys, str(junk), good, expect="not a softmaxbench results file")
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "results.jsonl").write_text(json.dumps(new_record(
        "check", backend="b", device="cpu", op="softmax", dtype="float32", shape=[2], verdict="pass")) + "\n")
    _one_line_exit_2(capsys, str(checks), good, expect="no bench records")
    _one_line_exit_2(capsys, good, good, "--max-regression", "abc", expect="--max-regression")
    _one_line_exit_2(capsys, good, good, "--p-value", "2", expect="--p-value")
    copies = _dir(tmp_path / "copies", [_rec([1.0] * 3, backend="copy:numpy", op="copy")])
    _one_line_exit_2(capsys, copies, good, expect="holds no workload to compare")


def _dir(path, records, **run) -> str:
    """A results directory holding ``records`` (and a run.json when ``run`` fields are given)."""
    from softmaxbench.suite.records import new_run, write_run

    path.mkdir(parents=True)
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if run:
        meta = new_run("bench", "softmaxbench bench", threads=run.pop("threads", None))
        for key, value in run.items():
            meta[key] = {**meta[key], **value} if isinstance(value, dict) else value
        write_run(path, meta)
    return str(path)


STEADY = [1.0, 1.01, 0.99, 1.0, 1.02]


def test_a_workload_missing_from_new_fails_listed_by_name(tmp_path, capsys):
    base = _dir(tmp_path / "base", [_rec(STEADY, workload="w1"), _rec(STEADY, workload="w2"),
                                    _rec(STEADY, backend="copy:numpy", op="copy", workload="w1")])
    new = _dir(tmp_path / "new", [_rec(STEADY, workload="w1"),
                                  _rec(STEADY, backend="copy:numpy", op="copy", workload="w1")])
    assert _cli("compare", base, new, "--out", str(tmp_path / "cmp")) == 1
    captured = capsys.readouterr()
    assert "MISSING: b softmax float32 w2" in captured.err and "w1" not in captured.err.split("MISSING")[-1]
    assert "1 workload(s) of BASE missing from NEW" in captured.out
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["verdict"] == "regression" and data["missing"] == ["b softmax float32 w2"]
    # NEW cut down to its copy rows (a truncated run): nothing of BASE's backends compared, fails.
    only_copy = _dir(tmp_path / "only-copy", [_rec(STEADY, backend="copy:numpy", op="copy", workload="w1")])
    assert _cli("compare", base, only_copy) == 1
    assert capsys.readouterr().err.count("MISSING:") == 2
    # the same workloads again pass
    assert _cli("compare", base, base) == 0


@pytest.mark.parametrize("bad, expect", [
    ({"samples_s": [1.0, "fast", 1.0]}, "samples_s"),
    ({"samples_s": [1.0, -1.0, 1.0]}, "positive, finite"),
    ({"samples_s": [1.0, float("nan"), 1.0]}, "positive, finite"),
    ({"samples_s": [1.0, float("inf")]}, "positive, finite"),
    ({"bytes": 0}, "bytes must be positive"),
    ({"shape": "4x8"}, "does not follow the results schema: shape"),
    ({"kind": "benchmark"}, "schema: kind"),
])
def test_bad_records_are_one_line_exit_2_never_a_traceback(tmp_path, capsys, bad, expect):
    good = _dir(tmp_path / "good", [_rec(STEADY)])
    broken = _dir(tmp_path / "broken", [_rec(STEADY, workload="ok"), {**_rec(STEADY), **bad}])
    _one_line_exit_2(capsys, good, broken, expect=expect)
    _one_line_exit_2(capsys, broken, good, expect="BASE")


def test_different_run_conditions_are_said_and_refused_under_strict(tmp_path, capsys):
    recs = [_rec(STEADY)]
    base = _dir(tmp_path / "base", recs, threads=8)
    same = _dir(tmp_path / "same", recs, threads=8)
    other = _dir(tmp_path / "other", recs, threads=2, machine={"label": "runner-2"},
                 versions={"numpy": "0.0.1"})
    assert _cli("compare", base, same, "--strict") == 0
    assert "differ" not in capsys.readouterr().err
    assert _cli("compare", base, other, "--out", str(tmp_path / "cmp")) == 0
    err = capsys.readouterr().err
    for word in ("machine: label", "runner-2", "versions: numpy", "0.0.1", "threads: 8 vs 2"):
        assert word in err, err
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert any(d.startswith("threads") for d in data["differences"])
    assert "The runs differ" in (tmp_path / "cmp" / "compare.md").read_text()
    _one_line_exit_2(capsys, base, other, "--strict", expect="different conditions")
    # without run.json nothing can be verified: said, and refused under --strict
    bare = _dir(tmp_path / "bare", recs)
    assert _cli("compare", base, bare) == 0
    assert "no run.json beside NEW" in capsys.readouterr().err
    _one_line_exit_2(capsys, base, bare, "--strict", expect="no run.json")


def test_device_difference_is_said(tmp_path, capsys):
    base = _dir(tmp_path / "base", [_rec(STEADY)], threads=1)
    new = _dir(tmp_path / "new", [_rec(STEADY, device="gpu")], threads=1)
    assert _cli("compare", base, new) == 0
    assert "devices: b on cpu vs gpu" in capsys.readouterr().err


def test_compare_md_escapes_pipes_and_newlines(tmp_path):
    odd = "evil|name\nnext"
    base = _dir(tmp_path / "base", [_rec(STEADY, backend=odd)])
    new = _dir(tmp_path / "new", [_rec(STEADY, backend=odd, workload="w")])
    _cli("compare", base, new, "--out", str(tmp_path / "cmp"))
    md = (tmp_path / "cmp" / "compare.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    header_cells = table[0].count("|") - table[0].count("\\|")
    assert all(line.count("|") - line.count("\\|") == header_cells for line in table), md
    assert "evil\\|name next" in md and "evil|name" not in md.replace("\\|", "")
