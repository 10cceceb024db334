"""The hypothesis strategies: every generated CaseInput obeys the catalogue's rules (dtype,
shapes, targets, exact repro source), and each category produces what it promises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmaxbench.reference import strategies
from softmaxbench.reference.cases import ARG_OPS, CATEGORIES, CE_OPS, CaseInput
from softmaxbench.reference.dtypes import DTYPES, finfo, np_dtype

# Small budgets: this runs in CI; the hunt is where the strategies search long.
FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def bits(a) -> tuple:
    if a is None:
        return (None,)
    a = np.asarray(a)
    return (a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes())


def check_invariants(inp: CaseInput, dtype: str, op: str) -> None:
    """The rules every CaseInput follows, whichever strategy made it."""
    dt = np_dtype(dtype)
    x = inp.x
    assert inp.dtype == dtype and x.dtype == dt
    assert inp.cotangent.dtype == dt and inp.cotangent.shape == x.shape
    if x.ndim:
        assert -x.ndim <= inp.axis < x.ndim
    args, kwargs = inp.args(op)
    assert args[0] is x
    if op in CE_OPS:
        assert inp.axis in (-1, x.ndim - 1) and x.shape[-1] >= 1
        t = inp.target
        if t.dtype == np.int64:
            assert t.shape == x.shape[:-1]
            ok = (t >= 0) & (t < x.shape[-1])
            if inp.ce_options["ignore_index"] is not None:
                ok |= t == inp.ce_options["ignore_index"]
            assert ok.all()
        else:
            assert t.dtype == dt and t.shape == x.shape
        w = inp.ce_options["weight"]
        assert w is None or (w.dtype == dt and w.shape == x.shape[-1:])
    # The literal repro source rebuilds the values bit for bit.
    namespace: dict = {}
    exec(inp.numpy_source(), namespace)
    for var in ("x", "cotangent", "target"):
        assert bits(namespace[var]) == bits(getattr(inp, var)), var
    assert bits(namespace["ce_options"]["weight"]) == bits(inp.ce_options["weight"])


ops = st.sampled_from(ARG_OPS)
dtypes = st.sampled_from(DTYPES)


@pytest.mark.parametrize("category", CATEGORIES)
@FAST
@given(data=st.data())
def test_every_category_obeys_the_rules(category: str, data):
    dtype, op = data.draw(dtypes, label="dtype"), data.draw(ops, label="op")
    inp = data.draw(strategies.STRATEGIES[category](dtype, op), label="inputs")
    assert inp.case == f"hypothesis-{category}"
    check_invariants(inp, dtype, op)


@FAST
@given(data=st.data())
def test_extreme_values_are_finite_and_reach_an_anchor(data):
    dtype = data.draw(dtypes)
    x = np.asarray(data.draw(strategies.extreme(dtype, "softmax")).x, np.float64)
    assert np.isfinite(x).all()
    nonzero = [abs(a) for a in strategies.anchors(dtype) if a]
    # Every row starts at an anchor +-4 (then rounded to the dtype).
    assert (np.abs(x[:, 0]) >= min(nonzero) - 4.5).all()


@FAST
@given(data=st.data())
def test_special_inputs_contain_a_special_value(data):
    x = data.draw(strategies.special(data.draw(dtypes), "log_softmax")).x
    assert not np.isfinite(np.asarray(x, np.float64)).all()


@FAST
@given(data=st.data())
def test_shape_inputs_cover_ranks_and_layouts(data):
    op = data.draw(st.sampled_from(["softmax", "cross_entropy"]))
    inp = data.draw(strategies.shape("float16", op))
    assert 0 <= inp.x.ndim <= 4
    if op == "cross_entropy":
        assert inp.x.ndim >= 1 and inp.axis == -1


def test_shape_strategy_reaches_edge_shapes_and_views():
    seen = {"scalar": False, "empty": False, "view": False, "non_last_axis": False}

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(strategies.shape("float32", "softmax"))
    def explore(inp):
        seen["scalar"] |= inp.x.ndim == 0
        seen["empty"] |= inp.x.size == 0
        seen["view"] |= inp.x.size > 1 and not inp.x.flags.c_contiguous
        seen["non_last_axis"] |= inp.x.ndim > 1 and inp.axis not in (-1, inp.x.ndim - 1)

    explore()
    assert all(seen.values()), seen


@FAST
@given(data=st.data())
def test_distribution_inputs_are_finite(data):
    dtype = data.draw(dtypes)
    x = np.asarray(data.draw(strategies.distribution(dtype, "softmax_vjp")).x, np.float64)
    assert np.isfinite(x).all() and np.abs(x).max() <= float(finfo(dtype).max)


@FAST
@given(data=st.data())
def test_cross_entropy_inputs_have_targets_and_options(data):
    inp = data.draw(strategies.cross_entropy(data.draw(dtypes), "cross_entropy_grad"))
    assert inp.target is not None
    assert inp.ce_options["reduction"] in ("mean", "sum", "none")
    assert 0.0 <= inp.ce_options["label_smoothing"] <= 1.0
    if inp.target.dtype != np.int64:
        assert inp.ce_options["ignore_index"] is None
        assert (inp.target[np.isneginf(np.asarray(inp.x, np.float64))] == 0).all()


@FAST
@given(strategies.case_inputs("bfloat16", "logsumexp_grad", ["special", "shape"]))
def test_case_inputs_mixes_categories(inp):
    assert inp.case in ("hypothesis-special", "hypothesis-shape")
    check_invariants(inp, "bfloat16", "logsumexp_grad")


def test_bad_parameters_fail_when_the_strategy_is_made():
    assert tuple(strategies.STRATEGIES) == CATEGORIES
    with pytest.raises(ValueError, match="unknown dtype"):
        strategies.extreme("float8", "softmax")
    with pytest.raises(ValueError, match="unknown op"):
        strategies.cross_entropy("float32", "softplus")
    with pytest.raises(ValueError, match="unknown categories"):
        strategies.case_inputs("float32", "softmax", ["nope"])
