"""The ``torch-cpu`` and ``torch-cuda`` backends: PyTorch eager, the way its users call it.

``torch.softmax``, ``torch.log_softmax``, ``torch.logsumexp`` and
``torch.nn.functional.cross_entropy`` with all its options; every gradient by autograd. Our
protocol puts the classes on the last axis, PyTorch wants them on dim 1, so cross-entropy moves
the axis (a view, as a PyTorch user would write it). torch is imported on first use only.

>>> import numpy as np
>>> b = TorchCPU()
>>> b.to_numpy(b.softmax(b.asarray(np.zeros(2, np.float32)), axis=-1))
array([0.5, 0.5], dtype=float32)
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from softmaxbench.backends.availability import cuda_device_problem, distribution_version, module_missing
from softmaxbench.backends.base import Backend
from softmaxbench.backends.conventions import declared

# Our protocol's ignore_index=None means "nothing is ignored"; PyTorch needs an integer, and its
# default (-100) would silently ignore a target of -100 that the reference rejects.
NOTHING_IGNORED = -(2**63)


def _torch():
    import torch

    return torch


class TorchBackend(Backend):
    """PyTorch eager on ``torch_device`` ("cpu" or "cuda"); subclasses fix the device."""

    framework = "torch"
    dtypes = ("float16", "bfloat16", "float32", "float64")
    torch_device = "cpu"

    def unavailable(self) -> str | None:
        return module_missing("torch", "pip install -c ci/constraints.txt torch")

    # -- data movement -----------------------------------------------------------------------
    def asarray(self, a: Any) -> Any:
        torch = _torch()
        if isinstance(a, torch.Tensor):
            return a.to(self.torch_device)
        a = np.asarray(a)
        if any(s < 0 for s in a.strides):  # torch.from_numpy refuses negative strides
            a = np.ascontiguousarray(a)
        if not a.flags.writeable:  # from_numpy warns on (and would share) a read-only buffer
            a = a.copy()
        if a.dtype == ml_dtypes.bfloat16:  # torch.from_numpy does not know ml_dtypes' bfloat16
            t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(a)
        return t.to(self.torch_device)

    def to_numpy(self, x: Any) -> np.ndarray:
        torch = _torch()
        t = x.detach().cpu()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()

    def _native(self, a: Any) -> Any:
        """Targets and weights may arrive as NumPy arrays; make them tensors on our device."""
        return None if a is None else self.asarray(a)

    # -- harness hooks (see Backend) -----------------------------------------------------------
    def copy(self, src, dst):
        return dst.copy_(src)

    def set_threads(self, n: int) -> None:
        torch = _torch()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def threads_in_use(self) -> int | None:
        return None if self.device == "gpu" else int(_torch().get_num_threads())

    # -- operations --------------------------------------------------------------------------
    def softmax(self, x, axis: int = -1):
        return _torch().softmax(x, dim=axis)

    def log_softmax(self, x, axis: int = -1):
        return _torch().log_softmax(x, dim=axis)

    def logsumexp(self, x, axis: int = -1):
        return _torch().logsumexp(x, dim=axis)

    def _cross_entropy(self, logits, target, reduction, label_smoothing, ignore_index, weight):
        torch = _torch()
        target = self._native(target)
        if logits.ndim > 2:  # (N, d1, ..., C) -> (N, C, d1, ...): PyTorch's class dim is 1
            logits = logits.movedim(-1, 1)
            if target.is_floating_point():
                target = target.movedim(-1, 1)
        return torch.nn.functional.cross_entropy(
            logits, target, weight=self._native(weight), reduction=reduction,
            label_smoothing=float(label_smoothing),
            ignore_index=NOTHING_IGNORED if ignore_index is None else int(ignore_index))

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        return self._cross_entropy(logits, target, reduction, label_smoothing, ignore_index, weight)

    def _grad(self, x, forward, cotangent=None):
        """d<forward(x), cotangent>/dx by autograd (cotangent None: forward's output summed)."""
        torch = _torch()
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            out = forward(leaf)
            if cotangent is None:
                out, cotangent = out.sum(), None
            (grad,) = torch.autograd.grad(out, leaf, cotangent, allow_unused=True)
        # An empty input has no graph to walk: its gradient is empty too, not None.
        return torch.zeros_like(x) if grad is None else grad

    def softmax_vjp(self, x, cotangent, axis: int = -1):
        return self._grad(x, lambda a: self.softmax(a, axis), self._native(cotangent))

    def log_softmax_vjp(self, x, cotangent, axis: int = -1):
        return self._grad(x, lambda a: self.log_softmax(a, axis), self._native(cotangent))

    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None):
        return self._grad(logits, lambda a: self._cross_entropy(a, target, reduction, label_smoothing,
                                                                ignore_index, weight))


class TorchCPU(TorchBackend):
    """PyTorch eager on the CPU."""

    name = "torch-cpu"
    device = "cpu"
    torch_device = "cpu"
    conventions = declared("torch-cpu")


class TorchCUDAHooks:
    """The GPU hooks every torch backend on a CUDA device shares (eager and torch.compile)."""

    def synchronize(self) -> None:
        _torch().cuda.synchronize()  # the whole device: every stream

    def timer(self):
        return torch_event_timer(self)

    def free_memory(self) -> int | None:
        torch = _torch()
        torch.cuda.empty_cache()
        return int(torch.cuda.mem_get_info()[0])

    def poison_free_memory(self) -> None:
        poison_torch_cache(_torch())

    def cache_bytes(self) -> int | None:
        torch = _torch()
        return int(torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size)


class TorchCUDA(TorchCUDAHooks, TorchBackend):
    """PyTorch eager on the current CUDA device."""

    name = "torch-cuda"
    device = "gpu"
    torch_device = "cuda"
    conventions = declared("torch-cuda")

    def unavailable(self) -> str | None:
        return torch_cuda_problem()


def torch_event_timer(backend):
    """CUDA events of torch around the call (see ``CudaEventTimer``)."""
    from softmaxbench.backends.base import CudaEventTimer

    torch = _torch()
    return CudaEventTimer(backend, lambda: torch.cuda.Event(enable_timing=True),
                          lambda a, b: a.elapsed_time(b), name="torch.cuda.Event")


def poison_torch_cache(torch) -> int:
    """Fill every free block of torch's CUDA caching allocator with NaN; returns the bytes filled.

    Each inactive block of ``torch.cuda.memory_snapshot()`` is taken by a tensor of its size
    (largest first, so a request is served by that block rather than by splitting a larger
    one), filled, and given back: the next allocations reuse NaN-filled memory, and a kernel that
    reads a previous result left in a reused allocation fails its check instead of passing.
    """
    sizes = sorted((blk["size"] for seg in torch.cuda.memory_snapshot() for blk in seg.get("blocks", ())
                    if blk.get("state") == "inactive" and blk.get("size", 0) >= 512), reverse=True)
    held, filled = [], 0
    for size in sizes:
        try:
            t = torch.empty(size // 4, dtype=torch.float32, device="cuda")
        except RuntimeError:  # out of memory: what is held is poisoned already
            break
        t.fill_(float("nan"))
        held.append(t)
        filled += size
    del held
    return filled


def torch_cuda_problem() -> str | None:
    """Why PyTorch cannot use a CUDA device here, asking the driver before importing torch."""
    missing = module_missing("torch", "pip install torch")
    if missing:
        return missing
    problems = []
    device = cuda_device_problem()
    if device:
        problems.append(device)
    version = distribution_version("torch")
    if version.endswith("+cpu"):
        problems.append(f"torch {version} is a CPU-only build")
    if problems:
        return "; ".join(problems)
    torch = _torch()
    if not torch.cuda.is_available():
        return (f"no CUDA device (torch.cuda.is_available() is False; "
                f"torch built for CUDA {torch.version.cuda})")
    return None
