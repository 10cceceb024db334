"""Certify reference.ops against an independent mpmath oracle at 50 digits.

The oracle below is plain scalar mpmath code, written from the definitions (not from ops.py's
algorithm): for every output whose exact value is finite the reference must be within 1/100 ULP
of the target dtype (the spacing of subnormals below the normal range), and special values
(NaN, +-inf, exact 0) must match exactly. It runs on every case of the catalogue in every dtype
(a few rows of the large cases) and on the hard inputs of HARD_INPUTS, and prints the worst
error found per dtype (run with -s to see it).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import mpmath as mp
import numpy as np
import pytest

from softmaxbench.reference import ops
from softmaxbench.reference.dtypes import DTYPES, finfo, np_dtype

DIGITS = 50            # the oracle's working precision
RETRY_DIGITS = 120     # for the few outputs whose cancellation 50 digits cannot resolve
TARGET_ULP = 0.01      # the accuracy target: below 1/100 ULP of the target dtype
ROW_BUDGET = 256       # sampled elements per (case, dtype): keeps the fast test well under 60 s
LONG_ROW = 16_384      # rows longer than this (LLM vocabularies) are certified in the slow test
ELEMENT_SAMPLE = 128   # outputs compared in a longer row (its sums always use the whole row)
CE_BUDGET = 512        # logits of a cross-entropy case certified (the first rows)

ROW_OPS = ("softmax", "log_softmax", "logsumexp", "logsumexp_grad", "softmax_vjp", "log_softmax_vjp")
CE_OPS = ("cross_entropy", "cross_entropy_grad")


# --- the oracle --------------------------------------------------------------------------------
@dataclass
class Value:
    """An exact value with the magnitude of the terms it was computed from (its conditioning)."""

    exact: mp.mpf
    magnitude: mp.mpf
    digits: int = field(default_factory=lambda: mp.mp.dps)

    def resolved(self) -> bool:
        # The oracle's own error is about magnitude * 10**-(digits - 2); judging 1/100 ULP of
        # float64 needs it below |exact| * 2**-66.
        if not mp.isfinite(self.exact) or not mp.isfinite(self.magnitude) or self.magnitude == 0:
            return True
        return abs(self.exact) > self.magnitude * _resolution(self.digits)


@functools.cache
def _resolution(digits: int) -> mp.mpf:
    return mp.mpf(10) ** (2 - digits) * mp.mpf(2) ** 66


def _v(x, magnitude=None) -> Value:
    x = mp.mpf(x)
    return Value(x, abs(x) if magnitude is None else magnitude)


NAN, INF = mp.mpf("nan"), mp.mpf("inf")


@dataclass
class SoftmaxRow:
    """softmax, log_softmax, logsumexp of one row by the definitions (limits for special rows)."""

    y: list = field(default_factory=list)       # softmax
    logy: list = field(default_factory=list)    # log_softmax
    lse: mp.mpf = NAN
    defined: bool = True


def oracle_row(x: list[float]) -> SoftmaxRow:
    x = [float(v) for v in x]
    n = len(x)
    if any(math.isnan(v) for v in x):
        return SoftmaxRow([NAN] * n, [NAN] * n, NAN, False)
    n_pos = sum(v == math.inf for v in x)
    if n_pos == 1:
        return SoftmaxRow([mp.mpf(v == math.inf) for v in x],
                          [mp.mpf(0) if v == math.inf else -INF for v in x], INF)
    if n_pos > 1:
        return SoftmaxRow([NAN] * n, [NAN] * n, INF, False)
    if all(v == -math.inf for v in x):
        return SoftmaxRow([NAN] * n, [NAN] * n, -INF, False)
    m = max(x)
    diff = [mp.mpf(v) - m for v in x]                       # -inf stays -inf
    terms = [mp.exp(d) for d in diff]
    k = sum(v == m for v in x)
    rest = mp.fsum(t for v, t in zip(x, terms) if v != m)
    s = k + rest
    # log(k + rest) for k == 1 and a tiny rest would lose rest's digits in 1 + rest.
    log_s = mp.log1p(rest) if k == 1 else mp.log(s)
    return SoftmaxRow([t / s for t in terms], [d - log_s for d in diff], m + log_s)


def oracle_softmax_ops(x: list[float], v: list[float], cot: float,
                       idx: list[int] | None = None) -> dict[str, list[Value]]:
    """Every row op of the reference on one row x with cotangent v (and reduced cotangent),
    at the positions ``idx`` (all by default; the row sums always use the whole row)."""
    r = oracle_row(x)
    idx = list(range(len(x))) if idx is None else idx
    m = max(float(a) for a in x) if x else 0.0
    lse_magnitude = abs(mp.mpf(m)) + abs(r.lse - m) if r.defined and mp.isfinite(r.lse) else None
    out = {
        "softmax": [_v(r.y[i]) for i in idx],
        "log_softmax": [_v(r.logy[i]) for i in idx],
        "logsumexp": [_v(r.lse, lse_magnitude)],
        "logsumexp_grad": [_v(mp.mpf(cot) * r.y[i]) for i in idx],
    }
    if not r.defined:
        out["softmax_vjp"] = out["log_softmax_vjp"] = [_v(NAN) for _ in idx]
        return out
    vm = [mp.mpf(float(a)) for a in v]
    inner = mp.fsum(a * b for a, b in zip(r.y, vm))
    abs_inner = mp.fsum(a * abs(b) for a, b in zip(r.y, vm))
    total, abs_total = mp.fsum(vm), mp.fsum(abs(b) for b in vm)
    out["softmax_vjp"] = [Value(r.y[i] * (vm[i] - inner), r.y[i] * (abs(vm[i]) + abs_inner))
                          for i in idx]
    out["log_softmax_vjp"] = [Value(vm[i] - r.y[i] * total, abs(vm[i]) + r.y[i] * abs_total)
                              for i in idx]
    return out


def oracle_cross_entropy(x: np.ndarray, target: np.ndarray, reduction: str, label_smoothing: float,
                         ignore_index, weight) -> tuple[list[Value], list[list[Value]]]:
    """PyTorch's cross-entropy by its definition: (loss outputs, gradient rows)."""
    c = x.shape[-1]
    xs = x.reshape(-1, c).astype(np.float64)
    n = xs.shape[0]
    eps = mp.mpf(float(label_smoothing))
    w = [mp.mpf(1)] * c if weight is None else [mp.mpf(float(a)) for a in np.asarray(weight, np.float64)]
    index = np.issubdtype(np.asarray(target).dtype, np.integer)
    t = np.asarray(target).reshape(n, 1 if index else c)
    losses, grads, divisor = [], [], mp.mpf(0)
    for i in range(n):
        if index:
            ti = int(t[i, 0])
            if ignore_index is not None and ti == ignore_index:
                losses.append(Value(mp.mpf(0), mp.mpf(0)))
                grads.append([Value(mp.mpf(0), mp.mpf(0))] * c)
                continue
            divisor += w[ti]
            q = [(1 - eps) * w[ti] * (j == ti) + (eps / c * w[j] if eps else 0) for j in range(c)]
        else:
            divisor += 1
            p = [mp.mpf(float(a)) for a in t[i]]
            q = [w[j] * ((1 - eps) * p[j] + eps / c if eps else p[j]) for j in range(c)]
        r = oracle_row(list(xs[i]))
        terms = [a * b for a, b in zip(q, r.logy) if a != 0]     # zero mass: the limit 0
        losses.append(Value(-mp.fsum(terms), mp.fsum(abs(a) for a in terms)))
        total, abs_total = mp.fsum(q), mp.fsum(abs(a) for a in q)
        grads.append([Value(a * total - b, a * abs_total + abs(b)) for a, b in zip(r.y, q)])
    if reduction == "none":
        return losses, grads
    loss = Value(mp.fsum(a.exact for a in losses), mp.fsum(a.magnitude for a in losses))
    if reduction == "mean":
        loss = Value(loss.exact / divisor if divisor else NAN, loss.magnitude / abs(divisor)
                     if divisor else NAN)
        grads = [[Value(g.exact / divisor if divisor else g.exact * NAN,
                        g.magnitude / abs(divisor) if divisor else NAN) if g.magnitude or g.exact
                  else g for g in row] for row in grads]
    return [loss], grads


# --- comparison ------------------------------------------------------------------------------
def to_mpf(a) -> mp.mpf:
    """A float64 or np.longdouble value as an exact mpf."""
    a = np.asarray(a)
    if a.dtype == np.float64 or not np.isfinite(a):
        return mp.mpf(float(a))
    mant, e = np.frexp(a)
    hi = np.float64(mant)
    lo = np.float64(mant - np.asarray(hi, a.dtype))
    return mp.ldexp(mp.fadd(float(hi), float(lo), exact=True), int(e))   # exact at any precision


def ulp_error(ref, value: Value, dtype: str) -> float:
    """|ref - exact| in ULPs of the target dtype; inf when a special value does not match."""
    exact = value.exact
    got = to_mpf(ref)
    if mp.isnan(exact) or mp.isnan(got):
        return 0.0 if (mp.isnan(exact) and mp.isnan(got)) else math.inf
    if mp.isinf(exact) or mp.isinf(got):
        return 0.0 if got == exact else math.inf
    nmant, smallest = _limits(dtype)
    spacing = smallest
    if exact != 0:    # exact in [2**(e-1), 2**e): one ULP is 2**(e-1-nmant)
        spacing = max(spacing, mp.ldexp(1, mp.frexp(exact)[1] - 1 - nmant))
    return float(abs(got - exact) / spacing)


@functools.cache
def _limits(dtype: str) -> tuple[int, mp.mpf]:
    fi = finfo(dtype)
    return int(fi.nmant), mp.mpf(float(fi.smallest_subnormal))


@dataclass
class Tally:
    worst: float = 0.0
    where: str = ""
    checked: int = 0
    unresolved: int = 0
    unresolved_where: str = ""

    def add(self, err: float, where: str) -> None:
        self.checked += 1
        if err > self.worst or (math.isinf(err) and not self.where):
            self.worst, self.where = err, where

    def add_unresolved(self, slack: float, where: str) -> None:
        # slack: the error over 2**-(nmant+9) * (magnitude of the terms); must stay below 1
        self.unresolved += 1
        if not slack < 1 and self.unresolved_where == "":
            self.unresolved_where = f"{where}: {slack:.3g} x the terms' bound"

    def check(self) -> None:
        assert self.worst < TARGET_ULP, f"worst {self.worst:.3g} ULP at {self.where}"
        assert not self.unresolved_where, self.unresolved_where


def compare(tally: Tally, refs, values: list[Value], dtype: str, where: str,
            retry=None) -> None:
    refs = np.asarray(refs).reshape(-1)
    assert refs.size == len(values), f"{where}: {refs.size} outputs, oracle has {len(values)}"
    redo = None
    for i, (ref, value) in enumerate(zip(refs, values)):
        if not value.resolved() and retry is not None:
            if redo is None:
                with mp.workdps(RETRY_DIGITS):
                    redo = retry()
            value = redo[i]
        if not value.resolved():
            # Beyond the oracle's resolution (an exact 0 such as softmax_vjp at a one-hot
            # row's +inf, or extreme cancellation): still within 1/256 ULP of the terms.
            nmant, _ = _limits(dtype)
            slack = abs(to_mpf(ref) - value.exact) / (value.magnitude * mp.ldexp(1, -nmant - 9))
            tally.add_unresolved(float(slack), f"{where}[{i}]")
            continue
        tally.add(ulp_error(ref, value, dtype), f"{where}[{i}]")


# --- certification of one input ----------------------------------------------------------------
def sample_positions(row: np.ndarray) -> list[int]:
    """All positions of a short row; of a long one a spread sample plus its max and min."""
    n = row.size
    if n <= ELEMENT_SAMPLE:
        return list(range(n))
    spread = np.linspace(0, n - 1, ELEMENT_SAMPLE).round().astype(int)
    extremes = [int(np.nanargmax(row)), int(np.nanargmin(row))] if not np.isnan(row).all() else []
    return sorted(set(spread.tolist()) | set(extremes))


def sample_rows(count: int, n: int, budget: int = ROW_BUDGET) -> np.ndarray:
    k = max(1, min(count, budget // max(n, 1)))
    return np.unique(np.linspace(0, count - 1, k).round().astype(int)) if count else np.zeros(0, int)


def certify_rows(tally: Tally, label: str, x: np.ndarray, cot: np.ndarray, axis: int,
                 ops_: tuple[str, ...] = ROW_OPS) -> None:
    dtype = _dtype(x)
    xa = x.reshape(1) if x.ndim == 0 else x
    ax = axis % xa.ndim
    n = xa.shape[ax]
    red_shape = np.moveaxis(xa, ax, -1).shape[:-1]
    count = int(np.prod(red_shape, dtype=np.int64))
    rows = np.moveaxis(xa, ax, -1).reshape(count, n).astype(np.float64)
    ca = cot.reshape(1) if cot.ndim == 0 else cot
    vrows = np.moveaxis(ca, ax, -1).reshape(count, n).astype(np.float64)
    reduced_cot = vrows[:, 0] if n else np.ones(count)
    red_shape = red_shape if x.ndim else ()
    results = {
        "softmax": ops.softmax(x, axis), "log_softmax": ops.log_softmax(x, axis),
        "logsumexp": ops.logsumexp(x, axis),
        "logsumexp_grad": ops.logsumexp_grad(x, reduced_cot.reshape(red_shape).astype(x.dtype), axis),
        "softmax_vjp": ops.softmax_vjp(x, cot, axis), "log_softmax_vjp": ops.log_softmax_vjp(x, cot, axis),
    }
    for op, res in results.items():
        want_shape = red_shape if op == "logsumexp" else x.shape
        assert res.shape == want_shape, f"{label} {op}: shape {res.shape}, expected {want_shape}"
        carry = np.longdouble if dtype == "float64" else np.float64
        assert res.dtype == carry, f"{label} {op}: carried in {res.dtype}"
    if n == 0:
        assert np.all(results["logsumexp"] == -np.inf), f"{label}: logsumexp over an empty axis"
        return
    moved = {op: (np.asarray(r).reshape(count, 1) if op == "logsumexp"
                  else np.moveaxis(r.reshape(xa.shape), ax, -1).reshape(count, n))
             for op, r in results.items()}
    with mp.workdps(DIGITS):
        for i in sample_rows(rows.shape[0], n):
            xi, vi, ci = list(rows[i]), list(vrows[i]), float(reduced_cot[i])
            idx = sample_positions(rows[i])
            want = oracle_softmax_ops(xi, vi, ci, idx)
            for op in ops_:
                got = moved[op][i] if op == "logsumexp" else moved[op][i][idx]
                compare(tally, got, want[op], dtype, f"{label} {op} row {i}",
                        retry=lambda xi=xi, vi=vi, ci=ci, op=op, idx=idx:
                        oracle_softmax_ops(xi, vi, ci, idx)[op])


def certify_cross_entropy(tally: Tally, label: str, x: np.ndarray, target: np.ndarray,
                          options: dict) -> None:
    dtype = _dtype(x)
    loss = ops.cross_entropy(x, target, **options)
    grad = ops.cross_entropy_grad(x, target, **options)
    assert grad.shape == x.shape
    with mp.workdps(DIGITS):
        losses, grads = oracle_cross_entropy(x, target, **options)
        compare(tally, loss, losses, dtype, f"{label} cross_entropy")
        compare(tally, grad, [g for row in grads for g in row], dtype, f"{label} cross_entropy_grad")


def _dtype(x: np.ndarray) -> str:
    return next(d for d in DTYPES if np_dtype(d) == x.dtype)


# --- hard inputs of our own (kept after the catalogue arrived) -----------------------------------
def _hard_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240611)
    near_dominant = rng.standard_normal((4, 32))
    near_dominant[:, 3] += np.array([30.0, 60.0, 100.0, 700.0])
    max_1000 = np.concatenate([[1000.0, 999.0], rng.uniform(-2, 2, 30) / 10])   # x_i - max inexact
    spread = rng.choice(np.array([1e-30, -1e-30, 1e30, -1e30, 700.0, -700.0, 0.1, 3.0]), (4, 16))
    near_zero_lse = np.log(np.array([[0.25, 0.25, 0.25, 0.25], [0.5, 0.25, 0.125, 0.125]]))
    return {
        "near_dominant": near_dominant,
        "max_1000": max_1000,
        "huge_spread": spread,
        "spread_1e4": rng.uniform(-5e3, 5e3, (4, 64)),
        "near_zero_logsumexp": near_zero_lse,
        "tied_maxima": np.array([[2.0, 2.0, 2.0, -1.0, 1.5], [5.0, 5.0, -40.0, -40.0, 5.0]]),
        "dominant_pair": np.array([[0.0, -1e-17, -80.0, -90.0], [1.0, 1.0 - 2.0**-40, -60.0, -745.0]]),
        "subnormal_outputs": np.concatenate([[0.0], -rng.uniform(700, 745, 15)]),
    }


HARD = _hard_inputs()


def _cast(a: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(a, np.float64).astype(np_dtype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(HARD))
def test_hard_inputs_certified(name: str, dtype: str) -> None:
    tally = Tally()
    x = _cast(HARD[name], dtype)
    cot = _cast(np.random.default_rng(7).standard_normal(x.shape), dtype)
    certify_rows(tally, f"{name}/{dtype}", x, cot, -1)
    if x.ndim == 2:
        target = np.argmax(x.astype(np.float64), axis=-1)   # the dominant class: tiny losses
        for options in ({"reduction": "none"}, {"reduction": "mean", "label_smoothing": 0.1}):
            certify_cross_entropy(tally, f"{name}/{dtype} {options}", x, target,
                                  {**{"label_smoothing": 0.0, "ignore_index": None, "weight": None},
                                   **options})
    assert tally.checked > 0
    tally.check()


def test_near_dominant_log_softmax_keeps_relative_accuracy() -> None:
    # log_softmax of the dominant logit is -log1p(sum of the rest): about -e**-700 here.
    x = np.array([700.0, 0.0, -1.0])
    got = to_mpf(ops.log_softmax(x)[0])
    with mp.workdps(DIGITS):
        exact = -mp.log1p(mp.exp(-700) + mp.exp(-701))
        assert abs(got - exact) < abs(exact) * mp.mpf(2) ** -62


def test_max_1000_float64_is_exact_beyond_float64() -> None:
    # With max = 1000 and x = 0.1, x - max is not exact in longdouble (it needs 66 bits): a
    # naive longdouble reference is off by about 2**-55 in exp. The carried value must be
    # good to the carry precision (e**-999.9 is below float64's range, but longdouble has it).
    x = np.array([1000.0, 0.1])
    got = to_mpf(ops.softmax(x)[1])
    with mp.workdps(DIGITS):
        d = mp.mpf(0.1) - 1000
        exact = mp.exp(d) / (1 + mp.exp(d))
        assert abs(got - exact) < abs(exact) * mp.mpf(2) ** -63


# --- the catalogue --------------------------------------------------------------------------------
def _catalogue():
    import softmaxbench.reference.cases as cases
    return cases.catalogue()


def certify_case(tally: Tally, case, dtype: str, *, long_rows: bool) -> None:
    inputs = case.build(dtype)
    label = f"{case.name}/{dtype}"
    x = inputs.x
    if case.expect_error:
        for op in (o for o in case.ops if o in CE_OPS):
            with pytest.raises(ValueError):
                ops.evaluate(op, inputs)
        return
    n = x.shape[case.axis] if x.ndim else 1
    row_ops = tuple(op for op in ROW_OPS if op in case.ops
                    or (op == "logsumexp_grad" and "logsumexp" in case.ops))
    if row_ops and (long_rows or n <= LONG_ROW):
        certify_rows(tally, label, x, inputs.cotangent, case.axis, row_ops)
    if any(op in case.ops for op in CE_OPS) and inputs.target is not None:
        c = x.shape[-1]
        if c > LONG_ROW and not long_rows:
            return
        target = inputs.target
        if x.size > CE_BUDGET and not long_rows:   # the first rows, as a smaller batch
            k = max(1, CE_BUDGET // c)
            x = x.reshape(-1, c)[:k]
            target = target.reshape(-1)[:k] if target.ndim < inputs.x.ndim else target.reshape(-1, c)[:k]
        certify_cross_entropy(tally, label, x, target, dict(inputs.ce_options))


def _report(dtype: str, tally: Tally) -> None:
    print(f"\ncertified {dtype}: worst {tally.worst:.3g} ULP ({tally.where}); "
          f"{tally.checked} outputs checked, {tally.unresolved} beyond the oracle's resolution")


@pytest.mark.parametrize("dtype", DTYPES)
def test_catalogue_certified(dtype: str) -> None:
    tally = Tally()
    for case in _catalogue():
        if dtype in case.dtypes:
            certify_case(tally, case, dtype, long_rows=False)
    _report(dtype, tally)
    assert tally.checked > 1000
    tally.check()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_catalogue_long_rows_certified(dtype: str) -> None:
    tally = Tally()
    for case in _catalogue():
        n = case.shape[case.axis] if case.shape else 1
        if dtype in case.dtypes and (n > LONG_ROW or int(np.prod(case.shape)) > LONG_ROW):
            certify_case(tally, case, dtype, long_rows=True)
    _report(dtype, tally)
    tally.check()


def test_oracle_catches_a_half_ulp_error() -> None:
    # The certification must be able to fail: a float64 softmax rounded to float64 (what a
    # longdouble-free reference would return) is off by up to 0.5 ULP.
    x = np.random.default_rng(3).standard_normal(64)
    tally = Tally()
    with mp.workdps(DIGITS):
        want = oracle_softmax_ops(list(x), list(x), 1.0)["softmax"]
        compare(tally, ops.softmax(x).astype(np.float64), want, "float64", "rounded")
    assert tally.worst > 0.05
