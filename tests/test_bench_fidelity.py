"""The harness's fidelity check (suite/bench_fidelity.py): its mechanics fast, its claims slow."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from softmaxbench.backends.base import Backend
from softmaxbench.suite import bench, bench_fidelity
from softmaxbench.suite.workloads import Workload, clear_host_pool


class TinyNumpy(Backend):
    name = "tiny-numpy"
    dtypes = ("float32",)

    def softmax(self, x, axis=-1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture(autouse=True)
def small_cache(monkeypatch):
    monkeypatch.setenv("SOFTMAXBENCH_CACHE_BYTES", "2M")  # small rotation pools for CI
    yield
    clear_host_pool()


def test_noop_backend_does_nothing():
    x = np.ones(3)
    noop = bench_fidelity.NoopBackend()
    assert all(getattr(noop, op)(x, x) is x for op in ("softmax_vjp", "log_softmax_vjp", "cross_entropy"))
    assert set(noop.supported_ops()) >= {"softmax", "log_softmax", "softmax_vjp", "cross_entropy_grad"}


def test_standard_error_of_the_median_shrinks_with_samples():
    rng = np.random.default_rng(0)
    few, many = rng.normal(1, 0.1, 16), rng.normal(1, 0.1, 1600)
    assert bench_fidelity.relative_se_of_median(many) < bench_fidelity.relative_se_of_median(few) / 5
    assert bench_fidelity.relative_se_of_median([1.0, 2.0]) == float("inf")


def test_two_interleaved_runs_are_compared():
    w = Workload("sweep-tiny", "softmax", "float32", (64, 1024))
    settings = bench.Settings(min_rounds=5, max_time=0.01, warmup_time=0.0, min_warmup=1)
    (row,) = bench_fidelity.reproducibility([TinyNumpy()], [w], out_dir=None, threads=1, settings=settings,
                                            budget_s=0.0, echo=None)
    # Two sessions (A B B A, B A A B) at least: 4 measurements of 5 rounds per run.
    assert row["samples"] >= 20 and row["gbps_a"] > 0 and row["gbps_b"] > 0
    assert row["difference"] == pytest.approx(abs(row["gbps_a"] - row["gbps_b"]) /
                                              ((row["gbps_a"] + row["gbps_b"]) / 2))
    assert row["difference"] < 0.5  # two runs of the same work, whatever the machine's load
    assert row["ok"] == (row["difference"] <= bench_fidelity.REPRO_LIMIT)


def test_harness_overhead_is_small_against_1mib_ops():
    over = bench_fidelity.overhead([TinyNumpy()], threads=1, repeats=1, echo=None)
    assert over["noop_harness_s"] < 20e-6 and over["noop_bare_s"] < 20e-6  # microseconds, not more
    (op,) = over["ops"]
    assert op["op"] == "softmax" and op["workload"] == "sweep-1MiB-r1024"
    assert op["overhead"] == pytest.approx(over["added_s"] / op["median_s"])
    assert op["overhead"] <= bench_fidelity.OVERHEAD_LIMIT and over["ok"]


@pytest.mark.slow
def test_fidelity_claims_hold_on_the_cpu_backends():
    """The whole check (minutes). Its claims are about the harness on a machine whose cores are not
    all taken by other jobs: with more runnable jobs than cores, every sample measures the queue."""
    pytest.importorskip("softmaxbench.backends.registry")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores:
        pytest.skip(f"load average {load:.1f} on {cores} cores: the machine is oversubscribed")
    proc = subprocess.run([sys.executable, "-m", "softmaxbench.suite.bench_fidelity"], capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "-> holds" in proc.stdout and "DOES NOT HOLD" not in proc.stdout
