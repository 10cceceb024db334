"""The ``jax-cpu`` and ``jax-gpu`` backends: ``jax.nn`` and ``jax.scipy.special``, all jitted.

``jax.nn.softmax``, ``jax.nn.log_softmax``, ``jax.scipy.special.logsumexp``, a cross-entropy built
on ``jax.nn.log_softmax`` with PyTorch's semantics (JAX has none of its own), and every gradient
by ``jax.vjp``. Each op is compiled ahead of time per (shapes, dtypes, options) with
``jit(...).lower(...).compile()``, so compile seconds land in ``compile_times`` (the optional hook
of ``softmaxbench.backends.base``) and never in a timed call.

float64 needs ``jax_enable_x64``, a process-wide flag: it is switched on at first use, before the
first array is made (otherwise float64 inputs silently become float32).

>>> import numpy as np
>>> b = JaxCPU()
>>> y = b.to_numpy(b.softmax(b.asarray(np.zeros(2)), axis=-1))
>>> y, y.dtype
(array([0.5, 0.5]), dtype('float64'))
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np

from softmaxbench.backends import textbook
from softmaxbench.backends.availability import cuda_device_problem, distribution_version, module_missing
from softmaxbench.backends.base import Backend
from softmaxbench.backends.conventions import declared

CUDA_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda12-pjrt", "jax-cuda13-pjrt")


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


# -- the ops as pure functions of arrays (static options are keyword-only) ------------------------
def _softmax(x, *, axis):
    return _jax().nn.softmax(x, axis=axis)


def _log_softmax(x, *, axis):
    return _jax().nn.log_softmax(x, axis=axis)


def _logsumexp(x, *, axis):
    return _jax().scipy.special.logsumexp(x, axis=axis)


def _cross_entropy(logits, target, weight, *, reduction, label_smoothing, ignore_index):
    jax = _jax()
    return textbook.cross_entropy(jax.numpy, jax.nn.log_softmax(logits, axis=-1), target,
                                  reduction=reduction, label_smoothing=label_smoothing,
                                  ignore_index=ignore_index, weight=weight)


def _vjp(forward, x, cotangent):
    _, pullback = _jax().vjp(forward, x)
    return pullback(cotangent)[0]


def _softmax_vjp(x, cotangent, *, axis):
    return _vjp(partial(_softmax, axis=axis), x, cotangent)


def _log_softmax_vjp(x, cotangent, *, axis):
    return _vjp(partial(_log_softmax, axis=axis), x, cotangent)


def _cross_entropy_grad(logits, target, weight, **options):
    jnp = _jax().numpy
    loss, pullback = _jax().vjp(lambda a: _cross_entropy(a, target, weight, **options), logits)
    return pullback(jnp.ones_like(loss))[0]  # ones: reduction="none" is summed first


_FUNCTIONS = {"softmax": _softmax, "log_softmax": _log_softmax, "logsumexp": _logsumexp,
              "cross_entropy": _cross_entropy, "softmax_vjp": _softmax_vjp,
              "log_softmax_vjp": _log_softmax_vjp, "cross_entropy_grad": _cross_entropy_grad}


class JaxBackend(Backend):
    """jitted JAX on ``platform`` ("cpu" or "gpu"); subclasses fix the platform."""

    framework = "jax"
    dtypes = ("float16", "bfloat16", "float32", "float64")
    platform = "cpu"

    def __init__(self) -> None:
        self.compile_times: dict[tuple[str, tuple[int, ...], str], float] = {}
        self._executables: dict[tuple, Any] = {}
        self._last: Any = None  # the latest result, for synchronize()

    def unavailable(self) -> str | None:
        return module_missing("jax", "pip install jax")

    def _device(self):
        return _jax().devices(self.platform)[0]

    # -- data movement -----------------------------------------------------------------------
    def asarray(self, a: Any) -> Any:
        jax = _jax()
        if isinstance(a, jax.Array):
            return jax.device_put(a, self._device())
        return jax.device_put(np.asarray(a), self._device())

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def synchronize(self) -> None:
        # JAX dispatches asynchronously and has no device-wide barrier: wait for the latest result.
        if self._last is not None:
            _jax().block_until_ready(self._last)

    # -- harness hooks (see Backend) -----------------------------------------------------------
    def copy(self, src, dst):
        """JAX arrays are immutable: a jitted copy into a new buffer (dst is only its shape)."""
        jax = _jax()
        key = ("copy", src.shape, str(src.dtype))
        fn = self._executables.get(key)
        if fn is None:
            fn = self._executables[key] = jax.jit(lambda a: a.copy()).lower(src).compile()
        self._last = fn(src)
        return self._last

    def threads_in_use(self) -> int | None:
        import os

        if self.device == "gpu":
            return None
        nproc = os.environ.get("NPROC", "")  # XLA:CPU sizes its pool from NPROC, else every core
        return int(nproc) if nproc.isdigit() and int(nproc) > 0 else os.cpu_count()

    # -- compile once per (op, arrays' shapes and dtypes, options), then run ------------------
    def _run(self, op: str, arrays: tuple, **options):
        arrays = tuple(None if a is None else self.asarray(a) if isinstance(a, np.ndarray) else a
                       for a in arrays)
        signature = tuple(None if a is None else (a.shape, str(a.dtype)) for a in arrays)
        key = (op, signature, tuple(sorted(options.items())))
        executable = self._executables.get(key)
        if executable is None:
            jax = _jax()
            start = time.perf_counter()
            executable = jax.jit(partial(_FUNCTIONS[op], **options)).lower(*arrays).compile()
            x = arrays[0]
            timing_key = (op, tuple(x.shape), str(x.dtype))
            self.compile_times[timing_key] = (self.compile_times.get(timing_key, 0.0)
                                              + time.perf_counter() - start)
            self._executables[key] = executable
        self._last = executable(*arrays)
        return self._last

    def softmax(self, x, axis: int = -1):
        return self._run("softmax", (x,), axis=axis)

    def log_softmax(self, x, axis: int = -1):
        return self._run("log_softmax", (x,), axis=axis)

    def logsumexp(self, x, axis: int = -1):
        return self._run("logsumexp", (x,), axis=axis)

    def _ce(self, op, logits, target, reduction, label_smoothing, ignore_index, weight):
        target = self.asarray(target)
        if textbook.is_index_target(target):  # a gather in jit cannot raise; PyTorch does
            textbook.check_class_indices(_jax().numpy, target, logits.shape[-1], ignore_index)
        return self._run(op, (logits, target, weight), reduction=reduction,
                         label_smoothing=float(label_smoothing),
                         ignore_index=None if ignore_index is None else int(ignore_index))

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        return self._ce("cross_entropy", logits, target, reduction, label_smoothing, ignore_index, weight)

    def softmax_vjp(self, x, cotangent, axis: int = -1):
        return self._run("softmax_vjp", (x, cotangent), axis=axis)

    def log_softmax_vjp(self, x, cotangent, axis: int = -1):
        return self._run("log_softmax_vjp", (x, cotangent), axis=axis)

    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None):
        return self._ce("cross_entropy_grad", logits, target, reduction, label_smoothing, ignore_index,
                        weight)


class JaxCPU(JaxBackend):
    """jitted JAX on the CPU (XLA:CPU)."""

    name = "jax-cpu"
    device = "cpu"
    platform = "cpu"
    conventions = declared("jax-cpu")


class JaxGPU(JaxBackend):
    """jitted JAX on the first CUDA device (XLA:GPU)."""

    name = "jax-gpu"
    device = "gpu"
    platform = "gpu"
    conventions = declared("jax-gpu")

    def unavailable(self) -> str | None:
        missing = module_missing("jax", "pip install 'jax[cuda12]'")
        if missing:
            return missing
        problems = []
        device = cuda_device_problem()
        if device:
            problems.append(device)
        # CUDA comes as a PJRT plugin distribution (older jaxlib builds carried it: "+cuda").
        if not (distribution_version(*CUDA_PLUGINS) or "cuda" in distribution_version("jaxlib")):
            problems.append("jax has no CUDA plugin installed (pip install 'jax[cuda12]')")
        if problems:
            return "; ".join(problems)
        try:
            self._device()
        except RuntimeError as exc:
            return f"jax sees no GPU ({str(exc).splitlines()[0]})"
        return None
