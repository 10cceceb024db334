"""Unit tests of reference.metrics on constructed values: ULPs, mixed error, error ratio, compare.

Exact values here come from a small np.longdouble computation (64-bit significand: 11 bits
beyond float64), enough to grade outputs rounded to any target dtype. The calibration against
the reference and the whole catalogue is tests/test_error_ratio_calibration.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from softmaxbench.reference.dtypes import DTYPES, dtype_name, eps, finfo, np_dtype
from softmaxbench.reference.metrics import (
    THRESHOLDS,
    Comparison,
    attainable_error,
    compare,
    error_ratio,
    mixed_error,
    ulp,
    ulp_error,
)
from softmaxbench.reference.special import cross_entropy_form

LD = np.longdouble
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def inp(x, axis=-1, cotangent=None, target=None, **ce_options):
    return SimpleNamespace(x=x, axis=axis, cotangent=cotangent, target=target, ce_options=ce_options,
                           dtype=dtype_name(x.dtype))


def exact(op: str, i) -> np.ndarray:
    """The op in np.longdouble, returned in the carry dtype of i.x's dtype."""
    carry = LD if i.x.dtype == np.float64 else np.float64
    x = np.asarray(i.x).astype(np.float64).astype(LD)
    with np.errstate(all="ignore"):
        if op.startswith("cross_entropy"):
            f = cross_entropy_form(i.x, i.target, dtype=LD, **i.ce_options)
            C = x.shape[-1]
            xr = x.reshape(-1, C)
            m, e, s, log_s = shifted(xr)
            if op == "cross_entropy":
                loss = -np.where(f.coef != 0, f.coef * (xr - m - log_s), 0).sum(-1)
                out = {"none": loss.reshape(f.batch_shape), "sum": loss.sum(),
                       "mean": loss.sum() / f.divisor}[f.reduction]
            else:
                g = e / s * f.coef.sum(-1, keepdims=True) - f.coef
                out = (g / (f.divisor if f.reduction == "mean" else 1)).reshape(x.shape)
            return np.asarray(out).astype(carry)
        xl = np.moveaxis(x, i.axis, -1)
        m, e, s, log_s = shifted(xl)
        p = e / s
        if op == "logsumexp":
            return (m + log_s)[..., 0].astype(carry)
        v = None if i.cotangent is None else np.moveaxis(
            i.cotangent.astype(np.float64).astype(LD), i.axis, -1)
        out = {
            "softmax": lambda: p,
            "log_softmax": lambda: xl - m - log_s,
            "softmax_vjp": lambda: p * (v - (p * v).sum(-1, keepdims=True)),
            "log_softmax_vjp": lambda: v - p * v.sum(-1, keepdims=True),
        }[op]()
        return np.moveaxis(out, -1, i.axis).astype(carry)


def shifted(x):
    """max, exp(x - max), their sum S and log S = log1p(S - 1) with S - 1 summed without the max
    term, so a dominant logit's log_softmax keeps its relative accuracy."""
    m = x.max(-1, keepdims=True)
    e = np.exp(x - m)
    first_max = np.arange(x.shape[-1]) == np.argmax(x, -1)[..., None]
    return m, e, e.sum(-1, keepdims=True), np.log1p(np.where(first_max, 0, e).sum(-1, keepdims=True))


def rounded(e: np.ndarray, dtype: str) -> np.ndarray:
    """Correctly rounded to the target dtype (longdouble -> float64 rounds once)."""
    return np.asarray(e).astype(np.float64).astype(np_dtype(dtype))


def bits_next(a: np.ndarray, k: int = 1) -> np.ndarray:
    """k representable steps away from zero (k < 0: towards zero), via the bit pattern."""
    a = np.asarray(a)
    u = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    return (a.view(u).astype(np.int64) + k).astype(u).view(a.dtype)


def sample(dtype: str, shape=(6, 40), scale=3.0, seed=0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np_dtype(dtype))


def far_beyond(dtype: str) -> float:
    """What an O(1) relative error must score: a few times the threshold, at least ~1/(50u)
    (bfloat16's u = 2**-8 leaves only a factor 256 between rounding and a wrong answer)."""
    return max(3 * THRESHOLDS[dtype], 0.02 / eps(dtype))


FORWARD = ("softmax", "log_softmax", "logsumexp")
VJPS = ("softmax_vjp", "log_softmax_vjp")


# -- ulp_error ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_values_one_ulp_apart_are_exactly_one_ulp(dtype):
    x = sample(dtype, (500,), 100.0)
    mant = np.abs(np.frexp(x.astype(np.float64))[0])
    x = x[(mant > 0.55) & (mant < 0.95)]   # a few steps from either end of the binade
    carry = LD if dtype == "float64" else np.float64
    ex = x.astype(np.float64).astype(carry)
    assert np.array_equal(ulp_error(bits_next(x), ex, dtype), np.ones(x.size))
    assert np.array_equal(ulp_error(bits_next(x, -3), ex, dtype), np.full(x.size, 3.0))
    assert np.array_equal(ulp_error(x, ex, dtype), np.zeros(x.size))


@pytest.mark.parametrize("dtype", DTYPES)
def test_half_ulp_and_the_power_of_two_convention(dtype):
    carry = LD if dtype == "float64" else np.float64
    one = np.ones(1, np_dtype(dtype))
    up, down = bits_next(one), bits_next(one, -1)
    mid = (one.astype(carry) + up.astype(carry)) / 2
    assert ulp_error(one, mid, dtype).tolist() == [0.5]
    # The ULP is taken at the exact value: just below 1 the spacing is half that above.
    assert ulp_error(down, one.astype(carry), dtype).tolist() == [0.5]
    assert ulp_error(one, down.astype(carry), dtype).tolist() == [1.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_zeros_and_subnormals_use_the_smallest_subnormal_spacing(dtype):
    fi = finfo(dtype)
    carry = LD if dtype == "float64" else np.float64
    sub = np.array([fi.smallest_subnormal], np_dtype(dtype))
    tiny = np.array([fi.smallest_normal], np_dtype(dtype))
    assert ulp_error(sub, np.zeros(1, carry), dtype).tolist() == [1.0]
    assert ulp_error(np.zeros(1, np_dtype(dtype)), sub.astype(carry), dtype).tolist() == [1.0]
    assert ulp_error(sub * 4, (sub * 3).astype(carry), dtype).tolist() == [1.0]
    assert ulp_error(bits_next(tiny, -1), tiny.astype(carry), dtype).tolist() == [1.0]
    assert ulp(np.zeros(1, carry), dtype).tolist() == [float(fi.smallest_subnormal)]


def test_float64_errors_are_measured_in_extended_precision():
    exact = np.array([1 + LD(2) ** -60], LD)
    assert ulp_error(np.ones(1), exact, "float64").tolist() == [2.0 ** -8]
    tiny_exact = np.array([LD(2) ** -1080], LD)  # below float64's smallest subnormal 2**-1074
    assert ulp_error(np.zeros(1), tiny_exact, "float64").tolist() == [2.0 ** -6]


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values_in_ulp_error(dtype):
    fi = finfo(dtype)
    carry = LD if dtype == "float64" else np.float64
    big = carry(float(fi.max))   # 2 * big stays finite in the carry dtype
    nan, inf = np.nan, np.inf
    table = [  # actual, exact, expected ULPs
        (nan, nan, 0.0), (nan, 1.0, inf), (1.0, nan, inf),
        (inf, inf, 0.0), (-inf, -inf, 0.0), (inf, -inf, inf), (big, inf, inf), (inf, 1.0, inf),
        (inf, 2 * big, 0.0),       # the exact value rounds to +inf in the target dtype
        (-inf, -2 * big, 0.0), (inf, -2 * big, inf), (0.0, 0.0, 0.0), (-0.0, 0.0, 0.0),
    ]
    a = np.array([t[0] for t in table]).astype(np_dtype(dtype))
    e = np.array([t[1] for t in table], carry)
    assert np.isfinite(e[8]) and ulp_error(a, e, dtype).tolist() == [t[2] for t in table]
    # Just inside the range, +inf is wrong; a finite answer for a value beyond it is measured.
    assert ulp_error(np.array([inf]).astype(np_dtype(dtype)), np.array([big]), dtype).tolist() == [inf]
    over = ulp_error(np.array([big]).astype(np_dtype(dtype)), np.array([big * 1.5], carry), dtype)
    assert 0 < over[0] < inf


def test_mixed_error_is_absolute_below_the_floor_and_relative_above():
    u = 2.0 ** -24
    a = np.array([3 * u, 0.0, 8 * (1 + 2 * u), -1e-30], np.float32)
    e = np.array([0.0, 1e-30, 8.0, -1e-30])
    assert mixed_error(a, e, "float32").tolist() == pytest.approx([3.0, 1e-30 / u, 2.0, 0.0], rel=1e-6)
    assert mixed_error(a[:1], e[:1], "float32", floor=u).tolist() == pytest.approx([3 / u])
    assert mixed_error(np.array([np.nan], np.float32), np.array([0.0]), "float32").tolist() == [np.inf]


# -- the error ratio --------------------------------------------------------------------------
def mixed_rows(dtype: str) -> np.ndarray:
    """Rows of several scales, -inf entries, a dominant logit and underflowing outputs."""
    x = sample(dtype, (6, 40)).astype(np.float64)
    x[1] *= 30
    x[2, ::3] = -np.inf
    x[3, 5] += 60
    x[4] += 1000 if dtype != "float16" else 100
    x[5, 1:] -= 200 if dtype != "float16" else 20
    return x.astype(np_dtype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", FORWARD + VJPS)
@pytest.mark.parametrize("axis", [-1, 0])
def test_correctly_rounded_output_is_within_the_bound(op, dtype, axis):
    x = mixed_rows(dtype)
    if axis == 0:
        x = np.ascontiguousarray(x.T)
    i = inp(x, axis, cotangent=sample(dtype, x.shape, 1.0, seed=1))
    e = exact(op, i)
    r = error_ratio(op, i, rounded(e, dtype), e)
    assert r.shape == e.shape and not np.isnan(r).any()
    assert r.max() <= 1.0, (op, dtype, r.max())
    assert compare(op, i, rounded(e, dtype), e).ok


CE_OPTIONS = [
    dict(reduction="mean"), dict(reduction="sum"), dict(reduction="none"),
    dict(reduction="mean", label_smoothing=0.2, ignore_index=-100, weight=True),
    dict(reduction="mean", probs=True, weight=True, label_smoothing=0.1),
]


def ce_inputs(dtype: str, opts: dict):
    opts = dict(opts)
    rng = np.random.default_rng(5)
    x = sample(dtype, (12, 9), 3.0, seed=4)
    if opts.pop("probs", False):
        p = rng.random(x.shape)
        t = (p / p.sum(-1, keepdims=True)).astype(x.dtype)
    else:
        t = rng.integers(0, 9, 12)
        if opts.get("ignore_index") is not None:
            t[::4] = opts["ignore_index"]
    if opts.pop("weight", False):
        opts["weight"] = rng.uniform(0.5, 2.0, 9).astype(x.dtype)
    return inp(x, -1, target=t, **opts)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["cross_entropy", "cross_entropy_grad"])
@pytest.mark.parametrize("opts", CE_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_cross_entropy_rounded_passes_and_zeros_fail(op, dtype, opts):
    i = ce_inputs(dtype, opts)
    e = exact(op, i)
    r = error_ratio(op, i, rounded(e, dtype), e)
    assert r.max() <= 1.0
    zeros = compare(op, i, np.zeros_like(rounded(e, dtype)), e)
    assert not zeros.ok and zeros.max_error_ratio > far_beyond(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", FORWARD + VJPS)
def test_an_all_zeros_kernel_fails_by_orders_of_magnitude(op, dtype):
    i = inp(sample(dtype), cotangent=sample(dtype, seed=1))
    e = exact(op, i)
    c = compare(op, i, np.zeros_like(rounded(e, dtype)), e)
    assert not c.ok and c.max_error_ratio > far_beyond(dtype)


def test_fixed_tolerances_would_pass_what_the_ratio_rejects():
    # Uniform rows of 4096: outputs 2.4e-4. Zeros are within KernelBench's atol=rtol=1e-2 ...
    x = np.zeros((2, 4096), np.float32)
    i = inp(x)
    e = exact("softmax", i)
    assert np.allclose(np.zeros_like(x), e, atol=1e-2, rtol=1e-2)
    # ... and so is a float16 running sum that stalled at 2048 (outputs twice too large).
    stalled = np.full_like(x, 1 / 2048)
    assert np.allclose(stalled, e, atol=1e-2, rtol=1e-2)
    for wrong in (np.zeros_like(x), stalled):
        assert not compare("softmax", i, wrong, e).ok


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ratio_grows_linearly_with_the_error(dtype):
    i = inp(sample(dtype, (4, 64)))
    e = exact("softmax", i)
    base = rounded(e, dtype)
    ratios = [error_ratio("softmax", i, bits_next(base, k), e).max() for k in (4, 16, 64, 256)]
    assert all(b > 3 * a for a, b in zip(ratios, ratios[1:]))
    assert not compare("softmax", i, bits_next(base, 256), e).ok


def test_bound_grows_with_distance_from_the_max_and_with_row_length():
    x = np.array([[0.0, -1.0, -30.0, -60.0]], np.float64)
    rel = attainable_error("softmax", inp(x))[0] / exact("softmax", inp(x))[0]
    assert rel[0] < rel[1] < rel[2] < rel[3]
    short, long = np.zeros((1, 16), np.float32), np.zeros((1, 65536), np.float32)
    rel_short = attainable_error("softmax", inp(short))[0, 0] * 16
    rel_long = attainable_error("softmax", inp(long))[0, 0] * 65536
    assert rel_long > rel_short


def test_dominant_logit_log_softmax_is_graded_by_the_ratio_not_ulps():
    # log_softmax of a logit 100 above 63 others is about -63 * e**-100 = -2.3e-42: returning 0
    # is what the shifted algorithm gives (the sum rounds to 1) and is right to within its bound.
    x = np.zeros((1, 64), np.float32)
    x[0, 0] = 100.0
    i = inp(x)
    e = exact("log_softmax", i)
    got = rounded(e, "float32")
    got[0, 0] = 0.0
    assert ulp_error(got, e, "float32")[0, 0] > 1e3
    assert mixed_error(got, e, "float32")[0, 0] < 1e-30
    c = compare("log_softmax", i, got, e)
    assert c.ok, c.message


@pytest.mark.parametrize("dtype", DTYPES)
def test_neginf_entries_require_exact_zeros_and_no_nans(dtype):
    x = sample(dtype, (2, 8)).astype(np.float64)
    x[:, 3] = -np.inf
    x = x.astype(np_dtype(dtype))
    i = inp(x, cotangent=sample(dtype, (2, 8), seed=1))
    for op in ("softmax", "softmax_vjp"):
        e = exact(op, i)
        good = rounded(e, dtype)
        assert compare(op, i, good, e).ok
        bad = good.copy()
        bad[0, 3] = finfo(dtype).smallest_subnormal
        c = compare(op, i, bad, e)
        assert not c.ok and c.worst_index == (0, 3)
        bad[0, 3] = np.nan
        assert not compare(op, i, bad, e).ok
    e = exact("log_softmax", i)
    bad = rounded(e, dtype)
    bad[1, 3] = -float(finfo(dtype).max)
    assert not compare("log_softmax", i, bad, e).ok


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_of_one_element_must_be_exact(dtype):
    x = sample(dtype, (5, 1))
    i = inp(x, cotangent=sample(dtype, (5, 1), seed=1))
    ones = np.ones_like(x)
    assert compare("softmax", i, ones, np.ones((5, 1))).ok
    assert not compare("softmax", i, bits_next(ones, -1), np.ones((5, 1))).ok
    assert not compare("log_softmax", i, bits_next(np.zeros_like(x)), np.zeros((5, 1))).ok
    assert compare("logsumexp", i, x[:, 0], x[:, 0].astype(np.float64)).ok
    scalar = inp(np.array(2.5, np_dtype(dtype)))
    assert compare("softmax", scalar, np.array(1.0, np_dtype(dtype)), np.array(1.0)).ok
    assert not compare("log_softmax", scalar, np.array(1e-3, np_dtype(dtype)), np.array(0.0)).ok


@pytest.mark.parametrize("op", FORWARD + VJPS)
def test_special_rows_match_exactly_and_never_give_nan_ratios(op):
    x = sample("float32", (5, 6)).astype(np.float64)
    x[0, 2] = np.nan
    x[1, 1] = np.inf
    x[2] = -np.inf
    x[3, [0, 4]] = np.inf
    x = x.astype(np.float32)
    i = inp(x, cotangent=sample("float32", (5, 6), seed=1))
    e = exact(op, i)  # NaN rows here (the reference's one-hot limit is tested with the reference)
    good = rounded(e, "float32")
    r = error_ratio(op, i, good, e)
    assert not np.isnan(r).any() and r.max() <= 1.0
    bad = good.copy()
    bad.reshape(-1)[0] = 0.25
    c = compare(op, i, bad, e)
    assert not c.ok and c.worst_index[0] == 0 and "expected nan" in c.message


def test_flushed_subnormal_outputs_are_forgiven_and_flagged():
    fi = finfo("float32")
    x = np.zeros((2, 16), np.float32)
    x[:, 1:] = np.log(float(fi.smallest_normal)) - 3  # outputs about e**-3 * tiny: subnormal
    i = inp(x)
    e = exact("softmax", i)
    good = rounded(e, "float32")
    assert compare("softmax", i, good, e).flushed_subnormals is False
    flushed = good.copy()
    flushed[:, 1:] = 0
    c = compare("softmax", i, flushed, e)
    assert c.ok and c.flushed_subnormals and "flushed" in c.message
    wrong = flushed.copy()
    wrong[:, 0] = 0   # a normal output zeroed is an error, not a flush
    assert not compare("softmax", i, wrong, e).ok


def test_zeros_from_flushed_intermediates_are_forgiven_but_other_values_are_not():
    # p_1 = e**-1 * tiny is subnormal; the gradient p_1 * (v_1 - c) = 50 p_1 is a normal number.
    # Flush-to-zero arithmetic (XLA on CPU) reads p_1 as 0 and returns 0 there.
    tiny = float(np.finfo(np.float32).tiny)
    x = np.array([[0.0, np.log(tiny) - 1]], np.float32)
    i = inp(x, cotangent=np.array([[0.0, 50.0]], np.float32))
    e = exact("softmax_vjp", i)
    assert abs(e[0, 1]) > tiny
    got = rounded(e, "float32")
    got[0, 1] = 0
    c = compare("softmax_vjp", i, got, e)
    assert c.ok and c.flushed_subnormals
    got[0, 1] = 2 * e[0, 1]
    assert not compare("softmax_vjp", i, got, e).ok
    # float16's normal range starts at 6.1e-5: softmax over 32000 equal logits is all subnormal.
    # Zeros are a flush; 15% too large is an error, flush or not.
    i = inp(np.zeros((1, 32000), np.float16))
    e = exact("softmax", i)
    c = compare("softmax", i, np.zeros((1, 32000), np.float16), e)
    assert c.ok and c.flushed_subnormals
    assert not compare("softmax", i, rounded(e * 1.15, "float16"), e).ok


def test_compare_reports_dtype_shape_and_the_worst_element():
    i = inp(sample("float32", (4, 8)))
    e = exact("softmax", i)
    good = rounded(e, "float32")
    c = compare("softmax", i, good.astype(np.float64), e)
    assert not c.ok and c.message == "wrong dtype: expected float32, got float64"
    c = compare("softmax", i, good[:, :4], e)
    assert not c.ok and c.message == "wrong shape: expected (4, 8), got (4, 4)"
    bad = good.copy()
    bad[2, 5] *= 1.01
    c = compare("softmax", i, bad, e)
    assert isinstance(c, Comparison) and not c.ok
    assert c.worst_index == (2, 5) and "(2, 5)" in c.message
    assert f"{float(e[2, 5]):.9g}" in c.message and str(bad[2, 5]) in c.message   # shortest repr
    assert c.max_ulp > 1e4 and c.median_ulp <= 0.5 and c.max_error_ratio > THRESHOLDS["float32"]
    empty = inp(np.zeros((3, 0), np.float32))
    assert compare("softmax", empty, np.zeros((3, 0), np.float32), np.zeros((3, 0))).ok


def test_axis_other_than_last_gives_the_transposed_ratios():
    x = sample("float16", (6, 40))
    v = sample("float16", (6, 40), seed=1)
    for op in FORWARD + VJPS:
        a, b = inp(x, -1, cotangent=v), inp(np.ascontiguousarray(x.T), 0, cotangent=np.ascontiguousarray(v.T))
        ea, eb = exact(op, a), exact(op, b)
        ra = error_ratio(op, a, rounded(ea, "float16"), ea)
        rb = error_ratio(op, b, rounded(eb, "float16"), eb)
        assert np.allclose(ra, rb.T if op != "logsumexp" else rb)


def test_thresholds_cover_every_dtype_and_unknown_ops_are_refused():
    assert set(THRESHOLDS) == set(DTYPES) and all(t >= 1 for t in THRESHOLDS.values())
    with pytest.raises(ValueError, match="unknown op"):
        attainable_error("softplus", inp(np.zeros(3)))


# -- the model algorithm and what it cannot compute (reference.model) ------------------------------
def test_model_attainable_names_the_overflow_of_the_hunted_float16_vjp():
    from softmaxbench.reference import model
    from softmaxbench.reference.cases import CaseInput

    x = np.array([9.96, -0.159], np.float16)
    v = np.array([10420.0, -65500.0], np.float16)   # v - <p, v> = -75916 overflows float16
    inp = CaseInput("found", "float16", -1, x, v, None)
    assert np.isneginf(model.evaluate("softmax_vjp", inp)[1])
    reason = model.attainable("softmax_vjp", inp)
    assert reason is not None and "index (1,)" in reason and "float16" in reason
    assert model.unattainable_elements("softmax_vjp", inp).tolist() == [False, True]
    # The same input in float32: the model computes it, so it is judged.
    inp32 = CaseInput("found", "float32", -1, x.astype(np.float32), v.astype(np.float32), None)
    assert model.attainable("softmax_vjp", inp32) is None


def test_model_attainable_ignores_special_rows_and_exact_overflow():
    from softmaxbench.reference import model
    from softmaxbench.reference.cases import CaseInput

    # One +inf: the model gives NaN, but special rows follow the conventions, not the model.
    inp = CaseInput("c", "float32", -1, np.array([[np.inf, 0.0]], np.float32), None, None)
    assert model.attainable("softmax", inp) is None
    # An exact value beyond the range rounds to inf: inf is then the exact answer, not an overflow.
    x = np.array([[0.0, -40000.0], [0.0, -40000.0]], np.float16)
    options = {"reduction": "sum", "label_smoothing": 0.0, "ignore_index": None, "weight": None}
    inp = CaseInput("c", "float16", -1, x, None, np.array([1, 1]), options)
    assert np.isposinf(model.evaluate("cross_entropy", inp))        # 80000 > 65504
    assert model.attainable("cross_entropy", inp) is None


# -- figures at exact 0 and 1, kinds of error ---------------------------------------------------
def test_one_rounding_next_to_an_exact_value_reads_as_one_ulp_not_1e35():
    from softmaxbench.reference.cases import CaseInput
    from softmaxbench.reference.ops import evaluate

    x = np.array([[0.3], [1.5]], np.float32)
    n1 = CaseInput("n1", "float32", -1, x, None, None)
    c = compare("softmax", n1, np.array([[0.99999994], [1.0]], np.float32), evaluate("softmax", n1))
    assert not c.ok and c.error_kind == "rounding_at_exact" and c.max_ulp <= 1
    assert "one ULP below the exact 1" in c.message and "0.99999994" in c.message
    # C = 1: the gradient is exactly 0; -2**-30 (float32) and -2**-14 (float16) are one rounding of
    # terms of size 1/16, not 6.65e35 or 1024 ULPs of the smallest subnormal.
    for dtype, off in (("float32", -2.0**-30), ("float16", -2.0**-14)):
        inp = CaseInput("c1", dtype, -1, np.zeros((16, 1), np.dtype(dtype)), None, np.zeros(16, np.int64))
        exact = evaluate("cross_entropy_grad", inp)
        got = np.zeros((16, 1), np.dtype(dtype))
        got[3, 0] = off
        c = compare("cross_entropy_grad", inp, got, exact)
        assert not c.ok and c.error_kind == "rounding_at_exact" and c.max_ulp <= 1, (dtype, c)
        assert "index (3, 0)" in c.message and "exactly 0" in c.message
        got[3, 0] = 0.3                                  # garbage stays garbage
        c = compare("cross_entropy_grad", inp, got, exact)
        assert c.error_kind == "garbage" and c.max_ulp > 1e3
    assert ulp_error(np.float32(-2.0**-30), 0.0, "float32") > 1e30  # without the terms' scale


def test_error_kinds_rank_garbage_above_roundings_and_name_the_deciding_element():
    from softmaxbench.reference.cases import CaseInput
    from softmaxbench.reference.ops import evaluate

    x = np.array([[0.3], [1.0], [2.0]], np.float32).repeat(2, 1)
    x[0, 1] = 0.0
    inp = CaseInput("mix", "float32", -1, x[:, :1].copy(), None, None)
    exact = evaluate("softmax", inp)
    got = exact.astype(np.float32)
    got[0, 0] = np.float32(0.99999994)     # a rounding at an exact 1
    got[2, 0] = np.nan                     # garbage of the worst kind
    c = compare("softmax", inp, got, exact)
    assert c.error_kind == "special_value" and c.worst_index == (2, 0)


def test_schema_names_every_error_kind():
    import json
    from importlib import resources

    from softmaxbench.reference.metrics import ERROR_KINDS

    text = resources.files("softmaxbench.suite").joinpath("schema/results-v1.json").read_text()
    enum = json.loads(text)["properties"]["error_kind"]["enum"]
    assert set(enum) == set(ERROR_KINDS) | {"not_attainable", None}


def test_running_sum_allowance_is_derived_and_covers_a_plain_float32_running_sum():
    """262144 near-equal positive terms: a float32 running sum loses ~7800 u (7.6x the old
    2 sqrt(n) allowance), and softmax and logsumexp of that one sum are judged alike."""
    from softmaxbench.reference.cases import CaseInput
    from softmaxbench.reference.metrics import sum_error
    from softmaxbench.reference.ops import evaluate

    rng = np.random.default_rng(0)
    x = (rng.random((1, 262144)) * 1e-3).astype(np.float32)
    terms = np.exp(x.astype(np.float64) - x.max())
    running = np.cumsum(np.exp(x - x.max()), axis=-1, dtype=np.float32)[0, -1]
    lost = abs(float(running) - terms.sum()) / terms.sum() / 2.0**-24
    assert lost > 2 * 2 * np.sqrt(262144)             # beyond the old probabilistic allowance
    assert lost < sum_error(terms, 2.0**-24)[0, 0] / terms.sum() / 2.0**-24
    inp = CaseInput("run", "float32", -1, x, None, None)
    with np.errstate(all="ignore"):
        d = x - x.max()
        p = (np.exp(d) / running).astype(np.float32)
        lse = (x.max() + np.log(running)).astype(np.float32).reshape(1)
    rs = compare("softmax", inp, p, evaluate("softmax", inp))
    rl = compare("logsumexp", inp, lse, evaluate("logsumexp", inp))
    assert rs.ok and rl.ok, (rs.message, rl.message)
    assert abs(rs.max_error_ratio - rl.max_error_ratio) < 0.5 * max(rs.max_error_ratio, rl.max_error_ratio)


def test_model_attainable_counts_an_accepted_convention_nan_as_no_overflow():
    from softmaxbench.reference import model
    from softmaxbench.reference.cases import get

    # The model's 0 * -inf NaN (probability target, zero mass on a -inf logit) is the accepted
    # nan_for_zero_mass_neginf, not an intermediate leaving the range: the case stays judged.
    assert model.attainable("cross_entropy", get("ce_prob_zero_mass_neginf").build("float32")) is None
    # A log-probability below -finfo.max does overflow the model: not judged.
    reason = model.attainable("cross_entropy", get("extreme_spread_finfo_max").build("float32"))
    assert "float32's range" in reason
