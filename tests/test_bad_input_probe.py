"""Bad input on every verb: one line on stderr that starts with ``softmaxbench: error:``, exit 2,
never a traceback, and nothing written where a run would have written its results.

Each probe is (name, argv, set-up): the set-up makes the damaged files a user could hand over (a
cut-off results file, a foreign JSON, a directory where a file is expected, ...). The probes run
in this process through the CLI's ``main`` (the same code path as the console script).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softmaxbench.suite.cli.main import main

OUT = ["--out", "{tmp}/o"]
SMALL = ["--ops", "softmax", "--dtypes", "float32", "--cases", "dist_normal_scale_1"]


def _garbage(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.jsonl").write_bytes(b"\x00\xff not json at all\n")
    return d


def _foreign_json(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.jsonl").write_text(json.dumps({"hello": "world"}) + "\n")
    return d


def _future_schema(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rec = {"schema_version": 999, "kind": "check", "backend": "numpy", "op": "softmax", "verdict": "pass"}
    (d / "results.jsonl").write_text(json.dumps(rec) + "\n")
    return d


def _empty_dir(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    return d


def _a_file(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("I am a file\n")
    return p


def _syntax_error_plugin(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("def backends(:\n")
    return p


def _bad_run_json(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.json").write_text("{ not json")
    return d


def _bad_known_file(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("this is [not toml\n")
    return p


# (id, argv with {tmp} for the test's directory, set-up of {tmp}/x)
PROBES = [
    ("unknown-verb", ["frobnicate"], None),
    ("unknown-option", ["check", "--frobnicate"], None),
    ("cases-bad-category", ["cases", "--category", "nonsense"], None),
    ("list-missing-plugin", ["list", "--plugin", "{tmp}/missing.py"], None),
    ("check-unknown-backend", ["check", "--backends", "no-such", *SMALL, *OUT], None),
    ("check-empty-backends", ["check", "--backends", ",,", "--ops", "softmx", *OUT], None),
    ("check-unknown-op", ["check", "--backends", "numpy", "--ops", "softmx", *OUT], None),
    ("check-unknown-dtype", ["check", "--backends", "numpy", "--dtypes", "float8", *OUT], None),
    ("check-unknown-case", ["check", "--backends", "numpy", "--cases", "nope", *OUT], None),
    ("check-missing-plugin", ["check", "--plugin", "{tmp}/missing.py", *OUT], None),
    ("check-plugin-is-dir", ["check", "--plugin", "{tmp}/x", "--backends", "x", *OUT],
     _empty_dir),
    ("check-plugin-syntax-error", ["check", "--plugin", "{tmp}/x", "--backends", "mine", *SMALL,
                                   *OUT], lambda p: _syntax_error_plugin(p.with_suffix(".py"))),
    ("check-timeout-zero", ["check", "--backends", "numpy", *SMALL, "--timeout", "0", *OUT], None),
    ("check-timeout-negative", ["check", "--backends", "numpy", *SMALL, "--timeout", "-3", *OUT],
     None),
    ("check-timeout-text", ["check", "--backends", "numpy", *SMALL, "--timeout", "soon", *OUT],
     None),
    ("check-jobs-zero", ["check", "--backends", "numpy", *SMALL, "--jobs", "0", *OUT], None),
    ("check-seed-text", ["check", "--backends", "numpy", *SMALL, "--seed", "abc", *OUT], None),
    ("check-out-is-file", ["check", "--backends", "numpy", *SMALL, "--out", "{tmp}/x"], _a_file),
    ("check-resume-missing", ["check", "--resume", "{tmp}/nowhere"], None),
    ("check-resume-empty", ["check", "--resume", "{tmp}/x"], _empty_dir),
    ("check-resume-bad-run-json", ["check", "--resume", "{tmp}/x"], _bad_run_json),
    ("check-resume-with-selection", ["check", "--resume", "{tmp}/x", "--backends", "numpy"], _empty_dir),
    # numpy declares no bfloat16: every record would be `unsupported`, nothing checked.
    ("check-nothing-checked", ["check", "--backends", "numpy", "--dtypes", "bfloat16", *OUT],
     None),
    ("bench-threads-zero", ["bench", "--backends", "numpy", "--threads", "0", *OUT], None),
    ("bench-min-rounds-zero", ["bench", "--backends", "numpy", "--min-rounds", "0", *OUT], None),
    ("bench-unknown-op", ["bench", "--backends", "numpy", "--ops", "softmx", *OUT], None),
    ("bench-unknown-dtype", ["bench", "--backends", "numpy", "--dtypes", "float8", *OUT], None),
    ("bench-no-matching-workload", ["bench", "--backends", "numpy", "--cases", "no-such-workload-*",
                                    *OUT], None),
    ("bench-unknown-backend", ["bench", "--backends", "no-such", *OUT], None),
    ("bench-out-is-file", ["bench", "--backends", "numpy", "--quick", "--ops", "softmax", "--out", "{tmp}/x"],
     _a_file),
    ("report-missing-dir", ["report", "{tmp}/nowhere", "--out", "{tmp}/r"], None),
    ("report-empty-dir", ["report", "{tmp}/x", "--out", "{tmp}/r"], _empty_dir),
    ("report-garbage", ["report", "{tmp}/x", "--out", "{tmp}/r"], _garbage),
    ("report-foreign-json", ["report", "{tmp}/x", "--out", "{tmp}/r"], _foreign_json),
    ("report-future-schema", ["report", "{tmp}/x", "--out", "{tmp}/r"], _future_schema),
    ("report-out-is-file", ["report", "{tmp}/x", "--out", "{tmp}/x/results.jsonl"], _foreign_json),
    ("report-missing-compare", ["report", "{tmp}/x", "--out", "{tmp}/r", "--compare", "{tmp}/none.json"],
     _foreign_json),
    ("compare-missing-base", ["compare", "{tmp}/nowhere", "{tmp}/nowhere2"], None),
    ("compare-garbage", ["compare", "{tmp}/x", "{tmp}/x"], _garbage),
    ("compare-foreign", ["compare", "{tmp}/x", "{tmp}/x"], _foreign_json),
    ("compare-bad-threshold", ["compare", "{tmp}/x", "{tmp}/x", "--max-regression", "lots"], _empty_dir),
    ("compare-bad-p-value", ["compare", "{tmp}/x", "{tmp}/x", "--p-value", "2"], _empty_dir),
    ("hunt-negative-budget", ["hunt", "--backends", "numpy", "--budget", "-1", "--no-save", *OUT],
     None),
    ("hunt-zero-evals", ["hunt", "--backends", "numpy", "--evals", "0", "--no-save", *OUT], None),
    ("hunt-zero-max-len", ["hunt", "--backends", "numpy", "--max-len", "0", "--no-save", *OUT],
     None),
    ("hunt-unknown-op", ["hunt", "--backends", "numpy", "--ops", "softmx", "--no-save", *OUT], None),
    ("hunt-unknown-backend", ["hunt", "--backends", "no-such", "--no-save", *OUT], None),
    ("run-quick-and-full", ["run", "--quick", "--full", *OUT], None),
    ("run-out-not-empty", ["run", "--backends", "numpy", "--out", "{tmp}/x"], _foreign_json),
    ("run-unknown-backend", ["run", "--backends", "no-such", *OUT], None),
]


def _known_wrong_types(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text('[[failure]]\nbackend = 3\nop = ["softmax"]\n')
    return p


def _empty_results(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.jsonl").write_text("")
    return d


def _wrong_types_record(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rec = {"schema_version": 1, "kind": "check", "backend": 5, "op": ["softmax"], "verdict": {"a": 1}}
    (d / "results.jsonl").write_text(json.dumps(rec) + "\n")
    return d


def _cut_record(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.jsonl").write_text('{"schema_version": 1, "kind": "check", "backend": "numpy", "op": "soft')
    return d


def _list_json(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.jsonl").write_text("[1, 2, 3]\n")
    (d / "run.json").write_text("[1, 2, 3]")
    return d


def _foreign_run_json(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.json").write_text(json.dumps({"verb": "check", "selection": 5, "plugins": "x"}))
    return d


def _binary_plugin(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\x00\xff\xfe garbage \x1b[31m")
    return p


def _a_dir_named_py(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _garbage_json(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("{ not json")
    return p


ESC = "\x1b[31mred\x1b[0m"

# Probes added by the red team (session 4): more verbs x options x damaged files.
PROBES += [
    ("list-plugin-is-dir", ["list", "--plugin", "{tmp}/x"], _empty_dir),
    ("list-plugin-empty-string", ["list", "--plugin", ""], None),
    ("list-extra-argument", ["list", "numpy"], None),
    ("cases-extra-argument", ["cases", "numpy"], None),
    ("cases-category-empty", ["cases", "--category", ""], None),
    ("check-plugin-empty-string", ["check", "--plugin", "", "--backends", "numpy", *SMALL, *OUT], None),
    ("check-plugin-dir-named-py", ["check", "--plugin", "{tmp}/x.py", "--backends", "numpy", *SMALL, *OUT],
     lambda p: _a_dir_named_py(p.with_suffix(".py"))),
    ("check-plugin-binary", ["check", "--plugin", "{tmp}/x.py", "--backends", "mine", *SMALL, *OUT],
     lambda p: _binary_plugin(p.with_suffix(".py"))),
    ("check-timeout-nan", ["check", "--backends", "numpy", *SMALL, "--timeout", "nan", *OUT], None),
    ("check-timeout-inf", ["check", "--backends", "numpy", *SMALL, "--timeout", "inf", *OUT], None),
    ("check-jobs-negative", ["check", "--backends", "numpy", *SMALL, "--jobs", "-1", *OUT], None),
    ("check-jobs-text", ["check", "--backends", "numpy", *SMALL, "--jobs", "many", *OUT], None),
    ("check-jobs-float", ["check", "--backends", "numpy", *SMALL, "--jobs", "1.5", *OUT], None),
    ("check-out-empty-string", ["check", "--backends", "numpy", *SMALL, "--out", ""], None),
    ("check-out-under-a-file", ["check", "--backends", "numpy", *SMALL, "--out", "{tmp}/x/sub"], _a_file),
    ("check-out-in-proc", ["check", "--backends", "numpy", *SMALL, "--out", "/proc/softmaxbench-out"], None),
    ("check-junit-is-dir", ["check", "--backends", "numpy", *SMALL, "--junit-xml", "{tmp}/x", *OUT],
     _empty_dir),
    ("check-junit-under-a-file", ["check", "--backends", "numpy", *SMALL, "--junit-xml", "{tmp}/x/j.xml",
                                  *OUT], _a_file),
    ("check-baseline-missing", ["check", "--backends", "numpy", *SMALL, "--baseline", "{tmp}/nowhere",
                                *OUT], None),
    ("check-baseline-is-file", ["check", "--backends", "numpy", *SMALL, "--baseline", "{tmp}/x", *OUT],
     _a_file),
    ("check-baseline-garbage", ["check", "--backends", "numpy", *SMALL, "--baseline", "{tmp}/x", *OUT],
     _garbage),
    ("check-baseline-empty-dir", ["check", "--backends", "numpy", *SMALL, "--baseline", "{tmp}/x", *OUT],
     _empty_dir),
    ("check-known-failures-missing", ["check", "--backends", "numpy", *SMALL, "--known-failures",
                                      "{tmp}/none.toml", *OUT], None),
    ("check-known-failures-bad-toml", ["check", "--backends", "numpy", *SMALL, "--known-failures",
                                       "{tmp}/x", *OUT], _bad_known_file),
    ("check-known-failures-wrong-types", ["check", "--backends", "numpy", *SMALL, "--known-failures",
                                          "{tmp}/x", *OUT], _known_wrong_types),
    ("check-known-failures-is-dir", ["check", "--backends", "numpy", *SMALL, "--known-failures", "{tmp}/x",
                                     *OUT], _empty_dir),
    ("check-dtype-unicode", ["check", "--backends", "numpy", "--dtypes", "flöat32", *OUT], None),
    ("check-op-escape-codes", ["check", "--backends", "numpy", "--ops", ESC, *OUT], None),
    ("check-backend-escape-codes", ["check", "--backends", ESC, *SMALL, *OUT], None),
    ("check-backend-newline", ["check", "--backends", "numpy\nrm -rf", *SMALL, *OUT], None),
    ("check-case-glob-matches-nothing", ["check", "--backends", "numpy", "--cases", "zzz*", *OUT], None),
    ("check-case-escape-codes", ["check", "--backends", "numpy", "--cases", ESC, *OUT], None),
    ("check-resume-is-file", ["check", "--resume", "{tmp}/x"], _a_file),
    ("check-resume-foreign-run-json", ["check", "--resume", "{tmp}/x"], _foreign_run_json),
    ("check-resume-list-run-json", ["check", "--resume", "{tmp}/x"], _list_json),
    ("check-resume-and-quick", ["check", "--resume", "{tmp}/x", "--quick"], _empty_dir),
    ("bench-threads-negative", ["bench", "--backends", "numpy", "--threads", "-2", *OUT], None),
    ("bench-threads-text", ["bench", "--backends", "numpy", "--threads", "all", *OUT], None),
    ("bench-threads-huge", ["bench", "--backends", "numpy", "--threads", "100000000", *OUT], None),
    ("bench-min-rounds-negative", ["bench", "--backends", "numpy", "--min-rounds", "-5", *OUT], None),
    ("bench-min-rounds-huge", ["bench", "--backends", "numpy", "--min-rounds", "1000000000000", *OUT], None),
    ("bench-timeout-zero", ["bench", "--backends", "numpy", "--timeout", "0", *OUT], None),
    ("bench-timeout-nan", ["bench", "--backends", "numpy", "--timeout", "nan", *OUT], None),
    ("bench-timeout-huge", ["bench", "--backends", "numpy", "--timeout", "1e12", *OUT], None),
    ("bench-out-empty-string", ["bench", "--backends", "numpy", "--quick", "--ops", "softmax", "--out", ""],
     None),
    ("bench-plugin-missing", ["bench", "--plugin", "{tmp}/missing.py", *OUT], None),
    ("bench-backend-escape-codes", ["bench", "--backends", ESC, *OUT], None),
    ("bench-case-escape-codes", ["bench", "--backends", "numpy", "--cases", ESC, *OUT], None),
    ("report-out-empty-string", ["report", "{tmp}/x", "--out", ""], _foreign_json),
    ("report-results-is-file", ["report", "{tmp}/x", "--out", "{tmp}/r"], _a_file),
    ("report-empty-results", ["report", "{tmp}/x", "--out", "{tmp}/r"], _empty_results),
    ("report-cut-record", ["report", "{tmp}/x", "--out", "{tmp}/r"], _cut_record),
    ("report-wrong-types", ["report", "{tmp}/x", "--out", "{tmp}/r"], _wrong_types_record),
    ("report-json-lists", ["report", "{tmp}/x", "--out", "{tmp}/r"], _list_json),
    ("report-compare-garbage", ["report", "{tmp}/y", "--out", "{tmp}/r", "--compare", "{tmp}/x"],
     lambda p: (_garbage_json(p), _foreign_json(p.parent / "y"))),
    ("report-compare-is-dir", ["report", "{tmp}/y", "--out", "{tmp}/r", "--compare", "{tmp}/x"],
     lambda p: (_empty_dir(p), _foreign_json(p.parent / "y"))),
    ("report-no-dirs", ["report", "--out", "{tmp}/r"], None),
    ("compare-base-is-file", ["compare", "{tmp}/x", "{tmp}/x"], _a_file),
    ("compare-empty-dirs", ["compare", "{tmp}/x", "{tmp}/x"], _empty_dir),
    ("compare-empty-results", ["compare", "{tmp}/x", "{tmp}/x"], _empty_results),
    ("compare-cut-record", ["compare", "{tmp}/x", "{tmp}/x"], _cut_record),
    ("compare-max-regression-negative", ["compare", "{tmp}/x", "{tmp}/x", "--max-regression", "-5%"],
     _empty_dir),
    ("compare-max-regression-nan", ["compare", "{tmp}/x", "{tmp}/x", "--max-regression", "nan"], _empty_dir),
    ("compare-p-value-negative", ["compare", "{tmp}/x", "{tmp}/x", "--p-value", "-0.1"], _empty_dir),
    ("compare-p-value-nan", ["compare", "{tmp}/x", "{tmp}/x", "--p-value", "nan"], _empty_dir),
    ("compare-one-dir", ["compare", "{tmp}/x"], _empty_dir),
    ("compare-three-dirs", ["compare", "{tmp}/x", "{tmp}/x", "{tmp}/x"], _empty_dir),
    ("hunt-budget-nan", ["hunt", "--backends", "numpy", "--budget", "nan", "--no-save", *OUT], None),
    ("hunt-budget-text", ["hunt", "--backends", "numpy", "--budget", "long", "--no-save", *OUT], None),
    ("hunt-evals-negative", ["hunt", "--backends", "numpy", "--evals", "-3", "--no-save", *OUT], None),
    ("hunt-max-len-negative", ["hunt", "--backends", "numpy", "--max-len", "-1", "--no-save", *OUT], None),
    ("hunt-max-len-huge", ["hunt", "--backends", "numpy", "--max-len", "1000000000000", "--no-save", *OUT],
     None),
    ("hunt-hypothesis-negative", ["hunt", "--backends", "numpy", "--hypothesis", "-1", "--no-save", *OUT],
     None),
    ("hunt-timeout-zero", ["hunt", "--backends", "numpy", "--timeout", "0", "--no-save", *OUT], None),
    ("hunt-timeout-nan", ["hunt", "--backends", "numpy", "--timeout", "nan", "--no-save", *OUT], None),
    ("hunt-unknown-dtype", ["hunt", "--backends", "numpy", "--dtypes", "float8", "--no-save", *OUT], None),
    ("hunt-out-is-file", ["hunt", "--backends", "numpy", "--evals", "10", "--no-save", "--out", "{tmp}/x"],
     _a_file),
    ("hunt-save-dir-is-file", ["hunt", "--backends", "numpy", "--ops", "softmax", "--dtypes", "float32",
                               "--evals", "10", "--save-dir", "{tmp}/x", *OUT], _a_file),
    ("hunt-plugin-missing", ["hunt", "--plugin", "{tmp}/missing.py", "--no-save", *OUT], None),
    ("hunt-backend-escape-codes", ["hunt", "--backends", ESC, "--no-save", *OUT], None),
    ("run-unknown-op", ["run", "--backends", "numpy", "--ops", "softmx", *OUT], None),
    ("run-unknown-dtype", ["run", "--backends", "numpy", "--dtypes", "float8", *OUT], None),
    ("run-unknown-case", ["run", "--backends", "numpy", "--cases", "nope", *OUT], None),
    ("run-threads-zero", ["run", "--backends", "numpy", "--threads", "0", *OUT], None),
    ("run-out-is-file", ["run", "--backends", "numpy", "--out", "{tmp}/x"], _a_file),
    ("run-plugin-missing", ["run", "--plugin", "{tmp}/missing.py", *OUT], None),
    ("run-out-empty-string", ["run", "--backends", "numpy", "--ops", "softmax", "--out", ""], None),
]


@pytest.mark.parametrize("argv, setup", [p[1:] for p in PROBES], ids=[p[0] for p in PROBES])
def test_bad_input_is_one_line_and_exit_2(argv, setup, tmp_path, capsys):
    if setup is not None:
        setup(tmp_path / "x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert exc.value.code == 2, (exc.value.code, out[-400:], err[-400:])
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("softmaxbench: error:"), err
    assert "\x1b" not in out + err  # escape codes in the input are escaped in the message
    # Bad input never leaves a half-made results directory behind.
    assert not (tmp_path / "o" / "results.jsonl").exists()


# -- the environment and the output: probed as the user's shell runs the command ---------------
ENV_PROBES = [
    ("discovery-timeout-text", {"SOFTMAXBENCH_DISCOVERY_TIMEOUT": "abc"}, ["list"]),
    ("discovery-timeout-negative", {"SOFTMAXBENCH_DISCOVERY_TIMEOUT": "-1"}, ["list"]),
    ("nproc-text", {"NPROC": "abc"}, ["check", "--backends", "numpy", *SMALL, *OUT]),
    ("omp-threads-zero", {"OMP_NUM_THREADS": "0"}, ["bench", "--backends", "numpy", *OUT]),
    ("cache-bytes-text", {"SOFTMAXBENCH_CACHE_BYTES": "lots"}, ["bench", "--backends", "numpy", *OUT]),
    ("worker-memory-negative", {"SOFTMAXBENCH_WORKER_MEMORY": "-1"}, ["hunt", "--backends", "numpy", *OUT]),
]


def _sb(args, env, tmp_path, **kw):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "softmaxbench", *args], capture_output=True, text=True,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), **env},
                          cwd=tmp_path, timeout=120, **kw)


@pytest.mark.parametrize("env, argv", [p[1:] for p in ENV_PROBES], ids=[p[0] for p in ENV_PROBES])
def test_a_bad_environment_variable_is_one_line_and_exit_2(env, argv, tmp_path):
    proc = _sb([a.replace("{tmp}", str(tmp_path)) for a in argv], env, tmp_path)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "environment variable" in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_an_unwritable_cache_costs_only_the_cache(tmp_path):
    proc = _sb(["list", "--json"], {"XDG_CACHE_HOME": "/proc/softmaxbench-no-cache"}, tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout) and "Traceback" not in proc.stderr


@pytest.mark.parametrize("how", ["closed-pipe", "full-device"])
def test_an_output_that_cannot_be_written_is_one_line_and_exit_2(how, tmp_path):
    import subprocess
    import sys

    if how == "full-device":
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full here")
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "softmaxbench", "list", "--json"], stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=120)
        err, rc = proc.stderr, proc.returncode
    else:  # `softmaxbench list | head -0`
        p = subprocess.Popen([sys.executable, "-m", "softmaxbench", "list"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        p.stdout.close()
        err, rc = p.stderr.read(), p.wait(timeout=120)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "cannot write the output" in lines[0], err
