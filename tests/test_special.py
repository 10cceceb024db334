"""Tests of reference.special: row classes, cross-entropy's linear form, accepted deviations."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest

from softmaxbench.reference.special import (
    DEVIATIONS,
    ROW_CLASSES,
    alternatives,
    classify_rows,
    cross_entropy_form,
    row_classes,
)

inf, nan = np.inf, np.nan
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def inp(x, axis=-1, cotangent=None, target=None, **ce_options):
    return SimpleNamespace(x=np.asarray(x), axis=axis, cotangent=cotangent, target=target,
                           ce_options=ce_options, dtype=str(np.asarray(x).dtype))


def test_deviation_names_are_those_of_the_internal_contract():
    text = (Path(__file__).parents[1] / "docs" / "internals.md").read_text()
    section = text.split("Deviation names", 1)[1].split("## ", 1)[0]
    assert set(re.findall(r"`([a-z_]+)`", section)) - {"softmaxbench"} >= set(DEVIATIONS)
    assert all(DEVIATIONS.values())


# -- row classes --------------------------------------------------------------------------------
def test_every_row_class_and_its_priority():
    rows = {
        "nan": [nan, inf, -inf, 1.0],            # NaN wins over everything
        "multi_posinf": [inf, inf, -inf, 0.0],
        "one_posinf": [inf, -inf, 0.0, 1.0],
        "all_neginf": [-inf] * 4,
        "neginf_among_finite": [-inf, 0.0, 1.0, 2.0],
        "finite": [0.0, -0.0, 1e-40, 3.0],
    }
    x = np.array(list(rows.values()))
    assert classify_rows(x).tolist() == list(rows)
    assert classify_rows(x.T, axis=0).tolist() == list(rows)
    assert classify_rows(x.astype(ml_dtypes.bfloat16)).tolist() == list(rows)
    assert classify_rows(np.array([[2.0], [inf], [-inf], [nan]])).tolist() == [
        "n1", "one_posinf", "all_neginf", "nan"]
    assert classify_rows(np.zeros((2, 3, 0))).tolist() == [["empty"] * 3] * 2
    assert classify_rows(np.zeros((2, 3, 4)), axis=1).shape == (2, 4)


def test_row_classes_are_listed_in_matrix_order():
    x = np.array([[1.0, 2.0], [-inf, 0.0], [nan, 0.0]])
    assert row_classes(x) == ("nan", "neginf_among_finite", "finite")
    assert set(ROW_CLASSES) >= set(row_classes(x))


# -- cross-entropy as a linear form -----------------------------------------------------------
CE_VARIANTS = [
    dict(reduction="mean"), dict(reduction="sum"), dict(reduction="none"),
    dict(reduction="mean", weight=True), dict(reduction="mean", ignore_index=-100),
    dict(reduction="mean", weight=True, ignore_index=-100, label_smoothing=0.2),
    dict(reduction="sum", weight=True, ignore_index=2, label_smoothing=0.3),
    dict(reduction="mean", probs=True), dict(reduction="mean", probs=True, weight=True, label_smoothing=0.1),
    dict(reduction="none", probs=True, label_smoothing=1.0),
]


@pytest.mark.parametrize("variant", CE_VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def test_cross_entropy_form_matches_pytorch(variant):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    opts = dict(variant)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5))
    if opts.pop("probs", False):
        p = rng.random(x.shape)
        target = p / p.sum(-1, keepdims=True)
        tt = torch.tensor(target)
    else:
        target = rng.integers(0, 5, (3, 4))
        if opts.get("ignore_index") is not None:
            target[0, :2] = opts["ignore_index"]
        tt = torch.tensor(target)
    if opts.pop("weight", False):
        opts["weight"] = rng.uniform(0.5, 2.0, 5)
    f = cross_entropy_form(x, target, **opts)
    logp = torch.log_softmax(torch.tensor(x), -1).numpy().reshape(-1, 5)
    loss = -(f.coef * logp).sum(-1)
    mine = {"none": loss.reshape(f.batch_shape), "sum": loss.sum(), "mean": loss.sum() / f.divisor}
    topts = dict(opts)
    if "weight" in topts:
        topts["weight"] = torch.tensor(topts["weight"])
    if topts.get("ignore_index") is None:
        topts.pop("ignore_index", None)
    # PyTorch wants the class axis second: (N, C, d1) logits with (N, d1) targets.
    xt = torch.tensor(x).permute(0, 2, 1)
    ref = F.cross_entropy(xt, tt if tt.dtype == torch.int64 else tt.permute(0, 2, 1), **topts).numpy()
    assert np.allclose(mine[f.reduction], ref, rtol=1e-12, atol=1e-12)
    # and the gradient (softmax * sum(coef) - coef) / divisor
    xg = xt.clone().requires_grad_()
    F.cross_entropy(xg, tt if tt.dtype == torch.int64 else tt.permute(0, 2, 1), **topts).sum().backward()
    p = torch.softmax(torch.tensor(x), -1).numpy().reshape(-1, 5)
    grad = (p * f.coef.sum(-1, keepdims=True) - f.coef) / (f.divisor if f.reduction == "mean" else 1)
    assert np.allclose(grad.reshape(x.shape), xg.grad.permute(0, 2, 1).numpy(), rtol=1e-12, atol=1e-12)


def test_cross_entropy_form_refuses_out_of_range_labels_and_bad_reductions():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="out of range"):
        cross_entropy_form(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="out of range"):
        cross_entropy_form(x, np.array([0, -100, 1]))          # -100 is not ignored by default
    assert cross_entropy_form(x, np.array([0, -100, 1]), ignore_index=-100).ignored.tolist() == [
        False, True, False]
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy_form(x, np.array([0, 1, 2]), reduction="avg")
    f = cross_entropy_form(np.zeros(4), np.array(2))            # unbatched
    assert f.coef.tolist() == [[0, 0, 1, 0]] and f.batch_shape == ()


# -- accepted deviations ------------------------------------------------------------------------
def test_a_finite_input_has_no_alternatives():
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    e = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    for op in ("softmax", "log_softmax", "logsumexp"):
        assert alternatives(op, inp(x), e if op != "logsumexp" else e[:, 0]) == {}


def test_one_posinf_row_may_be_nan_in_that_row_only():
    x = np.array([[inf, 0.0, 1.0], [0.0, 1.0, 2.0]], np.float32)
    exact = np.array([[1.0, 0.0, 0.0], [0.09, 0.24, 0.67]])
    alts = alternatives("softmax", inp(x), exact)
    assert set(alts) == {"nan_row_for_posinf"}
    a = alts["nan_row_for_posinf"]
    assert np.isnan(a[0]).all() and np.array_equal(a[1], exact[1]) and a.dtype == exact.dtype
    lse = alternatives("logsumexp", inp(x), np.array([inf, 2.4]))["nan_row_for_posinf"]
    assert np.isnan(lse[0]) and lse[1] == 2.4
    several = np.array([[inf, inf, 0.0]], np.float32)   # logsumexp's limit is +inf here too
    assert np.isnan(alternatives("logsumexp", inp(several), np.array([inf]))["nan_row_for_posinf"][0])
    assert alternatives("softmax", inp(several), np.full((1, 3), nan)) == {}
    # axis 0: the rows are columns
    alts = alternatives("softmax", inp(x.T, axis=0), exact.T)
    assert np.isnan(alts["nan_row_for_posinf"][:, 0]).all()


def test_all_neginf_rows_may_be_zeros_or_uniform():
    x = np.array([[-inf] * 4, [0.0, 1.0, 2.0, 3.0]], np.float32)
    v = np.array([[1.0, 2.0, 3.0, 6.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    ex = np.array([[nan] * 4, [0.03, 0.09, 0.24, 0.64]])
    i = inp(x, cotangent=v)
    cases = {
        "softmax": ([0.0] * 4, [0.25] * 4),
        "log_softmax": ([-inf] * 4, [-np.log(4)] * 4),
        "softmax_vjp": ([0.0] * 4, [(1 - 3) / 4, (2 - 3) / 4, 0.0, (6 - 3) / 4]),
        "log_softmax_vjp": ([1.0, 2.0, 3.0, 6.0], [1 - 3.0, 2 - 3.0, 0.0, 6 - 3.0]),
    }
    for op, (zeros, uniform) in cases.items():
        alts = alternatives(op, i, ex)
        assert set(alts) == {"zeros_for_all_neginf", "uniform_for_all_neginf"}, op
        assert np.allclose(alts["zeros_for_all_neginf"][0], zeros), op
        assert np.allclose(alts["uniform_for_all_neginf"][0], uniform), op
        assert np.array_equal(alts["uniform_for_all_neginf"][1], ex[1]), op
    # logsumexp of an all -inf row is -inf (the limit): then nothing to accept; if NaN, -inf is.
    assert alternatives("logsumexp", i, np.array([-inf, 3.4])) == {}
    assert alternatives("logsumexp", i, np.array([nan, 3.4]))["zeros_for_all_neginf"][0] == -inf


def test_cross_entropy_deviations():
    x = np.array([[0.0, 1.0, 2.0], [inf, 0.0, 0.0], [-inf, -inf, -inf], [0.0, 1.0, -inf]], np.float32)
    t = np.array([0, 1, 2, 0])
    per_sample = np.array([2.41, inf, nan, 1.31])
    alts = alternatives("cross_entropy", inp(x, target=t, reduction="none"), per_sample)
    assert set(alts) == {"nan_row_for_posinf", "zeros_for_all_neginf", "uniform_for_all_neginf"}
    assert np.isnan(alts["nan_row_for_posinf"][1]) and alts["nan_row_for_posinf"][0] == 2.41
    assert alts["zeros_for_all_neginf"][2] == inf
    assert np.isclose(alts["uniform_for_all_neginf"][2], np.log(3))
    g = alternatives("cross_entropy_grad", inp(x, target=t, reduction="sum"), np.zeros((4, 3)))
    assert np.isnan(g["nan_row_for_posinf"][1]).all() and not np.isnan(g["nan_row_for_posinf"][0]).any()
    assert np.allclose(g["zeros_for_all_neginf"][2], [0, 0, -1])
    assert np.allclose(g["uniform_for_all_neginf"][2], [1 / 3, 1 / 3, -2 / 3])
    # An ignored sample's row does not count.
    alts = alternatives("cross_entropy", inp(x[1:2], target=np.array([-100]), reduction="none",
                                             ignore_index=-100), np.array([0.0]))
    assert alts == {}


def test_all_ignored_mean_may_be_zero():
    x = np.zeros((4, 3), np.float32)
    i = inp(x, target=np.full(4, -100), ignore_index=-100, reduction="mean")
    alts = alternatives("cross_entropy", i, np.array(nan))
    assert set(alts) == {"zero_for_all_ignored"} and alts["zero_for_all_ignored"] == 0
    assert set(alternatives("cross_entropy", i, np.array(0.0))) == {"nan_for_all_ignored"}
    i_sum = inp(x, target=np.full(4, -100), ignore_index=-100, reduction="sum")
    assert alternatives("cross_entropy", i_sum, np.array(0.0)) == {}


def test_zero_mass_on_a_neginf_logit_may_give_nan():
    x = np.array([[0.0, -inf, 1.0], [0.0, 1.0, 2.0]], np.float32)
    q = np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], np.float32)
    alts = alternatives("cross_entropy", inp(x, target=q, reduction="none"), np.array([0.81, 1.1]))
    assert set(alts) == {"nan_for_zero_mass_neginf"}
    assert np.isnan(alts["nan_for_zero_mass_neginf"][0]) and alts["nan_for_zero_mass_neginf"][1] == 1.1
    # with label smoothing the mass is not zero: the loss is +inf, nothing to accept
    assert alternatives("cross_entropy", inp(x, target=q, reduction="none", label_smoothing=0.1),
                        np.array([inf, 1.1])) == {}


def test_subnormal_outputs_may_be_flushed():
    tiny = float(np.finfo(np.float32).tiny)
    x = np.array([[0.0, np.log(tiny) - 2, np.log(tiny) - 2]], np.float32)
    exact = np.array([[1.0, tiny * np.exp(-2), tiny * np.exp(-2)]])
    alts = alternatives("softmax", inp(x), exact)
    assert set(alts) == {"flushed_subnormals"}
    assert alts["flushed_subnormals"].tolist() == [[1.0, 0.0, 0.0]]
    # float64 exact values below float32's subnormal range round to 0 anyway: nothing to flush
    assert alternatives("softmax", inp(x), np.array([[1.0, 1e-50, 1e-50]])) == {}


def test_subnormal_inputs_may_be_flushed():
    import softmaxbench.reference.ops  # noqa: F401 - a missing module is a failure
    from softmaxbench.reference import ops
    from softmaxbench.reference.cases import CaseInput

    sub = np.finfo(np.float32).smallest_subnormal
    x = np.array([[0.0, 0.0]], np.float32)
    v = np.array([[sub * 8, 0.0]], np.float32)
    i = CaseInput("subnormal_cotangent", "float32", -1, x, v, None)
    exact = np.asarray(ops.softmax_vjp(x, v, axis=-1))
    alts = alternatives("softmax_vjp", i, exact)
    assert "flushed_subnormals" in alts and np.array_equal(alts["flushed_subnormals"], np.zeros((1, 2)))


def test_all_ignored_mean_conventions_apply_to_the_loss_and_its_gradient_alike():
    """The mean over all-ignored targets: a NaN loss is the expected one, so the NaN gradient of
    that same loss is accepted too; a kernel defining the empty mean as 0 gets 0 for both."""
    from softmaxbench.reference import ops
    from softmaxbench.suite.conformance.checks import CheckFailure, check_values

    x = np.zeros((4, 3), np.float32)
    i = inp(x, target=np.full(4, -100), ignore_index=-100, reduction="mean")
    i.dtype = "float32"
    loss, grad = ops.cross_entropy(x, i.target, ignore_index=-100), ops.cross_entropy_grad(
        x, i.target, ignore_index=-100)
    assert np.isnan(loss) and (grad == 0).all()

    def verdict(op, actual, exact):
        try:
            check_values(op, i, actual, exact)
            return "pass"
        except CheckFailure as f:
            return f"{f.verdict}:{f.deviation}"

    nan_loss, zero_loss = np.array(np.nan, np.float32), np.array(0.0, np.float32)
    assert verdict("cross_entropy", nan_loss, loss) == "pass"
    assert verdict("cross_entropy_grad", np.full_like(x, np.nan), grad) == "deviation:nan_for_all_ignored"
    assert verdict("cross_entropy", zero_loss, loss) == "deviation:zero_for_all_ignored"
    assert verdict("cross_entropy_grad", np.zeros_like(x), grad) == "pass"
    assert verdict("cross_entropy_grad", np.ones_like(x), grad).startswith("fail")


def test_every_accepted_convention_is_data_with_its_reason():
    from softmaxbench.backends.conventions import accepted
    from softmaxbench.vocabulary import OPS

    data = accepted()
    assert set(data) == set(DEVIATIONS)
    for name, entry in data.items():
        assert entry["reason"] and entry["expected"] and entry["accepted"], name
        assert set(entry["ops"]) <= set(OPS), name
    for name in ("zero_for_all_ignored", "nan_for_all_ignored"):   # a loss and its gradient alike
        assert set(data[name]["ops"]) == {"cross_entropy", "cross_entropy_grad"}
