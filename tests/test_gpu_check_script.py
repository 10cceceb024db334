"""ci/gpu-check, the prepared GPU validation script, dry-run on this machine's CPU backends.

On a CUDA machine the same script runs torch-cuda, jax-gpu, cupy and cupy-fused; here its control
flow (install check, per-step limits and logs, report, packing for the device's 8-file return) is
exercised with the numpy backend on a tiny selection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "ci" / "gpu-check"


def test_gpu_check_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    res = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_gpu_check_dry_run_on_cpu(tmp_path):
    pack = tmp_path / "returned" / "gpu-check.tar.gz"
    pack.parent.mkdir()
    env = {**os.environ, "GPU_CHECK_BACKENDS": "numpy", "GPU_CHECK_BENCH_CASES": "sweep-1MiB-*",
           "GPU_CHECK_QUICK_BENCH": "1", "GPU_CHECK_BENCH_OPS": "softmax",
           "GPU_CHECK_BENCH_DTYPES": "float32",
           "GPU_CHECK_CHECK_ARGS": "--ops softmax --dtypes float32 "
                                   "--cases dist_normal_scale_1,special_nan_one",
           "GPU_CHECK_PACK": str(pack),
           "PYTHON": shutil.which("python") or "python3"}
    res = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "results")], capture_output=True, text=True,
                         env=env, timeout=600)
    log = (tmp_path / "results" / "gpu-check.log").read_text()
    for step in ("list", "check", "bench", "report"):
        assert f"== {step}: exit" in log, log
    assert "== bench: exit 0" in log and "== report: exit 0" in log, log
    assert res.returncode in (0, 1), res.stdout + res.stderr
    with tarfile.open(pack) as tar:
        names = set(tar.getnames())
    for needed in ("./check/results.jsonl", "./bench/results.jsonl", "./report/report.html", "./machine.txt"):
        assert needed in names, sorted(names)
    # what the device returns beside the archive: at most 8 files
    assert len(list(pack.parent.iterdir())) <= 8
    assert (pack.parent / "report.md").is_file()
