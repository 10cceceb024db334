"""The CI templates' sequence of CLI calls, driven locally end to end.

Two "machines" (two result folders with different machine labels) measure, one with a built-in
backend and one with a one-file plugin; a final step merges them into one report and gates. The
gates must fail on a broken backend and on a slowed one, and pass otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "ci" / "templates" / "softmaxbench_plugin.py"
SELECT = ["--ops", "softmax,log_softmax", "--dtypes", "float32"]
CASES = ["--cases", "dist_normal_scale_1,special_nan_one,special_neginf_among_finite"]


def sb(*args: str, machine: str = "local", check: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOFTMAXBENCH_MACHINE": machine, "CI": "true"}
    res = subprocess.run([sys.executable, "-m", "softmaxbench", *args], capture_output=True, text=True,
                         env=env, timeout=600)
    if check:
        assert res.returncode == 0, f"{args}: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def catalogue_names():
    from softmaxbench.reference.cases import catalogue

    names = {c.name for c in catalogue()}
    wanted = CASES[1].split(",")
    missing = [n for n in wanted if n not in names]
    assert not missing, f"cases renamed? {missing}"
    return wanted


def measure(tmp: Path, group: str, select: list[str], machine: str) -> Path:
    """What a template's measure job does for one matrix entry."""
    out = tmp / "results" / group
    rc = sb("check", *select, *SELECT, *CASES, "--out", str(out / "check"),
            "--junit-xml", str(out / "junit.xml"), machine=machine).returncode
    assert rc in (0, 1)  # the gate is the report job's; only usage errors (2) stop here
    sb("bench", *select, *SELECT, "--quick", "--cases", "sweep-1MiB-*", "--min-rounds", "5",
       "--out", str(out / "bench"), machine=machine, check=True)
    return out


def test_template_sequence_passes_on_conforming_backends(tmp_path, catalogue_names):
    a = measure(tmp_path, "numpy-scipy", ["--backends", "numpy"], machine="cpu-runner")
    b = measure(tmp_path, "plugin", ["--plugin", str(PLUGIN), "--backends", "my-kernel"],
                machine="plugin-runner")
    for group in (a, b):
        assert (group / "junit.xml").is_file()
    res = sb("report", str(a / "check"), str(b / "check"), str(a / "bench"), str(b / "bench"),
             "--out", str(tmp_path / "report"), "--gate")
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    md = (tmp_path / "report" / "report.md").read_text()
    assert "cpu-runner" in md and "plugin-runner" in md, "both machines appear in the merged report"
    assert {"numpy", "my-kernel"} <= {r["backend"] for r in summary["backends"]}


BROKEN_PLUGIN = textwrap.dedent('''
    import numpy as np
    from softmaxbench.backends import Backend

    class Zeros(Backend):
        """The KernelBench all-zeros kernel: passes a fixed atol, must fail here."""
        name = "my-kernel"
        dtypes = ("float32",)
        def softmax(self, x, axis=-1):
            return np.zeros_like(x)

    def backends():
        return [Zeros()]
''')

SLOW_PLUGIN = textwrap.dedent('''
    import time
    import numpy as np
    from softmaxbench.backends import Backend

    class Slowed(Backend):
        """Right but slower: the same softmax, computed three times."""
        name = "my-kernel"
        dtypes = ("float32",)
        def softmax(self, x, axis=-1):
            for _ in range(3):
                e = np.exp(x - x.max(axis=axis, keepdims=True))
                y = e / e.sum(axis=axis, keepdims=True)
            return y

    def backends():
        return [Slowed()]
''')

FAST_PLUGIN = SLOW_PLUGIN.replace("range(3)", "range(1)").replace("Right but slower", "Right")


def test_conformance_gate_fails_on_a_broken_plugin(tmp_path, catalogue_names):
    plugin = tmp_path / "softmaxbench_plugin.py"
    plugin.write_text(BROKEN_PLUGIN)
    out = tmp_path / "results" / "plugin" / "check"
    res = sb("check", "--plugin", str(plugin), "--backends", "my-kernel", *SELECT, *CASES, "--out", str(out))
    assert res.returncode == 1, res.stdout + res.stderr
    gate = sb("report", str(out), "--out", str(tmp_path / "report"), "--gate")
    assert gate.returncode == 1
    assert "my-kernel softmax" in gate.stderr and "fail" in gate.stderr


def test_regression_gate_fails_on_a_slowed_plugin_and_passes_on_the_same(tmp_path):
    fast, slow = tmp_path / "fast.py", tmp_path / "slow.py"
    fast.write_text(FAST_PLUGIN)
    slow.write_text(SLOW_PLUGIN)
    bench = ["bench", "--backends", "my-kernel", "--ops", "softmax", "--dtypes", "float32",
             "--quick", "--cases", "sweep-1MiB-*", "--min-rounds", "15"]
    base, again, slowed = (tmp_path / n for n in ("base", "again", "slowed"))
    sb(*bench, "--plugin", str(fast), "--out", str(base), check=True)
    sb(*bench, "--plugin", str(fast), "--out", str(again), check=True)
    sb(*bench, "--plugin", str(slow), "--out", str(slowed), check=True)
    regressed = sb("compare", str(base), str(slowed), "--max-regression", "10%",
                   "--out", str(tmp_path / "cmp"))
    assert regressed.returncode == 1, regressed.stdout + regressed.stderr
    assert (tmp_path / "cmp" / "compare.json").is_file()
    # the comparison goes into the merged report, as the template's report job does
    sb("report", str(slowed), "--compare", str(tmp_path / "cmp" / "compare.json"),
       "--out", str(tmp_path / "report"), check=True)
    assert "Comparison" in (tmp_path / "report" / "report.md").read_text()
    same = sb("compare", str(base), str(again), "--max-regression", "50%")
    assert same.returncode == 0, same.stdout + same.stderr
