"""The harness's fidelity tool (benchmarks/bench_fidelity.py): its mechanics fast, its claims slow."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import bench_fidelity


@pytest.fixture(autouse=True)
def small_cache(monkeypatch):
    monkeypatch.setenv("SOFTMAXBENCH_CACHE_BYTES", "2M")  # small rotation pools for CI (workers inherit it)


def test_noop_backend_does_nothing():
    x = np.ones(3)
    noop = bench_fidelity.NoopBackend()
    assert all(getattr(noop, op)(x, x) is x for op in ("softmax", "softmax_vjp", "log_softmax_vjp"))
    assert [b.name for b in bench_fidelity.backends()] == ["noop"]  # the module is the no-op's plugin


def test_agreement():
    assert bench_fidelity.agreement(10.0, 10.0) == 0
    assert bench_fidelity.agreement(9.0, 11.0) == pytest.approx(0.2)
    assert bench_fidelity.agreement(None, 1.0) is None


def test_harness_overhead_through_the_worker_is_measured_against_1mib_ops():
    over = bench_fidelity.overhead(["numpy"], threads=1, repeats=1, echo=None)
    assert over["noop_harness_s"] < 1e-3 and over["noop_bare_s"] < 1e-3  # microseconds, not more
    ops = {o["op"]: o for o in over["ops"]}
    assert set(ops) == {"softmax", "log_softmax", "softmax_vjp"}
    o = ops["softmax"]
    assert o["overhead"] == pytest.approx(over["added_s"] / o["median_s"])
    assert 0 <= o["untimed_share_of_request"] < 1


def test_bad_arguments_are_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_fidelity.main(["--only", "nothing"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_fidelity_claims_hold_on_the_cpu_backends():
    """The whole check (minutes). Its claims are about the harness on a machine whose cores are not
    all taken by other jobs: with more runnable jobs than cores, every sample measures the queue."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores:
        pytest.skip(f"load average {load:.1f} on {cores} cores: the machine is oversubscribed")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_fidelity"], capture_output=True,
                          text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "-> holds" in proc.stdout and "DOES NOT HOLD" not in proc.stdout


def test_host_speed_reads_the_core_and_the_memory():
    """The speedometer printed around the reproducibility runs: positive times, minima at most
    the medians (a broken timer or a swapped key fails here)."""
    h = bench_fidelity.host_speed(0.2)
    assert 0 < h["loop_min_ms"] <= h["loop_median_ms"]
    assert 0 < h["copy_min_ms"] <= h["copy_median_ms"]
    assert "64 MiB copy" in bench_fidelity._speed_line(h)
