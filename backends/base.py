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

        try:
            return metadata.version(self.framework)
        except metadata.PackageNotFoundError:
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
