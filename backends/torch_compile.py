"""The ``torch-compile`` (CPU) and ``torch-compile-cuda`` backends: the eager ops through
``torch.compile`` (TorchInductor), with compile time kept apart from run time.

Each op is one compiled function (``dynamic=False``: a kernel specialised to each shape, as for a
fixed-shape training step). Gradients run the compiled forward under autograd, so the backward is
AOTAutograd's compiled graph. The first call for each (op, shape, dtype, options) compiles; its
duration is added to ``compile_times[(op, shape, dtype)]``, the optional hook the bench harness
reads (see ``softmaxbench.backends.base``).

>>> b = TorchCompileCPU()
>>> b.compile_times
{}
"""

from __future__ import annotations

import time
from typing import Any

from softmaxbench.backends.conventions import declared
from softmaxbench.backends.torch_backend import (
    NOTHING_IGNORED,
    TorchBackend,
    TorchCUDAHooks,
    _torch,
    torch_cuda_problem,
)

# Every shape of the catalogue is a recompile of the same function; Dynamo's default limit (8)
# would then silently run the rest eagerly and we would measure eager PyTorch under our name.
RECOMPILE_LIMIT = 4096


def _configure(torch) -> None:
    cfg = torch._dynamo.config
    cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILE_LIMIT)
    cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, RECOMPILE_LIMIT)
    cfg.fail_on_recompile_limit_hit = True  # an error the suite records, never a silent eager run


def _compiled_ops(torch) -> dict[str, Any]:
    """The forward ops as compiled functions (gradients reuse them under autograd)."""
    functional = torch.nn.functional

    def softmax(x, axis):
        return torch.softmax(x, dim=axis)

    def log_softmax(x, axis):
        return torch.log_softmax(x, dim=axis)

    def logsumexp(x, axis):
        return torch.logsumexp(x, dim=axis)

    def cross_entropy(logits, target, weight, reduction, label_smoothing, ignore_index):
        if logits.ndim > 2:  # classes last in our protocol, dim 1 in PyTorch's
            logits = logits.movedim(-1, 1)
            if target.is_floating_point():
                target = target.movedim(-1, 1)
        return functional.cross_entropy(logits, target, weight=weight, reduction=reduction,
                                        label_smoothing=label_smoothing, ignore_index=ignore_index)

    fns = {"softmax": softmax, "log_softmax": log_softmax, "logsumexp": logsumexp,
           "cross_entropy": cross_entropy}
    return {op: torch.compile(fn, dynamic=False) for op, fn in fns.items()}


class TorchCompile(TorchBackend):
    """torch.compile (inductor) of PyTorch's softmax family on ``torch_device``."""

    def __init__(self) -> None:
        self.compile_times: dict[tuple[str, tuple[int, ...], str], float] = {}
        self._seen: set[tuple] = set()
        self._fns: dict[str, Any] | None = None

    def _fn(self, op: str):
        if self._fns is None:
            torch = _torch()
            _configure(torch)
            self._fns = _compiled_ops(torch)
        return self._fns[op]

    def _timed(self, op: str, x, options: tuple, call):
        """Run ``call()``; the first time for this key, its duration is compile time."""
        key = (op, tuple(x.shape), str(x.dtype).removeprefix("torch."))
        if key + options in self._seen:
            return call()
        start = time.perf_counter()
        out = call()
        self.synchronize()
        self.compile_times[key] = self.compile_times.get(key, 0.0) + time.perf_counter() - start
        self._seen.add(key + options)
        return out

    def _ce_args(self, target, reduction, label_smoothing, ignore_index, weight):
        target, weight = self._native(target), self._native(weight)
        ignore = NOTHING_IGNORED if ignore_index is None else int(ignore_index)
        options = (tuple(target.shape), str(target.dtype), reduction, float(label_smoothing), ignore,
                   weight is None)
        return (target, weight, reduction, float(label_smoothing), ignore), options

    def softmax(self, x, axis: int = -1):
        return self._timed("softmax", x, (axis,), lambda: self._fn("softmax")(x, axis))

    def log_softmax(self, x, axis: int = -1):
        return self._timed("log_softmax", x, (axis,), lambda: self._fn("log_softmax")(x, axis))

    def logsumexp(self, x, axis: int = -1):
        return self._timed("logsumexp", x, (axis,), lambda: self._fn("logsumexp")(x, axis))

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        args, options = self._ce_args(target, reduction, label_smoothing, ignore_index, weight)
        return self._timed("cross_entropy", logits, options,
                           lambda: self._fn("cross_entropy")(logits, *args))

    def softmax_vjp(self, x, cotangent, axis: int = -1):
        v = self._native(cotangent)
        return self._timed("softmax_vjp", x, (axis,),
                           lambda: self._grad(x, lambda a: self._fn("softmax")(a, axis), v))

    def log_softmax_vjp(self, x, cotangent, axis: int = -1):
        v = self._native(cotangent)
        return self._timed("log_softmax_vjp", x, (axis,),
                           lambda: self._grad(x, lambda a: self._fn("log_softmax")(a, axis), v))

    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None):
        args, options = self._ce_args(target, reduction, label_smoothing, ignore_index, weight)
        return self._timed("cross_entropy_grad", logits, options,
                           lambda: self._grad(logits, lambda a: self._fn("cross_entropy")(a, *args)))


class TorchCompileCPU(TorchCompile):
    """torch.compile on the CPU (inductor's C++/OpenMP code; needs a C++ compiler)."""

    name = "torch-compile"
    default_check_skip = ("compiles once per shape and dtype (about 1000 s for the quick catalogue on "
                          "2 cores); check it with --backends torch-compile")
    device = "cpu"
    torch_device = "cpu"
    conventions = declared("torch-compile")

    def unavailable(self) -> str | None:
        problem = super().unavailable()
        if problem:
            return problem
        import shutil

        if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
            return "no C++ compiler on PATH (inductor compiles CPU kernels with one)"
        return None


class TorchCompileCUDA(TorchCUDAHooks, TorchCompile):
    """torch.compile on the current CUDA device (inductor's Triton kernels)."""

    name = "torch-compile-cuda"
    default_check_skip = "compiles once per shape and dtype; check it with --backends torch-compile-cuda"
    device = "gpu"
    torch_device = "cuda"
    conventions = declared("torch-compile-cuda")

    def unavailable(self) -> str | None:
        problem = torch_cuda_problem()
        if problem:
            return problem
        from softmaxbench.backends.availability import module_missing

        return module_missing("triton", "inductor generates Triton kernels for CUDA")
