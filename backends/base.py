"""The public ``Backend`` base class that every adapter (built-in or third-party) subclasses.

A backend turns NumPy inputs into its native arrays, runs the softmax-family ops the way its
users call them, and turns the results back into NumPy. Operations it lacks keep the base
implementation, which raises ``NotImplementedError``; the suite records those as ``unsupported``.

A minimal third-party backend, in one file, picked up with ``--plugin mykernel.py``:

>>> import numpy as np
>>> from softmaxbench.backends import Backend
>>> class MyKernel(Backend):
...     name = "my-kernel"
...     device = "cpu"
...     dtypes = ("float32", "float64")
...     def softmax(self, x, axis=-1):
...         e = np.exp(x - x.max(axis=axis, keepdims=True))
...         return e / e.sum(axis=axis, keepdims=True)
>>> def backends():          # the module-level hook discovery looks for
...     return [MyKernel()]
>>> b = backends()[0]
>>> b.supported_ops()
('softmax',)
>>> b.to_numpy(b.softmax(b.asarray(np.zeros(4, np.float32)), axis=-1))
array([0.25, 0.25, 0.25, 0.25], dtype=float32)
"""

from __future__ import annotations

from typing import Any, ClassVar

from softmaxbench.vocabulary import FORWARD_OPS, GRADIENT_OPS, OPS  # noqa: F401 - re-exported


class Backend:
    """Base class of every backend. Subclass it and override what your framework provides.

    Class attributes (or instance attributes set in ``__init__``):

    - ``name``: unique, e.g. ``"torch-cpu"``;
    - ``device``: ``"cpu"`` or ``"gpu"``;
    - ``dtypes``: the supported subset of ``("float16", "bfloat16", "float32", "float64")``;
    - ``framework``: the distribution whose version ``softmaxbench list`` shows (e.g. ``"torch"``);
    - ``conventions``: names of documented deviations this backend declares (see
      ``softmaxbench.backends.conventions``), normally loaded from the data file beside it. A
      third-party backend may instead give a dict ``{name: {"reason": ..., "link": ...}}``.

    Optional hook, read by the bench harness with ``getattr(backend, "compile_times", None)``:

    - ``compile_times``: a dict ``{(op, shape, dtype): seconds}`` that a compiling backend
      (torch.compile, jax.jit, a JIT-built CUDA kernel) fills the first time it builds code for
      that op, input shape (a tuple) and dtype name, so compile time is reported apart from run
      time. Set it per instance (in ``__init__``), never as a shared class attribute.

    Harness hooks, with defaults here; the bench harness calls them in the backend's worker, so no
    framework code lives in the suite (override them where the framework differs):

    - ``copy(src, dst)``: copy native array ``src`` into ``dst`` (same shape and dtype) and return
      the array holding the copy. The device's copy bandwidth is timed with it, by the same timer
      as the ops, in the same worker. Default: ``np.copyto`` for NumPy arrays, ``dst[...] = src``
      otherwise. torch: ``Tensor.copy_``; CuPy: ``cupy.copyto``; JAX (immutable arrays): a jitted
      copy into a new buffer.
    - ``timer()``: the :class:`Timer` that times one call on this device. Default:
      :class:`HostTimer` (``perf_counter`` around the call, then ``block_until_ready`` where the
      result has one, then ``synchronize()``). torch-cuda and CuPy: :class:`CudaEventTimer` (CUDA
      events on the current stream, and ``synchronize()`` before the timer stops, so work on
      other streams is not left out).
    - ``free_memory()``: bytes free on the device after the framework's caching allocator gave
      its idle blocks back, or None when unknown (the default; CPU backends).
    - ``cache_bytes()``: the last-level cache in front of the device's memory (a GPU's L2), which
      sizes the rotating input pool; None (the default): the CPU's, from sysfs.
    - ``poison_free_memory()``: fill the device memory the framework's allocator holds free with
      NaN, so that a kernel cannot pass by reading a previous result left in a reused
      allocation. Called before the first call and before every timed call whose output is
      judged. Default: nothing (host memory is not reused behind the process's back).
    - ``set_threads(n)``: use ``n`` threads on the CPU (``--threads``). The environment already
      carries ``OMP_NUM_THREADS``/``NPROC`` etc. when the worker starts; frameworks with a
      run-time setting apply it here (torch: ``torch.set_num_threads``). Default: nothing.
    - ``threads_in_use()``: threads the framework computes with on the CPU (None on a GPU or
      when unknown). Default: ``OMP_NUM_THREADS`` when set.

    Ops receive native arrays made by :meth:`asarray`; class indices arrive as int64 arrays.
    ``cross_entropy`` follows PyTorch's semantics with the class axis last: logits ``(..., C)``,
    targets ``(...)`` of class indices or ``(..., C)`` probabilities. ``cross_entropy_grad``
    returns d loss / d logits, where the loss of ``reduction="none"`` is summed first.
    """

    name: ClassVar[str] = "unnamed"
    device: ClassVar[str] = "cpu"
    dtypes: ClassVar[tuple[str, ...]] = ("float16", "bfloat16", "float32", "float64")
    framework: ClassVar[str] = "numpy"
    conventions: ClassVar[tuple[str, ...]] = ()
    #: Why this backend is left out of an unqualified ``check`` (None: it is checked by default).
    #: For backends whose cost per case is far above the others' (torch.compile compiles once
    #: per shape, minutes over the catalogue); naming it with ``--backends`` always checks it.
    default_check_skip: ClassVar[str | None] = None

    # -- environment -------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        """Why this backend cannot run here (one line), or None when it can."""
        return None

    def framework_version(self) -> str:
        """Version of the framework this backend measures, '' when not installed."""
        from importlib import metadata

        if not self.framework:  # a kernel that is no installed distribution (metadata.version('') raises)
            return ""
        try:
            return metadata.version(self.framework)
        except (metadata.PackageNotFoundError, ValueError):
            return ""

    def supported_ops(self) -> tuple[str, ...]:
        """The ops this backend overrides (the rest raise NotImplementedError)."""
        return tuple(op for op in OPS if getattr(type(self), op) is not getattr(Backend, op))

    # -- data movement -----------------------------------------------------------------------
    def asarray(self, a):
        """NumPy array -> native array on this backend's device, same dtype."""
        return a

    def to_numpy(self, x):
        """Native array -> NumPy array, same dtype."""
        import numpy as np

        return np.asarray(x)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU)."""

    # -- harness hooks (see the class docstring) -------------------------------------------------
    def copy(self, src, dst):
        """Copy native ``src`` into ``dst`` (same shape and dtype); return the array holding it."""
        import numpy as np

        if isinstance(dst, np.ndarray) and isinstance(src, np.ndarray):
            np.copyto(dst, src)
        else:
            dst[...] = src
        return dst

    def timer(self) -> Timer:
        """The timer of one call on this backend's device."""
        return HostTimer(self)

    def free_memory(self) -> int | None:
        """Bytes free on the device (idle cached blocks given back first); None: unknown."""
        return None

    def cache_bytes(self) -> int | None:
        """Bytes of the last-level cache in front of the device's memory (None: the CPU's, read by
        the harness from sysfs)."""
        return None

    def poison_free_memory(self) -> None:
        """Fill free device memory held by the framework's allocator with NaN (default: nothing)."""

    def set_threads(self, n: int) -> None:
        """Use ``n`` CPU threads (the environment already says so; default: nothing more)."""

    def threads_in_use(self) -> int | None:
        """Threads the framework computes with on the CPU; None on a GPU or when unknown."""
        import os

        if self.device == "gpu":
            return None
        env = os.environ.get("OMP_NUM_THREADS", "")
        return int(env) if env.isdigit() and int(env) > 0 else None

    # -- operations --------------------------------------------------------------------------
    def softmax(self, x, axis: int = -1) -> Any:
        raise NotImplementedError

    def log_softmax(self, x, axis: int = -1) -> Any:
        raise NotImplementedError

    def logsumexp(self, x, axis: int = -1) -> Any:
        raise NotImplementedError

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None) -> Any:
        raise NotImplementedError

    def softmax_vjp(self, x, cotangent, axis: int = -1) -> Any:
        """d<softmax(x), cotangent>/dx."""
        raise NotImplementedError

    def log_softmax_vjp(self, x, cotangent, axis: int = -1) -> Any:
        """d<log_softmax(x), cotangent>/dx."""
        raise NotImplementedError

    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None) -> Any:
        """d loss / d logits (the loss of reduction='none' summed first)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.device}>"


# -- timers: how long one call takes on its device (the ``timer()`` hook's classes) ----------------
_perf_counter = __import__("time").perf_counter


def block_until_ready(out) -> None:
    """Wait for an asynchronously computed result (JAX arrays, also inside tuples/lists)."""
    if hasattr(out, "block_until_ready"):
        out.block_until_ready()
    elif isinstance(out, tuple | list):
        for o in out:
            block_until_ready(o)


_ASYNC_TYPES: dict[type, bool] = {}


def _is_async(tp: type) -> bool:
    """Whether results of this type may still be computing (cached per type: it runs inside the
    timed region)."""
    known = _ASYNC_TYPES.get(tp)
    if known is None:
        known = _ASYNC_TYPES[tp] = hasattr(tp, "block_until_ready") or issubclass(tp, tuple | list)
    return known


class Timer:
    """Times one call: ``call(fn, args, kwargs)`` -> (seconds until the device finished, output)."""

    name = "timer"

    def __init__(self, backend=None):
        self.backend = backend

    def call(self, fn, args, kwargs) -> tuple[float, Any]:
        raise NotImplementedError

    def time(self, fn, args, kwargs) -> float:
        """Seconds of one call (its output dropped)."""
        return self.call(fn, args, kwargs)[0]


class HostTimer(Timer):
    """perf_counter around the call, then block on the result and synchronize the backend."""

    name = "perf_counter+synchronize"

    def __init__(self, backend=None):
        super().__init__(backend)
        # Resolved once: the base class's no-op synchronize is not even called in the timed region.
        sync = getattr(backend, "synchronize", None)
        own = getattr(type(backend), "synchronize", None) if backend is not None else None
        self._sync = None if sync is None or own is Backend.synchronize else sync

    def call(self, fn, args, kwargs) -> tuple[float, Any]:
        sync = self._sync
        if sync is not None:
            sync()  # earlier queued work must not be charged to this call
        t0 = _perf_counter()
        out = fn(*args, **kwargs)
        if _is_async(type(out)):
            block_until_ready(out)
        if sync is not None:
            sync()
        return _perf_counter() - t0, out


class CudaEventTimer(Timer):
    """CUDA events around the call: the device's own clock, without the host's launch latency.

    ``make_event()`` returns an event with ``record()`` and ``synchronize()``;
    ``elapsed_ms(a, b)`` reads the time between two completed events. After the call, the end
    event is recorded on the current stream, then ``backend.synchronize()`` waits for the whole
    device and a second event is recorded: when work on another stream kept the device busy past
    the end event by more than ``slack_s`` (the host's own wait is about 10-30 us), the later
    event is the end, so a kernel that runs on a side stream is timed in full.
    """

    name = "cuda-events"
    slack_s = 50e-6

    def __init__(self, backend, make_event, elapsed_ms, name: str | None = None):
        super().__init__(backend)
        self._elapsed_ms = elapsed_ms
        self._start, self._end, self._after = make_event(), make_event(), make_event()
        if name:
            self.name = name

    def call(self, fn, args, kwargs) -> tuple[float, Any]:
        self.backend.synchronize()
        self._start.record()
        out = fn(*args, **kwargs)
        self._end.record()
        self.backend.synchronize()  # every stream: the contract for asynchronous devices
        self._after.record()
        self._after.synchronize()
        own = self._elapsed_ms(self._start, self._end) / 1e3
        full = self._elapsed_ms(self._start, self._after) / 1e3
        return (full if full - own > self.slack_s else own), out
