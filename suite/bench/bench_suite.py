"""The shipped pytest-benchmark module: one ``test_throughput`` per (backend, workload).

``softmaxbench bench`` runs it with its selection. It also runs on its own, as any
pytest-benchmark suite does::

    # the module's path: python -c 'import softmaxbench.suite.bench.bench_suite as m; print(m.__file__)'
    pytest --benchmark-only "$BENCH_SUITE_PATH" \\
        --benchmark-json=bench.json

selecting with environment variables (``SOFTMAXBENCH_BENCH_BACKENDS=numpy,torch-cpu``, ``_OPS``,
``_DTYPES``, ``_WORKLOADS``, ``_PLUGINS``, ``_QUICK=0`` for the full sweep, ``_MIN_ROUNDS``,
``_THREADS``, ``_OUT=DIR`` to also write softmaxbench records). Every test times one op with
the device's own timer (``suite.timers``) through ``benchmark.pedantic``; the numbers
pytest-benchmark stores are exactly the samples in the softmaxbench record.
"""

from __future__ import annotations

import pytest

from softmaxbench.suite.bench import measure as bench

# pytest-benchmark reads bench.CLOCK, which our device timers advance by the measured call time.
pytestmark = pytest.mark.benchmark(timer=bench.CLOCK, disable_gc=True)


def pytest_generate_tests(metafunc) -> None:
    if "bench_item" not in metafunc.fixturenames:
        return
    session = bench.session_for(metafunc.config)
    if not session.items:
        metafunc.parametrize("bench_item", [pytest.param(None, marks=pytest.mark.skip(
            reason=f"nothing to benchmark: {session.note or 'no workload selected'}"))], ids=["none"])
        return
    metafunc.parametrize("bench_item", session.items, ids=[item.id for item in session.items])


def test_throughput(benchmark, bench_item: bench.BenchItem, request) -> None:
    """Throughput of one backend (or copy kernel) on one workload; the record is written as it ends."""
    bench.measure(benchmark, bench.session_for(request.config), bench_item)
