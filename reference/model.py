"""The model algorithm: what a correct kernel is measured against, and where it cannot compute.

The error bounds of :mod:`softmaxbench.reference.metrics` describe one algorithm, written out here
as code so that the bounds, the judge and ``softmaxbench hunt`` all mean the same thing by "what a
correct kernel attains":

- the **shifted** algorithm: ``d = x - max(x)``, ``exp(d)``, ``S = sum exp(d)``;
- element-wise work (``x - max``, ``exp``, products, differences with the cotangent) **rounded to
  the output dtype**;
- every **sum accumulated in float32** (float64 for float64 outputs), in any order whose partial
  sums are sub-sums of a prefix or a suffix of the row, combined pairwise (a running sum, blocked
  or strided lanes, a tree); the sum ``S`` and ``log S`` stay in the accumulation dtype;
- gradients from the forward outputs in the output dtype: ``softmax_vjp = p * (v - c)`` with
  ``c = <p, v>`` stored in the output dtype; ``log_softmax_vjp = v - exp(l) * s`` with
  ``s = sum v`` stored in the output dtype; ``cross_entropy_grad = (p * sum(a) - a) / D``.

This is the algorithm of Blanchard, Higham & Higham (IMA J. Numer. Anal. 41(4), 2021) and what
PyTorch, JAX and a NumPy user write. :class:`ModelAlgorithm` runs it on NumPy arrays (the
project's textbook test kernel is this class).

Where the model's own intermediates leave the output dtype's range (``v - c`` beyond 65504 in
float16, a sum of cotangents that overflows), the model returns inf or NaN for an element whose
exact value is finite: the suite's own standard cannot say what a correct kernel attains there, so
such elements are never judged against a backend. :func:`attainable` says so (the reason, or
None), :func:`unattainable_elements` says where; the judge reports such a check as passed with the
note "not judged: ...", and ``hunt`` refuses to save such a case.

>>> import numpy as np
>>> from softmaxbench.reference.cases import CaseInput
>>> x = np.array([9.96, -0.159], np.float16)
>>> v = np.array([10420.0, -65500.0], np.float16)
>>> inp = CaseInput("found", "float16", -1, x, v, None)
>>> print(attainable("softmax_vjp", inp))   # doctest: +ELLIPSIS
not attainable by the model algorithm: at index (1,) it gives -inf where the exact value is -3.05...
>>> attainable("softmax", inp) is None
True
"""

from __future__ import annotations

import numpy as np

from softmaxbench.reference.dtypes import dtype_name, finfo
from softmaxbench.reference.special import REGULAR_CLASSES, classify_rows
from softmaxbench.vocabulary import CROSS_ENTROPY_OPS, REFERENCE_OPS

#: In words, for messages and docs.
DESCRIPTION = ("the shifted algorithm with element-wise steps in the output dtype and sums "
               "accumulated in float32 (float64 for float64)")


def accumulation_dtype(dtype) -> np.dtype:
    """float64 for float64 outputs, float32 for float32 and the narrow types."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


_acc = accumulation_dtype


class ModelAlgorithm:
    """The model algorithm on NumPy arrays (any dtype of the suite; bfloat16 via ml_dtypes).

    Its building blocks ``_sum`` and ``_shift`` are methods so that test kernels can break one
    of them (a float16 running sum, no max shift) and keep the rest.

    >>> ModelAlgorithm().softmax(np.array([0.0, np.log(3.0)], np.float32), axis=-1)
    array([0.25, 0.75], dtype=float32)
    """

    # -- building blocks -------------------------------------------------------------------------
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

    def logsumexp_grad(self, x, cotangent, axis=-1):
        with np.errstate(all="ignore"):
            p = self.softmax(x, axis)
            if x.ndim == 0:
                return np.zeros_like(x)
            return p * np.expand_dims(np.asarray(cotangent, x.dtype), axis)

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


_MODEL = ModelAlgorithm()


def evaluate(op: str, inputs) -> np.ndarray:
    """The model algorithm's output for ``op`` on a ``reference.cases.CaseInput`` (output dtype).

    >>> from softmaxbench.reference.cases import get
    >>> evaluate("softmax", get("shape_n1").build("float32")).tolist()
    [1.0]
    """
    if op not in REFERENCE_OPS:
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(REFERENCE_OPS)}")
    args, kwargs = inputs.args(op)
    return np.asarray(getattr(_MODEL, op)(*args, **kwargs))


def _regular_elements(op: str, inputs, shape: tuple[int, ...]) -> np.ndarray:
    """Output elements whose rows the error bound grades (finite rows, -inf among finite); the
    others follow the special-value rules and conventions, not the model."""
    x = np.asarray(inputs.x)
    if x.ndim == 0:
        return np.zeros(shape, bool)
    if op in CROSS_ENTROPY_OPS:
        rows = np.isin(classify_rows(x, -1), REGULAR_CLASSES)           # batch shape
        if op == "cross_entropy_grad":
            return np.broadcast_to(rows[..., None], shape)
        if tuple(shape) == rows.shape:                                   # reduction none
            return rows
        return np.full(shape, bool(rows.all()))                          # sum / mean
    rows = np.isin(classify_rows(x, inputs.axis), REGULAR_CLASSES)
    if op == "logsumexp":
        return rows.reshape(shape)
    return np.broadcast_to(np.expand_dims(rows, inputs.axis % x.ndim), shape)


def _rounds_to_finite(exact: np.ndarray, dtype: str) -> np.ndarray:
    """The exact value is finite and stays finite when rounded to ``dtype``."""
    e = np.asarray(exact, dtype=np.longdouble)
    fi = finfo(dtype)
    top_ulp = np.ldexp(np.longdouble(1), int(fi.maxexp) - 1 - int(fi.nmant))
    with np.errstate(invalid="ignore"):
        return np.isfinite(e) & (np.abs(e) < np.longdouble(float(fi.max)) + top_ulp / 2)


def unattainable_elements(op: str, inputs, exact=None, *, model_output=None) -> np.ndarray:
    """Boolean mask (the output's shape): elements of regular rows whose exact value is finite in
    the output dtype but where the model algorithm gives inf or NaN (its own intermediates
    overflowed), and no accepted convention gives a NaN or inf either. ``exact`` defaults to the
    reference's value (computed here when not given).

    >>> from softmaxbench.reference.cases import CaseInput
    >>> x = np.zeros((1, 2), np.float16)
    >>> v = np.array([[60000.0, 60000.0]], np.float16)    # s = sum(v) overflows float16
    >>> unattainable_elements("log_softmax_vjp", CaseInput("c", "float16", -1, x, v, None)).tolist()
    [[True, True]]
    """
    if exact is None:
        from softmaxbench.reference import ops

        exact = ops.evaluate(op, inputs)
    exact = np.asarray(exact)
    if exact.size == 0:
        return np.zeros(exact.shape, bool)
    if model_output is None:   # a function of (op, inputs, exact): the same for every backend
        from softmaxbench.reference.memo import inputs_and_key, memoized

        key = inputs_and_key(inputs, exact)
        return memoized(None if key is None else ("unattainable", op, key),
                        lambda: np.array(_unattainable(op, inputs, exact, None), copy=True)).copy()
    return _unattainable(op, inputs, exact, model_output)


def _unattainable(op: str, inputs, exact: np.ndarray, model_output) -> np.ndarray:
    dtype = getattr(inputs, "dtype", None) or dtype_name(np.asarray(inputs.x).dtype)
    if model_output is None:
        try:
            model_output = evaluate(op, inputs)
        except Exception:  # noqa: BLE001 - the model raises where the reference does (bad targets)
            return np.zeros(exact.shape, bool)
    out = np.asarray(model_output)
    if out.shape != exact.shape:
        return np.zeros(exact.shape, bool)
    out64 = out.astype(np.float64) if dtype_name(out.dtype) != "float64" else out
    bad = (_regular_elements(op, inputs, exact.shape) & _rounds_to_finite(exact, dtype)
           & ~np.isfinite(out64))
    if bad.any():
        # A NaN or inf that an accepted convention gives there (0 * -inf of a probability target
        # with zero mass on a -inf logit) is that convention, not an overflow of the model.
        from softmaxbench.reference.special import alternatives

        for alt in alternatives(op, inputs, exact).values():
            bad &= np.isfinite(np.asarray(alt, np.float64))
    return bad


def attainable(op: str, inputs, exact=None) -> str | None:
    """None when the model algorithm computes every judged element of ``op`` on ``inputs``;
    otherwise the reason, one line, naming the first element where it overflows.

    ``softmaxbench hunt`` refuses to save a case for which this is not None; the judge reports
    such elements as not judged (see the module docstring). ``exact`` as in
    :func:`unattainable_elements`.
    """
    exact_arr = None if exact is None else np.asarray(exact)
    if exact_arr is None:
        from softmaxbench.reference import ops

        try:
            exact_arr = np.asarray(ops.evaluate(op, inputs))
        except Exception:  # noqa: BLE001 - no defined result (an expect-error case): nothing to judge
            return None
    try:
        model_output = evaluate(op, inputs)
    except Exception:  # noqa: BLE001
        return None
    bad = unattainable_elements(op, inputs, exact_arr, model_output=model_output)
    if not bad.any():
        return None
    dtype = getattr(inputs, "dtype", None) or dtype_name(np.asarray(inputs.x).dtype)
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    got = float(np.asarray(model_output)[idx]) if bad.ndim else float(model_output)
    want = float(exact_arr[idx]) if bad.ndim else float(exact_arr)
    more = f" ({int(bad.sum())} of {bad.size} elements)" if bad.sum() > 1 else ""
    return (f"not attainable by the model algorithm: at index {idx} it gives {got:g} where the "
            f"exact value is {want:.6g}{more}: an intermediate of {DESCRIPTION} leaves "
            f"{dtype}'s range (max {float(finfo(dtype).max):g})")
