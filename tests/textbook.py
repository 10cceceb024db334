"""Plain NumPy kernels that calibrate the error ratio: the textbook algorithm and broken ones.

:class:`Textbook` is the backward-stable shifted algorithm the error bounds of
``reference.metrics`` describe, the model algorithm of ``reference.model`` itself: element-wise
work (``x - max``, ``exp``, products) in the output dtype, every sum accumulated in float32 or
wider (float64 for float64). It must pass ``compare``
on the whole catalogue (special-value rows may follow an accepted deviation instead).

The broken kernels each fail on the cases that expose them:

- :class:`NoShift`: ``exp(x) / sum(exp(x))`` without the max shift (overflow, 0/0 underflow);
- :class:`LogOfSoftmax`: ``log_softmax = log(softmax)`` (-inf where softmax underflows);
- :class:`NarrowAccumulation`: sums accumulated one element after another in the output dtype
  (float16 / bfloat16 running sums stall or overflow on long rows);
- :class:`AllZeros`: zeros of the right shape and dtype (passes any fixed atol on small outputs).

All are ``Backend`` subclasses, so the suite's own meta-tests can run them too.

>>> import numpy as np
>>> Textbook().softmax(np.array([0.0, np.log(3.0)], np.float32), axis=-1)
array([0.25, 0.75], dtype=float32)
>>> NoShift().softmax(np.array([100.0, 100.0], np.float32), axis=-1)
array([nan, nan], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from softmaxbench.backends.base import Backend
from softmaxbench.reference.model import ModelAlgorithm


class Textbook(ModelAlgorithm, Backend):
    """The model algorithm (``softmaxbench.reference.model.ModelAlgorithm``) as a backend: the
    shifted algorithm in the output dtype with float32-or-wider accumulation."""

    name = "textbook"
    device = "cpu"
    framework = "numpy"


class NoShift(Textbook):
    """Broken: no max shift, so exp overflows (inf/inf = NaN) or underflows (0/0) at the extremes."""

    name = "broken-no-shift"

    def _shift(self, x, axis):
        return x, np.zeros_like(np.max(x, axis=axis, keepdims=True, initial=-np.inf))


class LogOfSoftmax(Textbook):
    """Broken: log_softmax as log(softmax), -inf wherever softmax underflows."""

    name = "broken-log-of-softmax"

    def log_softmax(self, x, axis=-1):
        with np.errstate(all="ignore"):
            return np.log(self.softmax(x, axis))


class NarrowAccumulation(Textbook):
    """Broken: a running sum in the output dtype (float16 stalls at 2048 and overflows at 65520;
    bfloat16 stalls at 256). float32 and float64 outputs get a plain running sum."""

    name = "broken-narrow-accumulation"

    def _sum(self, a, axis):
        if a.shape[axis] == 0:
            return super()._sum(a, axis)
        # cumsum rounds every partial sum to a's dtype, element after element.
        return np.take(np.cumsum(a, axis=axis, dtype=a.dtype), [-1], axis=axis)


class AllZeros(Textbook):
    """Broken: zeros of the right shape and dtype for every op."""

    name = "broken-all-zeros"

    def softmax(self, x, axis=-1):
        return np.zeros_like(x)

    def log_softmax(self, x, axis=-1):
        return np.zeros_like(x)

    def logsumexp(self, x, axis=-1):
        return np.zeros_like(super().logsumexp(x, axis))

    def softmax_vjp(self, x, cotangent, axis=-1):
        return np.zeros_like(x)

    def log_softmax_vjp(self, x, cotangent, axis=-1):
        return np.zeros_like(x)

    def cross_entropy(self, logits, target, **options):
        return np.zeros_like(super().cross_entropy(logits, target, **options))

    def cross_entropy_grad(self, logits, target, **options):
        return np.zeros_like(logits)


BROKEN: tuple[type[Textbook], ...] = (NoShift, LogOfSoftmax, NarrowAccumulation, AllZeros)
