"""The ``cupy-fused`` backend: the project's own single-pass CUDA kernels, launched through CuPy.

The kernels are in ``cupy_fused.cu`` beside this file (shipped as package data), compiled by NVRTC
on first use, one template instantiation per (op, dtype, launch kind), and cached by CuPy. Every
op and gradient is one kernel launch over rows with the softmax axis last: an online maximum and
sum (Milakov & Gimelshein 2018) in one sweep, then the normalised write. float16 and bfloat16
are stored as such and accumulated in float32. Compile seconds go to ``compile_times``.

CuPy has no bfloat16 dtype, so a bfloat16 array lives on the device as its uint16 bit pattern in a
:class:`BF16Array`; :meth:`CuPyFused.to_numpy` turns it back into ``ml_dtypes.bfloat16``.

How a row is split among threads is :func:`launch_plan` (pure Python, shared with the NumPy
emulation of the kernel in ``cupy_fused_emulation.py``):

>>> launch_plan(n_rows=1000, n_cols=4096, itemsize=4, op="softmax", aligned=True)
LaunchPlan(kind='block', threads=256, vector=4, rows_per_block=1, cache_bytes=16384)
>>> launch_plan(n_rows=1000, n_cols=100, itemsize=2, op="softmax", aligned=True)
LaunchPlan(kind='warp', threads=32, vector=1, rows_per_block=8, cache_bytes=0)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import ml_dtypes
import numpy as np

from softmaxbench.backends import textbook
from softmaxbench.backends.conventions import declared
from softmaxbench.backends.cupy_backend import CuPyDevice, _cupy

OP_IDS = {"softmax": 0, "log_softmax": 1, "logsumexp": 2, "softmax_vjp": 3, "log_softmax_vjp": 4,
          "cross_entropy": 5, "cross_entropy_grad": 6}
TRAITS = {"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16"}
KINDS = {"warp": 0, "block": 1}
WARP_ROW_MAX = 1024      # rows up to this many elements: one warp per row
ROWS_PER_BLOCK = 8       # ... and this many rows per block
BLOCK_THREADS = 256      # longer rows: one block of this many threads per row
CACHE_LIMIT = 47 * 1024  # a block may use 48 KiB of shared memory without opting in to more;
                         # 1 KiB stays for the reduction's static buffer
CACHED_OPS = ("softmax", "log_softmax", "softmax_vjp", "log_softmax_vjp")
SOURCE = "cupy_fused.cu"


@dataclass(frozen=True)
class LaunchPlan:
    """How the kernel splits rows: ``kind`` 'warp' (a warp per row) or 'block' (a block per row),
    ``threads`` per row, ``vector`` elements per load, and shared memory caching the row."""

    kind: str
    threads: int
    vector: int
    rows_per_block: int
    cache_bytes: int


def launch_plan(n_rows: int, n_cols: int, itemsize: int, op: str, aligned: bool) -> LaunchPlan:
    """The launch the kernel gets for ``n_rows`` rows of ``n_cols`` elements of ``itemsize`` bytes.

    16-byte vector loads need every row to start 16-byte aligned: ``aligned`` (base pointers) and
    a row length that is a multiple of the vector width.
    """
    vector = 16 // itemsize
    if not (aligned and n_cols % vector == 0):
        vector = 1
    if n_cols <= WARP_ROW_MAX:
        return LaunchPlan("warp", 32, vector, ROWS_PER_BLOCK, 0)
    row_bytes = -(-n_cols * itemsize // 16) * 16
    need = row_bytes * (2 if op.endswith("_vjp") else 1)
    cache_bytes = need if op in CACHED_OPS and need <= CACHE_LIMIT else 0
    return LaunchPlan("block", BLOCK_THREADS, vector, 1, cache_bytes)


class BF16Array:
    """A bfloat16 array on the GPU, held as its uint16 bit pattern (CuPy has no bfloat16)."""

    dtype = np.dtype(ml_dtypes.bfloat16)

    def __init__(self, bits: Any) -> None:
        self.bits = bits

    @property
    def shape(self) -> tuple[int, ...]:
        return self.bits.shape

    @property
    def ndim(self) -> int:
        return self.bits.ndim

    def __repr__(self) -> str:
        return f"BF16Array(shape={self.shape})"


def _storage(a: Any) -> tuple[Any, str]:
    """(device array of the storage type, dtype name)."""
    if isinstance(a, BF16Array):
        return a.bits, "bfloat16"
    return a, np.dtype(a.dtype).name


def _accumulator(dtype: str):
    return np.float64 if dtype == "float64" else np.float32


def bfloat16_bits(xp: Any, f32: Any) -> Any:
    """float32 values -> bfloat16 bit patterns (uint16), rounding to nearest even; NaN stays a quiet
    NaN. The same bit arithmetic as ``BF16::store`` in cupy_fused.cu, for any NumPy-like ``xp``.

    >>> int(bfloat16_bits(np, np.array([1.0 + 2.0**-8], np.float32))[0])   # a tie: to even (1.0)
    16256
    """
    u = xp.ascontiguousarray(f32, dtype=xp.float32).view(xp.uint32)
    is_nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return xp.where(is_nan, (u >> 16) | 0x40, rounded).astype(xp.uint16)


def _to_storage(values: Any, dtype: str) -> Any:
    """Accumulator values -> the storage dtype, rounding to nearest even (as the kernel does)."""
    if dtype != "bfloat16":
        return values.astype(dtype)
    return BF16Array(bfloat16_bits(_cupy(), values))


@cache
def _source() -> str:
    return resources.files("softmaxbench.backends").joinpath(SOURCE).read_text(encoding="utf-8")


class CuPyFused(CuPyDevice):
    """The project's fused online-softmax CUDA kernels."""

    name = "cupy-fused"
    dtypes = ("float16", "bfloat16", "float32", "float64")
    conventions = declared("cupy-fused")

    def unavailable(self) -> str | None:
        problem = super().unavailable()
        if problem:
            return problem
        try:  # the kernels are compiled at run time: CuPy needs NVRTC, which its wheel does not carry
            _cupy().cuda.nvrtc.getVersion()
        except Exception as exc:
            return (f"CuPy cannot load NVRTC to compile the kernels ({type(exc).__name__}); "
                    "pip install nvidia-cuda-nvrtc-cu12")
        return None

    def __init__(self) -> None:
        self.compile_times: dict[tuple[str, tuple[int, ...], str], float] = {}
        self._kernels: dict[tuple[str, str, str], Any] = {}
        self._dummies: dict[str, Any] = {}

    # -- data movement -----------------------------------------------------------------------
    def copy(self, src, dst):
        """Device copy of the storage (a bfloat16 array's uint16 bits)."""
        _cupy().copyto(_storage(dst)[0], _storage(src)[0])
        return dst

    def asarray(self, a: Any) -> Any:
        if isinstance(a, BF16Array):
            return a
        a = np.asarray(a)
        if a.dtype == ml_dtypes.bfloat16:
            return BF16Array(_cupy().asarray(np.ascontiguousarray(a).view(np.uint16)))
        return _cupy().asarray(a)

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, BF16Array):
            return _cupy().asnumpy(x.bits).view(ml_dtypes.bfloat16)
        return _cupy().asnumpy(x)

    def _native(self, a: Any) -> Any:
        return self.asarray(a) if isinstance(a, np.ndarray) else a

    # -- kernels -----------------------------------------------------------------------------
    def _kernel(self, op: str, dtype: str, kind: str, shape: tuple[int, ...]):
        key = (op, dtype, kind)
        kernel = self._kernels.get(key)
        if kernel is None:
            cupy = _cupy()
            name = f"sbx_kernel<{TRAITS[dtype]}, {OP_IDS[op]}, {KINDS[kind]}>"
            start = time.perf_counter()
            module = cupy.RawModule(code=_source(), options=("-std=c++17",), name_expressions=(name,))
            kernel = module.get_function(name)  # NVRTC runs here (or CuPy's disk cache answers)
            timing_key = (op, tuple(shape), dtype)
            self.compile_times[timing_key] = (self.compile_times.get(timing_key, 0.0)
                                              + time.perf_counter() - start)
            self._kernels[key] = kernel
        return kernel

    def _dummy(self, storage_dtype) -> Any:
        name = np.dtype(storage_dtype).name
        if name not in self._dummies:
            self._dummies[name] = _cupy().zeros(1, dtype=storage_dtype)
        return self._dummies[name]

    def _launch(self, op: str, dtype: str, shape: tuple[int, ...], x, y, *, v=None, t=None, w=None,
                row_loss=None, row_weight=None, target_probs=False, ignore_index=None,
                label_smoothing=0.0, scale=1.0) -> None:
        n_rows, n_cols = x.shape
        arrays = [a for a in (x, v, y) if a is not None and a.ndim == 2]
        aligned = all(a.data.ptr % 16 == 0 for a in arrays)
        plan = launch_plan(n_rows, n_cols, x.itemsize, op, aligned)
        if plan.kind == "warp":
            grid, block = (math.ceil(n_rows / plan.rows_per_block), 1, 1), (32, plan.rows_per_block, 1)
        else:
            grid, block = (n_rows, 1, 1), (plan.threads, 1, 1)
        acc = _accumulator(dtype)
        args = (x, self._dummy(x.dtype) if v is None else v, self._dummy(np.int64) if t is None else t,
                self._dummy(x.dtype) if w is None else w, self._dummy(x.dtype) if y is None else y,
                self._dummy(acc) if row_loss is None else row_loss,
                self._dummy(acc) if row_weight is None else row_weight,
                np.int64(n_rows), np.int64(n_cols), np.int32(plan.vector > 1), np.int32(plan.cache_bytes > 0),
                np.int32(target_probs), np.int32(w is not None), np.int32(ignore_index is not None),
                np.int64(0 if ignore_index is None else ignore_index), np.float64(label_smoothing),
                np.float64(scale))
        self._kernel(op, dtype, plan.kind, shape)(grid, block, args, shared_mem=plan.cache_bytes)

    def _rows(self, a, axis: int):
        """(contiguous (n_rows, n_cols) storage array with ``axis`` last, the moved shape, dtype);
        a 0-d input is one row of one element."""
        cupy = _cupy()
        data, dtype = _storage(self._native(a))
        moved = cupy.moveaxis(data, axis, -1) if data.ndim else data.reshape(1)
        rows = cupy.ascontiguousarray(moved).reshape(math.prod(moved.shape[:-1]), moved.shape[-1])
        return rows, moved.shape, dtype

    def _wrap(self, data, dtype: str):
        return BF16Array(data) if dtype == "bfloat16" else data

    # -- operations --------------------------------------------------------------------------
    def _elementwise(self, op: str, x, axis: int, cotangent=None):
        cupy = _cupy()
        rows, moved_shape, dtype = self._rows(x, axis)
        v = self._rows(cotangent, axis)[0] if cotangent is not None else None
        y = cupy.empty_like(rows)
        if rows.size:
            self._launch(op, dtype, tuple(x.shape), rows, y, v=v)
        y = y.reshape(moved_shape)
        return self._wrap(cupy.moveaxis(y, -1, axis) if len(x.shape) else y.reshape(()), dtype)

    def softmax(self, x, axis: int = -1):
        return self._elementwise("softmax", x, axis)

    def log_softmax(self, x, axis: int = -1):
        return self._elementwise("log_softmax", x, axis)

    def softmax_vjp(self, x, cotangent, axis: int = -1):
        return self._elementwise("softmax_vjp", x, axis, cotangent)

    def log_softmax_vjp(self, x, cotangent, axis: int = -1):
        return self._elementwise("log_softmax_vjp", x, axis, cotangent)

    def logsumexp(self, x, axis: int = -1):
        cupy = _cupy()
        rows, moved_shape, dtype = self._rows(x, axis)
        out_shape = moved_shape[:-1]
        if rows.shape[1] == 0:  # the sum of no exponentials is 0: log 0 = -inf
            return _to_storage(cupy.full(out_shape, -np.inf, dtype=_accumulator(dtype)), dtype)
        y = cupy.empty(rows.shape[0], dtype=rows.dtype)
        if rows.shape[0]:
            self._launch("logsumexp", dtype, tuple(x.shape), rows, y)
        return self._wrap(y.reshape(out_shape), dtype)

    def _ce_inputs(self, logits, target, ignore_index, weight):
        cupy = _cupy()
        rows, moved_shape, dtype = self._rows(logits, -1)
        target = self._native(target)
        target_probs = not (isinstance(target, cupy.ndarray) and target.dtype.kind in "iu")
        if target_probs:
            t, v = None, self._rows(target, -1)[0]
        else:
            t, v = cupy.ascontiguousarray(target, dtype=cupy.int64).reshape(-1), None
            textbook.check_class_indices(cupy, t, rows.shape[1], ignore_index)
        w = None if weight is None else cupy.ascontiguousarray(_storage(self._native(weight))[0])
        return rows, moved_shape[:-1], dtype, t, v, w, target_probs

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        textbook._check_options(reduction, label_smoothing)
        cupy = _cupy()
        rows, batch_shape, dtype, t, v, w, target_probs = self._ce_inputs(logits, target, ignore_index,
                                                                          weight)
        acc = _accumulator(dtype)
        row_loss = cupy.zeros(rows.shape[0], dtype=acc)
        row_weight = cupy.zeros(rows.shape[0], dtype=acc)
        if rows.size:
            self._launch("cross_entropy", dtype, tuple(logits.shape), rows, None, v=v, t=t, w=w,
                         row_loss=row_loss, row_weight=row_weight, target_probs=target_probs,
                         ignore_index=ignore_index, label_smoothing=label_smoothing)
        if reduction == "none":
            loss = row_loss.reshape(batch_shape)
        elif reduction == "sum":
            loss = row_loss.sum()
        else:  # PyTorch: sum of w[t] over rows not ignored (probability targets: the row count)
            loss = row_loss.sum() / row_weight.sum()
        return _to_storage(loss, dtype)

    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None):
        textbook._check_options(reduction, label_smoothing)
        cupy = _cupy()
        rows, _, dtype, t, v, w, target_probs = self._ce_inputs(logits, target, ignore_index, weight)
        scale = 1.0
        if reduction == "mean":
            if target_probs:
                denom = float(rows.shape[0])
            else:
                valid = t != ignore_index if ignore_index is not None else cupy.ones(t.shape, dtype=bool)
                w_t = (cupy.ones(t.shape, dtype=_accumulator(dtype)) if w is None
                       else self._load(w, dtype)[cupy.where(valid, t, 0)])
                denom = float(cupy.where(valid, w_t, 0).sum())
            scale = 1.0 / denom if denom else 0.0  # every row ignored: all-zero gradient, as PyTorch
        y = cupy.empty_like(rows)
        if rows.size:
            self._launch("cross_entropy_grad", dtype, tuple(logits.shape), rows, y, v=v, t=t, w=w,
                         target_probs=target_probs, ignore_index=ignore_index,
                         label_smoothing=label_smoothing, scale=scale)
        return self._wrap(y.reshape(logits.shape), dtype)

    def _load(self, storage, dtype: str):
        """Storage values -> accumulator dtype on the device (bfloat16 bits shifted into float32)."""
        cupy = _cupy()
        if dtype == "bfloat16":
            return (storage.astype(cupy.uint32) << 16).view(cupy.float32)
        return storage.astype(_accumulator(dtype))
