"""The ``cupy`` backend: ``cupyx.scipy.special`` softmax, log_softmax and logsumexp on the GPU.

Cross-entropy is built on ``cupyx.scipy.special.log_softmax`` with PyTorch's semantics, and the
gradients are analytic from ``cupyx.scipy.special.softmax`` (CuPy has no autograd). bfloat16 is not
offered: CuPy has no bfloat16 dtype. cupy is imported on first use only.

>>> CuPyBackend().supported_ops()[:3]
('softmax', 'log_softmax', 'logsumexp')
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from softmaxbench.backends import textbook
from softmaxbench.backends.availability import cuda_device_problem, distribution_of, module_missing
from softmaxbench.backends.base import Backend
from softmaxbench.backends.conventions import declared


def _cupy():
    import cupy

    return cupy


def _special():
    import cupyx.scipy.special

    return cupyx.scipy.special


@cache
def cupy_problem() -> str | None:
    """Why CuPy cannot run here (one line): no cupy, no device, or CUDA not initialisable."""
    missing = module_missing("cupy", "pip install cupy-cuda12x")
    if missing:
        return missing
    device = cuda_device_problem()
    if device:
        return device
    cupy = _cupy()
    if not cupy.cuda.is_available():
        return "no CUDA device (cupy.cuda.is_available() is False)"
    return None


class CuPyDevice(Backend):
    """Data movement and synchronisation shared by the CuPy-based backends."""

    device = "gpu"
    framework = "cupy"

    def unavailable(self) -> str | None:
        return cupy_problem()

    def framework_version(self) -> str:
        from importlib import metadata

        # CuPy ships as cupy-cuda12x, cupy-cuda11x, cupy-rocm-...: ask which one provides `cupy`.
        dist = distribution_of("cupy")
        return metadata.version(dist) if dist else ""

    def asarray(self, a: Any) -> Any:
        return _cupy().asarray(a)

    def to_numpy(self, x: Any) -> np.ndarray:
        return _cupy().asnumpy(x)

    def synchronize(self) -> None:
        # The whole device, every stream (the current stream alone would leave side streams out).
        _cupy().cuda.runtime.deviceSynchronize()

    # -- harness hooks (see Backend) -----------------------------------------------------------
    def copy(self, src, dst):
        _cupy().copyto(dst, src)
        return dst

    def timer(self):
        from softmaxbench.backends.base import CudaEventTimer

        cupy = _cupy()
        return CudaEventTimer(self, cupy.cuda.Event, lambda a, b: cupy.cuda.get_elapsed_time(a, b),
                              name="cupy.cuda.Event")

    def free_memory(self) -> int | None:
        cupy = _cupy()
        cupy.get_default_memory_pool().free_all_blocks()
        return int(cupy.cuda.runtime.memGetInfo()[0])

    def poison_free_memory(self) -> None:
        poison_cupy_pool(_cupy())

    def cache_bytes(self) -> int | None:
        return int(_cupy().cuda.Device().attributes["L2CacheSize"])

    def _native(self, a: Any) -> Any:
        return self.asarray(a) if isinstance(a, np.ndarray) else a


class CuPyBackend(CuPyDevice):
    """cupyx.scipy.special's softmax family."""

    name = "cupy"
    dtypes = ("float16", "float32", "float64")
    conventions = declared("cupy")

    def softmax(self, x, axis: int = -1):
        return _special().softmax(x, axis=axis)

    def log_softmax(self, x, axis: int = -1):
        return _special().log_softmax(x, axis=axis)

    def logsumexp(self, x, axis: int = -1):
        return _special().logsumexp(x, axis=axis)

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        target, weight = self._native(target), self._native(weight)
        if textbook.is_index_target(target):
            textbook.check_class_indices(_cupy(), target, logits.shape[-1], ignore_index)
        return textbook.cross_entropy(_cupy(), self.log_softmax(logits, -1), target, reduction=reduction,
                                      label_smoothing=label_smoothing, ignore_index=ignore_index,
                                      weight=weight)

    def softmax_vjp(self, x, cotangent, axis: int = -1):
        return textbook.softmax_vjp(_cupy(), self.softmax(x, axis), self._native(cotangent), axis)

    def log_softmax_vjp(self, x, cotangent, axis: int = -1):
        return textbook.log_softmax_vjp(_cupy(), self.softmax(x, axis), self._native(cotangent), axis)

    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None):
        target, weight = self._native(target), self._native(weight)
        if textbook.is_index_target(target):
            textbook.check_class_indices(_cupy(), target, logits.shape[-1], ignore_index)
        return textbook.cross_entropy_grad(_cupy(), self.softmax(logits, -1), target, reduction=reduction,
                                           label_smoothing=label_smoothing, ignore_index=ignore_index,
                                           weight=weight)


def poison_cupy_pool(cupy) -> int:
    """Fill the free bytes CuPy's memory pool holds with NaN; returns the bytes filled.

    CuPy does not list its free chunks, so the pool's ``free_bytes()`` are taken as arrays of
    halving sizes (each served from a free chunk where one fits), filled and given back.
    """
    pool = cupy.get_default_memory_pool()
    want, held, filled = int(pool.free_bytes()), [], 0
    size = want
    while want - filled >= 512 and size >= 512:
        if pool.free_bytes() < size:
            size //= 2
            continue
        try:
            a = cupy.empty(size // 4, dtype=cupy.float32)
        except cupy.cuda.memory.OutOfMemoryError:
            size //= 2
            continue
        a.fill(float("nan"))
        held.append(a)
        filled += size
    del held
    return filled
