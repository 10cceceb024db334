"""Error metrics: ULPs, a mixed absolute/relative error, and the condition-aware error ratio.

Everything here compares a backend's output (in the target dtype) with the reference's exact
value (carried in float64, or np.longdouble for float64 targets):

- :func:`ulp_error`: |actual - exact| in ULPs of the target dtype at the exact value;
- :func:`mixed_error`: |actual - exact| / max(|exact|, floor), in units of the unit roundoff u,
  for outputs near zero (log_softmax of a dominant logit is about -sum(exp(x_j - max)));
- :func:`error_ratio`: |actual - exact| divided by :func:`attainable_error`, the first-order error
  bound of the backward-stable shifted algorithm computed in the target dtype with float32-or-wider
  accumulation (Blanchard, Higham & Higham, IMA J. Numer. Anal. 41(4), 2021). The ratio is what
  decides conformance: pass when its maximum is at most ``THRESHOLDS[dtype]``, like LAPACK's test
  ratios. No fixed atol/rtol anywhere: an all-zeros kernel has ratios near 1/u.

The formulas, the special-value rules and the calibration of the thresholds are in docs/metrics.md.

>>> import numpy as np
>>> exact = np.array([1.0, 3.0])
>>> ulp_error(np.array([1.0, 3.0 + 2**-22], np.float32), exact, "float32").tolist()
[0.0, 1.0]
>>> from types import SimpleNamespace
>>> x = np.array([[0.0, 1.0, 2.0]], np.float32)
>>> inp = SimpleNamespace(x=x, cotangent=None, target=None, ce_options={}, axis=-1, dtype="float32")
>>> exact = np.exp(x - 2.0) / np.exp(x - 2.0).sum()
>>> compare("softmax", inp, exact.astype(np.float32), exact.astype(np.float64)).ok
True
>>> compare("softmax", inp, np.zeros_like(x), exact.astype(np.float64)).ok
False
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from softmaxbench.reference.dtypes import dtype_name, eps, finfo
from softmaxbench.reference.special import REGULAR_CLASSES, classify_rows, cross_entropy_form
from softmaxbench.vocabulary import REFERENCE_OPS

#: Pass when the largest error ratio of an output is at most this. Calibrated in docs/metrics.md: the
#: textbook algorithm, NumPy, SciPy and PyTorch stay below 1.6 on the whole catalogue; broken kernels
#: fail where exposed; an O(1) error in bfloat16 (u = 2**-8) scores only 5 to 25.
THRESHOLDS: dict[str, float] = {"float16": 4.0, "bfloat16": 4.0, "float32": 4.0, "float64": 4.0}

#: The floor of :func:`mixed_error`: below |exact| = 1 the error is measured absolutely. Log-domain
#: outputs (log_softmax, logsumexp, cross-entropy) are computed as differences of O(1) terms, so an
#: absolute error of a few u is what a stable algorithm attains for them near zero.
MIXED_FLOOR: float = 1.0

OPS_WITH_BOUNDS: tuple[str, ...] = REFERENCE_OPS


@dataclass(frozen=True)
class Comparison:
    """The verdict of :func:`compare` for one output.

    ``ok``: within the threshold, shape and dtype right. ``max_ulp``/``median_ulp``: over all
    elements (inf where a special value is wrong). ``max_error_ratio``: what ``ok`` is decided on.
    ``worst_index``: the element with the largest error ratio (None when there is none).
    ``flushed_subnormals``: some zeros pass only as flush-to-zero arithmetic would compute them
    (forgiven; the suite reports the deviation ``flushed_subnormals``). ``message``: one
    line, the worst element's story.
    """

    ok: bool
    max_ulp: float
    median_ulp: float
    max_error_ratio: float
    worst_index: tuple[int, ...] | None
    flushed_subnormals: bool
    message: str


# ---------------------------------------------------------------------------------------------
# Elementwise measures


def _carry(exact: np.ndarray) -> np.dtype:
    """The dtype errors are computed in: the exact value's when it is float64 or wider."""
    dt = np.asarray(exact).dtype
    if dt.kind == "f" and dt.itemsize >= 8:
        return dt
    return np.dtype(np.float64)


def _to(a, dt: np.dtype) -> np.ndarray:
    a = np.asarray(a)
    if dtype_name(a.dtype) == "bfloat16" and dt != np.float64:
        a = a.astype(np.float32)  # ml_dtypes casts bfloat16 to float32/64 only
    return a.astype(dt)


def _settled(a: np.ndarray, e: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Elements decided by special values alone: (mask, value 0 or inf).

    NaN matches NaN; an infinity matches the same infinity, also when the exact value is finite but
    rounds to that infinity in the target dtype. Any other pairing with a NaN or an infinity is an
    infinite error. Elements not in the mask are measured.
    """
    fi = finfo(dtype)
    top_ulp = np.ldexp(e.dtype.type(1), int(fi.maxexp) - 1 - int(fi.nmant))
    with np.errstate(invalid="ignore", over="ignore"):
        overflow_edge = e.dtype.type(float(fi.max)) + top_ulp / 2
        rounded = np.where(np.abs(e) >= overflow_edge, np.sign(e) * np.inf, e)
        a_nan, e_nan = np.isnan(a), np.isnan(e)
        a_inf = np.isinf(a)
        mask = a_nan | e_nan | a_inf | np.isinf(e)
        match = (a_nan & e_nan) | (a_inf & (a == rounded))
    return mask, np.where(match, 0.0, np.inf)


def ulp(exact, dtype: str) -> np.ndarray:
    """The spacing of ``dtype`` at |exact| (the smallest subnormal spacing at and near zero).

    Beyond the largest finite value the spacing of the top binade is used.

    >>> ulp(np.array([1.0, 1.5, 0.0]), "float16").tolist()
    [0.0009765625, 0.0009765625, 5.960464477539063e-08]
    """
    e = np.asarray(exact)
    e = _to(e, _carry(e))
    fi = finfo(dtype)
    with np.errstate(invalid="ignore"):
        _, k = np.frexp(np.abs(e))
    binade = np.where(e == 0, fi.minexp, np.clip(k - 1, fi.minexp, fi.maxexp - 1))
    return np.ldexp(e.dtype.type(1), (binade - fi.nmant).astype(np.int32))


def ulp_error(actual, exact, dtype: str) -> np.ndarray:
    """Per element: |actual - exact| in ULPs of ``dtype`` at the exact value (float64 array).

    ``exact`` is in the carry precision (float64, or np.longdouble for float64 targets). Zeros and
    subnormals use the smallest subnormal spacing; NaN vs NaN and inf vs the same inf (or a finite
    exact value that rounds to it) are 0; any other pairing with NaN or inf is inf.

    >>> ulp_error(np.array([np.nan, np.inf, 0.0], np.float32), np.array([np.nan, 1e300, np.inf]),
    ...           "float32").tolist()
    [0.0, 0.0, inf]
    """
    e = np.asarray(exact)
    carry = _carry(e)
    e, a = _to(e, carry), _to(actual, carry)
    mask, value = _settled(a, e, dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e) / ulp(e, dtype)
    return np.where(mask, value, err.astype(np.float64))


def mixed_error(actual, exact, dtype: str, floor: float = MIXED_FLOOR) -> np.ndarray:
    """Per element: |actual - exact| / max(|exact|, floor) in units of u = eps(dtype).

    Relative above ``floor``, absolute below it: for outputs near zero whose stable computation
    has an absolute, not a relative, error of a few u. NaN/inf as in :func:`ulp_error`.

    >>> mixed_error(np.array([2**-24, 4.0 * (1 + 2**-23)], np.float32), np.array([0.0, 4.0]),
    ...             "float32").tolist()
    [1.0, 2.0]
    """
    e = np.asarray(exact)
    carry = _carry(e)
    e, a = _to(e, carry), _to(actual, carry)
    mask, value = _settled(a, e, dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e) / np.maximum(np.abs(e), carry.type(floor)) / carry.type(eps(dtype))
    return np.where(mask, value, err.astype(np.float64))


# ---------------------------------------------------------------------------------------------
# The attainable error of the shifted algorithm


@dataclass(frozen=True)
class _Precision:
    u: float      # unit roundoff of the target (output) dtype
    ua: float     # unit roundoff of the accumulation: float32 for narrow dtypes, else the target's
    eta: float    # smallest subnormal of the target: the absolute error of an underflowing result
    tiny: float   # smallest normal of the target
    ftz: bool     # flush-to-zero arithmetic: values below tiny are read and written as 0

    def lost(self, q):
        """What flush-to-zero loses of the magnitudes ``q``: all of those below the normal range."""
        if not self.ftz:
            return 0.0
        q = np.abs(q)
        return np.where(q < self.tiny, q, 0.0)


def _precision(dtype: str, flush_to_zero: bool = False) -> _Precision:
    fi = finfo(dtype)
    acc = "float64" if dtype == "float64" else "float32"
    return _Precision(eps(dtype), eps(acc), float(fi.smallest_subnormal), float(fi.smallest_normal),
                      flush_to_zero)


def _sum_factor(n) -> np.ndarray:
    """Relative error of a sum of n positive terms, in units of the accumulation's u.

    Pairwise summation needs ceil(log2 n) + 1. Recursive (one after another) summation, which
    NumPy and PyTorch use along a non-contiguous axis and online softmax uses everywhere, has a
    worst case of n - 1 but stays within lambda * sqrt(n) with overwhelming probability (Higham &
    Mary, SIAM J. Sci. Comput. 2019); lambda = 2 covers what the calibration measures.
    """
    n = np.maximum(n, 1)
    return np.maximum(np.ceil(np.log2(n)) + 1, 2 * np.sqrt(n))


@dataclass
class _Rows:
    """Per-row terms of the shifted algorithm (class axis last, in the work dtype; keepdims for
    row values)."""

    n: int
    finite: np.ndarray   # x_j > -inf
    p: np.ndarray        # softmax
    ell: np.ndarray      # log_softmax
    log_s: np.ndarray    # log sum exp(x_j - max)
    lse: np.ndarray      # logsumexp
    rho_s: np.ndarray    # relative error of the computed sum S
    rel_p: np.ndarray    # relative error of a computed softmax element (less underflow)
    abs_ell: np.ndarray  # absolute error of a computed log_softmax element (less underflow)


def _rows(x_last: np.ndarray, pr: _Precision) -> _Rows:
    """Rows that are not regular (NaN, +inf, all -inf, n <= 1) get NaN terms: exact match required.

    ``x_last`` is float64 for the narrow targets and np.longdouble for float64, whose range
    holds x - max and the bounds near float64's largest values.
    """
    n = x_last.shape[-1]
    regular = np.isin(classify_rows(x_last, -1), REGULAR_CLASSES)[..., None]
    with np.errstate(all="ignore"):
        m = np.max(x_last, axis=-1, keepdims=True, initial=-np.inf)
        d = x_last - m
        finite = np.isfinite(d)
        e = np.where(finite, np.exp(d), 0.0)
        s = e.sum(-1, keepdims=True)
        p = e / s
        dist = np.where(finite, -d, 0.0)           # |x_j - max|
        w = (p * dist).sum(-1, keepdims=True)      # sum p_j |x_j - max| <= log n
        log_s = np.log(s)
        ell = d - log_s
        # exp(x_j - max) that land below the normal range carry an absolute error up to eta each
        # (and lose all of themselves with flush-to-zero).
        n_under = (finite & (e < pr.tiny)).sum(-1, keepdims=True)
        under = n_under * pr.eta + np.sum(pr.lost(e) + np.zeros_like(e), -1, keepdims=True)
        # S: each term's relative error u|d_j| + 2u (subtraction, exp to 1 ulp), the summation
        # ua*L(n), the store of S in the target dtype u, and underflow.
        rho_s = pr.u * (w + 3) + pr.ua * _sum_factor(n) + under / s
        rel_p = pr.u * (dist + 3) + rho_s
        abs_ell = np.where(finite, pr.u * (dist + 2 * log_s + np.abs(ell)) + rho_s, np.inf)
        nan = np.where(regular, 0.0, np.nan)
        return _Rows(n, finite, p + nan, ell + nan, log_s + nan, m + log_s + nan, rho_s + nan,
                     rel_p + nan, abs_ell + nan)


def _softmax_vjp_bound(r: _Rows, v: np.ndarray, pr: _Precision) -> np.ndarray:
    with np.errstate(all="ignore"):
        e_p = np.where(r.finite, r.rel_p * r.p, 0.0) + 2 * pr.eta + pr.lost(r.p)
        v_lost = pr.lost(v)
        c = (r.p * v).sum(-1, keepdims=True)
        e_c = ((np.abs(v) * e_p + r.p * v_lost + pr.lost(r.p * v)).sum(-1, keepdims=True)
               + (_sum_factor(r.n) + 1) * pr.ua * (r.p * np.abs(v)).sum(-1, keepdims=True)
               + pr.u * np.abs(c))
        g = r.p * (v - c)
        b = (e_p * np.abs(v - c) + r.p * (e_c + pr.u * np.abs(v - c) + v_lost)
             + pr.u * np.abs(g) + pr.eta + pr.lost(g))
    return np.where(r.finite, b, 0.0)   # exactly 0 at -inf logits, never NaN


def _log_softmax_vjp_bound(r: _Rows, v: np.ndarray, pr: _Precision) -> np.ndarray:
    with np.errstate(all="ignore"):
        # p recomputed as exp(log_softmax): its relative error is the latter's absolute error + 2u.
        e_p = np.where(r.finite, (r.abs_ell + 2 * pr.u) * r.p, 0.0) + 2 * pr.eta + pr.lost(r.p)
        s = v.sum(-1, keepdims=True)
        v_lost = pr.lost(v)
        g = v - r.p * s
        return (e_p * np.abs(s)
                + r.p * (_sum_factor(r.n) * pr.ua * np.abs(v).sum(-1, keepdims=True) + 2 * pr.u * np.abs(s)
                         + np.sum(v_lost + np.zeros_like(v), -1, keepdims=True))
                + pr.u * np.abs(g) + pr.eta + pr.lost(r.p * s) + v_lost + pr.lost(g))


def _work(dtype: str) -> np.dtype:
    """The dtype bounds are computed in (wider range than the target's)."""
    return np.dtype(np.longdouble if dtype == "float64" else np.float64)


def _last(a, axis: int, work: np.dtype) -> np.ndarray:
    return np.moveaxis(_to(a, work), axis, -1)


def attainable_error(op: str, inputs, *, flush_to_zero: bool = False) -> np.ndarray:
    """Per output element: the absolute error the shifted algorithm in the target dtype attains.

    A first-order bound (docs/metrics.md derives each op's), float64, the output's shape. 0 marks
    elements that must match exactly: special-value rows, n = 1 rows, and softmax / its gradient
    at -inf logits. ``inputs`` is a ``reference.cases.CaseInput`` (``x``, ``cotangent``,
    ``target``, ``ce_options`` and ``axis`` are read). ``flush_to_zero``: the bound of the same
    algorithm in flush-to-zero arithmetic, where every input, intermediate or output below the
    normal range may lose all of itself.

    >>> from types import SimpleNamespace
    >>> inp = SimpleNamespace(x=np.array([0.0, -np.inf, 0.0], np.float16), axis=-1)
    >>> attainable_error("softmax", inp).round(6).tolist()
    [0.001465, 0.0, 0.001465]
    """
    return _attainable(op, inputs, flush_to_zero)[0]


def _attainable(op: str, inputs, flush_to_zero: bool = False) -> tuple[np.ndarray, np.ndarray | bool]:
    """(bound, may_overflow): where ``may_overflow``, an intermediate of the shifted algorithm is
    beyond the target's range (a cross-entropy term or sum), so +-inf of the exact value's sign is
    attainable too."""
    if op not in OPS_WITH_BOUNDS:
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS_WITH_BOUNDS)}")
    x = np.asarray(inputs.x)
    dtype = dtype_name(x.dtype)
    pr, work = _precision(dtype, flush_to_zero), _work(dtype)
    overflow: np.ndarray | bool = False
    if x.ndim == 0:  # one element: softmax 1, log_softmax 0, logsumexp x, gradients 0, exactly
        return np.zeros(()), False
    if op in ("cross_entropy", "cross_entropy_grad"):
        b, overflow = _cross_entropy_bound(op, inputs, pr, work)
    else:
        axis = inputs.axis
        r = _rows(_last(x, axis, work), pr)
        with np.errstate(all="ignore"):
            if op == "softmax":
                b = np.where(r.finite, r.rel_p * r.p + 2 * pr.eta + pr.lost(r.p), 0.0)
            elif op == "log_softmax":
                b = r.abs_ell + pr.eta + pr.lost(r.ell)
            elif op == "logsumexp":
                b = (r.rho_s + 2 * pr.u * r.log_s + pr.u * np.abs(r.lse) + pr.eta + pr.lost(r.lse))[..., 0]
            elif op == "logsumexp_grad":
                v = _to(inputs.cotangent, work)[..., None]
                e_p = np.where(r.finite, r.rel_p * r.p, 0.0) + 2 * pr.eta + pr.lost(r.p)
                b = np.where(r.finite, e_p * np.abs(v) + r.p * (pr.u * np.abs(v) + pr.lost(v))
                             + pr.lost(r.p * v), 0.0)
            elif op == "softmax_vjp":
                b = _softmax_vjp_bound(r, _last(inputs.cotangent, axis, work), pr)
            else:
                b = _log_softmax_vjp_bound(r, _last(inputs.cotangent, axis, work), pr)
        if op != "logsumexp":
            b = np.moveaxis(b, -1, axis)
    with np.errstate(over="ignore"):
        b = np.asarray(b).astype(np.float64)
    return np.where(np.isfinite(b), b, 0.0), overflow


def _cross_entropy_bound(op: str, inputs, pr: _Precision, work: np.dtype):
    x = np.asarray(inputs.x)
    form = cross_entropy_form(x, inputs.target, dtype=work, **dict(inputs.ce_options or {}))
    C = x.shape[-1]
    r = _rows(_to(x, work).reshape(-1, C), pr)
    a = form.coef
    nz = a != 0
    N = a.shape[0]
    L_N = _sum_factor(N)
    big = float(finfo(dtype_name(x.dtype)).max)
    with np.errstate(all="ignore"):
        mean = form.reduction == "mean"
        rho_d = L_N * pr.ua * form.divisor_abs_sum / abs(form.divisor) if mean else 0.0
        if op == "cross_entropy":
            # Each sample is a dot product of the coefficients with log_softmax: the terms' errors,
            # the accumulation over C, and rounding of coefficients (weight * smoothed target).
            term = (np.abs(a) * (r.abs_ell + pr.eta
                                 + ((_sum_factor(C) + 1) * pr.ua + 2 * pr.u) * np.abs(r.ell))
                    + pr.lost(a) * np.abs(r.ell))
            loss = -np.where(nz, a * r.ell, 0.0).sum(-1)
            e_k = np.where(nz, term, 0.0).sum(-1) + pr.u * np.abs(loss)
            # log_softmax below -max (a spread beyond the range) or a loss sum beyond it overflows
            # in the target dtype, though the reduced loss may be finite.
            over_k = (np.where(nz, np.abs(r.ell), 0.0) > big).any(-1) | (np.abs(loss) > big)
            if form.reduction == "none":
                return ((e_k + pr.eta + pr.lost(loss)).reshape(form.batch_shape),
                        over_k.reshape(form.batch_shape))
            total = loss.sum()
            acc = e_k.sum() + L_N * pr.ua * np.abs(loss).sum()
            overflow = np.asarray(over_k.any() | (np.abs(loss).sum() > big))
            if not mean:
                return np.asarray(acc + pr.u * abs(total) + pr.eta + pr.lost(total)), overflow
            d = form.divisor
            return (np.asarray(acc / abs(d) + abs(total / d) * (rho_d + 2 * pr.u) + pr.eta
                               + pr.lost(total / d)), overflow)
        # The gradient is log_softmax's vjp with cotangent -coef / divisor, whose own rounding adds
        # a relative error rho_v to every use of it.
        v = -a / (form.divisor if mean else 1.0)
        rho_v = 3 * pr.u + rho_d
        b = (_log_softmax_vjp_bound(r, v, pr)
             + rho_v * (np.abs(v) + r.p * np.abs(v).sum(-1, keepdims=True)))
    return b.reshape(x.shape), False


# ---------------------------------------------------------------------------------------------
# Ratio and verdict


def error_ratio(op: str, inputs, actual, exact, *, flush_to_zero: bool = False) -> np.ndarray:
    """Per element: |actual - exact| / :func:`attainable_error` (float64 array, exact's shape).

    Where the attainable error is 0 (exact match required) the ratio is 0 or inf; NaN and inf are
    settled as in :func:`ulp_error`, except that +-inf (the exact value's sign) is accepted where
    the shifted algorithm itself overflows an intermediate. Pass when the maximum is
    <= ``THRESHOLDS[dtype]``. ``flush_to_zero`` divides by the flush-to-zero bound instead.

    >>> from types import SimpleNamespace
    >>> inp = SimpleNamespace(x=np.array([0.0, 0.0], np.float32), axis=-1)
    >>> error_ratio("log_softmax", inp, np.array([-0.6931472, 0.0], np.float32),
    ...             np.array([-0.6931471805599453] * 2)) > THRESHOLDS["float32"]
    array([False,  True])
    """
    e = np.asarray(exact)
    carry = _carry(e)
    bound, overflow = _attainable(op, inputs, flush_to_zero)
    if bound.size != e.size:
        raise ValueError(f"{op}: exact has shape {e.shape}, the inputs give {bound.shape}")
    bound = bound.reshape(e.shape)
    dtype = dtype_name(np.asarray(inputs.x).dtype)
    e, a = _to(e, carry), _to(actual, carry)
    mask, value = _settled(a, e, dtype)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        overflow = np.broadcast_to(np.asarray(overflow), e.shape)
        value = np.where(overflow & (a == np.sign(e) * np.inf) & (e != 0), 0.0, value)
        err = np.abs(a - e)
        ratio = np.where(bound > 0, err / bound.astype(carry), np.where(err == 0, 0.0, np.inf))
    return np.where(mask, value, ratio.astype(np.float64))


def compare(op: str, inputs, actual, exact) -> Comparison:
    """Grade one output of ``op`` on ``inputs`` against the reference's ``exact`` value.

    Checks dtype (the inputs' dtype) and shape, then the error ratio against
    ``THRESHOLDS[dtype]``. Zeros beyond the threshold that are within it for the same algorithm
    in flush-to-zero arithmetic (subnormal inputs, intermediates or outputs read or written as 0)
    are forgiven and flagged (``flushed_subnormals``): the suite reports that deviation. See the
    module docstring for an example.
    """
    dtype = getattr(inputs, "dtype", None) or dtype_name(np.asarray(inputs.x).dtype)
    a = np.asarray(actual)
    e = np.asarray(exact)
    got = dtype_name(a.dtype)
    if got != dtype:
        return _verdict_only(False, f"wrong dtype: expected {dtype}, got {got}")
    if a.shape != e.shape:
        return _verdict_only(False, f"wrong shape: expected {e.shape}, got {a.shape}")
    if e.size == 0:
        return _verdict_only(True, "empty output, as expected")
    threshold = THRESHOLDS[dtype]
    ratio = error_ratio(op, inputs, a, e)
    ulps = ulp_error(a, e, dtype)
    flushed = np.zeros(ratio.shape, bool)
    if ratio.max() > threshold:
        # Only zeros: flushing makes values vanish. Accepting any value within the flush-to-zero
        # bound would accept everything in float16, whose normal range starts at 6e-5.
        ftz = error_ratio(op, inputs, a, e, flush_to_zero=True)
        flushed = (ratio > threshold) & (ftz <= threshold) & (_to(a, np.dtype(np.float64)) == 0)
        ratio = np.where(flushed, ftz, ratio)
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    if ratio[worst] == 0:
        worst = np.unravel_index(int(np.argmax(ulps)), ulps.shape)
    max_ratio = float(ratio.max())
    ok = max_ratio <= threshold
    idx = tuple(int(i) for i in worst)
    where = f"at index {idx}: expected {_fmt(e[worst], dtype)}, got {_fmt(a[worst], dtype)}"
    head = (f"error ratio {max_ratio:.3g} <= {threshold:g} ({dtype})" if ok
            else f"error ratio {max_ratio:.3g} > {threshold:g} ({dtype})")
    note = (f"; {int(flushed.sum())} zeros within the threshold only with subnormals flushed to 0"
            if flushed.any() else "")
    msg = f"{head}, worst {where} ({float(ulps[worst]):.3g} ULP){note}"
    return Comparison(ok, float(ulps.max()), float(np.median(ulps)), max_ratio, idx,
                      bool(flushed.any()), msg)


def _verdict_only(ok: bool, message: str) -> Comparison:
    """A verdict without elementwise errors: an empty output (0) or a wrong dtype/shape (inf)."""
    err = 0.0 if ok else float("inf")
    return Comparison(ok, err, err, err, None, False, message)


def _fmt(v, dtype: str) -> str:
    digits = 17 if dtype == "float64" else 9
    return f"{float(v):.{digits}g}"

