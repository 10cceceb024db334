"""The reference ops: softmax, log_softmax, logsumexp, cross-entropy and their gradients.

Every function takes NumPy arrays in a target dtype (float16, bfloat16 = ml_dtypes.bfloat16,
float32, float64) and returns the exact result carried in ``carry_dtype(dtype)`` (float64, or
np.longdouble for float64 inputs), never rounded to the target dtype. The accuracy target,
certified against mpmath at 50 digits by tests/test_certification.py: every output whose exact
value is a normal number of the target dtype is within 1/100 ULP of that dtype.

How the error stays that small:

- **Working precision ("tiers").** float16/bfloat16/float32 inputs are computed in float64 (at
  least 29 spare bits). float64 inputs are computed in IEEE binary128 (numpy-quaddtype, SLEEF's
  correctly-rounded-to-1-ULP exp/log) and rounded once to np.longdouble: x87 longdouble alone has
  only 11 spare bits, too few for gradients such as ``s * (v - <s, v>)`` whose inner difference
  cancels for ordinary random cotangents. binary128 also makes ``x - max`` exact in practice (no
  two-sum splitting needed): an inexact difference only happens for spreads beyond 2**60, where
  ``exp`` is 0 anyway.
- **Escalation on cancellation.** Each op knows where it can cancel (``max + log(sum)`` in
  logsumexp, ``v_i - <s, v>`` and ``s*Q - q`` in the gradients, mixed-sign weights in
  cross-entropy) and bounds its rounding error by the magnitude of the cancelling terms. Rows
  whose bound exceeds 1/256 ULP of the target dtype are recomputed in the next tier: float64 ->
  binary128 -> mpmath at 50 digits. Typical rows never leave the first tier; logsumexp of
  normalised log-probabilities (about 0) is one that reaches mpmath. The same code runs in
  every tier (NumPy float64 arrays, binary128 arrays, object arrays of mpmath numbers).
- **Accurate pieces.** ``log(sum exp(x - max))`` is computed as ``log(k) + log1p(rest / k)``
  with k the number of maxima and rest the sum of the other terms, so log_softmax of a
  (near-)dominant logit and the cross-entropy of a confidently correct class keep their full
  relative accuracy (about -1e-43 is returned as such, not 0).

Special values (DESIGN.md "Numerics policy", expected column): a NaN in a row gives a NaN row;
one +inf gives the limit (softmax one-hot, log_softmax 0 / -inf, logsumexp +inf); several +inf a
NaN row (logsumexp +inf); an all -inf row a NaN row (logsumexp -inf); -inf among finite logits
gives exactly 0 (log_softmax -inf) and softmax/cross-entropy gradients exactly 0 there
(log_softmax_vjp gives the limit ``v_i``); an empty axis gives an empty result (logsumexp -inf,
as SciPy and PyTorch); n = 1 gives exactly 1 (log_softmax 0). A 0-d input is one element along
axis 0 or -1, as ``scipy.special.softmax`` treats a scalar: softmax 1, log_softmax 0, logsumexp
x. Subnormal outputs are computed exactly, never flushed.

Cross-entropy follows PyTorch (``torch.nn.functional.cross_entropy``) with the class axis last:
per sample ``-sum_c q_c log_softmax(x)_c`` where, for a class index t,
``q = (1 - eps) * w_t * onehot(t) + eps / C * w`` and, for probabilities p,
``q = w * ((1 - eps) * p + eps / C)``; "mean" divides by the sum of ``w_t`` over non-ignored
samples (index targets) or by the number of samples (probability targets). A zero target mass
on a -inf logit contributes 0 (the limit). Ignored samples contribute 0 to the loss and get a
zero gradient; a mean over no (weighted) sample is NaN.

>>> import numpy as np
>>> softmax(np.array([0.0, np.log(3.0)]))
array([0.25, 0.75], dtype=float128)
>>> float(log_softmax(np.array([100.0, 0.0], np.float32))[0])   # -log1p(e**-100), not 0
-3.720075976020836e-44
>>> cross_entropy(np.array([[2.0, 0.0], [0.0, 2.0]], np.float32), np.array([0, 0]),
...               reduction="none").round(4)
array([0.1269, 2.1269])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import mpmath
import numpy as np

from softmaxbench import vocabulary
from softmaxbench.reference.dtypes import DTYPES, carry_dtype, dtype_name, finfo

__all__ = [
    "REFERENCE_OPS", "softmax", "log_softmax", "logsumexp", "logsumexp_grad", "softmax_vjp",
    "log_softmax_vjp", "cross_entropy", "cross_entropy_grad", "evaluate",
]

#: Every op the reference provides: the protocol's ops plus logsumexp_grad.
REFERENCE_OPS: tuple[str, ...] = vocabulary.REFERENCE_OPS

#: Digits of the last tier (the same as the certification oracle uses).
MPMATH_DIGITS = 50

# A row escalates when KAPPA * u * (magnitude of the cancelling terms) > 2**-(p + GUARD) * |result|,
# p the target dtype's significand bits: 1 ULP > |result| * 2**-p, so GUARD = 8 keeps the error
# under 1/256 ULP. KAPPA covers the rounding errors before the cancelling step (exp, the pairwise
# row sums (<= 16 + log2(n / 128) roundings), a division): 64 is a safe over-estimate.
_KAPPA = 64.0
_GUARD = 8


# --- working precisions ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tier:
    """One working precision: how to enter it from float64 and its elementary functions."""

    name: str
    kappa_u: float                                  # KAPPA * unit roundoff (0: never escalates)
    asarray: Callable[[np.ndarray], Any]            # float64 array -> working array, exactly
    exp: Callable[[Any], Any]
    log: Callable[[Any], Any]
    log1p: Callable[[Any], Any]


@cache
def _quad_dtype() -> np.dtype:
    # Imported on first use so that importing softmaxbench stays light.
    from numpy_quaddtype import QuadPrecDType

    return np.dtype(QuadPrecDType())


def _to_quad(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).astype(_quad_dtype())


_mpf = np.frompyfunc(mpmath.mpf, 1, 1)
_FLOAT64 = _Tier("float64", _KAPPA * 2.0**-53, partial(np.asarray, dtype=np.float64),
                 np.exp, np.log, np.log1p)
_QUAD = _Tier("binary128", _KAPPA * 2.0**-113, _to_quad, np.exp, np.log, np.log1p)
_MPMATH = _Tier("mpmath", 0.0, lambda a: _mpf(np.asarray(a, dtype=np.float64)),
                np.frompyfunc(mpmath.exp, 1, 1), np.frompyfunc(mpmath.log, 1, 1),
                np.frompyfunc(mpmath.log1p, 1, 1))


def _chain(dtype: str) -> tuple[_Tier, ...]:
    """The tiers tried in turn for a target dtype."""
    return (_QUAD, _MPMATH) if dtype == "float64" else (_FLOAT64, _QUAD, _MPMATH)


def _lower(values: Any, src: _Tier, dst: _Tier) -> np.ndarray:
    """Values of tier ``src`` rounded into tier ``dst``'s array type."""
    if src is _QUAD and dst is _FLOAT64:
        return np.asarray(values).astype(np.float64)    # correctly rounded
    if src is _MPMATH and dst is _QUAD:
        return _mpmath_to_quad(values)
    raise AssertionError(f"no conversion from {src.name} to {dst.name}")


def _mpmath_to_quad(values: Any) -> np.ndarray:
    # numpy-quaddtype parses decimal strings through float64 below 1e-308, so build each value
    # from its binary significand: three exact 40-bit pieces and a power of two.
    from numpy_quaddtype import QuadPrecision

    flat = np.asarray(values, dtype=object).reshape(-1)
    out = np.zeros(flat.shape, dtype=np.float64).astype(_quad_dtype())
    two = QuadPrecision(2.0)
    with mpmath.workprec(113):
        for i, v in enumerate(flat):
            v = mpmath.mpf(v)
            if not mpmath.isfinite(v) or v == 0:
                out[i] = QuadPrecision(float(v))
                continue
            mant, e = mpmath.frexp(v)                       # v = mant * 2**e, 0.5 <= |mant| < 1
            m = int(mpmath.nint(mpmath.ldexp(mant, 113)))   # 113 significant bits, rounded
            sign, m = (-1.0 if m < 0 else 1.0), abs(m)
            mask = (1 << 40) - 1
            q = QuadPrecision(float(m >> 80)) * two**40 + QuadPrecision(float((m >> 40) & mask))
            q = q * two**40 + QuadPrecision(float(m & mask))
            out[i] = q * two**(e - 113) * QuadPrecision(sign)
    return out.reshape(np.shape(values))


def _quad_to_longdouble(q: np.ndarray) -> np.ndarray:
    """binary128 -> np.longdouble, rounded once (within 0.5 ULP of longdouble plus 2**-106).

    numpy-quaddtype's own cast to longdouble goes through float64 (losing 11 bits), so each
    value is split into two float64 pieces hi + lo that longdouble adds exactly. Values whose
    pieces leave float64's normal range (beyond it, or below 2**-969) and NaN go through
    frexp/ldexp instead.
    """
    q = np.asarray(q)
    with np.errstate(all="ignore"):
        hi = q.astype(np.float64)
        lo = (q - hi.astype(_quad_dtype())).astype(np.float64)
        out = hi.astype(np.longdouble)
        np.add(out, lo, out=out, where=lo != 0)     # where: keeps the sign of -0.0
        odd = ~np.isfinite(lo) | (np.abs(hi) < 2.0**-969)     # (zeros too: cheap, and exact)
        if odd.any():
            mant, exponent = np.frexp(q[odd])
            mhi = mant.astype(np.float64)
            mlo = (mant - mhi.astype(_quad_dtype())).astype(np.float64)
            mlo = np.where(np.isfinite(mhi), mlo, 0.0)   # inf/nan: inf - inf would make a NaN
            scaled = mhi.astype(np.longdouble)
            np.add(scaled, mlo, out=scaled, where=mlo != 0)
            out[odd] = np.ldexp(scaled, exponent.astype(np.int64))
    return out


def _to_carry(values: np.ndarray, top: _Tier) -> np.ndarray:
    if top is _QUAD:
        return _quad_to_longdouble(values)
    return np.asarray(values, dtype=np.float64)


def _tolerance(dtype: str) -> float:
    return 2.0 ** -(finfo(dtype).nmant + 1 + _GUARD)


def _cancelled(tier: _Tier, magnitude: Any, result: Any, tol: float) -> np.ndarray | None:
    """Rows (first axis) whose rounding-error bound exceeds ``tol * |result|``; None if final."""
    if tier.kappa_u == 0:
        return None
    bound = magnitude * tier.kappa_u
    bad = (bound > np.abs(result) * tol) & np.isfinite(bound)
    bad = np.asarray(bad, dtype=bool)
    return bad.reshape(bad.shape[0], -1).any(axis=1) if bad.ndim else bad.reshape(1)


def _solve(kernel: Callable, chain: Sequence[_Tier], arrays: Sequence[np.ndarray],
           tol: float) -> list:
    """Run ``kernel`` on rows in the first tier; recompute flagged rows in the next tiers.

    ``kernel(tier, tol, *arrays)`` returns ``(outputs, bad_rows)``; every array in ``arrays``
    and every output has the rows as its first axis. Outputs come back in ``chain[0]``'s type.
    """
    tier = chain[0]
    context = mpmath.workdps(MPMATH_DIGITS) if tier is _MPMATH else np.errstate(all="ignore")
    with context, np.errstate(all="ignore"):
        outputs, bad = kernel(tier, tol, *arrays)
    if len(chain) > 1 and bad is not None and bad.any():
        rows = np.flatnonzero(bad)
        deeper = _solve(kernel, chain[1:], [a[rows] for a in arrays], tol)
        for out, sub in zip(outputs, deeper):
            out[rows] = _lower(sub, chain[1], tier)
    return outputs


# --- inputs -----------------------------------------------------------------------------------
def _check_dtype(a: np.ndarray, what: str) -> str:
    name = dtype_name(a.dtype)
    if name not in DTYPES:
        raise ValueError(f"{what} has dtype {a.dtype}; the reference takes {', '.join(DTYPES)}")
    return name


def _axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise ValueError(f"axis must be an integer, not {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    return int(axis) % ndim


class _Rows:
    """``x`` with ``axis`` moved last and flattened to float64 rows (R, n), special rows resolved.

    ``rows`` is sanitised for the numeric core: a row with one +inf becomes 0 there and -inf
    elsewhere (its limit), a row without a limit (NaN, several +inf, all -inf) becomes all NaN.
    """

    def __init__(self, x: Any, axis: Any) -> None:
        x = np.asarray(x)
        self.dtype = _check_dtype(x, "x")
        self.carry = carry_dtype(self.dtype)
        self.shape = x.shape
        xa = x.reshape(1) if x.ndim == 0 else x
        self.axis = _axis(axis, xa.ndim)
        moved = np.moveaxis(xa, self.axis, -1)
        self.moved_shape = moved.shape
        self.n = moved.shape[-1]
        self.count = int(np.prod(moved.shape[:-1], dtype=np.int64))
        self.rows = moved.reshape(self.count, self.n).astype(np.float64)
        self.empty = self.n == 0 or self.count == 0
        self.lse_special = np.full(self.count, np.nan)
        self.special = np.zeros(self.count, dtype=bool)      # rows whose logsumexp is not m + L
        if self.empty:
            return
        with np.errstate(invalid="ignore"):
            m = self.rows.max(axis=1)
        pos, neg, nan = m == np.inf, m == -np.inf, np.isnan(m)
        self.special = pos | neg | nan
        if not self.special.any():
            return
        self.lse_special = np.where(pos, np.inf, np.where(neg, -np.inf, np.nan))
        n_pos = np.zeros(self.count, dtype=np.int64)
        n_pos[pos] = (self.rows[pos] == np.inf).sum(axis=1)
        one = pos & (n_pos == 1)
        self.rows[one] = np.where(self.rows[one] == np.inf, 0.0, -np.inf)
        self.rows[(pos & ~one) | neg | nan] = np.nan

    def take(self, a: Any, what: str) -> np.ndarray:
        """An array of x's shape (a cotangent) as float64 rows like ``rows``."""
        a = np.asarray(a)
        _check_dtype(a, what)
        if a.shape != self.shape:
            raise ValueError(f"{what} has shape {a.shape}; expected x's shape {self.shape}")
        a = a.reshape(1) if a.ndim == 0 else a
        return np.moveaxis(a, self.axis, -1).reshape(self.count, self.n).astype(np.float64)

    def take_reduced(self, a: Any, what: str) -> np.ndarray:
        """An array of the reduced shape (x's shape without ``axis``) as float64 (R,)."""
        a = np.asarray(a)
        _check_dtype(a, what)
        reduced = self.moved_shape[:-1] if self.shape else ()
        if a.shape != reduced:
            raise ValueError(f"{what} has shape {a.shape}; expected x's shape without axis "
                             f"{self.axis}: {reduced}")
        return a.reshape(self.count).astype(np.float64)

    def full(self, rows: np.ndarray) -> np.ndarray:
        """(R, n) carry values back to x's shape."""
        out = np.moveaxis(rows.reshape(self.moved_shape), -1, self.axis)
        return out.reshape(self.shape).copy()     # C-contiguous, and 0-d stays 0-d

    def reduced(self, values: np.ndarray) -> np.ndarray:
        """(R,) carry values to the reduced shape."""
        return values.reshape(self.moved_shape[:-1] if self.shape else ())


# --- the numeric core (any tier) ------------------------------------------------------------
def _normalise(t: _Tier, x: np.ndarray) -> tuple:
    """For rows x (R, n) of a tier: max m, d = x - m, e = exp(d), sum S and L = log(S)."""
    m = np.max(x, axis=1, keepdims=True)
    d = x - m
    e = t.exp(d)
    top = d == 0
    k = t.asarray(np.count_nonzero(top, axis=1).astype(np.float64).reshape(-1, 1))
    rest = np.sum(np.where(top, 0, e), axis=1, keepdims=True)
    # log1p keeps log_softmax of a dominant logit (-rest for rest << 1) fully accurate.
    return m, d, e, k + rest, t.log(k) + t.log1p(rest / k)


def _k_softmax(t: _Tier, tol: float, x: np.ndarray) -> tuple:
    _, _, e, s, _ = _normalise(t, t.asarray(x))
    return [e * (1 / s)], None          # one division per row: binary128 division is slow


def _k_log_softmax(t: _Tier, tol: float, x: np.ndarray) -> tuple:
    _, d, _, _, log_s = _normalise(t, t.asarray(x))
    return [d - log_s], None            # both terms <= 0: no cancellation


def _k_logsumexp(t: _Tier, tol: float, x: np.ndarray) -> tuple:
    m, _, _, _, log_s = _normalise(t, t.asarray(x))
    lse = (m + log_s)[:, 0]
    # m < 0 and log(S) ~ -m cancel (log-probabilities as logits: logsumexp ~ 0).
    return [lse], _cancelled(t, (np.abs(m) + np.abs(log_s))[:, 0], lse, tol)


def _k_logsumexp_grad(t: _Tier, tol: float, x: np.ndarray, cot: np.ndarray) -> tuple:
    _, _, e, s, _ = _normalise(t, t.asarray(x))
    return [t.asarray(cot).reshape(-1, 1) * (e / s)], None


def _k_softmax_vjp(t: _Tier, tol: float, x: np.ndarray, v: np.ndarray, pivot: np.ndarray) -> tuple:
    _, _, e, s, _ = _normalise(t, t.asarray(x))
    y = e / s
    vw = t.asarray(v)
    # v_i - <y, v> computed as (v_i - c) - <y, v - c> with c = v at the max: a constant
    # cotangent then gives exactly 0, and a dominant y makes the inner product small.
    dv = vw - vw[np.arange(vw.shape[0]), pivot].reshape(-1, 1)
    inner = np.sum(y * dv, axis=1, keepdims=True)
    grad = y * (dv - inner)
    magnitude = y * (np.abs(dv) + np.sum(y * np.abs(dv), axis=1, keepdims=True))
    return [grad], _cancelled(t, magnitude, grad, tol)


def _k_log_softmax_vjp(t: _Tier, tol: float, x: np.ndarray, v: np.ndarray) -> tuple:
    _, _, e, s, _ = _normalise(t, t.asarray(x))
    y = e / s
    vw = t.asarray(v)
    grad = vw - y * np.sum(vw, axis=1, keepdims=True)
    magnitude = np.abs(vw) + y * np.sum(np.abs(vw), axis=1, keepdims=True)
    return [grad], _cancelled(t, magnitude, grad, tol)


def _ce_weights(t: _Tier, spec: _CrossEntropySpec, target: np.ndarray) -> Any:
    """The per-class coefficients q (R, C) of the loss -sum_c q_c log_softmax_c, in tier t."""
    c = spec.classes
    w = t.asarray(spec.weight).reshape(1, c)
    eps = t.asarray(np.float64(spec.label_smoothing))
    one = t.asarray(np.float64(1.0))
    if spec.index_targets:
        q = np.where(np.arange(c).reshape(1, c) == target.reshape(-1, 1), w, 0)
        if spec.label_smoothing:
            q = q * (one - eps) + w * (eps / c)
    else:
        p = t.asarray(target)
        if spec.label_smoothing:
            p = p * (one - eps) + eps / c
        q = p * w
    return q


def _k_cross_entropy(spec: _CrossEntropySpec, t: _Tier, tol: float, x: np.ndarray,
                     target: np.ndarray) -> tuple:
    _, d, _, _, log_s = _normalise(t, t.asarray(x))
    q = _ce_weights(t, spec, target)
    terms = np.where(q == 0, 0, q * (d - log_s))     # zero mass on a -inf logit: 0, the limit
    loss = -np.sum(terms, axis=1)
    return [loss], _cancelled(t, np.sum(np.abs(terms), axis=1), loss, tol)


def _k_cross_entropy_grad(spec: _CrossEntropySpec, t: _Tier, tol: float, x: np.ndarray,
                          target: np.ndarray) -> tuple:
    _, _, e, s, _ = _normalise(t, t.asarray(x))
    y = e / s
    q = _ce_weights(t, spec, target)
    grad = y * np.sum(q, axis=1, keepdims=True) - q
    magnitude = y * np.sum(np.abs(q), axis=1, keepdims=True) + np.abs(q)
    return [grad], _cancelled(t, magnitude, grad, tol)


# --- public ops ----------------------------------------------------------------------------
def _rowwise(kernel: Callable, rows: _Rows, *extra: np.ndarray) -> np.ndarray:
    chain = _chain(rows.dtype)
    (out,) = _solve(kernel, chain, [rows.rows, *extra], _tolerance(rows.dtype))
    return _to_carry(out, chain[0])


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x) / sum(exp(x)) along ``axis``, carried in ``carry_dtype``.

    >>> import numpy as np
    >>> softmax(np.array([[1.0, 1.0], [np.inf, 0.0]], np.float32)).tolist()
    [[0.5, 0.5], [1.0, 0.0]]
    """
    rows = _Rows(x, axis)
    if rows.empty:
        return np.zeros(rows.shape, rows.carry)
    return rows.full(_rowwise(_k_softmax, rows))


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x - logsumexp(x) along ``axis``; the dominant logit keeps full relative accuracy.

    >>> import numpy as np
    >>> log_softmax(np.array([0.0, -np.inf], np.float16)).tolist()
    [0.0, -inf]
    """
    rows = _Rows(x, axis)
    if rows.empty:
        return np.zeros(rows.shape, rows.carry)
    return rows.full(_rowwise(_k_log_softmax, rows))


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(sum(exp(x))) along ``axis`` (-inf over an empty axis), x's shape without ``axis``.

    >>> import numpy as np
    >>> logsumexp(np.zeros((2, 4), np.float32)).tolist() == [np.log(4.0)] * 2
    True
    """
    rows = _Rows(x, axis)
    if rows.empty:
        return rows.reduced(np.full(rows.count, -np.inf, rows.carry))
    out = _rowwise(_k_logsumexp, rows)
    out[rows.special] = rows.lse_special[rows.special]
    return rows.reduced(out)


def logsumexp_grad(x: np.ndarray, cotangent: np.ndarray, axis: int = -1) -> np.ndarray:
    """d <logsumexp(x), cotangent> / dx = cotangent * softmax(x); cotangent has the reduced shape.

    >>> import numpy as np
    >>> logsumexp_grad(np.zeros(4, np.float32), np.float32(2.0)).tolist()
    [0.5, 0.5, 0.5, 0.5]
    """
    rows = _Rows(x, axis)
    cot = rows.take_reduced(cotangent, "cotangent")
    if rows.empty:
        return np.zeros(rows.shape, rows.carry)
    return rows.full(_rowwise(_k_logsumexp_grad, rows, cot))


def softmax_vjp(x: np.ndarray, cotangent: np.ndarray, axis: int = -1) -> np.ndarray:
    """d <softmax(x), v> / dx = y * (v - <y, v>) with y = softmax(x), v = cotangent.

    >>> import numpy as np
    >>> softmax_vjp(np.zeros(2, np.float32), np.array([1.0, 0.0], np.float32)).tolist()
    [0.25, -0.25]
    """
    rows = _Rows(x, axis)
    v = rows.take(cotangent, "cotangent")
    if rows.empty:
        return np.zeros(rows.shape, rows.carry)
    with np.errstate(invalid="ignore"):
        pivot = np.argmax(np.nan_to_num(rows.rows, nan=0.0), axis=1)
    return rows.full(_rowwise(_k_softmax_vjp, rows, v, pivot))


def log_softmax_vjp(x: np.ndarray, cotangent: np.ndarray, axis: int = -1) -> np.ndarray:
    """d <log_softmax(x), v> / dx = v - softmax(x) * sum(v).

    >>> import numpy as np
    >>> log_softmax_vjp(np.zeros(2, np.float32), np.array([1.0, 0.0], np.float32)).tolist()
    [0.5, -0.5]
    """
    rows = _Rows(x, axis)
    v = rows.take(cotangent, "cotangent")
    if rows.empty:
        return np.zeros(rows.shape, rows.carry)
    return rows.full(_rowwise(_k_log_softmax_vjp, rows, v))


# --- cross-entropy ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _CrossEntropySpec:
    classes: int
    index_targets: bool
    label_smoothing: float
    weight: np.ndarray          # (C,) float64, exact


@dataclass
class _CrossEntropyProblem:
    rows: _Rows
    spec: _CrossEntropySpec
    target: np.ndarray          # (R,) int64 with ignored samples set to 0, or (R, C) float64
    ignored: np.ndarray         # (R,) bool
    reduction: str
    batch_shape: tuple[int, ...]


def _cross_entropy_problem(logits: Any, target: Any, reduction: str, label_smoothing: Any,
                           ignore_index: Any, weight: Any) -> _CrossEntropyProblem:
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', not {reduction!r}")
    logits = np.asarray(logits)
    if logits.ndim == 0:
        raise ValueError("cross_entropy needs logits of shape (..., C), not a 0-d array")
    rows = _Rows(logits, -1)
    c = rows.n
    if c == 0:
        raise ValueError("cross_entropy needs at least one class (logits.shape[-1] == 0)")
    try:
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise ValueError(f"label_smoothing must be a number, not {label_smoothing!r}") from None
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], not {label_smoothing!r}")
    if weight is None:
        w = np.ones(c)
    else:
        w = np.asarray(weight)
        _check_dtype(w, "weight")
        if w.shape != (c,):
            raise ValueError(f"weight has shape {w.shape}; expected ({c},), one per class")
        w = w.astype(np.float64)
    if ignore_index is not None and (isinstance(ignore_index, bool)
                                     or not isinstance(ignore_index, int | np.integer)):
        raise ValueError(f"ignore_index must be an integer or None, not {ignore_index!r}")
    target = np.asarray(target)
    batch_shape = logits.shape[:-1]
    if target.dtype.kind in "iu":
        if target.shape != batch_shape:
            raise ValueError(f"class-index target has shape {target.shape}; expected the logits' "
                             f"batch shape {batch_shape}")
        t = target.reshape(rows.count).astype(np.int64)
        ignored = (t == ignore_index) if ignore_index is not None else np.zeros(rows.count, bool)
        bad = ~ignored & ((t < 0) | (t >= c))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = np.unravel_index(i, batch_shape) if batch_shape else ()
            raise ValueError(f"class index {int(t[i])} at target{list(where)} is out of range "
                             f"[0, {c}) and is not ignore_index ({ignore_index})")
        targ = np.where(ignored, 0, t)
        spec = _CrossEntropySpec(c, True, eps, w)
    else:
        _check_dtype(target, "probability target")
        if target.shape != logits.shape:
            raise ValueError(f"probability target has shape {target.shape}; expected the logits' "
                             f"shape {logits.shape}")
        if ignore_index is not None and ignore_index >= 0:
            # PyTorch's rule: a negative ignore_index (its default -100) is not applied.
            raise ValueError("ignore_index applies to class-index targets only "
                             f"(got {ignore_index} with probability targets)")
        targ = target.reshape(rows.count, c).astype(np.float64)
        ignored = np.zeros(rows.count, bool)
        spec = _CrossEntropySpec(c, False, eps, w)
    return _CrossEntropyProblem(rows, spec, targ, ignored, reduction, batch_shape)


def _ce_divisor(p: _CrossEntropyProblem, top: _Tier) -> Any:
    """The mean's divisor in the top tier: sum of w[t] over non-ignored samples, or N."""
    if p.spec.index_targets:
        wt = p.spec.weight[p.target[~p.ignored]]
        return np.sum(top.asarray(wt)) if wt.size else top.asarray(np.float64(0.0))
    return top.asarray(np.float64(p.rows.count))


def cross_entropy(logits: np.ndarray, target: np.ndarray, *, reduction: str = "mean",
                  label_smoothing: float = 0.0, ignore_index: int | None = None,
                  weight: np.ndarray | None = None) -> np.ndarray:
    """PyTorch's cross-entropy with the class axis last (see the module docstring).

    ``target``: int class indices of shape ``logits.shape[:-1]`` or probabilities of the
    logits' shape. Raises ValueError for a class index outside [0, C) that is not ignore_index.
    The sum over samples ("sum", "mean") is taken in the first working precision (float64 or
    binary128): exact enough unless per-sample losses of opposite signs cancel, which needs
    negative weights or targets.

    >>> import numpy as np
    >>> x = np.log(np.array([[0.5, 0.25, 0.25]]))
    >>> bool(float(cross_entropy(x, np.array([0]))) == np.log(2.0))
    True
    """
    p = _cross_entropy_problem(logits, target, reduction, label_smoothing, ignore_index, weight)
    chain = _chain(p.rows.dtype)
    top = chain[0]
    if p.rows.count == 0:
        losses = top.asarray(np.zeros(0))
    else:
        (losses,) = _solve(partial(_k_cross_entropy, p.spec), chain, [p.rows.rows, p.target],
                           _tolerance(p.rows.dtype))
        losses[p.ignored] = 0
    if reduction == "none":
        return _to_carry(losses, top).reshape(p.batch_shape)
    with np.errstate(all="ignore"):
        total = np.sum(losses) if losses.size else top.asarray(np.float64(0.0))
        if reduction == "mean":
            total = total / _ce_divisor(p, top)
    return _to_carry(np.asarray(total).reshape(()), top)


def cross_entropy_grad(logits: np.ndarray, target: np.ndarray, *, reduction: str = "mean",
                       label_smoothing: float = 0.0, ignore_index: int | None = None,
                       weight: np.ndarray | None = None) -> np.ndarray:
    """d loss / d logits for :func:`cross_entropy` (the losses of ``reduction="none"`` summed).

    Per sample ``softmax(x) * sum(q) - q``, divided by the mean's divisor; ignored samples get 0.

    >>> import numpy as np
    >>> cross_entropy_grad(np.zeros((1, 2), np.float32), np.array([0])).tolist()
    [[-0.5, 0.5]]
    """
    p = _cross_entropy_problem(logits, target, reduction, label_smoothing, ignore_index, weight)
    rows = p.rows
    if rows.count == 0:
        return np.zeros(rows.shape, rows.carry)
    chain = _chain(rows.dtype)
    top = chain[0]
    (grad,) = _solve(partial(_k_cross_entropy_grad, p.spec), chain, [rows.rows, p.target],
                     _tolerance(rows.dtype))
    with np.errstate(all="ignore"):
        if reduction == "mean":
            grad = grad / _ce_divisor(p, top)
        grad = np.where(p.ignored.reshape(-1, 1), 0, grad)
    return rows.full(_to_carry(grad, top))


# --- dispatch ---------------------------------------------------------------------------------
def evaluate(op: str, inputs: Any) -> np.ndarray:
    """The reference result of ``op`` on a ``reference.cases.CaseInput``.

    >>> from softmaxbench.reference.cases import get
    >>> evaluate("softmax", get("shape_n1").build("float32")).tolist()
    [1.0]
    """
    if op not in REFERENCE_OPS:
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(REFERENCE_OPS)}")
    args, kwargs = inputs.args(op)
    return globals()[op](*args, **kwargs)
