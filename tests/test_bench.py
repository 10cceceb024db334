"""The benchmark harness: workloads, rotation, device-aware timers, records and pytest-benchmark.

Small backends defined here stand in for the built-ins (tiny shapes, few rounds): the CI part
of this file runs in well under a minute.
"""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from softmaxbench.backends.base import Backend
from softmaxbench.suite.bench import measure as bench
from softmaxbench.suite.bench import timers, workloads
from softmaxbench.suite.bench.workloads import MiB, Workload
from softmaxbench.suite.isolation.threads import THREAD_VARIABLES
from softmaxbench.suite.records import RESULTS_FILE, read_results, read_run, validate_record

TINY = Settings = bench.Settings(min_rounds=8, max_rounds=200, max_time=0.02, warmup_time=0.005,
                                 cache=64 * 1024)


class TinyNumpy(Backend):
    """The textbook softmax family in NumPy, enough for the benchmark."""

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
    """Pretends to jit: the first call per (op, shape, dtype) 'compiles' for 60 ms."""

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
        raise RuntimeError("kernel launch failed\nsecond line")


class Jittery(Backend):
    """Alternates 1 ms and 4 ms calls: a wide spread."""

    name = "tiny-jittery"
    dtypes = ("float32",)

    def __init__(self):
        self.n = 0

    def softmax(self, x, axis=-1):
        self.n += 1
        time.sleep(0.004 if self.n % 2 else 0.001)
        return x


@pytest.fixture
def numpy_copy_only(monkeypatch):
    """The device copy measured with np.copyto only (torch's import is slow for CI)."""
    monkeypatch.setattr(bench, "copy_kernels", lambda device: [bench.NumpyCopy()])


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


def test_pool_rotates_over_more_than_the_cache():
    w = Workload("t", "softmax_vjp", "float32", (16, 64))  # 8 KiB per set (x, cotangent)
    pool = workloads.InputPool(Backend(), w, cache=40 * 1024)
    assert len(pool) * w.set_bytes >= workloads.ROTATION_FACTOR * 40 * 1024
    seen = [pool.next() for _ in range(len(pool))]
    assert pool.next() is seen[0]  # round robin, oldest first
    xs = [s[0] for s in seen]
    assert not any(np.shares_memory(xs[0], x) for x in xs[1:])  # distinct memory, not views
    workloads.clear_host_pool()


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


def _fake_cuda_module(kind: str, elapsed_ms: float, log: list):
    class Event:
        def __init__(self, *a, **k):
            self.recorded = False

        def record(self, *a):
            log.append("record")

        def synchronize(self):
            log.append("event-sync")

        def elapsed_time(self, end):
            return elapsed_ms

    if kind == "torch":
        return types.SimpleNamespace(cuda=types.SimpleNamespace(Event=Event))
    return types.SimpleNamespace(cuda=types.SimpleNamespace(Event=Event,
                                                             get_elapsed_time=lambda s, e: elapsed_ms))


@pytest.mark.parametrize("framework,kind,cls", [("torch", "torch", timers.TorchEventTimer),
                                                 ("cupy-cuda12x", "cupy", timers.CupyEventTimer)])
def test_gpu_backends_get_cuda_event_timers(monkeypatch, framework, kind, cls):
    log: list = []
    monkeypatch.setitem(sys.modules, kind, _fake_cuda_module(kind, 2.5, log))

    class Gpu(Backend):
        device = "gpu"

        def synchronize(self):
            log.append("device-sync")

    Gpu.framework = framework
    timer = timers.timer_for(Gpu())
    assert isinstance(timer, cls)
    assert timer.time(lambda: log.append("op"), (), {}) == pytest.approx(0.0025)
    assert log == ["device-sync", "record", "op", "record", "event-sync"]


def test_gpu_workloads_that_do_not_fit_are_skipped(monkeypatch):
    free = {"bytes": 64 * 2**30}
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(empty_cache=lambda: None,
                                                            mem_get_info=lambda: (free["bytes"], 80 * 2**30)))
    monkeypatch.setitem(sys.modules, "torch", fake)
    gpu = type("G", (Backend,), {"device": "gpu", "framework": "torch"})()
    w = Workload("gpu-4GiB-r1024", "softmax_vjp", "float32", (2**20, 1024))  # 8 GiB per input set
    assert bench._device_memory_problem(gpu, w, cache=50 * MiB) is None  # 2 sets + outputs: 28 GiB
    free["bytes"] = 16 * 2**30
    assert "GiB free" in bench._device_memory_problem(gpu, w, cache=50 * MiB)
    assert bench._device_memory_problem(TinyNumpy(), w, cache=None) is None  # CPU: not asked


def test_timer_choice_by_device_and_framework():
    cpu_torch = type("T", (Backend,), {"framework": "torch", "device": "cpu"})()
    gpu_jax = type("J", (Backend,), {"framework": "jax", "device": "gpu"})()
    assert isinstance(timers.timer_for(cpu_torch), timers.HostTimer)
    assert isinstance(timers.timer_for(gpu_jax), timers.HostTimer)  # block_until_ready + synchronize


def test_summary_figures():
    s = timers.summarize([2.0, 1.0, 4.0, 3.0, 100.0])
    assert s.median == 3.0 and s.iqr == 2.0 and s.n == 5 and s.cv > 1


# --------------------------------------------------------------------------------------------- the harness

def test_bench_records_and_pytest_benchmark_hold_the_same_samples(tmp_path, numpy_copy_only):
    ws = [Workload("tiny", "softmax", "float32", (8, 256)),
          Workload("tiny", "softmax_vjp", "float32", (8, 256))]
    rc, recs = bench.run_bench(tmp_path, [TinyNumpy()], ws, settings=TINY, threads=1, echo=None)
    assert rc == 0
    on_disk = read_results(tmp_path)
    assert [r["backend"] for r in on_disk] == ["copy:numpy", "tiny-numpy", "tiny-numpy"]
    for r in on_disk:
        validate_record(r)
        assert r["kind"] == "bench" and len(r["samples_s"]) >= TINY.min_rounds
        assert r["median_s"] == pytest.approx(float(np.median(r["samples_s"])))
        assert r["gbps"] == pytest.approx(r["bytes"] / r["median_s"] / 1e9)
        assert r["iqr_s"] >= 0 and r["cv"] >= 0 and r["threads"] == 1
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
                            ("copy:numpy-copy-float32-tiny", "tiny-numpy-softmax-float32-tiny",
                             "tiny-numpy-softmax_vjp-float32-tiny")}
    pb_sm = by_name["test_throughput[tiny-numpy-softmax-float32-tiny]"]
    assert pb_sm["stats"]["data"] == sm["samples_s"]  # bit-identical: our clock is pytest-benchmark's timer
    assert pb_sm["extra_info"]["bytes"] == sm["bytes"]
    assert "HarnessClock" in pb_sm["options"]["timer"]


def test_rerun_replaces_the_results(tmp_path, numpy_copy_only):
    w = [Workload("tiny", "softmax", "float32", (4, 64))]
    for _ in range(2):
        bench.run_bench(tmp_path, [TinyNumpy()], w, settings=TINY, echo=None, copies=False)
    assert len(read_results(tmp_path)) == 1


def test_compile_time_is_measured_apart(tmp_path):
    w = [Workload("tiny", "softmax", "float32", (4, 64))]
    _, (rec,) = bench.run_bench(tmp_path, [Compiling()], w, settings=TINY, echo=None, copies=False)
    assert rec["compile_s"] == 0.06
    assert rec["first_call_s"] >= 0.06
    assert rec["median_s"] < 0.01  # no compile in the timed rounds


def test_unsupported_and_raising_ops_are_recorded(tmp_path):
    ws = [Workload("tiny", "cross_entropy", "float32", (4, 64)),
          Workload("tiny", "softmax", "float32", (4, 64))]
    rc, recs = bench.run_bench(tmp_path, [Raising()], ws, settings=TINY, echo=None, copies=False)
    assert rc == 1
    verdicts = {r["op"]: (r["verdict"], r.get("message")) for r in recs}
    assert verdicts["cross_entropy"][0] == "unsupported"
    assert verdicts["softmax"] == ("error", "RuntimeError: kernel launch failed")
    assert "unsupported" in bench.table(recs) and "error" in bench.table(recs)


def test_wide_spread_is_flagged(tmp_path):
    s = bench.Settings(min_rounds=10, max_rounds=10, max_time=0.001, warmup_time=0.0, min_warmup=1,
                       cache=1024)
    _, (rec,) = bench.run_bench(None, [Jittery()], [Workload("t", "softmax", "float32", (2, 8))],
                                settings=s, echo=None, copies=False)
    assert rec["cv"] > 0.05 and "coefficient of variation" in rec["warning"]


def test_threads_are_applied_and_recorded(monkeypatch):
    torch = pytest.importorskip("torch")
    for var in THREAD_VARIABLES + ("XLA_FLAGS",):
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()

    class TorchCpu(Backend):
        name, framework, dtypes = "tiny-torch", "torch", ("float32",)

        def asarray(self, a):
            return torch.from_numpy(a)

        def softmax(self, x, axis=-1):
            return torch.softmax(x, axis)

    seen = {}
    orig = bench.measure

    def spy(benchmark, session, item, clock=bench.CLOCK):
        seen["threads"] = torch.get_num_threads()
        seen["omp"] = os.environ.get("OMP_NUM_THREADS")
        return orig(benchmark, session, item, clock)

    monkeypatch.setattr(bench, "measure", spy)
    _, (rec,) = bench.run_bench(None, [TorchCpu()], [Workload("t", "softmax", "float32", (4, 64))],
                                settings=TINY, threads=1, echo=None, copies=False)
    assert rec["threads"] == 1 and seen == {"threads": 1, "omp": "1"}
    assert torch.get_num_threads() == before and "OMP_NUM_THREADS" not in os.environ  # restored


def test_pytest_benchmark_compare_reads_our_json(tmp_path):
    w = [Workload("tiny", "softmax", "float32", (4, 64))]
    for d in ("a", "b"):
        bench.run_bench(tmp_path / d, [TinyNumpy()], w, settings=TINY, echo=None, copies=False)
    exe = os.path.join(os.path.dirname(sys.executable), "pytest-benchmark")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "pytest_benchmark.cli"]
    proc = subprocess.run(cmd + ["compare", str(tmp_path / "a" / bench.PYTEST_BENCHMARK_FILE),
                                 str(tmp_path / "b" / bench.PYTEST_BENCHMARK_FILE), "--group-by=name"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tiny-numpy-softmax-float32-tiny" in proc.stdout


def test_module_runs_under_plain_pytest(tmp_path):
    """``pytest --benchmark-only bench_suite.py`` with the selection in environment variables."""
    import softmaxbench.backends.registry  # noqa: F401 - a missing module is a failure
    plugin = tmp_path / "tinyplug.py"
    plugin.write_text("import numpy as np\nfrom softmaxbench.backends import Backend\n"
                      "class P(Backend):\n    name = 'plug-noop'\n    dtypes = ('float32',)\n"
                      "    def softmax(self, x, axis=-1):\n        return x + 0\n"
                      "def backends():\n    return [P()]\n")
    env = dict(os.environ, SOFTMAXBENCH_BENCH_BACKENDS="plug-noop", SOFTMAXBENCH_BENCH_PLUGINS=str(plugin),
               SOFTMAXBENCH_BENCH_OPS="softmax", SOFTMAXBENCH_BENCH_WORKLOADS="sweep-1MiB-*",
               SOFTMAXBENCH_BENCH_MIN_ROUNDS="3", SOFTMAXBENCH_BENCH_OUT=str(tmp_path / "out"),
               SOFTMAXBENCH_CACHE_BYTES="1M")
    proc = subprocess.run([sys.executable, "-m", "pytest", str(bench.bench_module_path()), "--benchmark-only",
                           "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q",
                           f"--benchmark-json={tmp_path / 'pb.json'}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    names = [b["name"] for b in json.loads((tmp_path / "pb.json").read_text())["benchmarks"]]
    assert "test_throughput[plug-noop-softmax-float32-sweep-1MiB-r1024]" in names
    recs = read_results(tmp_path / "out")
    assert any(r["backend"] == "plug-noop" and r["gbps"] for r in recs)


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
    import softmaxbench.backends.registry  # noqa: F401 - a missing module is a failure
    assert _cli("bench", "--backends", "no-such-backend", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "no-such-backend" in err and "Traceback" not in err


def test_bench_verb_prints_throughput_for_numpy(capsys, tmp_path, monkeypatch, numpy_copy_only):
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
    gpu = type("G", (Backend,), {"device": "gpu", "framework": "torch",
                                 "synchronize": lambda self: torch.cuda.synchronize()})()
    x = torch.randn(4096, 4096, device="cuda")
    timer = timers.timer_for(gpu)
    assert isinstance(timer, timers.TorchEventTimer)
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

    for mod in (workloads, timers, bench, bench_fidelity, compare):
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0, mod.__name__
