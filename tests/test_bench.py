"""The benchmark harness: workloads, rotation, device-aware timers, the worker design, the trusted
side's checks, records and pytest-benchmark.

Small backends (a plugin file written here, loaded in the workers) stand in for the built-ins
(tiny shapes, few rounds). The code under test runs only in worker processes, never in this one.
"""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from softmaxbench.backends.base import Backend
from softmaxbench.suite.bench import judge, timers, workloads
from softmaxbench.suite.bench import measure as bench
from softmaxbench.suite.bench.workloads import MiB, Workload
from softmaxbench.suite.records import RESULTS_FILE, read_results, read_run, validate_record

TINY = bench.Settings(min_rounds=8, max_rounds=200, max_time=0.02, warmup_time=0.005, cache=64 * 1024,
                      prepare_timeout=60)
EXPLOITS = Path(__file__).parent / "exploits"

#: Small backends for the harness, loaded in the workers with --plugin.
TINY_PLUGIN = """
import time
import numpy as np
from softmaxbench.backends import Backend


class TinyNumpy(Backend):
    name = "tiny-numpy"
    device = "cpu"
    dtypes = ("float32", "float64")

    def softmax(self, x, axis=-1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def log_softmax(self, x, axis=-1):
        s = x - x.max(axis=axis, keepdims=True)
        return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))

    def softmax_vjp(self, x, cotangent, axis=-1):
        y = self.softmax(x, axis)
        return y * (cotangent - (cotangent * y).sum(axis=axis, keepdims=True))


class Compiling(TinyNumpy):
    name = "tiny-compiling"

    def __init__(self):
        self.compile_times = {}

    def softmax(self, x, axis=-1):
        key = ("softmax", tuple(x.shape), x.dtype.name)
        if key not in self.compile_times:
            time.sleep(0.06)
            self.compile_times[key] = 0.06
        return super().softmax(x, axis)


class Raising(TinyNumpy):
    name = "tiny-raising"

    def softmax(self, x, axis=-1):
        raise RuntimeError("kernel launch failed\\nsecond line")


class Jittery(TinyNumpy):
    name = "tiny-jittery"

    def __init__(self):
        self.n = 0

    def softmax(self, x, axis=-1):
        self.n += 1
        time.sleep(0.004 if self.n % 2 else 0.001)
        return super().softmax(x, axis)


class Allocating(TinyNumpy):
    # A fresh 48 MiB temporary per call (above glibc's largest dynamic mmap threshold, 32 MiB).
    name = "tiny-allocating"

    def softmax(self, x, axis=-1):
        tmp = bytearray(48 << 20)  # zero-filled: every page touched
        del tmp
        return super().softmax(x, axis)


def backends():
    return [TinyNumpy(), Compiling(), Raising(), Jittery(), Allocating()]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugins") / "tiny_backends.py"
    path.write_text(TINY_PLUGIN)
    return str(path)


def _run(out, names, plugin, workloads_, **kw):
    kw.setdefault("settings", TINY)
    kw.setdefault("echo", None)
    return bench.run_bench(out, names, plugins=[plugin], workloads=workloads_, **kw)


# --------------------------------------------------------------------------------------------- workloads

def test_bytes_moved_counts_the_fewest_bytes():
    shape, n = (4, 1000), 4 * 1000 * 4
    assert workloads.bytes_moved("softmax", shape, "float32") == 2 * n
    assert workloads.bytes_moved("log_softmax_vjp", shape, "float32") == 3 * n
    assert workloads.bytes_moved("cross_entropy", shape, "float32") == n + 4 * 8
    assert workloads.bytes_moved("cross_entropy_grad", shape, "float32") == 2 * n + 4 * 8
    assert workloads.bytes_moved("softmax", shape, "bfloat16") == n  # 2 x bytes of a 2-byte dtype
    with pytest.raises(ValueError):
        workloads.bytes_moved("matmul", shape, "float32")


def test_workload_sets_cover_the_issue():
    cpu = workloads.cpu_workloads()
    assert {w.op for w in cpu} == set(workloads.BENCH_OPS)
    assert {w.dtype for w in cpu} == {"float16", "bfloat16", "float32", "float64"}
    sweep = [w for w in cpu if w.label.startswith("sweep-")]
    assert {w.input_bytes for w in sweep} == set(workloads.CPU_SIZES)  # exact sizes, 1-256 MiB
    assert {w.row_length for w in sweep} == {64, 1024, 16384, 262144}
    llm = [w for w in cpu if w.label.startswith("llm-")]
    assert {w.row_length for w in llm} == {32000, 50257, 128256, 151936, 262144}
    assert max(w.input_bytes for w in cpu) <= 256 * MiB
    gpu = workloads.gpu_workloads()
    assert {w.row_length for w in gpu if w.label.startswith("gpu-")} == {1024, 4096, 32768, 262144}
    assert max(w.input_bytes for w in gpu) >= 4 * 2**30  # several GiB
    quick = workloads.quick_workloads()
    assert {w.op for w in quick} == set(workloads.BENCH_OPS) and len(quick) <= 8
    assert any(w.input_bytes >= 16 * MiB for w in quick) and any(w.input_bytes <= MiB for w in quick)


def test_select_filters_by_op_dtype_and_pattern():
    got = workloads.select("cpu", ops=["softmax"], dtypes=["float64"], names=["sweep-16MiB-*"])
    assert got and all(w.op == "softmax" and w.dtype == "float64" and w.input_bytes == 16 * MiB for w in got)
    assert workloads.select("cpu", quick=True, names=["nothing-*"]) == []


def test_inputs_are_deterministic_and_typed():
    w = Workload("t", "cross_entropy", "float32", (3, 5), seed=4)
    a, b = w.host_inputs(), w.host_inputs()
    assert np.array_equal(a[0], b[0]) and a[0].dtype == np.float32
    assert a[1].dtype == np.int64 and a[1].shape == (3,) and a[1].max() < 5
    assert len(Workload("t", "softmax_vjp", "bfloat16", (3, 5)).host_inputs()) == 2


def test_pool_rotates_over_more_than_the_cache_with_distinct_values():
    w = Workload("t", "softmax_vjp", "float32", (16, 64))  # 8 KiB per set (x, cotangent)
    pool = workloads.InputPool(Backend(), w, cache=40 * 1024)
    assert len(pool) * w.set_bytes >= workloads.ROTATION_FACTOR * 40 * 1024
    seen = [pool.next() for _ in range(len(pool))]
    assert pool.next() is seen[0]  # round robin, oldest first
    xs = [s[0] for s in seen]
    assert not any(np.shares_memory(xs[0], x) for x in xs[1:])  # distinct memory, not views
    assert all((xs[0] != x).any() for x in xs[1:])  # distinct values: a cached result cannot stand in
    assert np.array_equal(xs[3], w.input_set(3)[0])  # the trusted side rebuilds any set
    pool.refresh(999)
    assert pool.next()[0] is not seen[1][0] and pool.last_index == 999
    pool.stage([5000, 5001])  # judged sets built beforehand: refresh only moves them
    pool.refresh(5001)
    got = pool.next()
    assert pool.last_index == 5001 and np.array_equal(got[0], w.input_set(5001)[0])


@pytest.mark.parametrize("op", ["softmax", "log_softmax_vjp", "cross_entropy_grad", "copy", "logsumexp"])
def test_the_judged_rows_are_built_alone_and_agree_with_the_whole_set(op):
    w = Workload("t", op, "float32", (7, 13))
    cache, rows = judge.InputCache(), [0, 3, 6]
    for i in (0, 1, 5, 4099):
        whole, part = w.input_set(i), cache.rows(w, i, rows)
        assert np.array_equal(whole[0].reshape(-1, 13)[rows], part[0])
        np.testing.assert_allclose(judge.expected(w, part, [0, 1, 2]), judge.expected(w, whole, rows))


def test_staged_input_sets_tighten_the_clock_allowance():
    kept, sets = 2 * 4096 * 1024 * 8, 2 * 16 * MiB  # two judged rounds at 16 MiB float32
    assert judge.staged(sets) and not judge.staged(judge.STAGE_LIMIT + 1)
    assert judge.harness_allowance(20, kept, sets) < 0.25  # was 0.1 + 0.002 + 0.5 s before staging
    big = judge.STAGE_LIMIT + 1
    assert judge.harness_allowance(20, 0, big) > big / judge.BUILD_RATE  # built in the request: allowed


def test_cache_size_from_sysfs_or_env(monkeypatch):
    monkeypatch.setenv("SOFTMAXBENCH_CACHE_BYTES", "3M")
    assert workloads.cpu_cache_bytes() == 3 * MiB
    monkeypatch.delenv("SOFTMAXBENCH_CACHE_BYTES")
    assert workloads.cpu_cache_bytes() >= 256 * 1024
    assert workloads._parse_size("307200K") == 300 * MiB


# --------------------------------------------------------------------------------------------- timers

def test_host_timer_waits_for_async_results_and_synchronizes():
    calls = []

    class Async:
        def block_until_ready(self):
            time.sleep(0.01)
            calls.append("block")
            return self

    class Dev(Backend):
        def synchronize(self):
            calls.append("sync")

    seconds = timers.HostTimer(Dev()).time(lambda: Async(), (), {})
    assert seconds >= 0.01  # the wait for the result is inside the timed region
    assert calls == ["sync", "block", "sync"]


def test_cuda_event_timer_times_side_streams_in_full():
    """The event timer reads the device clock; a kernel still running on another stream when the
    end event is recorded makes the later event (after synchronize) the end."""
    log, clock = [], {"t": 0.0}

    class Event:
        def record(self):
            log.append("record")
            self.t = clock["t"]

        def synchronize(self):
            log.append("event-sync")

    class Gpu(Backend):
        device = "gpu"
        side = 0.0

        def synchronize(self):
            log.append("device-sync")
            clock["t"] += self.side

    gpu = Gpu()
    timer = timers.CudaEventTimer(gpu, Event, lambda a, b: (b.t - a.t) * 1e3)

    def op():
        log.append("op")
        clock["t"] += 0.0025

    assert timer.time(op, (), {}) == pytest.approx(0.0025)
    assert log == ["device-sync", "record", "op", "record", "device-sync", "record", "event-sync"]
    gpu.side = 0.004  # a side stream kept the device busy 4 ms past the end event
    assert timer.time(op, (), {}) == pytest.approx(0.0065)


def test_framework_code_lives_behind_backend_hooks():
    """No torch or cupy in suite/bench: they are behind Backend hooks in backends/."""
    import softmaxbench.suite.bench as pkg
    from softmaxbench.backends import cupy_backend, torch_backend

    for f in Path(pkg.__file__).parent.glob("*.py"):
        text = f.read_text()
        assert "import torch" not in text and "import cupy" not in text, f.name
    for cls in (torch_backend.TorchCUDA, cupy_backend.CuPyBackend):
        for hook in ("timer", "free_memory", "poison_free_memory", "copy"):
            assert getattr(cls, hook) is not getattr(Backend, hook), (cls, hook)
    assert torch_backend.TorchCPU().threads_in_use() >= 1


def test_gpu_workloads_that_do_not_fit_are_skipped():
    from softmaxbench.suite.bench import in_worker

    class Gpu(Backend):
        device = "gpu"
        free = 64 * 2**30

        def free_memory(self):
            return self.free

    gpu = Gpu()
    w = Workload("gpu-4GiB-r1024", "softmax_vjp", "float32", (2**20, 1024))  # 8 GiB per input set
    assert in_worker._device_memory_problem(gpu, w, cache=50 * MiB) is None  # 2 sets + outputs: 28 GiB
    gpu.free = 16 * 2**30
    assert "GiB free" in in_worker._device_memory_problem(gpu, w, cache=50 * MiB)
    assert in_worker._device_memory_problem(Backend(), w, cache=50 * MiB) is None  # CPU: not asked


def test_timer_choice_by_device_and_framework():
    cpu_torch = type("T", (Backend,), {"framework": "torch", "device": "cpu"})()
    gpu_jax = type("J", (Backend,), {"framework": "jax", "device": "gpu"})()
    assert isinstance(timers.timer_for(cpu_torch), timers.HostTimer)
    assert isinstance(timers.timer_for(gpu_jax), timers.HostTimer)  # block_until_ready + synchronize


def test_summary_figures():
    s = timers.summarize([2.0, 1.0, 4.0, 3.0, 100.0])
    assert s.median == 3.0 and s.iqr == 2.0 and s.n == 5 and s.cv > 1



# --------------------------------------------------------------------------------------------- the harness

def test_bench_records_and_pytest_benchmark_hold_the_same_samples(tmp_path, tiny):
    ws = [Workload("tiny", "softmax", "float32", (8, 256)),
          Workload("tiny", "softmax_vjp", "float32", (8, 256))]
    rc, recs = _run(tmp_path, ["tiny-numpy"], tiny, ws, threads=1)
    assert rc == 0, recs
    on_disk = read_results(tmp_path)
    assert [r["backend"] for r in on_disk] == ["copy:tiny-numpy", "tiny-numpy", "tiny-numpy"]
    for r in on_disk:
        validate_record(r)
        assert r["kind"] == "bench" and len(r["samples_s"]) >= TINY.min_rounds
        assert r["median_s"] == pytest.approx(float(np.median(r["samples_s"])))
        assert r["gbps"] == pytest.approx(r["bytes"] / r["median_s"] / 1e9)
        assert r["iqr_s"] >= 0 and r["cv"] >= 0
        assert sum(r["samples_s"]) <= r["request_wall_s"]  # bounded by the trusted clock
    copy, sm, vjp = on_disk
    assert copy["op"] == "copy" and copy["bytes"] == 2 * 8 * 256 * 4
    assert sm["bytes"] == 2 * 8 * 256 * 4 and vjp["bytes"] == 3 * 8 * 256 * 4
    assert sm["copy_gbps"] == copy["gbps"]
    assert sm["fraction_of_copy"] == pytest.approx(sm["gbps"] / copy["gbps"])
    run = read_run(tmp_path)
    assert run["kind"] == "bench" and run["threads"] == 1 and run["finished"]

    pb = bench.load_pytest_benchmark(tmp_path)
    by_name = {b["name"]: b for b in pb["benchmarks"]}
    assert set(by_name) == {f"test_throughput[{i}]" for i in
                            ("copy:tiny-numpy-copy-float32-tiny", "tiny-numpy-softmax-float32-tiny",
                             "tiny-numpy-softmax_vjp-float32-tiny")}
    pb_sm = by_name["test_throughput[tiny-numpy-softmax-float32-tiny]"]
    assert pb_sm["stats"]["data"] == sm["samples_s"]
    assert pb_sm["extra_info"]["bytes"] == sm["bytes"]


def test_backends_run_in_their_own_workers_and_take_turns(tmp_path, tiny):
    ws = [Workload("a", "softmax", "float32", (8, 256)), Workload("b", "softmax", "float32", (16, 256))]
    rc, recs = _run(tmp_path, ["tiny-numpy", "tiny-jittery"], tiny, ws)
    assert rc == 0
    order = [(r["workload"], r["backend"]) for r in recs]
    # each group goes to every backend's worker in turn, every copy before any op (an op's figure
    # is set against the copies of its group); who starts rotates
    assert order == [("a", "copy:tiny-jittery"), ("a", "copy:tiny-numpy"), ("a", "tiny-jittery"),
                     ("a", "tiny-numpy"), ("b", "copy:tiny-numpy"), ("b", "copy:tiny-jittery"),
                     ("b", "tiny-numpy"), ("b", "tiny-jittery")]
    assert "tiny_backends" not in sys.modules  # the plugin never ran in this process


def test_rerun_replaces_the_results(tmp_path, tiny):
    w = [Workload("tiny", "softmax", "float32", (4, 64))]
    for _ in range(2):
        _run(tmp_path, ["tiny-numpy"], tiny, w, copies=False)
    assert len(read_results(tmp_path)) == 1


def test_compile_time_is_measured_apart(tmp_path, tiny):
    w = [Workload("tiny", "softmax", "float32", (4, 64))]
    _, (rec,) = _run(tmp_path, ["tiny-compiling"], tiny, w, copies=False)
    assert rec["compile_s"] == 0.06
    assert rec["first_call_s"] >= 0.06
    assert rec["median_s"] < 0.01  # no compile in the timed rounds


def test_unsupported_and_raising_ops_are_recorded(tmp_path, tiny):
    ws = [Workload("tiny", "cross_entropy", "float32", (4, 64)),
          Workload("tiny", "softmax", "float32", (4, 64))]
    rc, recs = _run(tmp_path, ["tiny-raising"], tiny, ws, copies=False)
    assert rc == 1
    verdicts = {r["op"]: (r["verdict"], r.get("message")) for r in recs}
    assert verdicts["cross_entropy"][0] == "unsupported"
    assert verdicts["softmax"] == ("error", "RuntimeError: kernel launch failed")
    assert "unsupported" in bench.table(recs) and "error" in bench.table(recs)


def test_wide_spread_is_flagged(tiny):
    s = bench.Settings(min_rounds=10, max_rounds=10, max_time=0.001, warmup_time=0.0, min_warmup=1,
                       cache=1024)
    _, (rec,) = _run(None, ["tiny-jittery"], tiny, [Workload("t", "softmax", "float32", (2, 8))],
                     settings=s, copies=False)
    assert rec["cv"] > 0.05 and "coefficient of variation" in rec["warning"]


def test_the_workers_allocator_reuses_freed_memory(tiny, monkeypatch):
    """A call's fresh 48 MiB temporary: glibc's default maps (and the kernel page-faults) it anew
    every call; the bench workers' allocator (ALLOCATOR_ENV) reuses it, so the figure is the op's."""
    for k in bench.ALLOCATOR_ENV:
        monkeypatch.delenv(k, raising=False)
    w = [Workload("t", "softmax", "float32", (4, 64))]
    _, (rec,) = _run(None, ["tiny-allocating"], tiny, w, copies=False)
    assert rec["verdict"] is None and rec["minor_faults_per_call"] < 100, rec
    monkeypatch.setattr(bench, "ALLOCATOR_ENV", {})
    _, (plain,) = _run(None, ["tiny-allocating"], tiny, w, copies=False)
    assert plain["minor_faults_per_call"] > 5000, plain  # 12288 pages of 4 KiB, faulted every call
    assert 0 < rec["cpu_share"] < 4 and rec["median_s"] < plain["median_s"]


def test_passes_rotate_the_backends_and_each_record_holds_every_pass(tiny):
    s = bench.Settings(min_rounds=9, max_rounds=9, max_time=0.9, warmup_time=0.001, min_warmup=1, cache=1024,
                       passes=3)
    assert s.effective_passes == 3 and bench.Settings(max_time=0.4).effective_passes == 1
    w = [Workload("t", "softmax", "float32", (2, 8))]
    _, recs = _run(None, ["tiny-numpy", "tiny-compiling"], tiny, w, settings=s)
    assert len(recs) == 4
    for r in recs:
        assert r["verdict"] is None and r["passes"] == 3 and len(r["pass_median_s"]) == 3, r
        assert len(r["samples_s"]) == r["rounds"] == 9
        assert r["median_s"] == pytest.approx(float(np.median(r["samples_s"])))
    assert all(r["fraction_of_copy"] for r in recs if r["op"] != "copy")


def test_run_group_interleaves_the_passes_and_writes_each_record_after_its_last():
    calls = []

    class Fake:
        def start_item(self, item):
            return bench._Pending(item, {"backend": item.backend.name, "op": item.workload.op})

        def run_pass(self, p, k):
            calls.append((k, p.rec["backend"], p.rec["op"]))

        def release(self, name):
            calls.append(("release", name))

        def finish_item(self, p):
            calls.append(("finish", p.rec["backend"], p.rec["op"]))
            return p.rec

    targets = [bench.Target(n, "cpu", ("float32",), ("softmax",)) for n in ("a", "b")]
    (group,) = bench.plan(targets, workloads=[Workload("t", "softmax", "float32", (2, 8))])
    recs = bench.run_group(Fake(), group, 2)
    # every copy of the pass first, then the ops; each turn ends in a release; who starts rotates
    assert calls == [(0, "a", "copy"), ("release", "a"), (0, "b", "copy"), ("release", "b"),
                     (0, "a", "softmax"), ("release", "a"), (0, "b", "softmax"), ("release", "b"),
                     (1, "b", "copy"), ("finish", "b", "copy"), ("release", "b"),
                     (1, "a", "copy"), ("finish", "a", "copy"), ("release", "a"),
                     (1, "b", "softmax"), ("finish", "b", "softmax"), ("release", "b"),
                     (1, "a", "softmax"), ("finish", "a", "softmax"), ("release", "a")]
    assert [(r["backend"], r["op"]) for r in recs] == [("b", "copy"), ("a", "copy"), ("b", "softmax"),
                                                       ("a", "softmax")]


def test_threads_reach_the_worker():
    w = [Workload("t", "softmax", "float32", (4, 64))]
    _, recs = bench.run_bench(None, ["torch-cpu"], workloads=w, settings=TINY, threads=1, echo=None,
                              copies=False)
    assert recs[0]["threads"] == 1, recs  # torch.get_num_threads() in the worker


def test_pytest_benchmark_compare_reads_our_json(tmp_path, tiny):
    w = [Workload("tiny", "softmax", "float32", (4, 64))]
    for d in ("a", "b"):
        _run(tmp_path / d, ["tiny-numpy"], tiny, w, copies=False)
    cmd = [sys.executable, "-c", "import sys; from pytest_benchmark.cli import main; sys.exit(main())"]
    proc = subprocess.run(cmd + ["compare", str(tmp_path / "a" / bench.PYTEST_BENCHMARK_FILE),
                                 str(tmp_path / "b" / bench.PYTEST_BENCHMARK_FILE), "--group-by=name"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tiny-numpy-softmax-float32-tiny" in proc.stdout


def test_module_alone_under_pytest_skips_with_a_pointer(tmp_path):
    """bench_suite.py runs inside the workers; alone it has nothing to time and says so."""
    from softmaxbench.suite.bench import bench_suite

    proc = subprocess.run([sys.executable, "-m", "pytest", bench_suite.__file__, "--benchmark-only", "-rs",
                           "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                           "-n", "0"],  # as a user runs it: not under this project's addopts' -n 2
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "softmaxbench bench" in proc.stdout


# ------------------------------------------------------------------------------------- the trusted checks

EXPLOIT_WORK = [Workload("t", "softmax", "float32", (256, 1024))]
EXPLOIT_SETTINGS = bench.Settings(min_rounds=8, max_rounds=400, max_time=0.05, warmup_time=0.005,
                                  cache=1 << 20, prepare_timeout=8)


@pytest.mark.parametrize("plugin,verdict,says", [
    ("lazy", "fail", "before their results were computed"),
    ("replay", "fail", "not the op's result"),
    ("replay_id", "fail", "replayed results cached"),
    ("clock", "fail", "not plausible"),
    ("exit", "crash", "exited with code 0"),
    ("segv", "crash", "SIGSEGV"),
    ("hang", "timeout", "no answer within"),
])
def test_hostile_bench_plugins_get_their_verdict_and_the_rest_goes_on(tmp_path, plugin, verdict, says):
    name = f"exploit-bench-{plugin}"
    rc, recs = bench.run_bench(tmp_path, [name, "numpy"], plugins=[str(EXPLOITS / f"bench_{plugin}.py")],
                               workloads=EXPLOIT_WORK, settings=EXPLOIT_SETTINGS, echo=None)
    assert rc == 1
    (hostile,) = [r for r in recs if r["backend"] == name]
    assert hostile["verdict"] == verdict and says in hostile["message"], hostile
    assert hostile.get("gbps") is None and hostile.get("fraction_of_copy") is None
    (honest,) = [r for r in recs if r["backend"] == "numpy"]
    assert honest["verdict"] is None and honest["gbps"] > 0  # a hostile backend costs its own cases only
    assert len(read_results(tmp_path)) == len(recs)
    pb = bench.load_pytest_benchmark(tmp_path)
    assert not any(f"[{name}-" in b["name"] for b in pb["benchmarks"])


def test_one_slow_conversion_or_judged_round_is_noise_every_one_is_evidence():
    """A worker preempted while converting one sampled output, or during one judged round, is not
    lazy or replaying (an honest torch copy once converted in 2.97 ms on a busy host); the same
    delay in every sample is."""
    ready = {"materialize_s": 4e-5, "ready_s": 4e-5}
    slow = {"materialize_s": 3e-3, "ready_s": 4e-5}
    assert judge.lazy_problem([slow, ready, ready], median_s=3e-3) is None
    assert "before their results were computed" in judge.lazy_problem([slow, slow, slow], median_s=3e-3)
    assert judge.replay_problem([(0.09, 0.03, 0.04), (0.031, 0.03, 0.04), (0.029, 0.03, 0.04)]) is None
    assert "replayed results" in judge.replay_problem([(0.1, 0.03, 0.04), (0.11, 0.03, 0.04)])
    # a busy machine: a tenth of the rounds or more as slow as the judged ones
    assert judge.replay_problem([(0.1, 0.03, 0.2), (0.11, 0.03, 0.2)]) is None
    # tiny workloads: a cold fresh input can take several times a warm pool's, but not 200 us more
    assert judge.replay_problem([(40e-6, 5e-6, 6e-6), (50e-6, 5e-6, 6e-6)]) is None


def test_a_figure_above_the_copy_bandwidth_is_implausible():
    assert judge.implausible(10.0, 8.0) is None
    why = judge.implausible(1927 * 8.0, 8.0)
    assert "1.93e+03x the device's copy bandwidth" in why
    assert "cannot be checked" in judge.implausible(3.0, None)
    rec = {"backend": "b", "op": "softmax", "dtype": "float32", "workload": "w", "shape": [2, 2],
           "verdict": None, "implausible": why, "claimed_gbps": 15416.0, "gbps": None}
    assert "implausible" in bench.table([rec]) and "15416" not in bench.table([rec])


def test_clock_check_bounds_the_samples_by_the_parent_wall():
    assert "impossible" in judge.timing_problem([0.2] * 10, wall_s=1.0, rounds=10)
    assert "not plausible" in judge.timing_problem([0.01] * 100, wall_s=10.0, rounds=100)
    assert judge.timing_problem([0.09] * 100, wall_s=10.0, rounds=100) is None
    assert "samples for" in judge.timing_problem([0.1], wall_s=1.0, rounds=2)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "softmax_vjp", "log_softmax_vjp", "cross_entropy",
                                "cross_entropy_grad", "logsumexp", "copy"])
def test_output_check_tells_a_result_from_another_inputs_result(op):
    w = Workload("t", op, "float32", (8, 64))
    a, b = w.input_set(1), w.input_set(2)
    rows = [0, 3, 7]
    right = judge.expected(w, a, None if op == "cross_entropy" else rows).astype(np.float32)
    assert judge.output_problem(w, a, right, None if op == "cross_entropy" else rows, "r") is None
    assert "r:" in judge.output_problem(w, b, right, None if op == "cross_entropy" else rows, "r")


def test_small_figures_keep_significant_digits():
    assert bench.sig(0.00312) == "0.00312" and bench.sig(0.0) == "0" and bench.sig(41.2345) == "41.2"
    line = bench.progress_line({"backend": "slow", "op": "softmax", "dtype": "float32", "workload": "w",
                                "verdict": None, "gbps": 0.004})
    assert "0.00400 GB/s" in line and "0.00 GB/s" not in line


# --------------------------------------------------------------------------------------------- the verb

def _cli(*argv):
    from softmaxbench.suite.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return exc.value.code


@pytest.mark.parametrize("argv,message", [
    (["--ops", "matmul"], "cannot benchmark op 'matmul'"),
    (["--dtypes", "float8"], "unknown dtype 'float8'"),
    (["--threads", "0"], "--threads must be at least 1"),
])
def test_bad_bench_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    assert _cli("bench", "--out", str(tmp_path), *argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_backend_is_exit_2(capsys, tmp_path):
    assert _cli("bench", "--backends", "no-such-backend", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "no-such-backend" in err and "Traceback" not in err


def test_bench_verb_prints_throughput_for_numpy(capsys, tmp_path, monkeypatch):
    import softmaxbench.backends.registry  # noqa: F401 - a missing module is a failure
    monkeypatch.setenv("SOFTMAXBENCH_CACHE_BYTES", "4M")
    rc = _cli("bench", "--backends", "numpy", "--ops", "softmax", "--quick", "--cases", "sweep-1MiB-*",
              "--min-rounds", "5", "--out", str(tmp_path))
    out = capsys.readouterr().out
    assert rc == 0
    assert "GB/s" in out and "% copy" in out and "numpy" in out
    recs = read_results(tmp_path / RESULTS_FILE)
    assert [r["backend"] for r in recs] == ["copy:numpy", "numpy"] and recs[1]["fraction_of_copy"] > 0


@pytest.mark.gpu
def test_cuda_event_timer_on_a_real_device():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    from softmaxbench.backends.torch_backend import TorchCUDA

    x = torch.randn(4096, 4096, device="cuda")
    timer = timers.timer_for(TorchCUDA())
    assert isinstance(timer, timers.CudaEventTimer) and timer.name == "torch.cuda.Event"
    assert 0 < timer.time(torch.softmax, (x, -1), {}) < 1


@pytest.mark.slow
def test_quick_bench_of_every_cpu_backend(tmp_path):
    """The judged run: ``softmaxbench bench --quick`` prints GB/s and % of copy for each CPU backend."""
    import softmaxbench.backends.registry  # noqa: F401 - a missing module is a failure
    proc = subprocess.run([sys.executable, "-m", "softmaxbench", "bench", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [r for r in read_results(tmp_path) if r["op"] != "copy"]
    assert recs and all(r["gbps"] and r["fraction_of_copy"] for r in recs if r.get("verdict") is None)


def test_docstring_examples_run():
    from benchmarks import bench_fidelity
    from softmaxbench.reports import compare

    for mod in (workloads, timers, bench, judge, bench_fidelity, compare):
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


def test_sigterm_is_like_ctrl_c_and_a_second_run_on_the_same_out_is_refused(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "softmaxbench", "bench", "--backends", "exploit-bench-hang,numpy",
           "--plugin", str(EXPLOITS / "bench_hang.py"), "--ops", "softmax", "--quick", "--cases",
           "sweep-1MiB-*", "--out", str(out)]
    env = {**os.environ, "SOFTMAXBENCH_CACHE_BYTES": "1M"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        results = out / RESULTS_FILE
        while time.monotonic() < deadline and not (results.is_file() and results.stat().st_size > 0):
            time.sleep(0.2)  # the copy's record is written: the hanging op is next
        time.sleep(1.0)  # the hanging op is now in its worker
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
        assert second.returncode == 2 and "another softmaxbench run" in second.stderr, second.stderr
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert read_run(out)["interrupted"] is True
    assert [r["backend"] for r in read_results(out)][:1] == ["copy:exploit-bench-hang"]


def test_the_kernels_thread_accounting_bounds_a_slowed_clock():
    """The second clock witness: the busiest thread's CPU seconds, read from /proc, are a lower
    bound of the timed calls; a clock slowed to 0.4 of real time reports less than that."""
    import os as _os
    import time as _time

    from softmaxbench.suite.bench import judge as bench_judge

    before = bench_judge.thread_cpu_s(_os.getpid())
    t0 = _time.thread_time()
    while _time.thread_time() - t0 < 0.5:  # 0.5 s of CPU on this thread, however busy the machine
        pass
    busiest = bench_judge.busiest_thread_s(before, bench_judge.thread_cpu_s(_os.getpid()))
    assert busiest >= 0.45  # the kernel counts in ticks of 10 ms
    real = [busiest / 10] * 10
    assert bench_judge.cpu_problem(real, busiest, allowance_s=0.1) is None
    assert "was the clock patched" in bench_judge.cpu_problem([x * 0.4 for x in real], busiest, 0.1)
    assert bench_judge.thread_cpu_s(2**22 + 12345) == {}  # no such process: no witness, no failure


def test_bench_timeout_option_bounds_a_hung_preparation(tmp_path):
    """A backend that hangs in its first call costs --timeout seconds, not the 600 s default:
    a timeout record, the honest backend's figure, exit 1."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "softmaxbench", "bench", "--plugin", str(EXPLOITS / "bench_hang.py"),
           "--backends", "exploit-bench-hang,numpy", "--ops", "softmax", "--dtypes", "float32",
           "--cases", "sweep-1MiB-r1024", "--quick", "--timeout", "3", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    recs = {(r["backend"], r["op"]): r for r in read_results(out)}
    hung = recs[("exploit-bench-hang", "softmax")]
    assert hung["verdict"] == "timeout" and "3" in hung["message"], hung
    assert recs[("numpy", "softmax")]["gbps"] > 0


def test_a_slowed_copy_hook_does_not_inflate_its_fraction_of_copy(tmp_path):
    """Every CPU backend shares the machine's memory: a copy far below another backend's copy of
    the same workload is not the memory's bandwidth, and the fastest copy becomes the bar."""
    name = "exploit-bench-slow_copy"
    rc, recs = bench.run_bench(tmp_path, [name, "numpy"], plugins=[str(EXPLOITS / "bench_slow_copy.py")],
                               workloads=EXPLOIT_WORK, settings=EXPLOIT_SETTINGS, echo=None)
    by = {r["backend"]: r for r in recs}
    own, honest = by[f"copy:{name}"], by["copy:numpy"]
    assert own["gbps"] < 0.5 * honest["gbps"], (own, honest)  # the hook really is slow
    op = by[name]
    assert op["copy_of"] == "copy:numpy" and op["own_copy_gbps"] == pytest.approx(own["gbps"])
    assert op["copy_gbps"] == pytest.approx(honest["gbps"])
    assert op["fraction_of_copy"] == pytest.approx(op["gbps"] / honest["gbps"])
    assert "copy_of" not in by["numpy"]  # an honest backend keeps its own copy
