"""Deliberately broken backends: a ``--plugin`` module the suite must catch with the right verdicts.

Every backend here is a correct baseline (:class:`Baseline`: the shifted algorithm carried in
float64, or np.longdouble for float64 inputs, rounded once at the end) with exactly one bug of
the kind real kernels ship with. ``tests/test_meta_broken.py`` runs ``softmaxbench check
--plugin tests/broken_backends.py`` over them and asserts each bug's verdict (and that the
baseline itself passes, so every flag is the bug's doing).

    softmaxbench check --plugin tests/broken_backends.py --backends broken-no-max-shift --quick

The crashing and hanging ones misbehave only on some inputs (a NaN, a +inf, a rank-4 input), so a
run shows that they cost only those cases.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

import numpy as np

from softmaxbench.backends import Backend, textbook


def _carry(a: np.ndarray) -> np.ndarray:
    return a.astype(np.longdouble if a.dtype == np.float64 else np.float64)


def _shift_max(x: np.ndarray, axis: int) -> np.ndarray:
    # initial=-inf: an empty axis reduces to -inf instead of raising.
    return np.max(x, axis=axis, keepdims=True, initial=-np.inf)


class Baseline(Backend):
    """A correct reference-grade backend: the shifted algorithm in carry precision."""

    name = "broken-baseline"
    device = "cpu"
    dtypes = ("float16", "bfloat16", "float32", "float64")
    framework = "numpy"
    # The shifted algorithm computes inf - inf for a row holding +inf: a NaN row.
    conventions = {"nan_row_for_posinf": {"reason": "x - max is inf - inf = NaN", "link": ""}}

    # Helpers the broken variants override ------------------------------------------------------
    def _softmax_carry(self, x, axis):
        xc = _carry(np.asarray(x))
        with np.errstate(all="ignore"):
            e = np.exp(xc - _shift_max(xc, axis))
            return e / np.sum(e, axis=axis, keepdims=True)

    def _log_softmax_carry(self, x, axis):
        xc = _carry(np.asarray(x))
        with np.errstate(all="ignore"):
            s = xc - _shift_max(xc, axis)
            return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))

    # Protocol ------------------------------------------------------------------------------------
    def softmax(self, x, axis=-1):
        with np.errstate(all="ignore"):
            return self._softmax_carry(x, axis).astype(x.dtype)

    def log_softmax(self, x, axis=-1):
        with np.errstate(all="ignore"):  # -2 * finfo.max overflows the dtype: -inf, as it must
            return self._log_softmax_carry(x, axis).astype(x.dtype)

    def logsumexp(self, x, axis=-1):
        xc = _carry(np.asarray(x))
        with np.errstate(all="ignore"):
            m = _shift_max(xc, axis)
            m_safe = np.where(np.isfinite(m), m, 0)
            out = m_safe + np.log(np.sum(np.exp(xc - m_safe), axis=axis, keepdims=True))
        return np.squeeze(out, axis=axis).astype(x.dtype)

    def softmax_vjp(self, x, cotangent, axis=-1):
        with np.errstate(all="ignore"):
            g = textbook.softmax_vjp(np, self._softmax_carry(x, axis), _carry(cotangent), axis)
        return g.astype(x.dtype)

    def log_softmax_vjp(self, x, cotangent, axis=-1):
        with np.errstate(all="ignore"):
            g = textbook.log_softmax_vjp(np, self._softmax_carry(x, axis), _carry(cotangent), axis)
        return g.astype(x.dtype)

    def _ce_args(self, logits, target, weight, ignore_index):
        if textbook.is_index_target(target):
            textbook.check_class_indices(np, target, logits.shape[-1], ignore_index)
        t = target if textbook.is_index_target(target) else _carry(target)
        w = None if weight is None else _carry(weight)
        return t, w

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        t, w = self._ce_args(logits, target, weight, ignore_index)
        with np.errstate(all="ignore"):
            loss = textbook.cross_entropy(np, self._log_softmax_carry(logits, -1), t, reduction=reduction,
                                          label_smoothing=label_smoothing, ignore_index=ignore_index,
                                          weight=w)
        return np.asarray(loss).astype(logits.dtype)

    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None):
        t, w = self._ce_args(logits, target, weight, ignore_index)
        if reduction == "mean" and textbook.is_index_target(target) and target.size and (
                ignore_index is not None and bool((target == ignore_index).all())):
            return np.zeros_like(logits)  # nothing counts: the mean's gradient is 0, not 0/0
        with np.errstate(all="ignore"):
            g = textbook.cross_entropy_grad(np, self._softmax_carry(logits, -1), t, reduction=reduction,
                                            label_smoothing=label_smoothing, ignore_index=ignore_index,
                                            weight=w)
        return np.asarray(g).astype(logits.dtype)


# -- numerical bugs -------------------------------------------------------------------------------
class NoMaxShift(Baseline):
    """exp(x) / sum(exp(x)) in the input dtype, without subtracting the row maximum: overflows."""

    name = "broken-no-max-shift"

    def _softmax_carry(self, x, axis):
        with np.errstate(all="ignore"):
            e = np.exp(x)
            return _carry(e / np.sum(e, axis=axis, keepdims=True))

    def _log_softmax_carry(self, x, axis):
        with np.errstate(all="ignore"):
            return _carry(x - np.log(np.sum(np.exp(x), axis=axis, keepdims=True)))


class LogOfSoftmax(Baseline):
    """log_softmax as log(softmax(x)) with softmax rounded to the input dtype: -inf where it underflows."""

    name = "broken-log-of-softmax"

    def log_softmax(self, x, axis=-1):
        with np.errstate(all="ignore"):
            return np.log(_carry(self.softmax(x, axis))).astype(x.dtype)


class LowPrecisionAccumulation(Baseline):
    """Accumulates the row sum sequentially in the input dtype (a bfloat16 running sum stalls at 256)."""

    name = "broken-lowprec-accumulation"

    def _softmax_carry(self, x, axis):
        with np.errstate(all="ignore"):
            e = np.exp(_carry(x) - _shift_max(_carry(x), axis)).astype(x.dtype)
            s = np.take(np.cumsum(e, axis=axis, dtype=x.dtype), [-1], axis=axis)
            return _carry(e) / _carry(s)


class WrongAxis(Baseline):
    """Ignores ``axis`` and always normalises over the last axis."""

    name = "broken-wrong-axis"

    def softmax(self, x, axis=-1):
        return super().softmax(x, -1)


class WrongOutputDtype(Baseline):
    """Returns float32 whatever the input dtype (a float16/bfloat16/float64 caller gets float32)."""

    name = "broken-wrong-output-dtype"

    def softmax(self, x, axis=-1):
        return self._softmax_carry(x, axis).astype(np.float32)


class MutatesInput(Baseline):
    """Subtracts the row maximum from x in place."""

    name = "broken-mutates-input"

    def softmax(self, x, axis=-1):
        with np.errstate(all="ignore"):
            np.subtract(x, np.max(x, axis=axis, keepdims=True), out=x)
        return super().softmax(x, axis)


class NaNNotPropagated(Baseline):
    """Treats NaN logits as -inf (a nanmax-style kernel): a NaN row comes back finite."""

    name = "broken-nan-not-propagated"

    def _softmax_carry(self, x, axis):
        xc = _carry(np.asarray(x))
        return super()._softmax_carry(np.where(np.isnan(xc), -np.inf, xc), axis)


class AllZeros(Baseline):
    """Returns zeros of the right shape and dtype for every op (passes a fixed-atol test suite)."""

    name = "broken-all-zeros"

    def softmax(self, x, axis=-1):
        return np.zeros_like(x)

    def log_softmax(self, x, axis=-1):
        return np.zeros_like(x)

    def softmax_vjp(self, x, cotangent, axis=-1):
        return np.zeros_like(x)


class Float64AsFloat32(Baseline):
    """float64 input silently computed in float32 (the result cast back to float64)."""

    name = "broken-float64-as-float32"

    def softmax(self, x, axis=-1):
        if x.dtype == np.float64:
            x32 = x.astype(np.float32)
            with np.errstate(all="ignore"):
                e = np.exp(x32 - x32.max(axis=axis, keepdims=True))
                return (e / e.sum(axis=axis, keepdims=True)).astype(np.float64)
        return super().softmax(x, axis)


# -- gradient and cross-entropy bugs ------------------------------------------------------------
class WrongSoftmaxGrad(Baseline):
    """softmax_vjp as y * v: forgets the - y * sum(y * v) term."""

    name = "broken-softmax-grad"

    def softmax_vjp(self, x, cotangent, axis=-1):
        return (self._softmax_carry(x, axis) * _carry(cotangent)).astype(x.dtype)


class CrossEntropyGradSign(Baseline):
    """cross_entropy_grad with the wrong sign (target - p instead of p - target)."""

    name = "broken-ce-grad-sign"

    def cross_entropy_grad(self, logits, target, **options):
        return -super().cross_entropy_grad(logits, target, **options)


class CrossEntropyGradScale(Baseline):
    """cross_entropy_grad of reduction='mean' not divided by the batch (the gradient of the sum)."""

    name = "broken-ce-grad-scale"

    def cross_entropy_grad(self, logits, target, *, reduction="mean", **options):
        return super().cross_entropy_grad(logits, target, reduction="sum" if reduction == "mean"
                                          else reduction, **options)


class IgnoreIndexWrongMean(Baseline):
    """reduction='mean' divides by every row, ignored rows included (ignore_index applied wrongly)."""

    name = "broken-ignore-index-mean"

    def cross_entropy(self, logits, target, *, reduction="mean", ignore_index=None, **options):
        if reduction != "mean" or ignore_index is None or not textbook.is_index_target(target):
            return super().cross_entropy(logits, target, reduction=reduction, ignore_index=ignore_index,
                                         **options)
        total = super().cross_entropy(logits, target, reduction="sum", ignore_index=ignore_index, **options)
        return (_carry(total) / max(target.size, 1)).astype(logits.dtype)


class LabelSmoothingIgnored(Baseline):
    """Accepts label_smoothing and ignores it."""

    name = "broken-label-smoothing-ignored"

    def cross_entropy(self, logits, target, *, label_smoothing=0.0, **options):
        return super().cross_entropy(logits, target, label_smoothing=0.0, **options)


class ClampsBadLabels(Baseline):
    """Clamps out-of-range class indices into [0, C) instead of raising."""

    name = "broken-clamps-bad-labels"

    def cross_entropy(self, logits, target, *, ignore_index=None, **options):
        if textbook.is_index_target(target):
            keep = target == ignore_index if ignore_index is not None else np.zeros(target.shape, bool)
            target = np.where(keep, target, np.clip(target, 0, logits.shape[-1] - 1))
        return super().cross_entropy(logits, target, ignore_index=ignore_index, **options)


class RaisesOnStrided(Baseline):
    """Refuses non-contiguous inputs (an error where the reference defines a result)."""

    name = "broken-raises-on-strided"

    def softmax(self, x, axis=-1):
        if not x.flags.c_contiguous:
            raise TypeError("kernel needs a contiguous input")
        return super().softmax(x, axis)


# -- process killers --------------------------------------------------------------------------------
class AbortsOnNaN(Baseline):
    """Calls abort() (SIGABRT) when a logit is NaN, like a failed assert in a C++ kernel."""

    name = "broken-abort-on-nan"

    def softmax(self, x, axis=-1):
        if np.isnan(_carry(np.asarray(x))).any():
            os.abort()
        return super().softmax(x, axis)


class SegfaultsOnInf(Baseline):
    """Dereferences a NULL pointer (SIGSEGV) when a logit is +inf."""

    name = "broken-segfault-on-inf"

    def softmax(self, x, axis=-1):
        if np.isposinf(_carry(np.asarray(x))).any():
            ctypes.string_at(0)
        return super().softmax(x, axis)


class KilledOnEmpty(Baseline):
    """Is killed with SIGKILL (as the out-of-memory killer does) on an input with an empty axis."""

    name = "broken-oom-killed-on-empty"

    def softmax(self, x, axis=-1):
        if x.size == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().softmax(x, axis)


class HangsOnRank4(Baseline):
    """Never returns (sleeps) for rank-4 float32 inputs."""

    name = "broken-hangs-on-rank4"

    def softmax(self, x, axis=-1):
        if x.ndim == 4 and x.dtype == np.float32:
            time.sleep(3600)
        return super().softmax(x, axis)


BROKEN = (NoMaxShift, LogOfSoftmax, LowPrecisionAccumulation, WrongAxis, WrongOutputDtype, MutatesInput,
          NaNNotPropagated, AllZeros, Float64AsFloat32, WrongSoftmaxGrad, CrossEntropyGradSign,
          CrossEntropyGradScale, IgnoreIndexWrongMean, LabelSmoothingIgnored, ClampsBadLabels,
          RaisesOnStrided, AbortsOnNaN, SegfaultsOnInf, KilledOnEmpty, HangsOnRank4)


def backends():
    """The plugin hook: the baseline and every broken variant."""
    return [Baseline()] + [cls() for cls in BROKEN]
