"""GPU integrity of the bench harness, for real, on a CUDA machine (each test skips with its reason
elsewhere): poisoned free memory, side streams inside the CUDA-event timer, the worker bench of the
GPU backends against their own copy bandwidth.

Run on a GPU machine:  python -m pytest tests/gpu/test_gpu_bench.py -m gpu -q
"""

from __future__ import annotations

import numpy as np
import pytest

from softmaxbench.backends import registry
from softmaxbench.suite.bench import measure as bench
from softmaxbench.suite.bench.workloads import Workload

pytestmark = pytest.mark.gpu


def backend_or_skip(name: str):
    b = registry.get(name)
    why = b.unavailable()
    if why:
        pytest.skip(f"{name}: {why}")
    return b


def test_torch_free_blocks_are_poisoned_with_nan():
    b = backend_or_skip("torch-cuda")
    import torch

    a = torch.zeros(1 << 20, device="cuda")  # a result left in an allocation
    del a
    b.poison_free_memory()
    again = torch.empty(1 << 20, device="cuda")  # the caching allocator hands the block back
    assert torch.isnan(again).all()


def test_cupy_free_blocks_are_poisoned_with_nan():
    b = backend_or_skip("cupy")
    import cupy

    a = cupy.zeros(1 << 20, dtype=cupy.float32)
    del a
    b.poison_free_memory()
    assert cupy.isnan(cupy.empty(1 << 20, dtype=cupy.float32)).all()


def test_event_timer_includes_work_on_a_side_stream():
    b = backend_or_skip("torch-cuda")
    import torch

    x = torch.randn(8192, 8192, device="cuda")
    side = torch.cuda.Stream()
    timer = b.timer()

    def on_main():
        return x @ x

    def on_side():
        with torch.cuda.stream(side):
            return x @ x

    main_s = min(timer.time(on_main, (), {}) for _ in range(5))
    side_s = min(timer.time(on_side, (), {}) for _ in range(5))
    assert side_s > 0.5 * main_s, (side_s, main_s)  # not the few microseconds of an empty main stream


@pytest.mark.parametrize("name", ["torch-cuda", "jax-gpu", "cupy", "cupy-fused"])
def test_worker_bench_of_a_gpu_backend_is_believable(name):
    backend_or_skip(name)
    w = [Workload("gpu-256MiB-r4096", "softmax", "float32", (16384, 4096))]
    s = bench.Settings(min_rounds=10, max_time=0.2, warmup_time=0.02)
    rc, recs = bench.run_bench(None, [name], workloads=w, settings=s, echo=None)
    copy, op = recs
    assert rc == 0, recs
    assert copy["timer"] != "perf_counter+synchronize" or name == "jax-gpu"
    assert op["verdict"] is None and op["gbps"] > 0 and op["fraction_of_copy"] <= 2.0, op
    assert np.isfinite(op["median_s"])
