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
    # Bad input never leaves a half-made results directory behind.
    assert not (tmp_path / "o" / "results.jsonl").exists()
