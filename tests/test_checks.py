"""The check_<property> functions and check_one: each property caught alone, with a message that
explains itself; correct outputs pass; documented conventions are deviations, not failures."""

from __future__ import annotations

import broken_backends as bb  # noqa: E402  (pytest puts tests/ on sys.path)
import numpy as np
import pytest

import softmaxbench.reference.ops as ops
from softmaxbench.reference.cases import get  # noqa: E402
from softmaxbench.suite.conformance import checks
from softmaxbench.suite.conformance.api import check_one  # noqa: E402
from softmaxbench.suite.conformance.checks import CheckFailure


def build(case: str, dtype: str = "float32"):
    return get(case).build(dtype)


def exact_of(op: str, inputs):
    return np.asarray(ops.evaluate(op, inputs))


def rounded(op: str, inputs):
    """The reference rounded to the target dtype: what a perfect backend returns."""
    return exact_of(op, inputs).astype(inputs.x.dtype)


def failure(fn, *args, **kwargs) -> CheckFailure:
    with pytest.raises(CheckFailure) as info:
        fn(*args, **kwargs)
    return info.value


# -- each check alone --------------------------------------------------------------------------
def test_output_dtype_names_both_dtypes():
    inputs = build("dist_normal_scale_1", "float16")
    checks.check_output_dtype("softmax", inputs, rounded("softmax", inputs))
    f = failure(checks.check_output_dtype, "softmax", inputs, rounded("softmax", inputs).astype(np.float32))
    assert f.verdict == "fail" and "float32" in f.message and "float16" in f.message


def test_output_shape():
    inputs = build("shape_rank4_axis1")
    exact = exact_of("logsumexp", inputs)
    checks.check_output_shape("logsumexp", inputs, exact.astype(np.float32), exact)
    wrong = np.zeros(exact.shape + (1,), np.float32)
    f = failure(checks.check_output_shape, "logsumexp", inputs, wrong, exact)
    assert str(exact.shape) in f.message and "axis=1" in f.message


def test_input_not_mutated_points_at_the_change():
    inputs = build("dist_normal_scale_1")
    before = {"x": inputs.x.copy()}
    checks.check_input_not_mutated("softmax", inputs, before)
    inputs.x[2, 5] = 7.0
    f = failure(checks.check_input_not_mutated, "softmax", inputs, before)
    assert "'x'" in f.message and "(2, 5)" in f.message and "1 of 256" in f.message


def test_input_not_mutated_is_nan_aware():
    inputs = build("special_nan_one")
    checks.check_input_not_mutated("softmax", inputs, {"x": inputs.x.copy()})  # NaN == NaN bitwise


def test_unit_interval_ignores_nan_but_not_negative():
    inputs = build("special_nan_one")
    y = rounded("softmax", inputs)
    checks.check_unit_interval("softmax", inputs, y, None)
    y[0, 0] = -0.25
    assert "outside [0, 1]" in failure(checks.check_unit_interval, "softmax", inputs, y, None).message


def test_rows_sum_to_one_catches_the_wrong_axis():
    inputs = build("shape_rank4_axis1")
    exact = exact_of("softmax", inputs)
    checks.check_rows_sum_to_one("softmax", inputs, exact.astype(np.float32), exact)
    xc = inputs.x.astype(np.float64)
    wrong = np.exp(xc) / np.exp(xc).sum(-1, keepdims=True)
    f = failure(checks.check_rows_sum_to_one, "softmax", inputs, wrong.astype(np.float32), exact)
    assert "axis 1" in f.message and "sums to" in f.message


def test_rows_sum_bound_covers_flushed_subnormal_rows():
    # 65536 equal float16 outputs of 2**-16 are subnormal: flushing them all is accepted, so the
    # bound must allow a row summing to 0 there, while a 64-long float32 row gets a tight bound
    # (4 x 64 elements x (their own roundings + the derived running-sum allowance of ~40 u)).
    assert (checks.rows_sum_bound("softmax", build("dist_equal_float16_65536", "float16"), 4.0) > 1).all()
    assert (checks.rows_sum_bound("softmax", build("dist_normal_scale_1"), 4.0) < 2e-5).all()


def test_rows_sum_never_fails_when_the_values_pass():
    """The row bound is the sum of the element bounds: a long strided row whose elements pass
    (error ratio <= threshold) passes here too, however its rounding errors add up."""
    inputs = build("shape_vocab_32000_axis0")
    exact = exact_of("softmax", inputs)
    bound = checks.rows_sum_bound("softmax", inputs, 4.0)
    from softmaxbench.reference.metrics import attainable_error

    worst = (exact + 3.9 * attainable_error("softmax", inputs).reshape(exact.shape)).astype(np.float32)
    checks.check_values("softmax", inputs, worst, exact)
    checks.check_rows_sum_to_one("softmax", inputs, worst, exact)
    assert bound.shape == (2,) and (bound < 1e-2).all()


def test_values_pass_fail_and_explain():
    inputs = build("dist_normal_scale_1")
    exact = exact_of("softmax", inputs)
    measured = checks.check_values("softmax", inputs, exact.astype(np.float32), exact)
    assert measured["max_error_ratio"] <= 4 and measured["max_ulp"] <= 1
    f = failure(checks.check_values, "softmax", inputs, np.zeros_like(inputs.x), exact)
    assert f.verdict == "fail" and "every element of the result is 0" in f.message
    assert f.metrics["max_error_ratio"] > 4


def test_values_deviation_quotes_the_declared_convention():
    inputs = build("special_posinf_one")
    exact = exact_of("softmax", inputs)
    nan_row = rounded("softmax", inputs)
    nan_row[1] = np.nan
    conv = {"nan_row_for_posinf": {"reason": "no special case for inf", "link": "https://example.org/x"}}
    f = failure(checks.check_values, "softmax", inputs, nan_row, exact, conventions=conv)
    assert f.verdict == "deviation" and f.deviation == "nan_row_for_posinf"
    assert "no special case for inf" in f.message and "https://example.org/x" in f.message
    f = failure(checks.check_values, "softmax", inputs, nan_row, exact)
    assert f.verdict == "deviation" and "does not declare" in f.message


def test_values_nan_where_a_value_exists_fails():
    inputs = build("dist_normal_scale_1")
    y = rounded("softmax", inputs)
    y[3, 3] = np.nan
    f = failure(checks.check_values, "softmax", inputs, y, exact_of("softmax", inputs))
    assert f.verdict == "fail" and "(3, 3)" in f.message


def test_cross_entropy_options_names_the_ignored_option():
    inputs = build("ce_label_smoothing")
    exact = exact_of("cross_entropy", inputs)
    without = dict(inputs.ce_options, label_smoothing=0.0)
    import dataclasses

    ignored = exact_of("cross_entropy", dataclasses.replace(inputs, ce_options=without)).astype(np.float32)
    checks.check_cross_entropy_options("cross_entropy", inputs, exact.astype(np.float32), exact)
    f = failure(checks.check_cross_entropy_options, "cross_entropy", inputs, ignored, exact)
    assert "label_smoothing=0.1" in f.message


def test_expected_error_always_fails_with_the_value():
    inputs = build("ce_out_of_range_label")
    f = failure(checks.check_expected_error, "cross_entropy", inputs, np.float32(2.5))
    assert "must raise" in f.message and "2.5" in f.message


def test_applicable_checks_follow_the_op_not_the_backend():
    assert "rows_sum_to_one" in checks.applicable_checks("softmax", None)
    assert "rows_sum_to_one" not in checks.applicable_checks("log_softmax", None)
    assert "cross_entropy_options" in checks.applicable_checks("cross_entropy", build("ce_weight"))
    assert "cross_entropy_options" not in checks.applicable_checks("cross_entropy", build("ce_mean"))


# -- check_one: one record per call, verdict + the check that decided it ---------------------------
def one(backend, op, case, dtype="float32"):
    inputs = build(case, dtype)
    c = get(case)
    try:
        exact, why = exact_of(op, inputs), None
    except Exception as exc:  # noqa: BLE001 - expect_error cases
        exact, why = None, str(exc)
    return check_one(backend, op, inputs, exact, category=c.category, expect_error=c.expect_error,
                     reference_error=why, conventions=None)


@pytest.mark.parametrize("backend, op, case, dtype, verdict, check, words", [
    (bb.Baseline(), "softmax", "dist_normal_scale_1", "float32", "pass", None, ""),
    (bb.Baseline(), "cross_entropy", "ce_out_of_range_label", "float32", "pass", "expected_error", "raised"),
    (bb.WrongOutputDtype(), "softmax", "dist_normal_scale_1", "bfloat16", "fail", "output_dtype", "float32"),
    (bb.MutatesInput(), "softmax", "dist_normal_scale_1", "float32", "fail", "input_not_mutated", "in place"),
    (bb.AllZeros(), "softmax", "dist_normal_scale_1", "float32", "fail", "values", "is 0"),
    (bb.WrongAxis(), "softmax", "shape_rank4_axis1", "float32", "fail", "values", "along axis 3"),
    (bb.Float64AsFloat32(), "softmax", "dist_normal_scale_10", "float64", "fail", "values", "float32"),
    (bb.CrossEntropyGradSign(), "cross_entropy_grad", "ce_mean", "float32", "fail", "values", "sign"),
    (bb.CrossEntropyGradScale(), "cross_entropy_grad", "ce_mean", "float32", "fail", "values",
     "scaled by 16"),
    (bb.LabelSmoothingIgnored(), "cross_entropy", "ce_label_smoothing", "float32", "fail",
     "cross_entropy_options", "ignores label_smoothing"),
    (bb.ClampsBadLabels(), "cross_entropy", "ce_out_of_range_label", "float32", "fail", "expected_error",
     "must raise"),
    (bb.RaisesOnStrided(), "softmax", "shape_strided_rows", "float32", "error", "no_exception", "TypeError"),
    (bb.Baseline(), "softmax", "special_posinf_one", "float32", "deviation", "values", "nan_row_for_posinf"),
])
def test_check_one_verdicts(backend, op, case, dtype, verdict, check, words):
    rec = one(backend, op, case, dtype)
    assert (rec["verdict"], rec["check"]) == (verdict, check), rec["message"]
    assert words in (rec["message"] or "")
    if verdict in ("fail", "error", "deviation"):
        assert rec["repro"] and f"backend.{op}(" in rec["repro"]
        assert rec["value_sample"] is not None or verdict == "error"


def test_check_one_restores_a_mutated_input():
    inputs = build("dist_normal_scale_1")
    original = inputs.x.copy()
    rec = check_one(bb.MutatesInput(), "softmax", inputs, exact_of("softmax", inputs))
    assert rec["verdict"] == "fail"
    assert np.array_equal(inputs.x, original)  # the next check of this input sees the real input


def test_check_one_unsupported_without_calling():
    from softmaxbench.backends import Backend

    class OnlySoftmax(Backend):
        name, dtypes = "only-softmax", ("float32",)

        def softmax(self, x, axis=-1):
            raise AssertionError("must not be called for float64")

    rec = one(OnlySoftmax(), "softmax", "dist_normal_scale_1", "float64")
    assert rec["verdict"] == "unsupported" and "float64" in rec["message"]
    rec = one(OnlySoftmax(), "log_softmax", "dist_normal_scale_1", "float32")
    assert rec["verdict"] == "unsupported" and "log_softmax" in rec["message"]


def test_repro_snippet_reproduces_the_failure():
    """The snippet runs on its own (given the backend is registered) and rebuilds the same input."""
    from softmaxbench.suite.conformance.repro import snippet

    inputs = build("ce_weight_smoothing_ignore_mean")
    src = snippet("numpy", "cross_entropy", inputs)
    ns: dict = {}
    head = src.split("from softmaxbench.backends.registry")[0]
    exec(head, ns)  # the input half needs no backend
    assert np.array_equal(ns["x"], inputs.x) and np.array_equal(ns["target"], inputs.target)
    assert "weight=backend.asarray(weight)" in src and "label_smoothing=0.2" in src


# -- messages that name the deciding element and the likely cause (issue 15) ---------------------
def _textbook():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from textbook import Textbook

    return Textbook()


def test_float64_computed_in_float32_is_named_not_the_accepted_nan_of_the_posinf_row():
    inputs = build("special_posinf_one", "float64")
    kernel = _textbook()
    for op in ("softmax", "log_softmax", "softmax_vjp"):
        args, kwargs = inputs.args(op)
        narrow = [a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in args]
        with np.errstate(all="ignore"):
            out = np.asarray(getattr(kernel, op)(*narrow, **kwargs)).astype(np.float64)
        f = failure(checks.check_values, op, inputs, out, exact_of(op, inputs))
        assert f.verdict == "fail" and f.metrics["error_kind"] == "beyond_bound", f.message
        assert "float32 number" in f.message and "float32 computation" in f.message, f.message
        # The deciding element is in a finite row, not the +inf row (whose NaN is accepted).
        idx = tuple(int(i) for i in f.message.split("index (", 1)[1].split(")", 1)[0].split(", "))
        row = np.moveaxis(inputs.x, inputs.axis, -1)[idx[:-1]] if inputs.axis == -1 else None
        assert row is None or np.isfinite(row).all(), f.message


def test_an_element_the_model_cannot_compute_is_not_judged():
    from softmaxbench.reference.cases import CaseInput

    x = np.array([9.96, -0.159], np.float16)
    v = np.array([10420.0, -65500.0], np.float16)
    inputs = CaseInput("hunted", "float16", -1, x, v, None)
    exact = exact_of("softmax_vjp", inputs)
    got = exact.astype(np.float16)
    got[1] = -np.inf                          # what the model algorithm computes there
    measured = checks.check_values("softmax_vjp", inputs, got, exact)
    assert measured["error_kind"] == "not_attainable"
    assert measured["note"].startswith("softmax_vjp: not judged")
    got[0] = 1000.0                           # the other element is still judged
    f = failure(checks.check_values, "softmax_vjp", inputs, got, exact)
    assert f.verdict == "fail" and "index (0,)" in f.message


def test_value_sample_prints_each_value_exactly():
    assert checks.value_sample(np.array([0.99999994], np.float32)) == "[0.99999994]"
    assert checks.value_sample(np.array([-2.0**-14], np.float16)) == "[-6.104e-05]"
    import ml_dtypes

    assert checks.value_sample(np.array([0.99609375], ml_dtypes.bfloat16)) == "[0.996]"


def test_rows_sum_message_is_in_units_of_the_dtype_and_skips_exact_rows():
    inputs = build("shape_n1")
    exact = exact_of("softmax", inputs)
    off = np.full(exact.shape, 0.99999994, np.float32)
    checks.check_rows_sum_to_one("softmax", inputs, off, exact)   # the value check names it
    inputs = build("dist_normal_scale_1")
    exact = exact_of("softmax", inputs)
    f = failure(checks.check_rows_sum_to_one, "softmax", inputs, (exact * 1.01).astype(np.float32), exact)
    assert "u off (allowed" in f.message and "float32 u = 5.96e-08" in f.message
    assert "4.44e-16" not in f.message


def test_mutation_wording_says_which_array_and_what_changed():
    inputs = build("dist_normal_scale_1")
    before = {"x": inputs.x.copy()}
    written = inputs.x.copy()
    written[1, 2] = 7.0
    f = failure(checks.check_input_not_mutated, "softmax", inputs, before, {"x": written})
    assert "modified its input 'x' in place" in f.message and "(1, 2)" in f.message and "was" in f.message
    f = failure(checks.check_input_not_mutated, "softmax", inputs, before, {"x": written[:, :3]},
                seen_as="the native array asarray made")
    assert "in place" not in f.message and "shape (4, 3)" in f.message and "asarray made" in f.message
