"""The runner: records streamed as checks finish, crash and hang isolation, resume after a kill,
run.json metadata and JUnit XML. Backends come from tests/broken_backends.py (a --plugin module)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

import softmaxbench.backends.registry  # noqa: F401 - a missing module is a failure
import softmaxbench.reference.ops  # noqa: F401 - a missing module is a failure
from softmaxbench.suite.conformance.runner import run_check, summarize  # noqa: E402
from softmaxbench.suite.records import read_results, read_run, validate_record  # noqa: E402

PLUGIN = str(Path(__file__).with_name("broken_backends.py"))
CASES = ["dist_normal_scale_1", "special_nan_one", "special_posinf_one", "shape_rank4_axis1",
         "shape_empty_rows"]


def by_case(records, backend):
    return {r["case"]: r for r in records if r["backend"] == backend}


@pytest.fixture(scope="module")
def isolation_run(tmp_path_factory):
    """One run of a correct backend and four that abort, segfault, get SIGKILLed or hang."""
    out = tmp_path_factory.mktemp("isolation")
    names = ["broken-baseline", "broken-abort-on-nan", "broken-segfault-on-inf", "broken-oom-killed-on-empty",
             "broken-hangs-on-rank4"]
    t0 = time.monotonic()
    code = run_check(out, backends=names, ops=["softmax"], dtypes=["float32"], cases=CASES,
                     plugins=[PLUGIN], timeout=5.0, junit_xml=out / "junit.xml", display="plain",
                     seed=7, command="pytest isolation run")
    return out, code, read_results(out), time.monotonic() - t0


def test_every_record_is_valid_and_complete(isolation_run):
    out, code, records, _ = isolation_run
    assert code == 1
    assert len(records) == 5 * len(CASES)  # one record per backend x case, none lost or doubled
    for rec in records:
        validate_record(rec)
        assert rec["kind"] == "check" and rec["op"] == "softmax" and rec["dtype"] == "float32"
        if rec["verdict"] not in ("pass", "unsupported"):
            assert rec["message"] and rec["repro"] and "get('" in rec["repro"].replace('"', "'")


def test_crashes_and_hangs_cost_only_their_own_cases(isolation_run):
    _, _, records, seconds = isolation_run
    base = {case: r["verdict"] for case, r in by_case(records, "broken-baseline").items()}
    assert set(base.values()) <= {"pass", "deviation"}
    expected_bad = {"broken-abort-on-nan": ({"special_nan_one"}, "crash", "SIGABRT"),
                    "broken-segfault-on-inf": ({"special_posinf_one"}, "crash", "SIGSEGV"),
                    "broken-oom-killed-on-empty": ({"shape_empty_rows"}, "crash", "SIGKILL"),
                    "broken-hangs-on-rank4": ({"shape_rank4_axis1"}, "timeout", "no answer within 5 s")}
    for backend, (bad_cases, verdict, words) in expected_bad.items():
        got = by_case(records, backend)
        for case, rec in got.items():
            if case in bad_cases:
                assert rec["verdict"] == verdict and words in rec["message"], rec
            else:  # the cases after the crash ran in a fresh worker, with the baseline's verdicts
                assert rec["verdict"] == base[case], (backend, case, rec["message"])
    segv = by_case(records, "broken-segfault-on-inf")["special_posinf_one"]["message"]
    assert "Segmentation fault" in segv and "broken_backends.py" in segv  # where it died
    assert seconds < 60


def test_run_json_has_the_metadata(isolation_run):
    out, _, _, _ = isolation_run
    run = read_run(out)
    assert run["kind"] == "check" and run["status"] == "complete" and run["seed"] == 7
    assert run["command"] == "pytest isolation run" and run["machine"]["hostname"]
    assert run["versions"]["numpy"] and run["threads"] >= 1 and run["finished"]
    assert run["options"]["cases"] == CASES and run["options"]["plugins"] == [PLUGIN]
    assert run["summary"]["broken-baseline"]["conforms"] is True
    assert run["summary"]["broken-hangs-on-rank4"]["counts"]["timeout"] == 1
    assert run["exit_code"] == 1


def test_junit_xml_mirrors_the_records(isolation_run):
    out, _, records, _ = isolation_run
    root = ET.parse(out / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(records) == int(root.get("tests"))
    verdicts = Counter(r["verdict"] for r in records)
    assert int(root.get("errors")) == verdicts["crash"] + verdicts["timeout"] + verdicts["error"]
    assert int(root.get("failures")) == verdicts["fail"]
    assert int(root.get("skipped")) == verdicts["deviation"] + verdicts["unsupported"]
    hang = root.find(".//testsuite[@name='softmaxbench.broken-hangs-on-rank4']/testcase"
                     "[@name='softmax[shape_rank4_axis1-float32]']/error")
    assert hang is not None and hang.get("type") == "timeout" and "repro" in hang.text
    skipped = root.find(".//testcase[@name='softmax[special_posinf_one-float32]']/skipped")
    assert skipped is not None and "nan_row_for_posinf" in skipped.get("message")


def test_strict_counts_deviations(tmp_path):
    kwargs = dict(backends=["broken-baseline"], ops=["softmax"], dtypes=["float32"],
                  cases=["special_posinf_one"], plugins=[PLUGIN], display="none")
    assert run_check(tmp_path / "lenient", **kwargs) == 0
    assert run_check(tmp_path / "strict", strict=True, junit_xml=tmp_path / "j.xml", **kwargs) == 1
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert root.get("failures") == "1" and root.get("skipped") == "0"


def test_summarize_gate():
    recs = [{"kind": "check", "backend": "a", "verdict": "pass"},
            {"kind": "check", "backend": "a", "verdict": "deviation", "deviation": "d"},
            {"kind": "check", "backend": "b", "verdict": "timeout"}]
    s = summarize(recs, ["a", "b"])
    assert s["a"]["conforms"] and not s["b"]["conforms"]
    assert not summarize(recs, ["a"], strict=True)["a"]["conforms"]


#: Four cases before the first rank-4 one (where broken-hangs-on-rank4 stops answering), two after.
KILLED_CASES = ["special_nan_one", "special_posinf_one", "shape_empty_rows", "dist_normal_scale_1",
                "special_masked_rank4", "shape_rank4_axis1", "dist_ties_integers", "shape_n1_rows"]


def test_killed_run_resumes_without_redoing(tmp_path):
    """SIGKILL the whole run mid-way: no completed record is lost, a cut-off last line is dropped,
    and --resume finishes the rest without a duplicate."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "softmaxbench.suite.cli.main", "check", "--plugin", PLUGIN,
           "--backends", "broken-baseline,broken-hangs-on-rank4", "--ops", "softmax,log_softmax",
           "--dtypes", "float32", "--cases", ",".join(KILLED_CASES), "--timeout", "120", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    try:  # the hang backend stops answering at its first rank-4 case; wait for records up to there
        while time.monotonic() < deadline:
            text = results.read_text() if results.exists() else ""
            if text.count("broken-hangs-on-rank4") >= 3 and text.count("broken-baseline") >= 3:
                break
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the runner only: its workers must die with it
        proc.wait()
    before = read_results(out)
    assert before and read_run(out)["status"] == "running"
    with open(results, "a") as fh:
        fh.write('{"schema_version": 1, "kind": "check", "backend": "broken-base')  # cut off mid-write

    # run.json names a plugin: a resume runs it only when the user names it again.
    refused = subprocess.run([sys.executable, "-m", "softmaxbench.suite.cli.main", "check", "--resume",
                              str(out)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--plugin" in refused.stderr and "Traceback" not in refused.stderr
    assert read_results(out) == before or len(read_results(out)) == len(before)
    code = subprocess.run([sys.executable, "-m", "softmaxbench.suite.cli.main", "check", "--resume", str(out),
                           "--plugin", PLUGIN, "--timeout", "1.5"], capture_output=True, text=True,
                          timeout=300)
    assert code.returncode == 1, code.stderr  # the hang costs timeouts
    after = read_results(out)
    keys = Counter((r["backend"], r["op"], r["case"], r["dtype"]) for r in after)
    assert max(keys.values()) == 1
    assert all((r["backend"], r["op"], r["case"], r["dtype"]) in keys for r in before)
    assert after[: len(before)] == before  # what was recorded stays, untouched and first
    from softmaxbench.suite.conformance.api import plan, select_cases

    planned = plan(select_cases(KILLED_CASES), ["softmax", "log_softmax"], ["float32"])
    assert len(after) == 2 * len(planned)
    run = read_run(out)
    assert run["status"] == "complete" and run["resumed"][0]["already_recorded"] == len(before)
    assert {r["verdict"] for r in after if r["backend"] == "broken-hangs-on-rank4"
            and "rank4" in r["case"] and r["op"] == "softmax"} == {"timeout"}


def test_resume_needs_a_check_run(tmp_path):
    from softmaxbench.errors import InputError

    with pytest.raises(InputError, match="no run.json"):
        run_check(tmp_path, resume=True)
    with pytest.raises(InputError, match="no such directory"):
        run_check(tmp_path / "missing", resume=True)
