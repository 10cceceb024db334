"""`softmaxbench report` on damaged and foreign input: a results file cut off by a killed run is
read up to its last whole record with a warning; anything else wrong is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from test_report_records import make_bench_records, make_check_records, write_dir

from softmaxbench.suite.cli.main import main


def run_cli(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("softmaxbench: error:"), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_report_verb_writes_the_report(tmp_path, capsys):
    d = write_dir(tmp_path / "c", make_check_records())
    b = write_dir(tmp_path / "b", make_bench_records(), kind="bench")
    rc, out, err = run_cli(["report", str(d), str(b), "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    assert f"report: {tmp_path / 'out' / 'report.html'}" in out
    assert "not conforming: numpy, scipy" in out
    assert (tmp_path / "out" / "throughput.csv").is_file()


def test_cut_off_file_is_read_to_its_last_whole_record(tmp_path, capsys):
    recs = make_check_records(("numpy",))
    d = write_dir(tmp_path / "c", recs)
    whole = (d / "results.jsonl").read_text()
    cut = json.dumps(make_check_records(("numpy",))[0])[:37]       # a killed run's half-written line
    (d / "results.jsonl").write_text(whole + cut)
    rc, out, err = run_cli(["report", str(d), "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    assert "softmaxbench: warning:" in err and "cut off" in err and f"{len(recs)} whole records" in err
    conf = pd.read_csv(tmp_path / "out" / "conformance.csv")
    assert conf["checks"].sum() == len(recs)
    assert "cut off" in (tmp_path / "out" / "report.md").read_text()     # the reader of the report sees it
    assert "cut off" in json.loads((tmp_path / "out" / "summary.json").read_text())["warnings"][0]


@pytest.mark.parametrize("content,needle", [
    ("hello, this is a log file\n", "not JSON"),
    ("backend,op,verdict\nnumpy,softmax,pass\n", "not JSON"),
    ('{"name": "some other tool", "value": 3}\n', "not a softmaxbench result record"),
    ('[1, 2, 3]\n', "not a softmaxbench result record"),
])
def test_foreign_file_is_one_line_and_exit_2(tmp_path, capsys, content, needle):
    (tmp_path / "results.jsonl").write_text(content)
    rc, _, err = run_cli(["report", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(rc, err, needle)
    assert not (tmp_path / "out" / "report.html").exists()


def test_unknown_schema_version(tmp_path, capsys):
    rec = make_check_records(("numpy",))[0] | {"schema_version": 99}
    (tmp_path / "results.jsonl").write_text(json.dumps(rec) + "\n")
    rc, _, err = run_cli(["report", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(rc, err, "schema version 99")


def test_invalid_record(tmp_path, capsys):
    recs = make_check_records(("numpy",))[:3]
    del recs[2]["backend"]
    recs[1]["verdict"] = "sort-of"
    write_dir(tmp_path, recs)
    rc, _, err = run_cli(["report", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(rc, err, "record 2", "verdict")


def test_run_json_of_another_version(tmp_path, capsys):
    d = write_dir(tmp_path / "c", make_check_records(("numpy",)))
    (d / "run.json").write_text(json.dumps({"schema_version": 7}))
    rc, _, err = run_cli(["report", str(d), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(rc, err, "run.json")


def test_missing_and_empty_inputs(tmp_path, capsys):
    rc, _, err = run_cli(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(rc, err, "no such results file")
    (tmp_path / "results.jsonl").write_text("")
    rc, _, err = run_cli(["report", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and "no result records" in err and "Traceback" not in err
    rc, _, err = run_cli(["report", "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and "Missing argument" in err


def test_bad_compare_file(tmp_path, capsys):
    d = write_dir(tmp_path / "c", make_check_records(("numpy",)))
    (tmp_path / "cmp.json").write_text("{not json")
    args = ["report", str(d), "--out", str(tmp_path / "o"), "--compare", str(tmp_path / "cmp.json")]
    rc, _, err = run_cli(args, capsys)
    assert_one_line_error(rc, err, "not JSON")
    (tmp_path / "cmp.json").write_text('"just a string"')
    args = ["report", str(d), "--out", str(tmp_path / "o"), "--compare", str(tmp_path / "cmp.json")]
    rc, _, err = run_cli(args, capsys)
    assert_one_line_error(rc, err, "compare")


def test_out_is_a_file(tmp_path, capsys):
    d = write_dir(tmp_path / "c", make_check_records(("numpy",)))
    (tmp_path / "file").write_text("x")
    rc, _, err = run_cli(["report", str(d), "--out", str(tmp_path / "file")], capsys)
    assert_one_line_error(rc, err, "cannot write the report")


def test_console_entry_point_prints_no_traceback(tmp_path):
    (tmp_path / "results.jsonl").write_text("garbage\n")
    proc = subprocess.run([sys.executable, "-m", "softmaxbench.suite.cli.main", "report", str(tmp_path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "not JSON" in proc.stderr
