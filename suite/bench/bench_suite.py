"""The pytest-benchmark module that times a backend, run inside the backend's worker.

``softmaxbench bench`` sends each worker one workload at a time; the worker's pytest session
(``suite.bench.in_worker.PytestSession``, one per worker, started on the first workload) runs
:func:`test_throughput` once per workload: ``benchmark.pedantic`` with the backend's device
timer as pytest-benchmark's clock, so the numbers pytest-benchmark holds are exactly the samples
the worker reports (the trusted process checks them against its own clock, and writes
``pytest-benchmark.json`` from the checked records).

Run on its own (``pytest bench_suite.py``) there is no workload to time: the test is skipped
with a pointer to ``softmaxbench bench``, which is the way to run it (the code under test runs
only in workers).
"""

from __future__ import annotations

import pytest

from softmaxbench.suite.bench import in_worker

# pytest-benchmark reads in_worker.CLOCK, which our device timers advance by the measured call time.
pytestmark = pytest.mark.benchmark(timer=in_worker.CLOCK, disable_gc=True)


def test_throughput(benchmark) -> None:
    """Time the worker's current workload (its timed rounds; the samples go back to the parent)."""
    job = in_worker.current_job()
    if job is None:
        pytest.skip("no workload: run 'softmaxbench bench' (it runs this module in each backend's worker)")
    in_worker.run_job(benchmark, job)
