"""reference.ops: special values, shapes and axes, cross-entropy options against PyTorch, gradients
against PyTorch autograd and finite differences, input validation. (Accuracy against mpmath is
tests/test_certification.py; speed is ``python -m benchmarks.reference_speed``.)"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

from softmaxbench.reference import ops
from softmaxbench.reference.dtypes import DTYPES, carry_dtype, np_dtype

FORWARD = ("softmax", "log_softmax", "logsumexp")
INF, NAN = np.inf, np.nan


def arr(values, dtype: str) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np_dtype(dtype))


def f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


# --- special values -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_rows(dtype: str) -> None:
    x = arr([[1.0, NAN, 0.0],        # NaN -> NaN row
             [INF, 1.0, -INF],       # one +inf -> the limit
             [INF, INF, 0.0],        # several +inf -> NaN row, logsumexp +inf
             [-INF, -INF, -INF],     # all -inf -> NaN row, logsumexp -inf
             [0.0, -INF, 0.0]], dtype)  # -inf among finite -> exactly 0
    s, ls, lse = ops.softmax(x), ops.log_softmax(x), ops.logsumexp(x)
    assert s.dtype == ls.dtype == lse.dtype == carry_dtype(dtype)
    assert np.isnan(s[0]).all() and np.isnan(ls[0]).all() and np.isnan(lse[0])
    assert s[1].tolist() == [1.0, 0.0, 0.0] and ls[1].tolist() == [0.0, -INF, -INF] and lse[1] == INF
    assert np.isnan(s[2]).all() and np.isnan(ls[2]).all() and lse[2] == INF
    assert np.isnan(s[3]).all() and np.isnan(ls[3]).all() and lse[3] == -INF
    assert s[4].tolist() == [0.5, 0.0, 0.5] and ls[4][1] == -INF and f64(ls[4][0]) == -np.log(2.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_at_neginf_are_exact_not_nan(dtype: str) -> None:
    x = arr([[0.0, -INF, 1.0, -INF]], dtype)
    v = arr([[1.0, 2.0, -3.0, 0.5]], dtype)
    sv = ops.softmax_vjp(x, v)
    assert sv[0, 1] == 0 and sv[0, 3] == 0 and np.isfinite(sv).all()
    lv = ops.log_softmax_vjp(x, v)
    assert lv[0, 1] == 2.0 and lv[0, 3] == 0.5          # the limit v_j - 0 * sum(v)
    assert ops.logsumexp_grad(x, arr([2.0], dtype))[0, 1] == 0
    g = ops.cross_entropy_grad(x, np.array([2]), label_smoothing=0.0)
    assert g[0, 1] == 0 and g[0, 3] == 0 and np.isfinite(g).all()


def test_one_posinf_row_gradients_are_the_limit() -> None:
    x = np.array([[1.0, INF, 0.0]])
    v = np.array([[0.25, 2.0, -1.0]])
    assert ops.softmax_vjp(x, v).tolist() == [[0.0, 0.0, 0.0]]
    assert ops.log_softmax_vjp(x, v).tolist() == [[0.25, 2.0 - 1.25, -1.0]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_axis_and_empty_batch(dtype: str) -> None:
    x = arr(np.zeros((3, 0)), dtype)
    assert ops.softmax(x).shape == (3, 0) and ops.log_softmax(x).shape == (3, 0)
    assert ops.logsumexp(x).tolist() == [-INF] * 3
    assert ops.softmax_vjp(x, x).shape == (3, 0)
    y = arr(np.zeros((0, 4)), dtype)
    assert ops.softmax(y).shape == (0, 4) and ops.logsumexp(y).shape == (0,)
    assert ops.logsumexp(y, axis=0).tolist() == [-INF] * 4      # reduce over the empty axis


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_element_rows_are_exact(dtype: str) -> None:
    x = arr([[3.0], [-7.5], [0.0]], dtype)
    assert ops.softmax(x).tolist() == [[1.0]] * 3
    assert ops.log_softmax(x).tolist() == [[0.0]] * 3
    assert ops.logsumexp(x).tolist() == f64(x)[:, 0].tolist()


def test_zero_d_input_is_one_element() -> None:
    # As scipy.special.softmax treats a scalar.
    x = np.float32(2.5)
    assert ops.softmax(x).shape == () and float(ops.softmax(x)) == scipy.special.softmax(2.5) == 1.0
    assert float(ops.log_softmax(x)) == 0.0 and float(ops.logsumexp(x)) == 2.5
    assert float(ops.softmax_vjp(x, np.float32(4.0))) == 0.0
    assert float(ops.logsumexp_grad(x, np.float32(4.0))) == 4.0
    with pytest.raises(ValueError, match="out of bounds"):
        ops.softmax(x, axis=1)


def test_subnormal_outputs_are_not_flushed() -> None:
    x = np.array([0.0, -740.0])          # exp(-740) ~ 4e-322 is a float64 subnormal
    s = ops.softmax(x)
    assert s[1] > 0 and abs(float(s[1]) - np.exp(-740.0)) <= 2 * 5e-324
    x16 = np.array([0.0, -16.0], np.float16)    # e**-16 ~ 1.1e-7 is a float16 subnormal
    assert ops.softmax(x16)[1] == pytest.approx(np.exp(-16.0) / (1 + np.exp(-16.0)), rel=1e-14)


def test_results_are_carried_not_rounded() -> None:
    x = np.array([0.0, 1.0, 2.0])
    s = ops.softmax(x)
    assert s.dtype == np.longdouble
    assert (s != s.astype(np.float64)).any(), "float64 inputs must keep bits beyond float64"
    s32 = ops.softmax(x.astype(np.float32))
    assert s32.dtype == np.float64 and (s32 != s32.astype(np.float32)).any()


def test_dominant_logit_keeps_relative_accuracy() -> None:
    x = np.array([[100.0, 0.0, 0.0]], np.float32)
    want = -np.log1p(2 * np.exp(-100.0))
    assert ops.log_softmax(x)[0, 0] == pytest.approx(want, rel=1e-15)
    assert float(ops.cross_entropy(x, np.array([0]))) == pytest.approx(-want, rel=1e-15)


def test_constant_cotangent_gives_exact_zero() -> None:
    x = np.random.default_rng(0).standard_normal((3, 50))
    assert (ops.softmax_vjp(x, np.full_like(x, 0.7)) == 0).all()


def test_cancelling_logsumexp_is_escalated_and_accurate() -> None:
    # Logits that are log-probabilities: logsumexp is a rounding error of about 1e-17, which
    # needs far more than binary128 (the mpmath tier); its sign and size must be right.
    import mpmath

    x = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    got = ops.logsumexp(x)
    with mpmath.workdps(60):
        exact = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in x))
    assert exact != 0
    assert abs(mpmath.mpf(float(got)) - exact) < abs(exact) * 1e-15


# --- shapes, axes, layouts ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "axis"), [((7,), 0), ((4, 9), -1), ((4, 9), 0), ((2, 3, 5), 1),
                                             ((2, 3, 4, 5), -2)])
def test_matches_scipy_on_any_axis(dtype: str, shape, axis: int) -> None:
    x = arr(np.random.default_rng(1).standard_normal(shape) * 4, dtype)
    x64 = f64(x)
    np.testing.assert_allclose(f64(ops.softmax(x, axis)), scipy.special.softmax(x64, axis), rtol=1e-13)
    np.testing.assert_allclose(f64(ops.log_softmax(x, axis)), scipy.special.log_softmax(x64, axis),
                               rtol=1e-13, atol=1e-15)
    lse = ops.logsumexp(x, axis)
    np.testing.assert_allclose(f64(lse), scipy.special.logsumexp(x64, axis), rtol=1e-13, atol=1e-15)
    assert lse.shape == scipy.special.logsumexp(x64, axis).shape


@pytest.mark.parametrize("view", ["transpose", "strided", "negative_stride"])
def test_non_contiguous_views(view: str) -> None:
    base = np.random.default_rng(2).standard_normal((12, 10)).astype(np.float32)
    x = {"transpose": base.T, "strided": base[::2, ::3], "negative_stride": base[:, ::-1]}[view]
    before = x.copy()
    got = ops.softmax(x, axis=-1)
    assert got.flags.c_contiguous and got.shape == x.shape
    np.testing.assert_allclose(got, scipy.special.softmax(f64(x), -1), rtol=1e-14)
    np.testing.assert_array_equal(x, before)      # inputs are never written


# --- cross-entropy against PyTorch --------------------------------------------------------------
def _torch_ce(x, target, weight, **options):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    wt = None if weight is None else torch.tensor(weight)
    ignore = options.pop("ignore_index")
    kw = {} if ignore is None else {"ignore_index": ignore}
    loss = F.cross_entropy(xt, torch.tensor(target), weight=wt, **options, **kw)
    if loss.numel():
        loss.sum().backward()
    grad = xt.grad.numpy() if xt.grad is not None else np.zeros_like(x)
    return loss.detach().numpy(), grad


CE_CONFIGS = [
    dict(reduction=r, label_smoothing=eps, weighted=w, ignore_index=ii, probs=p)
    for r in ("none", "sum", "mean") for eps in (0.0, 0.15, 1.0) for w in (False, True)
    for ii, p in ((None, False), (-100, False), (2, False), (None, True))
]


@pytest.mark.parametrize("config", CE_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_cross_entropy_matches_torch_float64(config: dict) -> None:
    rng = np.random.default_rng(CE_CONFIGS.index(config))
    n, c = 13, 5
    x = rng.standard_normal((n, c)) * 3
    weight = rng.uniform(0.2, 2.0, c) if config["weighted"] else None
    if config["probs"]:
        target = rng.random((n, c))
        target /= target.sum(-1, keepdims=True)
    else:
        target = rng.integers(0, c, n)
        if config["ignore_index"] is not None:
            target[rng.random(n) < 0.3] = config["ignore_index"]
    options = dict(reduction=config["reduction"], label_smoothing=config["label_smoothing"],
                   ignore_index=config["ignore_index"])
    want_loss, want_grad = _torch_ce(x, target, weight, **dict(options))
    loss = ops.cross_entropy(x, target, weight=weight, **options)
    grad = ops.cross_entropy_grad(x, target, weight=weight, **options)
    np.testing.assert_allclose(f64(loss), want_loss, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(f64(grad), want_grad, rtol=1e-12, atol=1e-14)


def test_cross_entropy_rank3_and_unbatched_match_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4))
    t = rng.integers(0, 4, (2, 3))
    want = torch.nn.functional.cross_entropy(torch.tensor(x).permute(0, 2, 1), torch.tensor(t),
                                             reduction="none").numpy()
    np.testing.assert_allclose(f64(ops.cross_entropy(x, t, reduction="none")), want, rtol=1e-13)
    xu, tu = rng.standard_normal(6), np.int64(4)
    want_u = torch.nn.functional.cross_entropy(torch.tensor(xu), torch.tensor(tu)).item()
    assert float(ops.cross_entropy(xu, tu)) == pytest.approx(want_u, rel=1e-13)


def test_cross_entropy_all_ignored_and_empty() -> None:
    x = np.zeros((4, 3))
    t = np.full(4, -100)
    assert np.isnan(ops.cross_entropy(x, t, ignore_index=-100))
    assert float(ops.cross_entropy(x, t, ignore_index=-100, reduction="sum")) == 0.0
    assert (ops.cross_entropy_grad(x, t, ignore_index=-100) == 0).all()
    empty = np.zeros((0, 3))
    assert np.isnan(ops.cross_entropy(empty, np.zeros(0, np.int64)))
    assert ops.cross_entropy(empty, np.zeros(0, np.int64), reduction="none").shape == (0,)
    assert ops.cross_entropy_grad(empty, np.zeros(0, np.int64)).shape == (0, 3)


def test_cross_entropy_zero_mass_on_neginf_is_the_limit() -> None:
    x = np.array([[0.0, -INF, 1.0]])
    p = np.array([[0.5, 0.0, 0.5]])
    loss = float(ops.cross_entropy(x, p))
    assert loss == pytest.approx(-0.5 * float(np.sum(scipy.special.log_softmax([0.0, 1.0]))), rel=1e-15)
    assert np.isfinite(ops.cross_entropy_grad(x, p)).all()
    # smoothing puts mass on the impossible class: the loss is +inf
    assert float(ops.cross_entropy(x, p, label_smoothing=0.1)) == INF


def test_cross_entropy_single_class_is_exactly_zero() -> None:
    x = np.random.default_rng(0).standard_normal((5, 1)).astype(np.float16)
    assert float(ops.cross_entropy(x, np.zeros(5, np.int64))) == 0.0
    assert (ops.cross_entropy_grad(x, np.zeros(5, np.int64)) == 0).all()


# --- gradients against autograd and finite differences --------------------------------------------
@pytest.mark.parametrize("axis", [-1, 0])
def test_gradients_match_torch_autograd(axis: int) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x, v = rng.standard_normal((5, 7)) * 2, rng.standard_normal((5, 7))
    cot = rng.standard_normal(7 if axis == 0 else 5)
    for op, fn, cotangent in (("softmax_vjp", torch.softmax, v), ("log_softmax_vjp", torch.log_softmax, v),
                              ("logsumexp_grad", torch.logsumexp, cot)):
        xt = torch.tensor(x, requires_grad=True)
        (fn(xt, axis) * torch.tensor(cotangent)).sum().backward()
        got = getattr(ops, op)(x, cotangent, axis=axis)
        np.testing.assert_allclose(f64(got), xt.grad.numpy(), rtol=1e-12, atol=1e-14, err_msg=op)


def _finite_difference(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        grad[i] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


@pytest.mark.parametrize("options", [dict(), dict(label_smoothing=0.2, weight=np.array([1.0, 0.5, 2.0, 1.5])),
                                     dict(reduction="sum", ignore_index=1), dict(probs=True)])
def test_gradients_match_finite_differences(options: dict) -> None:
    rng = np.random.default_rng(7)
    x, v = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    options = dict(options)
    if options.pop("probs", False):
        target = rng.random((3, 4))
        target /= target.sum(-1, keepdims=True)
    else:
        target = np.array([0, 1, 3])

    def loss(z):
        return float(ops.cross_entropy(z, target, **options))

    np.testing.assert_allclose(f64(ops.cross_entropy_grad(x, target, **options)),
                               _finite_difference(loss, x), rtol=1e-7, atol=1e-9)
    for op, fwd in (("softmax_vjp", ops.softmax), ("log_softmax_vjp", ops.log_softmax)):
        fd = _finite_difference(lambda z, fwd=fwd: float(np.sum(f64(fwd(z)) * v)), x)
        np.testing.assert_allclose(f64(getattr(ops, op)(x, v)), fd, rtol=1e-7, atol=1e-9, err_msg=op)


# --- input validation and dispatch -------------------------------------------------------------
@pytest.mark.parametrize(("call", "message"), [
    (lambda: ops.softmax(np.arange(3)), "dtype int64"),
    (lambda: ops.softmax(np.zeros(3), axis=2), "out of bounds"),
    (lambda: ops.softmax(np.zeros(3), axis=None), "axis must be an integer"),
    (lambda: ops.softmax_vjp(np.zeros((2, 3)), np.zeros((3, 2))), "cotangent has shape"),
    (lambda: ops.logsumexp_grad(np.zeros((2, 3)), np.zeros(3)), "cotangent has shape"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), np.array([0, 3])), "out of range"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), np.array([0, -100])), "out of range"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), reduction="avg"), "reduction"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=1.5), "label_smoothing"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weight=np.ones(2)), "weight"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2])), "batch shape"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), np.zeros((2, 3)), ignore_index=0), "ignore_index"),
    (lambda: ops.cross_entropy(np.zeros(()), np.array(0)), "0-d"),
    (lambda: ops.cross_entropy(np.zeros((2, 0)), np.zeros(2, np.int64)), "at least one class"),
])
def test_bad_input_raises_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_negative_ignore_index_with_probabilities_is_ignored_like_torch() -> None:
    x = np.random.default_rng(8).standard_normal((2, 3))
    p = np.full((2, 3), 1 / 3)
    assert ops.cross_entropy(x, p, ignore_index=-100) == ops.cross_entropy(x, p)


def test_evaluate_dispatches_every_reference_op() -> None:
    import softmaxbench.reference.cases as cases
    inputs = cases.get("ce_mean").build("float32")
    for op in ops.REFERENCE_OPS:
        args, kwargs = inputs.args(op)
        np.testing.assert_array_equal(ops.evaluate(op, inputs), getattr(ops, op)(*args, **kwargs))
    with pytest.raises(ValueError, match="unknown op"):
        ops.evaluate("softplus", inputs)


def _longdouble_to_mpf(value):
    import mpmath

    mant, e = np.frexp(np.longdouble(value))
    hi = float(mant)
    lo = float(mant - np.longdouble(hi))
    return mpmath.ldexp(mpmath.fadd(hi, lo, exact=True), int(e))


def test_float64_results_beyond_float64_range_keep_longdouble_precision() -> None:
    import mpmath

    got = ops.softmax(np.array([0.0, -800.0, -11000.0]))    # e**-800 ~ 3.7e-348, e**-11000 ~ 1e-4778
    with mpmath.workdps(40):
        total = 1 + mpmath.exp(-800) + mpmath.exp(-11000)
        for value, exponent in ((got[1], -800), (got[2], -11000)):
            exact = mpmath.exp(exponent) / total
            assert abs(_longdouble_to_mpf(value) - exact) < exact * 2.0**-63
    big = np.finfo(np.float64).max
    assert ops.log_softmax(np.array([big, -big]))[1] == -2 * np.longdouble(big)   # beyond float64
