"""Plain NumPy kernels that calibrate the error ratio: the textbook algorithm and broken ones.

:class:`Textbook` is the backward-stable shifted algorithm the error bounds of
``reference.metrics`` describe: element-wise work (``x - max``, ``exp``, products) in the output
dtype, every sum accumulated in float32 or wider (float64 for float64). It must pass ``compare``
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


def _acc(dtype) -> np.dtype:
    """The accumulation dtype: float64 for float64, float32 for float32 and the narrow types."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


class Textbook(Backend):
    """The shifted algorithm in the output dtype with float32-or-wider accumulation."""

    name = "textbook"
    device = "cpu"
    framework = "numpy"

    # -- building blocks that the broken kernels override ------------------------------------
    def _sum(self, a, axis: int):
        """Sum along ``axis`` (keepdims) in the accumulation dtype (NumPy's pairwise summation)."""
        return a.astype(_acc(a.dtype)).sum(axis=axis, keepdims=True)

    def _shift(self, x, axis: int):
        """x - max(x) in the output dtype (the max of an empty axis is taken as 0)."""
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf).astype(x.dtype)
        if x.shape[axis] == 0:
            m = np.zeros_like(m)
        return x - m, m

    # -- forward -------------------------------------------------------------------------------
    def softmax(self, x, axis=-1):
        with np.errstate(all="ignore"):
            if x.ndim == 0:
                return self.softmax(x.reshape(1), -1).reshape(())
            d, _ = self._shift(x, axis)
            e = np.exp(d)
            return (e.astype(_acc(x.dtype)) / self._sum(e, axis)).astype(x.dtype)

    def log_softmax(self, x, axis=-1):
        with np.errstate(all="ignore"):
            if x.ndim == 0:
                return self.log_softmax(x.reshape(1), -1).reshape(())
            d, _ = self._shift(x, axis)
            return (d.astype(_acc(x.dtype)) - np.log(self._sum(np.exp(d), axis))).astype(x.dtype)

    def logsumexp(self, x, axis=-1):
        with np.errstate(all="ignore"):
            if x.ndim == 0:
                return x.copy()
            d, m = self._shift(x, axis)
            # As SciPy and PyTorch do: an infinite max shifts by 0, so an all -inf row gives
            # log(0) = -inf and a +inf gives +inf (the limits) instead of inf - inf = NaN.
            finite_m = np.isfinite(m)
            if not finite_m.all():
                m = np.where(finite_m, m, np.zeros_like(m))
                d = x - m
            lse = m.astype(_acc(x.dtype)) + np.log(self._sum(np.exp(d), axis))
            return np.squeeze(lse, axis=axis).astype(x.dtype)

    # -- gradients -----------------------------------------------------------------------------
    def softmax_vjp(self, x, cotangent, axis=-1):
        with np.errstate(all="ignore"):
            p = self.softmax(x, axis)
            if x.ndim == 0:
                return np.zeros_like(x)
            c = self._sum(p.astype(_acc(x.dtype)) * cotangent, axis).astype(x.dtype)
            return p * (cotangent - c)

    def log_softmax_vjp(self, x, cotangent, axis=-1):
        with np.errstate(all="ignore"):
            lp = self.log_softmax(x, axis)
            if x.ndim == 0:
                return np.zeros_like(x)
            s = self._sum(cotangent, axis).astype(x.dtype)
            return cotangent - np.exp(lp) * s

    # -- cross-entropy (PyTorch semantics, class axis last) --------------------------------------
    def _coefficients(self, logits, target, label_smoothing, ignore_index, weight):
        """Per sample k: loss_k = -sum_c a[k, c] * log_softmax[k, c]; returns a (acc dtype),
        the non-ignored mask and the mean's divisor."""
        acc = _acc(logits.dtype)
        C = logits.shape[-1]
        w = np.ones(C, acc) if weight is None else np.asarray(weight).astype(acc)
        s = acc.type(label_smoothing)
        if np.asarray(target).dtype.kind in "iu":
            t = np.asarray(target)
            keep = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
            if ((t < 0) | (t >= C))[keep].any():
                raise ValueError(f"class index out of range [0, {C})")
            tc = np.where(keep, t, 0)
            a = (1 - s) * w[tc][..., None] * (np.arange(C) == tc[..., None]) + s / C * w
            a = np.where(keep[..., None], a, 0).astype(acc)
            divisor = np.where(keep, w[tc], 0).sum(dtype=acc)
        else:
            q = np.asarray(target).astype(acc)
            a = w * ((1 - s) * q + s / C) if label_smoothing else w * q
            keep = np.ones(logits.shape[:-1], bool)
            divisor = acc.type(keep.size)
        return a, keep, divisor

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        with np.errstate(all="ignore"):
            a, keep, divisor = self._coefficients(logits, target, label_smoothing, ignore_index, weight)
            lp = self.log_softmax(logits, -1).astype(a.dtype)
            if np.asarray(target).dtype.kind in "iu":
                # where(), not 0 * log p: an ignored sample's -inf or NaN logits do not leak.
                loss = np.where(keep, -np.where(a != 0, a * lp, 0).sum(-1), 0)
            else:
                loss = -(a * lp).sum(-1)    # 0 * -inf = NaN: the accepted nan_for_zero_mass_neginf
            if reduction == "none":
                return loss.astype(logits.dtype)
            total = loss.sum(dtype=a.dtype)
            return np.asarray(total / divisor if reduction == "mean" else total).astype(logits.dtype)

    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None):
        with np.errstate(all="ignore"):
            a, keep, divisor = self._coefficients(logits, target, label_smoothing, ignore_index, weight)
            p = self.softmax(logits, -1)
            g = np.where(keep[..., None], p * a.sum(-1, keepdims=True).astype(p.dtype)
                         - a.astype(p.dtype), 0).astype(p.dtype)
            if reduction == "mean":  # ignored samples keep a zero gradient, even when all are
                g = np.where(keep[..., None], g.astype(a.dtype) / divisor, 0).astype(p.dtype)
            return g


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
