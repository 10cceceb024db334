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

import hashlib
import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from softmaxbench.reference.dtypes import dtype_name, eps, np_dtype
from softmaxbench.reference.dtypes import finfo as _dtypes_finfo
from softmaxbench.reference.memo import MEMO as _MEMO
from softmaxbench.reference.memo import MISSING as _MISSING
from softmaxbench.reference.memo import array_key as _array_key
from softmaxbench.reference.memo import clear_memos  # noqa: F401 - part of the API
from softmaxbench.reference.memo import inputs_hash as _inputs_hash
from softmaxbench.reference.memo import inputs_key as _inputs_key
from softmaxbench.reference.memo import memoized as _memoized
from softmaxbench.reference.memo import own as _own
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


@dataclass(frozen=True, repr=False)
class Comparison:
    """The verdict of :func:`compare` for one output.

    ``ok``: within the threshold, shape and dtype right. ``max_ulp``/``median_ulp``: over all
    elements (inf where a special value is wrong). ``max_error_ratio``: what ``ok`` is decided on.
    ``worst_index``: the element with the largest error ratio (None when there is none).
    ``flushed_subnormals``: some zeros pass only as flush-to-zero arithmetic would compute them
    (forgiven; the suite reports the deviation ``flushed_subnormals``). ``message``: one
    line, the worst element's story (built when first read: most comparisons pass and nobody
    reads theirs; pass a string or a function of no arguments that returns it). ``error_kind``:
    None when ``ok``, else the kind of error of the element that decided it (a key of
    :data:`ERROR_KINDS`).
    """

    ok: bool
    max_ulp: float
    median_ulp: float
    max_error_ratio: float
    worst_index: tuple[int, ...] | None
    flushed_subnormals: bool
    story: object = field(compare=False)
    error_kind: str | None = None

    @property
    def message(self) -> str:
        story = self.story
        if callable(story):
            story = story()
            object.__setattr__(self, "story", story)
        return story

    def __eq__(self, other) -> bool:
        if not isinstance(other, Comparison):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def _fields(self) -> tuple:
        return (self.ok, self.max_ulp, self.median_ulp, self.max_error_ratio, self.worst_index,
                self.flushed_subnormals, self.message, self.error_kind)

    def __repr__(self) -> str:
        return (f"Comparison(ok={self.ok!r}, max_ulp={self.max_ulp!r}, median_ulp={self.median_ulp!r}, "
                f"max_error_ratio={self.max_error_ratio!r}, worst_index={self.worst_index!r}, "
                f"flushed_subnormals={self.flushed_subnormals!r}, message={self.message!r}, "
                f"error_kind={self.error_kind!r})")


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
    if a.dtype == _BF16 and dt != _F64:
        a = a.astype(np.float32)  # ml_dtypes casts bfloat16 to float32/64 only
    return a.astype(dt)


@cache
def finfo(dtype: str):
    """:func:`softmaxbench.reference.dtypes.finfo`, remembered (ml_dtypes builds a new one each
    call)."""
    return _dtypes_finfo(dtype)


_BF16 = np_dtype("bfloat16")
_F64 = np.dtype(np.float64)
_NAMES: dict = {}


def _name(dt: np.dtype) -> str:
    """:func:`dtype_name` of a NumPy dtype, remembered (it is asked thousands of times a run)."""
    name = _NAMES.get(dt)
    if name is None:
        name = _NAMES[dt] = dtype_name(dt)
    return name


def _median(u: np.ndarray) -> float:
    """``float(np.median(u))`` of a non-empty float64 array, without np.median's overhead: the
    same partition of the same order statistics, their mean, NaN when there is a NaN."""
    flat = u.reshape(-1)
    n = flat.size
    k = n // 2
    part = np.partition(flat, [k - 1, k, n - 1] if n % 2 == 0 else [k, n - 1])
    if np.isnan(part[-1]):
        return float("nan")
    return float(part[k]) if n % 2 else float((part[k - 1] + part[k]) / 2)


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
    carry = _carry(e)
    if e.dtype != carry:
        e = _to(e, carry)
    fi = finfo(dtype)
    with np.errstate(invalid="ignore"):
        _, k = np.frexp(np.abs(e))
    binade = np.where(e == 0, fi.minexp, np.minimum(np.maximum(k - 1, fi.minexp), fi.maxexp - 1))
    return np.ldexp(e.dtype.type(1), (binade - fi.nmant).astype(np.int32))


def ulp_error(actual, exact, dtype: str, scale=None) -> np.ndarray:
    """Per element: |actual - exact| in ULPs of ``dtype`` at the exact value (float64 array).

    ``scale`` (optional, broadcast to exact): the magnitude of the terms each element is computed
    from (:func:`term_scale`). Where the exact value is smaller than one ULP of its terms (an
    exact 0 above all) its own ULP says nothing about the computation (a rounding of the terms
    next to an exact 0 would read as 1e35 ULP in float32); there the error is counted in ULPs of
    the terms instead.

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
    spacing = ulp(e, dtype)
    if scale is not None:
        sc = np.broadcast_to(np.nan_to_num(np.asarray(scale, np.float64), nan=0.0), e.shape)
        terms = ulp(sc, dtype)
        spacing = np.where((sc > 0) & (np.abs(e) < terms), np.maximum(terms, spacing), spacing)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e) / spacing
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


@cache
def _precision(dtype: str, flush_to_zero: bool = False) -> _Precision:
    fi = finfo(dtype)
    acc = "float64" if dtype == "float64" else "float32"
    return _Precision(eps(dtype), eps(acc), float(fi.smallest_subnormal), float(fi.smallest_normal),
                      flush_to_zero)


def _pairwise_factor(n) -> np.ndarray:
    """Relative error of a pairwise (tree) sum of n terms, in units of the accumulation's u."""
    return np.ceil(np.log2(np.maximum(n, 1))) + 1


def sum_error(terms, ua: float) -> np.ndarray:
    """First-order bound on the absolute error of summing ``terms`` along the last axis in a
    precision of unit roundoff ``ua``, for any order the model allows (keepdims).

    Derived, not measured: the k-th addition of a running sum rounds ``S_k = S_(k-1) + t_k`` by at
    most ``min(ua |S_k|, |t_k|, |S_(k-1)|)`` (round to nearest is never farther than either
    representable operand), and ``|S_k|`` is at most the prefix sum ``P_k`` of ``|t|``. So a running
    sum in the row's order has an error below ``sum_k min(ua P_k, |t_k|, P_(k-1))``; so has any
    order whose partial sums are sub-sums of a prefix (blocked, strided lanes); the reverse order
    is bounded the same way with suffix sums. The bound is the larger of the two, plus the
    pairwise factor ``(ceil(log2 n) + 1) ua sum |t|`` for combining blocks (or a tree sum alone).
    It is attained when every rounding has the same sign, which a running sum of near-equal
    positive terms does (each addition in a binade rounds the same way): a probabilistic
    ``sqrt(n)`` allowance was measured 7x short on 262144 such terms (docs/metrics.md).

    >>> float(sum_error(np.ones((1, 4)), 2.0**-24)[0, 0] / 2.0**-24)   # 2 + 3 + 4, tree 3 * 4
    21.0
    """
    t = np.abs(np.asarray(terms))
    n = t.shape[-1]
    total = t.sum(-1, keepdims=True)
    if n <= 1:
        return ua * total
    bounds = []
    for row in (t, t[..., ::-1]):
        prefix = np.cumsum(row, axis=-1)
        step = np.minimum(np.minimum(ua * prefix, row), prefix - row)
        bounds.append(step.sum(-1, keepdims=True))
    return np.maximum(*bounds) + _pairwise_factor(n) * ua * total


def _sum_rel(terms, ua: float) -> np.ndarray:
    """:func:`sum_error` relative to the sum of |terms| (0 for an all-zero row)."""
    t = np.abs(np.asarray(terms))
    total = t.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, sum_error(t, ua) / np.where(total > 0, total, 1), 0.0)


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
    holds x - max and the bounds near float64's largest values. Memoized by the content of
    ``x_last`` and the precision: the ops of one case share their rows (read-only arrays).
    """
    h = hashlib.blake2b(digest_size=20)
    key = ("rows", pr, h.digest()) if _array_key(h, x_last) else None
    return _memoized(key, lambda: _rows_uncached(x_last, pr))


def _softmax_terms(x_last: np.ndarray) -> tuple[np.ndarray, ...]:
    """(m, d, finite, e, s, p, log_s) of the shifted algorithm along the last axis, unmasked
    (what :func:`_rows` and :func:`term_scale` both start from; memoized by content)."""
    h = hashlib.blake2b(digest_size=20)
    key = ("terms", h.digest()) if _array_key(h, x_last) else None
    return _memoized(key, lambda: _softmax_terms_uncached(x_last))


def _softmax_terms_uncached(x_last: np.ndarray) -> tuple[np.ndarray, ...]:
    with np.errstate(all="ignore"):
        m = np.max(x_last, axis=-1, keepdims=True, initial=-np.inf)
        d = x_last - m
        finite = np.isfinite(d)
        e = np.where(finite, np.exp(d), 0.0)
        s = e.sum(-1, keepdims=True)
        return m, d, finite, e, s, e / s, np.log(s)


def _rows_uncached(x_last: np.ndarray, pr: _Precision) -> _Rows:
    n = x_last.shape[-1]
    regular = np.isin(classify_rows(x_last, -1), REGULAR_CLASSES)[..., None]
    m, d, finite, e, s, p, log_s = _softmax_terms(x_last)
    with np.errstate(all="ignore"):
        dist = np.where(finite, -d, 0.0)           # |x_j - max|
        w = (p * dist).sum(-1, keepdims=True)      # sum p_j |x_j - max| <= log n
        ell = d - log_s
        # exp(x_j - max) that land below the normal range carry an absolute error up to eta each
        # (and lose all of themselves with flush-to-zero).
        n_under = (finite & (e < pr.tiny)).sum(-1, keepdims=True)
        under = n_under * pr.eta + np.sum(pr.lost(e) + np.zeros_like(e), -1, keepdims=True)
        # S: each term's relative error u|d_j| + 2u (subtraction, exp to 1 ulp), the summation
        # (sum_error, any order the model allows), the store of S in the target dtype u, and
        # underflow.
        rho_s = pr.u * (w + 3) + _sum_rel(e, pr.ua) + under / s
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
               + sum_error(r.p * np.abs(v), pr.ua) + pr.ua * (r.p * np.abs(v)).sum(-1, keepdims=True)
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
                + r.p * (sum_error(v, pr.ua) + 2 * pr.u * np.abs(s)
                         + np.sum(v_lost + np.zeros_like(v), -1, keepdims=True))
                + pr.u * np.abs(g) + pr.eta + pr.lost(r.p * s) + v_lost + pr.lost(g))


def _work(dtype: str) -> np.dtype:
    """The dtype bounds are computed in (wider range than the target's)."""
    return np.dtype(np.longdouble if dtype == "float64" else np.float64)


def _last(a, axis: int, work: np.dtype) -> np.ndarray:
    a = _to(a, work)
    return a if _is_last(axis, a.ndim) else np.moveaxis(a, axis, -1)


def _is_last(axis, ndim: int) -> bool:
    """Is ``axis`` the last of ``ndim`` (moving it there would change nothing)?"""
    return type(axis) is int and ndim > 0 and axis in (-1, ndim - 1)


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
    return _attainable(op, inputs, flush_to_zero)[0].copy()


def _attainable(op: str, inputs, flush_to_zero: bool = False,
                ikey=_MISSING) -> tuple[np.ndarray, np.ndarray | bool]:
    """(bound, may_overflow): where ``may_overflow``, an intermediate of the shifted algorithm is
    beyond the target's range (a cross-entropy term or sum), so +-inf of the exact value's sign is
    attainable too. Memoized by the inputs' content (read-only arrays)."""
    if op not in OPS_WITH_BOUNDS:
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS_WITH_BOUNDS)}")
    if ikey is _MISSING:
        ikey = _inputs_key(inputs)
    return _memoized(None if ikey is None else ("bound", op, bool(flush_to_zero), ikey),
                     lambda: _attainable_uncached(op, inputs, flush_to_zero))


def _attainable_uncached(op: str, inputs, flush_to_zero: bool = False):
    if op not in OPS_WITH_BOUNDS:
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS_WITH_BOUNDS)}")
    x = np.asarray(inputs.x)
    dtype = _name(x.dtype)
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
        if op != "logsumexp" and not _is_last(axis, np.ndim(b)):
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
    big = float(finfo(_name(x.dtype)).max)
    with np.errstate(all="ignore"):
        mean = form.reduction == "mean"
        rho_d = 0.0
        if mean and form.divisor_terms is not None and form.divisor_terms.size:
            rho_d = float(sum_error(form.divisor_terms.reshape(1, -1), pr.ua)[0, 0]) / abs(form.divisor)
        if op == "cross_entropy":
            # Each sample is a dot product of the coefficients with log_softmax: the terms' errors,
            # the accumulation over C, and rounding of coefficients (weight * smoothed target).
            term = (np.abs(a) * (r.abs_ell + pr.eta + (pr.ua + 2 * pr.u) * np.abs(r.ell))
                    + pr.lost(a) * np.abs(r.ell))
            products = np.where(nz, np.abs(a * r.ell), 0.0)
            loss = -np.where(nz, a * r.ell, 0.0).sum(-1)
            e_k = (np.where(nz, term, 0.0).sum(-1) + sum_error(products, pr.ua)[:, 0]
                   + pr.u * np.abs(loss))
            # log_softmax below -max (a spread beyond the range) or a loss sum beyond it overflows
            # in the target dtype, though the reduced loss may be finite.
            over_k = (np.where(nz, np.abs(r.ell), 0.0) > big).any(-1) | (np.abs(loss) > big)
            if form.reduction == "none":
                return ((e_k + pr.eta + pr.lost(loss)).reshape(form.batch_shape),
                        over_k.reshape(form.batch_shape))
            total = loss.sum()
            acc = e_k.sum() + sum_error(loss.reshape(1, -1), pr.ua)[0, 0]
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
    return _ratio(op, inputs, actual, exact, flush_to_zero)[0]


def _ratio(op: str, inputs, actual, exact, flush_to_zero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(ratio, bound): the bound, exact's shape, 0 where an exact match is required."""
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
    return np.where(mask, value, ratio.astype(np.float64)), bound


# ---------------------------------------------------------------------------------------------
# The scale of an element's terms, and what kind of error an element has


def term_scale(op: str, inputs) -> np.ndarray:
    """Per output element: the magnitude of the terms the model algorithm computes it from
    (float64, the output's shape; NaN in rows holding NaN or inf).

    softmax ``p_i``; log_softmax ``max(|x_i|, |x_i - max| + log S)`` (``x - lse``); logsumexp
    ``|max| + log S``; softmax_vjp ``p_i (|v_i| + |c|)``; log_softmax_vjp ``|v_i| + p_i |s|``;
    cross-entropy ``sum_c |a_c l_c|`` per sample (reduced: summed, divided by |D| for the mean);
    its gradient ``(|a_i| + p_i sum |a|) / |D|``. Where an exact value is below one ULP of its
    terms (an exact 0 above all: one-class gradients, a one-element log_softmax), its ULP error is
    counted in ULPs of the terms (:func:`ulp_error`'s ``scale``): one rounding of the terms is
    then about 1 ULP, not 1e35.

    >>> from types import SimpleNamespace
    >>> inp = SimpleNamespace(x=np.array([[3.0]], np.float32), axis=-1, cotangent=None)
    >>> term_scale("log_softmax", inp).tolist()
    [[3.0]]
    """
    return _term_scale(op, inputs).copy()


def _term_scale(op: str, inputs, ikey=_MISSING) -> np.ndarray:
    """:func:`term_scale`, memoized by the inputs' content (a read-only array)."""
    if ikey is _MISSING:
        ikey = _inputs_key(inputs)
    return _memoized(None if ikey is None else ("scale", op, ikey), lambda: _term_scale_uncached(op, inputs))


def _term_scale_uncached(op: str, inputs) -> np.ndarray:
    x = np.asarray(inputs.x)
    dtype = dtype_name(x.dtype)
    work = _work(dtype)
    with np.errstate(all="ignore"):
        if op in ("cross_entropy", "cross_entropy_grad"):
            if x.ndim == 0 or x.shape[-1] == 0:
                return np.zeros(np.shape(x)[:-1] if op == "cross_entropy" else np.shape(x))
            form = cross_entropy_form(x, inputs.target, dtype=work, **dict(inputs.ce_options or {}))
            C = x.shape[-1]
            xl = _to(x, work).reshape(-1, C)
            m = np.max(xl, -1, keepdims=True)
            d = xl - m
            e = np.where(np.isfinite(d), np.exp(d), 0.0)
            s = e.sum(-1, keepdims=True)
            p, ell = e / s, d - np.log(s)
            a = form.coef
            mean = form.reduction == "mean"
            D = abs(form.divisor) if mean else 1.0
            if op == "cross_entropy_grad":
                out = (np.abs(a) + p * np.abs(a).sum(-1, keepdims=True)) / D
                return np.asarray(out, np.float64).reshape(x.shape)
            per = np.where(a != 0, np.abs(a * ell), 0.0).sum(-1)
            if form.reduction == "none":
                return np.asarray(per, np.float64).reshape(form.batch_shape)
            return np.asarray(per.sum() / D, np.float64)
        xl = _last(x.reshape(1) if x.ndim == 0 else x, -1 if x.ndim == 0 else inputs.axis, work)
        axis = -1 if x.ndim == 0 else inputs.axis
        m, d, fin, e, s, p, log_s = _softmax_terms(xl)
        if op == "softmax":
            out = p
        elif op == "log_softmax":
            out = np.maximum(np.where(fin, np.abs(xl), 0.0), np.where(fin, -d, 0.0) + log_s)
        elif op == "logsumexp":
            out = (np.abs(m) + log_s)[..., 0]
        elif op == "logsumexp_grad":
            v = _to(inputs.cotangent, work)
            out = p * np.abs(v.reshape(v.shape + (1,)) if x.ndim else v)
        else:
            v = _last(np.reshape(inputs.cotangent, xl.shape) if x.ndim == 0 else inputs.cotangent,
                      axis, work)
            if op == "softmax_vjp":
                out = p * (np.abs(v) + np.abs((p * v).sum(-1, keepdims=True)))
            else:
                out = np.abs(v) + p * np.abs(v.sum(-1, keepdims=True))
        if op not in ("logsumexp",) and not _is_last(axis, np.ndim(out)):
            out = np.moveaxis(out, -1, axis)
        out = np.asarray(out, np.float64)
    return out.reshape(np.shape(x)) if x.ndim == 0 and op != "logsumexp" else out.reshape(
        () if x.ndim == 0 else out.shape)


#: What kind of error decided a non-passing comparison (the records' ``error_kind``), worst first.
ERROR_KINDS: dict[str, str] = {
    "wrong_structure": "wrong dtype or shape",
    "special_value": "NaN or inf where a finite value is expected, or a finite value where NaN "
                     "or inf is expected",
    "garbage": "no correct digit: an error at least half the magnitude of the value's terms",
    "beyond_bound": "more error than the model algorithm attains (a less accurate algorithm)",
    "rounding_at_exact": "one or two roundings where the convention demands an exact value "
                         "(exactly 1 or 0 in a one-element row or a one-class gradient)",
}
_SEVERITY = {k: i for i, k in enumerate(reversed(tuple(ERROR_KINDS)))}
#: At most this many ULPs (at the terms' scale) at an exact-required element count as roundings.
ROUNDING_ULPS = 2.0


def _kinds(a: np.ndarray, e: np.ndarray, ratio: np.ndarray, bound: np.ndarray, ulps: np.ndarray,
           scale: np.ndarray, dtype: str, threshold: float) -> np.ndarray:
    """Per element, the index of its kind in ``_SEVERITY`` order (-1 where it is within bound)."""
    kinds = np.full(ratio.shape, -1, np.int8)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ratio > threshold
        special = bad & (~np.isfinite(a) | ~np.isfinite(e) | ~np.isfinite(_rounded(e, dtype)))
        mag = np.maximum(np.abs(e), np.nan_to_num(scale, nan=0.0))
        garbage = bad & ~special & (np.abs(a - e) >= 0.5 * mag)
        rounding = bad & ~special & ~garbage & (bound == 0) & (ulps <= ROUNDING_ULPS)
    kinds[bad] = _SEVERITY["beyond_bound"]
    kinds[rounding] = _SEVERITY["rounding_at_exact"]
    kinds[garbage] = _SEVERITY["garbage"]
    kinds[special] = _SEVERITY["special_value"]
    return kinds


def _rounded(e: np.ndarray, dtype: str) -> np.ndarray:
    """The exact value with +-inf where it rounds beyond the target's range."""
    fi = finfo(dtype)
    top_ulp = np.ldexp(e.dtype.type(1), int(fi.maxexp) - 1 - int(fi.nmant))
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(np.abs(e) >= e.dtype.type(float(fi.max)) + top_ulp / 2, np.sign(e) * np.inf, e)


def steps_between(actual, exact, dtype: str) -> int | None:
    """How many representable ``dtype`` numbers from ``exact`` (rounded to ``dtype``) to
    ``actual``, signed (negative: below); None when either is not finite.

    >>> steps_between(np.float32(0.99999994), 1.0, "float32")
    -1
    """
    from softmaxbench.reference.dtypes import np_dtype

    dt = np_dtype(dtype)
    try:
        av = np.asarray(actual).astype(dt) if dtype != "bfloat16" else np.asarray(
            np.float32(actual)).astype(dt)
        ev = np.asarray(np.float64(exact) if dtype != "float64" else np.longdouble(exact)).astype(dt)
    except (OverflowError, ValueError):
        return None
    if not (np.isfinite(av.astype(np.float64)) and np.isfinite(ev.astype(np.float64))):
        return None
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[dt.itemsize]
    sign = 1 << (8 * dt.itemsize - 1)

    def ordinal(v) -> int:
        b = int(np.asarray(v, dt).reshape(1).view(bits)[0])
        return -(b & ~sign) if b & sign else b

    return ordinal(av) - ordinal(ev)


def format_value(v, dtype: str) -> str:
    """The shortest text that reads back as the same ``dtype`` number (0.99999994, not 1.).

    >>> format_value(np.float32(0.99999994), "float32"), format_value(-2**-14, "float16")
    ('0.99999994', '-6.104e-05')
    """
    f = float(v)
    if not math.isfinite(f):
        return str(f)
    key = (dtype, f, math.copysign(1.0, f))   # 0.0 and -0.0 are different texts
    text = _FORMATS.get(key)
    if text is None:
        text = _shortest(f, dtype)
        if len(_FORMATS) >= _FORMATS_MAX:
            _FORMATS.clear()
        _FORMATS[key] = text
    return text


_FORMATS: dict = {}
_FORMATS_MAX = 1 << 16


def _bfloat16_scalar(z):
    import ml_dtypes

    return ml_dtypes.bfloat16(np.float32(z))   # ml_dtypes casts to bfloat16 from float32


_SCALARS = {"float64": float, "float32": np.float32, "float16": np.float16, "bfloat16": _bfloat16_scalar}


def _shortest(f: float, dtype: str) -> str:
    """:func:`format_value` of a finite float: the first ``%.Ng`` text, N = 1, 2, ..., that
    reads back as the same ``dtype`` number (rounded from ``f`` as numpy's astype rounds)."""
    conv = _SCALARS.get(dtype)
    if conv is None:
        from softmaxbench.reference.dtypes import np_dtype

        np_dtype(dtype)   # raises ValueError naming the dtypes
        return repr(f)
    target = conv(f)
    for digits in range(1, 18):
        text = f"{f:.{digits}g}"
        with np.errstate(over="ignore"):
            back = conv(float(text))
        if back == target:
            return text
    return repr(f)


# ---------------------------------------------------------------------------------------------
# The verdict


class _Prepared:
    """What :func:`compare` needs of one (op, inputs, exact, dtype) before seeing an output: the
    bound, the terms' scale and the exact value's figures (memoized: every backend of a run is
    judged on the same inputs against the same exact value). Each figure is computed exactly as
    :func:`error_ratio`, :func:`ulp_error` and :func:`_kinds` compute it; those needed only when
    a special value is involved or an element is beyond the threshold are computed on first use.
    """

    def __init__(self, op: str, inputs, e: np.ndarray, dtype: str, ikey):
        self.carry = carry = _carry(e)
        bound, overflow = _attainable(op, inputs, False, ikey)
        if bound.size != e.size:
            raise ValueError(f"{op}: exact has shape {e.shape}, the inputs give {bound.shape}")
        self.bound = bound = bound.reshape(e.shape)        # the attainable error, exact's shape
        self.rdtype = _name(np.asarray(inputs.x).dtype)   # the ratio's dtype (x's)
        self.dtype = dtype                                 # the comparison's (ULPs, kinds)
        self.ec = ec = _to(e, carry)                       # exact in the carry dtype
        try:
            scale = _term_scale(op, inputs, ikey).reshape(e.shape)
        except Exception:  # noqa: BLE001 - a figure, never a reason to fail a comparison
            scale = None
        self.scale = scale
        self._overflow = np.asarray(overflow)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            self.e_nan = np.isnan(ec)
            self.e_special = self.e_nan | np.isinf(ec)     # exact is NaN or inf
            self.any_special = bool(self.e_special.any())
            self.bound_c = bound.astype(carry)
            self.bound_pos = bound > 0
            self.all_pos = bool(self.bound_pos.all())
            spacing = ulp(ec, dtype)
            if scale is not None:
                sc = np.broadcast_to(np.nan_to_num(np.asarray(scale, np.float64), nan=0.0), ec.shape)
                terms = ulp(sc, dtype)
                spacing = np.where((sc > 0) & (np.abs(ec) < terms), np.maximum(terms, spacing), spacing)
            self.spacing = spacing                         # the ULP the error is counted in

    def _lazy(self, name: str, compute):
        value = self.__dict__.get(name)
        if value is None:
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                value = _own(np.asarray(compute()))
            self.__dict__[name] = value
        return value

    @property
    def rounded_r(self) -> np.ndarray:
        """exact, +-inf where it rounds beyond the range of x's dtype."""
        return self._lazy("_rounded_r", lambda: _rounded(self.ec, self.rdtype))

    @property
    def rounded_u(self) -> np.ndarray:
        """... of the comparison's dtype."""
        if self.rdtype == self.dtype:
            return self.rounded_r
        return self._lazy("_rounded_u", lambda: _rounded(self.ec, self.dtype))

    @property
    def inf_ok(self) -> np.ndarray:
        """An intermediate overflows and exact is not 0: +-inf of its sign is attainable."""
        return self._lazy("_inf_ok", lambda: np.broadcast_to(self._overflow, self.ec.shape) & (self.ec != 0))

    @property
    def signed_inf(self) -> np.ndarray:
        return self._lazy("_signed_inf", lambda: np.sign(self.ec) * np.inf)

    @property
    def e_odd(self) -> np.ndarray:
        """exact, or exact rounded, is not finite."""
        return self._lazy("_e_odd", lambda: ~np.isfinite(self.ec) | ~np.isfinite(self.rounded_u))

    @property
    def half_mag(self) -> np.ndarray:
        """0.5 max(|exact|, scale)."""
        return self._lazy("_half_mag", lambda: 0.5 * np.maximum(np.abs(self.ec), np.nan_to_num(
            np.zeros(self.ec.shape) if self.scale is None else self.scale, nan=0.0)))

    @property
    def bound_zero(self) -> np.ndarray:
        return self._lazy("_bound_zero", lambda: self.bound == 0)


def _keys(inputs, e: np.ndarray, a: np.ndarray, exclude) -> tuple:
    """Content keys of (inputs), (inputs, exact) and (inputs, exact, actual, exclude), from one
    hash; None where one is not memoizable."""
    h = _inputs_hash(inputs)
    if h is None:
        return None, None, None
    ikey = h.digest()
    h.update(b"exact")
    if not _array_key(h, e):
        return ikey, None, None
    ekey = h.digest()
    h.update(b"actual")
    if not (_array_key(h, a) and _array_key(h, None if exclude is None else np.asarray(exclude))):
        return ikey, ekey, None
    return ikey, ekey, h.digest()


def compare(op: str, inputs, actual, exact, *, exclude=None) -> Comparison:
    """Grade one output of ``op`` on ``inputs`` against the reference's ``exact`` value.

    Checks dtype (the inputs' dtype) and shape, then the error ratio against
    ``THRESHOLDS[dtype]``. Zeros beyond the threshold that are within it for the same algorithm
    in flush-to-zero arithmetic (subnormal inputs, intermediates or outputs read or written as 0)
    are forgiven and flagged (``flushed_subnormals``): the suite reports that deviation.
    ``exclude`` (a boolean mask of exact's shape) leaves elements out of the judgement: those the
    model algorithm cannot compute (:func:`softmaxbench.reference.model.unattainable_elements`),
    or those an accepted convention explains when only the message is wanted. See the module
    docstring for an example.

    The error ratio and ULPs are those of :func:`error_ratio` and :func:`ulp_error` (with
    :func:`term_scale`); what depends only on (op, inputs, exact) is computed once for all the
    outputs judged against it (memoized by content), and the message is built when read.
    """
    dtype = getattr(inputs, "dtype", None) or _name(np.asarray(inputs.x).dtype)
    a = np.asarray(actual)
    e = np.asarray(exact)
    got = _name(a.dtype)
    if got != dtype:
        return _verdict_only(False, f"wrong dtype: expected {dtype}, got {got}", "wrong_structure")
    if a.shape != e.shape:
        return _verdict_only(False, f"wrong shape: expected {e.shape}, got {a.shape}", "wrong_structure")
    if e.size == 0:
        return _verdict_only(True, "empty output, as expected")
    ikey, ekey, ckey = _keys(inputs, e, a, exclude)
    if ckey is None:
        return _compare(op, inputs, a, e, exclude, dtype, ikey, ekey)
    # Another backend may have returned the same bytes: its comparison is this one.
    key = ("compare", op, dtype, ckey)
    hit = _MEMO.get(key)
    if hit is _MISSING:
        hit = _compare(op, inputs, a, e, exclude, dtype, ikey, ekey)
        _MEMO.put(key, hit, a.nbytes + 512)
    return hit


def _compare(op: str, inputs, a: np.ndarray, e: np.ndarray, exclude, dtype: str, ikey, ekey) -> Comparison:
    threshold = THRESHOLDS[dtype]
    p = _memoized(None if ekey is None else ("prepared", op, dtype, ekey),
                  lambda: _Prepared(op, inputs, e, dtype, ikey))
    ac = _to(a, p.carry)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = np.abs(ac - p.ec)
        ratio = err / p.bound_c if p.all_pos else np.where(p.bound_pos, err / p.bound_c,
                                                            np.where(err == 0, 0.0, np.inf))
        ratio = ratio.astype(np.float64, copy=False)
        ulps = (err / p.spacing).astype(np.float64, copy=False)
        a_nan, a_inf = np.isnan(ac), np.isinf(ac)
        mask = a_nan | a_inf
        if p.any_special or mask.any():
            # Special values are settled as error_ratio and ulp_error settle them: NaN matches
            # NaN, an infinity the same infinity (or an exact value that rounds to it), +-inf of
            # the exact value's sign where an intermediate overflows; any other pairing is inf.
            mask |= p.e_special
            match = (a_nan & p.e_nan) | (a_inf & (ac == p.rounded_r))
            value = np.where(match, 0.0, np.inf)
            value = np.where(p.inf_ok & (ac == p.signed_inf), 0.0, value)
            ratio = np.where(mask, value, ratio)
            if p.rdtype != dtype:
                match = (a_nan & p.e_nan) | (a_inf & (ac == p.rounded_u))
            ulps = np.where(mask, np.where(match, 0.0, np.inf), ulps)
    flushed = None
    if exclude is not None:
        left_out = np.broadcast_to(exclude, ratio.shape)
        ratio = np.where(left_out, 0.0, ratio)
        ulps = np.where(left_out, 0.0, ulps)
    if ratio.max() > threshold:
        # Only zeros: flushing makes values vanish. Accepting any value within the flush-to-zero
        # bound would accept everything in float16, whose normal range starts at 6e-5.
        ftz = error_ratio(op, inputs, a, e, flush_to_zero=True)
        flushed = (ratio > threshold) & (ftz <= threshold) & (_to(a, np.dtype(np.float64)) == 0)
        ratio = np.where(flushed, ftz, ratio)
    max_ratio = float(ratio.max())
    ok = max_ratio <= threshold
    kinds = None
    if not ok:   # (when ok, no element is beyond the threshold: kinds would all be -1)
        kinds = _prepared_kinds(ac, err, ratio, ulps, p, threshold)
    if kinds is not None and (kinds >= 0).any():
        # The deciding element: the worst kind first, then the largest ratio (then ULPs).
        order = np.lexsort((ulps.ravel(), np.nan_to_num(ratio.ravel(), posinf=np.finfo(float).max),
                            kinds.ravel()))
        worst = np.unravel_index(int(order[-1]), ratio.shape)
    else:
        worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        if ratio[worst] == 0:
            worst = np.unravel_index(int(np.argmax(ulps)), ulps.shape)
    kind = None if ok else tuple(reversed(tuple(ERROR_KINDS)))[
        int(kinds[worst]) if kinds is not None else -1]
    idx = tuple(int(i) for i in worst)
    n_flushed = 0 if flushed is None else int(flushed.sum())
    note = f"; {n_flushed} zeros within the threshold only with subnormals flushed to 0" if n_flushed else ""
    # The message is built when read, from scalars and the input's shape and axis only (a
    # memoized comparison must not keep the inputs' arrays alive).
    story = (op, np.shape(inputs.x), getattr(inputs, "axis", None), ac[worst], p.ec[worst], a[worst],
             float(ratio[worst]), float(ulps[worst]), None if p.scale is None else float(p.scale[worst]),
             kind, idx, dtype, threshold, max_ratio, ok)

    def message() -> str:
        o, shape, axis, aw, ew, an, r, u, sc, k, ix, d, t, m, good = story
        shaped = _ShapeOnly(np.broadcast_to(np.zeros((), np.int8), shape), axis)
        return _story(o, shaped, aw, ew, an, r, u, sc, k, ix, d, t, m, good) + note

    return Comparison(ok, float(ulps.max()), _median(ulps), max_ratio, idx, bool(n_flushed), message, kind)


@dataclass(frozen=True)
class _ShapeOnly:
    """What a message reads of the inputs: x's shape (as a zero-stride array) and the axis."""

    x: np.ndarray
    axis: int | None


def _prepared_kinds(ac, err, ratio, ulps, p: _Prepared, threshold: float) -> np.ndarray:
    """:func:`_kinds` with the exact value's parts prepared."""
    kinds = np.full(ratio.shape, -1, np.int8)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ratio > threshold
        special = bad & (~np.isfinite(ac) | p.e_odd)
        garbage = bad & ~special & (err >= p.half_mag)
        rounding = bad & ~special & ~garbage & p.bound_zero & (ulps <= ROUNDING_ULPS)
    kinds[bad] = _SEVERITY["beyond_bound"]
    kinds[rounding] = _SEVERITY["rounding_at_exact"]
    kinds[garbage] = _SEVERITY["garbage"]
    kinds[special] = _SEVERITY["special_value"]
    return kinds


def _story(op, inputs, a, e, a_native, ratio, ulps, scale, kind, idx, dtype, threshold, max_ratio,
           ok) -> str:
    """One line: the verdict's figure and the deciding element, in the words its kind calls for."""
    got, want = format_value(a_native, dtype), _fmt(e, dtype)
    if kind == "rounding_at_exact":
        steps = steps_between(a_native, e, dtype)
        if float(e) == 0 and scale:
            size = (f"{ulps:.3g} ULP of its terms' scale {scale:.3g} ({dtype} u = {eps(dtype):.3g})")
        else:
            n = abs(steps) if steps is not None else None
            size = (f"{'one' if n == 1 else n} ULP {'below' if (steps or 0) < 0 else 'above'} "
                    f"the exact {want}" if n else f"{ulps:.3g} ULP")
        why = _exact_reason(op, inputs, idx)
        return (f"exact value required at index {idx} ({why}): expected exactly {want}, got {got}, "
                f"{size}: a rounding where the convention demands exactness, not an accuracy loss "
                f"(no error ratio applies)")
    if ok:
        return (f"error ratio {max_ratio:.3g} <= {threshold:g} ({dtype}), worst at index {idx}: "
                f"expected {want}, got {got} ({ulps:.3g} ULP)")
    tail = f" ({ulps:.3g} ULP)" if np.isfinite(ulps) else ""
    if not np.isfinite(ratio):   # an exact-required element, or a wrong NaN/inf
        if kind != "special_value" or np.isfinite(float(e)) and np.isfinite(float(a)):
            what = f"exact value required ({_exact_reason(op, inputs, idx)})"
        elif np.isfinite(float(e)):
            what = f"{got} where the value is finite"
        else:
            what = f"{want} expected"
        exactly = "exactly " if "exact" in what else ""
        return f"{what} at index {idx}: expected {exactly}{want}, got {got}{tail}"
    return (f"error ratio {ratio:.3g} > {threshold:g} ({dtype}), worst at index {idx}: expected {want}, "
            f"got {got}{tail}")


def _exact_reason(op: str, inputs, idx) -> str:
    """Why the element at ``idx`` must be exact, in words."""
    x = np.asarray(inputs.x)
    if x.ndim == 0:
        return "a 0-d input is one element"
    n = x.shape[-1] if op.startswith("cross_entropy") else x.shape[inputs.axis]
    if n == 1:
        return {"softmax": "a one-element row is exactly 1", "log_softmax": "a one-element row is exactly 0",
                "logsumexp": "a one-element row is exactly x",
                "cross_entropy": "one class: the loss is exactly 0"}.get(
                    op, "one class: p = 1, so the gradient is exactly 0")
    if op in ("softmax", "softmax_vjp", "logsumexp_grad"):
        return "a -inf logit has probability exactly 0"
    return "a special-value row must match exactly"


def _verdict_only(ok: bool, message: str, kind: str | None = None) -> Comparison:
    """A verdict without elementwise errors: an empty output (0) or a wrong dtype/shape (inf)."""
    err = 0.0 if ok else float("inf")
    return Comparison(ok, err, err, err, None, False, message, kind)


def _fmt(v, dtype: str) -> str:
    digits = 17 if dtype == "float64" else 9
    return f"{float(v):.{digits}g}"
