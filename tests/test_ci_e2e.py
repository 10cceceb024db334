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
import xml.etree.ElementTree as ET
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


DEFECTIVE = textwrap.dedent('''
    import numpy as np
    from softmaxbench.backends import Backend

    class Kernel(Backend):
        """A kernel with a known defect: the max-shift raises on an empty axis."""
        name = "my-kernel"
        dtypes = ("float32", "float64")
        def softmax(self, x, axis=-1):
            e = np.exp(x - x.max(axis=axis, keepdims=True))
            return e / e.sum(axis=axis, keepdims=True)
        def log_softmax(self, x, axis=-1):
            shifted = x - x.max(axis=axis, keepdims=True)
            out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
            return out  # NEW_DEFECT

    def backends():
        return [Kernel()]
''')
#: The new defect: float64 log_softmax computed in float32 (wrong by ~1e-8, far beyond float64 ULPs).
NEW_DEFECT = "return out.astype(np.float32).astype(x.dtype) if x.dtype == np.float64 else out"
BASELINE_SELECT = ["--ops", "softmax,log_softmax", "--dtypes", "float32,float64",
                   "--cases", "dist_normal_scale_1,shape_empty_rows,special_neginf_among_finite"]


def test_known_defect_gates_green_against_its_baseline_and_red_on_a_new_one(tmp_path):
    """The templates' baseline flow: main's run is the baseline; a PR with the same known defect
    passes check and the report gate, a PR that adds a defect fails both, naming only the new one."""
    v1, v2 = tmp_path / "v1.py", tmp_path / "v2.py"
    v1.write_text(DEFECTIVE)
    v2.write_text(DEFECTIVE.replace("return out  # NEW_DEFECT", NEW_DEFECT))
    check = ["check", "--backends", "my-kernel", *BASELINE_SELECT, "--known-failures", "builtin"]
    # main: no baseline yet, the defect is new
    main = tmp_path / "main" / "plugin"
    first = sb(*check, "--plugin", str(v1), "--out", str(main / "check"))
    assert first.returncode == 1 and "NEW my-kernel softmax shape_empty_rows" in first.stdout
    # a PR with the same kernel, against main's results
    pr = tmp_path / "pr" / "plugin"
    same = sb(*check, "--plugin", str(v1), "--baseline", str(main / "check"), "--out", str(pr / "check"),
              "--junit-xml", str(pr / "junit.xml"))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "4 known failure(s)" in same.stdout and "NEW" not in same.stdout
    skipped = [s for s in ET.parse(pr / "junit.xml").getroot().iter("skipped") if s.get("type") == "known"]
    assert len(skipped) == 4 and all("in the baseline" in s.get("message") for s in skipped)
    gate = sb("report", str(pr / "check"), "--out", str(tmp_path / "report-pr"), "--gate")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    # a PR that adds a defect: red, the new failures first with their repro, the known ones apart
    worse = tmp_path / "worse" / "plugin"
    red = sb(*check, "--plugin", str(v2), "--baseline", str(main / "check"), "--out", str(worse / "check"))
    assert red.returncode == 1
    new_part = red.stdout[red.stdout.index("NEW failure(s)"):red.stdout.index("known failure(s)")]
    assert "NEW my-kernel log_softmax dist_normal_scale_1 float64: fail" in new_part and "repro:" in new_part
    assert "shape_empty_rows" not in new_part, "the known defect is not listed as new"
    gate = sb("report", str(worse / "check"), "--out", str(tmp_path / "report-worse"), "--gate")
    assert gate.returncode == 1
    assert "my-kernel log_softmax dist_normal_scale_1 float64" in gate.stderr
    assert "shape_empty_rows" not in gate.stderr


def test_the_example_known_failures_file_serves_a_kernel(tmp_path):
    """The shipped example file, pointed at the kernel's name, explains its empty-axis errors."""
    example = (ROOT / "ci" / "templates" / "softmaxbench-known-failures.toml").read_text()
    known = tmp_path / "known.toml"
    known.write_text(example.replace('"my-kernel-v0"', '"my-kernel"'))
    kernel = tmp_path / "v1.py"
    kernel.write_text(DEFECTIVE)
    res = sb("check", "--plugin", str(kernel), "--backends", "my-kernel", *BASELINE_SELECT,
             "--known-failures", str(known), "--out", str(tmp_path / "check"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "issue #1" in res.stdout
    inert = sb("check", "--plugin", str(kernel), "--backends", "my-kernel", *BASELINE_SELECT,
               "--known-failures", str(ROOT / "ci" / "templates" / "softmaxbench-known-failures.toml"),
               "--out", str(tmp_path / "check-inert"))
    assert inert.returncode == 1, "as shipped, the example names no real backend"
