"""The ``numpy`` backend: the textbook shifted algorithm, as a NumPy user writes it.

``exp(x - max)`` normalised by its sum, ``log_softmax = (x - max) - log(sum(exp(x - max)))``,
``logsumexp = max + log(sum(exp(x - max)))``, with no guards for special values, and analytic
gradients. It is the baseline every other backend's accuracy and speed is read against.

bfloat16 is not offered: it is not a NumPy dtype, and ml_dtypes' bfloat16 rounds every step of a
reduction to bfloat16 (4096 ones sum to 256), so no NumPy user computes in it.

>>> import numpy as np
>>> b = NumPyBackend()
>>> b.softmax(np.array([0.0, np.log(3.0)]), axis=-1)
array([0.25, 0.75])
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from softmaxbench.backends import textbook
from softmaxbench.backends.base import Backend
from softmaxbench.backends.conventions import declared


def quiet(method):
    """Run ``method`` without NumPy's floating-point warnings: special values are the point of the
    suite, and 'invalid value encountered in subtract' for every +inf row is noise in its output."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return method(*args, **kwargs)
    return wrapper


class NumPyBackend(Backend):
    """The textbook shifted softmax family in NumPy (CPU)."""

    name = "numpy"
    device = "cpu"
    dtypes = ("float16", "float32", "float64")
    framework = "numpy"
    conventions = declared("numpy")

    def asarray(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def threads_in_use(self) -> int | None:
        return 1  # NumPy's ufuncs and reductions run on one thread

    @quiet
    def softmax(self, x, axis: int = -1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    @quiet
    def log_softmax(self, x, axis: int = -1):
        shifted = x - x.max(axis=axis, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

    @quiet
    def logsumexp(self, x, axis: int = -1):
        m = x.max(axis=axis, keepdims=True)
        return np.squeeze(m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True)), axis=axis)

    @quiet
    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        if textbook.is_index_target(target):
            textbook.check_class_indices(np, target, logits.shape[-1], ignore_index)
        return textbook.cross_entropy(np, self.log_softmax(logits, -1), target, reduction=reduction,
                                      label_smoothing=label_smoothing, ignore_index=ignore_index,
                                      weight=weight)

    @quiet
    def softmax_vjp(self, x, cotangent, axis: int = -1):
        return textbook.softmax_vjp(np, self.softmax(x, axis), cotangent, axis)

    @quiet
    def log_softmax_vjp(self, x, cotangent, axis: int = -1):
        return textbook.log_softmax_vjp(np, self.softmax(x, axis), cotangent, axis)

    @quiet
    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None):
        if textbook.is_index_target(target):
            textbook.check_class_indices(np, target, logits.shape[-1], ignore_index)
        return textbook.cross_entropy_grad(np, self.softmax(logits, -1), target, reduction=reduction,
                                           label_smoothing=label_smoothing, ignore_index=ignore_index,
                                           weight=weight)
