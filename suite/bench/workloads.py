"""Benchmark workloads: which (op, dtype, shape) to time, their inputs, and the bytes each must move.

A workload is one op on one shape in one dtype. The sets:

- ``sweep``: shapes by total bytes of the input (1 MiB to 256 MiB on the CPU) at row lengths
  from 64 to 262144, so throughput can be read against both size and row length;
- ``llm``: tokens x LLM vocabulary sizes (32000, 50257, 128256, 151936, 262144);
- ``gpu``: rows of 1024 to 262144 columns up to several GiB in total (GPU devices only);
- ``quick``: a small representative subset (every op, float32, a 1 MiB and a 16 MiB shape, the
  smallest LLM vocabulary), so ``softmaxbench bench --quick`` ends in a couple of minutes.

Inputs rotate (:class:`InputPool`) over twice the last-level cache, so every size measures
memory, not cache.

GB/s counts the fewest bytes the op must move (:func:`bytes_moved`), never what an
implementation happens to move, so that a fused kernel and a multi-pass one are measured
against the same yardstick.

>>> w = Workload("sweep-1MiB-r1024", "softmax", "float32", (256, 1024))
>>> w.input_bytes, w.bytes_moved
(1048576, 2097152)
>>> [a.shape for a in w.host_inputs()]
[(256, 1024)]
>>> sorted({w.op for w in quick_workloads()}) == sorted(BENCH_OPS)
True
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from softmaxbench.reference.dtypes import DTYPES, np_dtype

MiB = 2**20
GiB = 2**30

#: Ops the benchmark times by default: the forward ops and their backward (forward+backward) forms.
BENCH_OPS: tuple[str, ...] = ("softmax", "log_softmax", "cross_entropy",
                              "softmax_vjp", "log_softmax_vjp", "cross_entropy_grad")
#: Ops that may be selected explicitly with --ops (logsumexp is cheap to add and sometimes asked for).
SELECTABLE_OPS: tuple[str, ...] = BENCH_OPS + ("logsumexp",)
BACKWARD_OPS = ("softmax_vjp", "log_softmax_vjp", "cross_entropy_grad")
#: The copy a device's bandwidth is measured with (see suite.bench.copy_kernels).
COPY_OP = "copy"

ROW_LENGTHS: tuple[int, ...] = (64, 1024, 16384, 262144)
CPU_SIZES: tuple[int, ...] = (1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB)
LLM_VOCABS: tuple[int, ...] = (32000, 50257, 128256, 151936, 262144)
CPU_LLM_TOKENS: tuple[int, ...] = (128, 1024)
CPU_MAX_BYTES = 256 * MiB
GPU_ROW_LENGTHS: tuple[int, ...] = (1024, 4096, 32768, 262144)
GPU_SIZES: tuple[int, ...] = (256 * MiB, 1 * GiB, 4 * GiB)
GPU_LLM_TOKENS: tuple[int, ...] = (1024, 8192)
GPU_MAX_BYTES = 8 * GiB


@dataclass(frozen=True)
class Workload:
    """One op on one 2-D shape (rows x row length, reduced over the last axis) in one dtype."""

    label: str                    # the shape's name in records and tables, e.g. "sweep-16MiB-r1024"
    op: str
    dtype: str
    shape: tuple[int, ...]
    seed: int = 0

    @property
    def rows(self) -> int:
        return math.prod(self.shape[:-1])

    @property
    def row_length(self) -> int:
        return self.shape[-1]

    @property
    def input_bytes(self) -> int:
        """Size of the logits tensor x (what the sweep's "total bytes" means)."""
        return math.prod(self.shape) * np_dtype(self.dtype).itemsize

    @property
    def set_bytes(self) -> int:
        """Bytes of one set of the op's array arguments (x, plus cotangent / targets / copy target)."""
        kind = input_kind(self.op)
        extra = {"x,dy": self.input_bytes, "x,out": self.input_bytes, "logits,target": 8 * self.rows}
        return self.input_bytes + extra.get(kind, 0)

    @property
    def bytes_moved(self) -> int:
        """The fewest bytes the op must move; GB/s is this over the median time."""
        return bytes_moved(self.op, self.shape, self.dtype)

    @property
    def id(self) -> str:
        """Stable id (pytest parameter ids and pytest-benchmark names are built from it)."""
        return f"{self.op}-{self.dtype}-{self.label}"

    def host_inputs(self) -> tuple[np.ndarray, ...]:
        """The op's array arguments as NumPy arrays (deterministic: seeded by ``seed``).

        Logits and cotangents are uniform in [-4, 4) (no overflow, no subnormals: timing must
        not depend on special-value paths; uniform because GiB-sized GPU inputs are made on the
        host, where it is several times faster than normal); class targets uniform in [0, C).
        A copy's second array is its destination, with other values than the source (a copy
        that did nothing is then told from one that did).
        """
        rng = np.random.default_rng(self.seed)
        dt = np_dtype(self.dtype)

        def values():
            return (rng.random(self.shape, dtype=np.float32) * 8 - 4).astype(dt, copy=False)

        x = values()
        if self.op in ("softmax_vjp", "log_softmax_vjp"):
            return x, values()
        if self.op in ("cross_entropy", "cross_entropy_grad"):
            return x, rng.integers(0, self.row_length, size=self.shape[:-1], dtype=np.int64)
        if self.op == COPY_OP:
            return x, values()  # a written target: np.empty's untouched pages would time page faults
        return (x,)

    def input_set(self, i: int, base: tuple[np.ndarray, ...] | None = None) -> tuple[np.ndarray, ...]:
        """Input set ``i`` of the rotation: set 0 is :meth:`host_inputs`, set i its arrays rolled
        by ``i * (row_length + 1)`` elements (every row and column moves), so each set has other
        values at each position and other results. Class targets stay as they are (rolled with
        the logits they would give the same mean loss). Deterministic: the trusted side rebuilds
        any set to judge the output a worker says it computed from it.

        >>> w = Workload("t", "softmax", "float32", (3, 4))
        >>> bool((w.input_set(1)[0] != w.input_set(0)[0]).any()), w.input_set(1)[0].shape
        (True, (3, 4))
        """
        base = self.host_inputs() if base is None else base
        if i == 0:
            return tuple(a.copy() for a in base)
        shift = (i * (self.row_length + 1)) % max(math.prod(self.shape), 1)
        out = []
        for k, a in enumerate(base):
            if self.op in ("cross_entropy", "cross_entropy_grad") and k == 1:
                out.append(a.copy())
            elif self.op == COPY_OP and k == 1:
                out.append(a.copy())  # the destination's values do not matter, only its memory
            else:
                out.append(np.roll(a.reshape(-1), shift).reshape(a.shape))
        return tuple(out)

    @cached_property
    def call_kwargs(self) -> dict:
        """Keyword arguments of the op (the class axis is the last one)."""
        return {} if self.op in ("cross_entropy", "cross_entropy_grad", COPY_OP) else {"axis": -1}


def bytes_moved(op: str, shape, dtype: str) -> int:
    """Fewest bytes ``op`` must read and write for logits of ``shape`` in ``dtype``.

    softmax, log_softmax: read x, write y (2 x bytes). softmax_vjp, log_softmax_vjp: read x and
    the cotangent, write dx (3 x bytes). cross_entropy (mean): read the logits and the int64
    targets once (1 x bytes + targets; the scalar out is nothing); cross_entropy_grad: read
    logits and targets, write d logits (2 x bytes + targets). logsumexp: read x, write one value
    per row. copy: read and write (2 x bytes).

    >>> bytes_moved("softmax_vjp", (4, 8), "float32")
    384
    """
    n = math.prod(shape)
    item = np_dtype(dtype).itemsize
    rows = n // shape[-1] if shape and shape[-1] else 0
    x = n * item
    if op in ("softmax", "log_softmax", COPY_OP):
        return 2 * x
    if op in ("softmax_vjp", "log_softmax_vjp"):
        return 3 * x
    if op == "cross_entropy":
        return x + 8 * rows
    if op == "cross_entropy_grad":
        return 2 * x + 8 * rows
    if op == "logsumexp":
        return x + rows * item
    raise ValueError(f"no byte count for op {op!r}")


def size_label(nbytes: int) -> str:
    """1048576 -> '1MiB'; 4 GiB -> '4GiB'."""
    if nbytes >= GiB and nbytes % GiB == 0:
        return f"{nbytes // GiB}GiB"
    return f"{nbytes // MiB}MiB" if nbytes % MiB == 0 else f"{nbytes}B"


def _sweep(prefix: str, sizes, row_lengths, ops, dtypes) -> list[Workload]:
    out = []
    for size in sizes:
        for cols in row_lengths:
            for dtype in dtypes:
                rows = size // (cols * np_dtype(dtype).itemsize)
                if rows < 1:  # one row is already bigger than the size (e.g. 1 MiB at 262144 x float64)
                    continue
                for op in ops:
                    out.append(Workload(f"{prefix}-{size_label(size)}-r{cols}", op, dtype, (rows, cols)))
    return out


def _llm(tokens_set, ops, dtypes, max_bytes: int) -> list[Workload]:
    out = []
    for tokens in tokens_set:
        for vocab in LLM_VOCABS:
            for dtype in dtypes:
                if tokens * vocab * np_dtype(dtype).itemsize > max_bytes:
                    continue
                for op in ops:
                    out.append(Workload(f"llm-t{tokens}-v{vocab}", op, dtype, (tokens, vocab)))
    return out


def cpu_workloads(ops=BENCH_OPS, dtypes=DTYPES) -> list[Workload]:
    """The full CPU set: the byte sweep (1 MiB - 256 MiB) and the LLM shapes up to 256 MiB."""
    return (_sweep("sweep", CPU_SIZES, ROW_LENGTHS, ops, dtypes)
            + _llm(CPU_LLM_TOKENS, ops, dtypes, CPU_MAX_BYTES))


def gpu_workloads(ops=BENCH_OPS, dtypes=DTYPES) -> list[Workload]:
    """The GPU set: 256 MiB - 4 GiB at 1024 - 262144 columns, and LLM shapes up to 8 GiB."""
    return (_sweep("gpu", GPU_SIZES, GPU_ROW_LENGTHS, ops, dtypes)
            + _llm(GPU_LLM_TOKENS, ops, dtypes, GPU_MAX_BYTES))


#: --quick: (op, label, shape) in float32. A small shape (1 MiB: where per-call overheads show)
#: for softmax, a larger one (16 MiB) for every softmax op, the smallest LLM vocabulary for
#: cross-entropy: every op, small enough for a couple of minutes on 2 cores.
_QUICK: tuple[tuple[str, str, tuple[int, int]], ...] = (
    ("softmax", "sweep-1MiB-r1024", (256, 1024)),
    ("softmax", "sweep-16MiB-r1024", (4096, 1024)),
    ("log_softmax", "sweep-16MiB-r1024", (4096, 1024)),
    ("softmax_vjp", "sweep-16MiB-r1024", (4096, 1024)),
    ("log_softmax_vjp", "sweep-16MiB-r1024", (4096, 1024)),
    ("cross_entropy", "llm-t128-v32000", (128, 32000)),
    ("cross_entropy_grad", "llm-t128-v32000", (128, 32000)),
)
_QUICK_GPU: tuple[tuple[str, str, tuple[int, int]], ...] = (
    ("softmax", "gpu-256MiB-r1024", (65536, 1024)),
    ("softmax", "gpu-256MiB-r32768", (2048, 32768)),
    ("log_softmax", "gpu-256MiB-r1024", (65536, 1024)),
    ("softmax_vjp", "gpu-256MiB-r1024", (65536, 1024)),
    ("log_softmax_vjp", "gpu-256MiB-r1024", (65536, 1024)),
    ("cross_entropy", "llm-t1024-v128256", (1024, 128256)),
    ("cross_entropy_grad", "llm-t1024-v128256", (1024, 128256)),
)


def quick_workloads(ops=BENCH_OPS, dtypes=("float32",), device: str = "cpu") -> list[Workload]:
    """The --quick subset (float32 unless other dtypes are asked for; same shapes by element count)."""
    table = _QUICK_GPU if device == "gpu" else _QUICK
    out = [Workload(label, op, dtype, shape) for dtype in dtypes for op, label, shape in table if op in ops]
    if "logsumexp" in ops:
        out += [Workload(label, "logsumexp", dtype, shape) for dtype in dtypes
                for op, label, shape in table if op == "softmax"]
    return out


def select(device: str = "cpu", *, quick: bool = False, ops=None, dtypes=None,
           names=None) -> list[Workload]:
    """Workloads for a device: quick or full, filtered by ops, dtypes and label patterns.

    ``names`` are fnmatch patterns matched against the label ('sweep-16MiB-*') or the full id
    ('softmax-float32-llm-*').

    >>> [w.id for w in select(quick=True, ops=["softmax"], names=["*1MiB*"])]
    ['softmax-float32-sweep-1MiB-r1024']
    """
    ops = tuple(ops) if ops else BENCH_OPS
    if quick:
        work = quick_workloads(ops, tuple(dtypes) if dtypes else ("float32",), device)
    else:
        dts = tuple(dtypes) if dtypes else DTYPES
        work = gpu_workloads(ops, dts) if device == "gpu" else cpu_workloads(ops, dts)
    if names:
        work = [w for w in work if any(fnmatch.fnmatchcase(w.label, p) or fnmatch.fnmatchcase(w.id, p)
                                       for p in names)]
    return work


def copy_workload(w: Workload) -> Workload:
    """The copy of the same bytes (same shape and dtype as w's logits) on the same device."""
    return Workload(w.label, COPY_OP, w.dtype, w.shape, w.seed)


# ---------------------------------------------------------------------------------------------
# Input rotation: enough distinct buffers that no call finds its inputs in the caches.

#: The pool covers this many times the last-level cache, so a buffer has been evicted by the
#: time it comes round again (its own traffic plus the ops' outputs push it out).
ROTATION_FACTOR = 2
DEFAULT_CPU_CACHE = 64 * MiB
DEFAULT_GPU_CACHE = 128 * MiB


def _parse_size(text: str) -> int:
    """'300M', '4096K', '2G', '12345' -> bytes (the format of /sys/.../cache/index*/size)."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * mult)


def cpu_cache_bytes() -> int:
    """Size of the CPU's largest (last-level) cache from sysfs; 64 MiB when it cannot be read.

    ``SOFTMAXBENCH_CACHE_BYTES`` overrides it (e.g. where a VM reports its host's cache).
    """
    import glob
    import os

    if os.environ.get("SOFTMAXBENCH_CACHE_BYTES"):
        return _parse_size(os.environ["SOFTMAXBENCH_CACHE_BYTES"])
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path) as fh:
                sizes.append(_parse_size(fh.read()))
        except (OSError, ValueError):
            continue
    return max(sizes, default=DEFAULT_CPU_CACHE)


def cache_bytes(backend) -> int:
    """The last-level cache in front of the backend's memory: its ``cache_bytes()`` hook (the L2 of
    a GPU), else the CPU's from sysfs (or a default). ``SOFTMAXBENCH_CACHE_BYTES`` overrides it."""
    import os

    if os.environ.get("SOFTMAXBENCH_CACHE_BYTES"):
        return _parse_size(os.environ["SOFTMAXBENCH_CACHE_BYTES"])
    try:
        hook = getattr(backend, "cache_bytes", None)
        got = hook() if callable(hook) else None
    except Exception:  # noqa: BLE001 - no such device attribute here: the default is safe
        got = None
    if isinstance(got, int) and got > 0:
        return got
    return DEFAULT_GPU_CACHE if getattr(backend, "device", "cpu") == "gpu" else cpu_cache_bytes()


def input_kind(op: str) -> str:
    """Ops with the same kind take the same inputs (so they can share a pool)."""
    if op in ("softmax_vjp", "log_softmax_vjp"):
        return "x,dy"
    if op in ("cross_entropy", "cross_entropy_grad"):
        return "logits,target"
    return "x,out" if op == COPY_OP else "x"


def pool_size(set_bytes: int, cache: int, max_sets: int = 4096) -> int:
    """How many input sets rotate: enough to cover ROTATION_FACTOR x the cache, at least 2.

    >>> pool_size(16 * MiB, 300 * MiB)
    38
    >>> pool_size(256 * MiB, 300 * MiB)
    3
    """
    return max(2, min(max_sets, math.ceil(ROTATION_FACTOR * cache / max(set_bytes, 1))))


_BASE: dict[tuple, tuple[np.ndarray, ...]] = {}


def _base_inputs(w: Workload) -> tuple[np.ndarray, ...]:
    """w's seeded inputs, kept (one workload's at a time) for the next workload of the same
    shape, dtype and kind: the ops of a group share them, and GiB-sized ones take seconds to make."""
    key = (input_kind(w.op), w.dtype, w.shape, w.seed)
    if key not in _BASE:
        _BASE.clear()  # the previous base first: they are large
        _BASE[key] = w.host_inputs()
    return _BASE[key]


class InputPool:
    """Rotating native input sets for one backend and workload; ``next()`` gives the next set.

    Set ``i`` is ``backend.asarray(w.input_set(i))``: distinct memory and distinct values, so
    neither the caches nor a result cached by the op can stand in for the work. ``refresh(v)``
    replaces the set about to be used by input set ``v`` (a fresh array object, other values),
    for calls whose output is judged.

    >>> from softmaxbench.backends import Backend
    >>> pool = InputPool(Backend(), Workload("t", "softmax", "float32", (4, 8)), cache=64)
    >>> len(pool), pool.next()[0].shape, pool.last_index
    (2, (4, 8), 0)
    """

    def __init__(self, backend, w: Workload, *, cache: int | None = None, max_sets: int = 4096):
        self.backend, self.w = backend, w
        self.set_bytes = w.set_bytes
        self.n = pool_size(self.set_bytes, cache if cache is not None else cache_bytes(backend), max_sets)
        self.base = _base_inputs(w)
        self.sets = [tuple(backend.asarray(a) for a in w.input_set(i, self.base)) for i in range(self.n)]
        self.ids = list(range(self.n))   # which input set each slot holds now
        backend.synchronize()
        self._i = 0
        self.last_index = -1

    def __len__(self) -> int:
        return self.n

    def next(self) -> tuple:
        """The next input set, oldest (least recently touched) first."""
        s = self.sets[self._i]
        self.last_index = self.ids[self._i]
        self._i = (self._i + 1) % self.n
        return s

    def stage(self, variants) -> None:
        """Build input sets ``variants`` on the host now (``refresh`` then only moves them)."""
        self._staged = {int(v): self.w.input_set(int(v), self.base) for v in variants}

    def refresh(self, v: int) -> None:
        """Put input set ``v`` in the slot ``next()`` gives next."""
        host = getattr(self, "_staged", {}).pop(v, None)
        host = self.w.input_set(v, self.base) if host is None else host
        self.sets[self._i] = tuple(self.backend.asarray(a) for a in host)
        self.ids[self._i] = v
        self.backend.synchronize()
