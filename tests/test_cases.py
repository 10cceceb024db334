"""The case catalogue: counts, determinism, dtypes, repro snippets, the claims of the
descriptions, and the ``softmaxbench cases`` verb."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner

from softmaxbench.backends.base import OPS
from softmaxbench.reference import cases as cases_mod
from softmaxbench.reference.cases import (
    CATEGORIES,
    CE_OPS,
    QUICK_MAX_SIZE,
    Case,
    CaseInput,
    catalogue,
    get,
)
from softmaxbench.reference.dtypes import DTYPES, finfo, np_dtype
from softmaxbench.suite.cli.main import cli

CASES = catalogue()
CASE_DTYPES = [(c, d) for c in CASES for d in c.dtypes]
IDS = [f"{c.name}-{d}" for c, d in CASE_DTYPES]


def bits(a) -> tuple:
    """Everything that identifies an array bit for bit: dtype, shape and the raw bytes."""
    if a is None:
        return (None,)
    a = np.asarray(a)
    return (a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes())


def all_bits(inp: CaseInput) -> tuple:
    options = {k: v for k, v in inp.ce_options.items() if k != "weight"}
    return (bits(inp.x), bits(inp.cotangent), bits(inp.target), bits(inp.ce_options.get("weight")),
            inp.axis, sorted(options.items()))


# -- the catalogue as a whole ------------------------------------------------------------------
def test_catalogue_size_names_and_categories():
    names = [c.name for c in CASES]
    assert len(CASES) >= 80
    assert len(set(names)) == len(names)
    counts = collections.Counter(c.category for c in CASES)
    assert set(counts) == set(CATEGORIES)
    # Each category is a real family of cases, not a token one.
    for category in CATEGORIES:
        assert counts[category] >= 12, (category, counts[category])
    assert sum(counts.values()) == len(CASES)


def test_quick_subset_is_representative_and_small():
    quick = [c for c in CASES if c.quick]
    assert 25 <= len(quick) <= 35, len(quick)
    assert {c.category for c in quick} == set(CATEGORIES)
    for case in quick:
        assert int(np.prod(case.shape)) <= QUICK_MAX_SIZE, case.name
    assert any(c.expect_error for c in quick)


def test_fields_are_consistent():
    for c in CASES:
        assert isinstance(c, Case)
        assert c.category in CATEGORIES
        assert c.ops and set(c.ops) <= set(OPS), c.name
        assert c.dtypes and set(c.dtypes) <= set(DTYPES), c.name
        assert c.description.strip(), c.name
        ndim = len(c.shape)
        assert -max(ndim, 1) <= c.axis < max(ndim, 1), c.name
        class_axis_last = ndim >= 1 and c.axis in (-1, ndim - 1)
        if not class_axis_last:
            assert not set(c.ops) & set(CE_OPS), f"{c.name}: cross-entropy on a non-last axis"
        if c.category == "cross_entropy":
            assert set(c.ops) == set(CE_OPS), c.name
        if c.expect_error:
            assert set(c.ops) <= set(CE_OPS), c.name
        json.dumps(c.summary())


def test_required_cases_exist():
    names = {c.name for c in CASES}
    for required in ["shape_scalar", "shape_empty", "shape_empty_rows", "shape_empty_batch",
                     "shape_vocab_32000", "shape_vocab_128256", "shape_vocab_262144",
                     "dist_equal_float16_65536", "dist_equal_bfloat16_4096",
                     "extreme_float16_cast_overflow", "ce_out_of_range_label"]:
        assert required in names
    for scale in (1, 10, 100, 1000):
        assert f"dist_normal_scale_{scale}" in names
    for reduction in ("mean", "sum", "none"):
        assert any(c.category == "cross_entropy" and c.ce_options()["reduction"] == reduction
                   for c in CASES)
    for axis in (0, 1, -1):
        assert any(len(c.shape) == 4 and c.axis == axis for c in CASES)


def test_seed_is_a_stable_hash_of_the_name():
    case = get("dist_normal_scale_1")
    expected = int.from_bytes(hashlib.sha256(b"dist_normal_scale_1").digest()[:8], "little")
    assert case.seed == expected
    assert len({c.seed for c in CASES}) == len(CASES)


def test_build_is_identical_across_processes_with_different_hash_seeds():
    script = ("import hashlib; from softmaxbench.reference.cases import catalogue\n"
              "h = hashlib.sha256()\n"
              "for c in catalogue():\n"
              "    if c.quick:\n"
              "        for d in c.dtypes:\n"
              "            i = c.build(d)\n"
              "            for a in (i.x, i.cotangent, i.target):\n"
              "                h.update(b'-' if a is None else a.tobytes())\n"
              "print(h.hexdigest())\n")
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                             check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# -- every case in every dtype -----------------------------------------------------------------
@pytest.mark.parametrize(("case", "dtype"), CASE_DTYPES, ids=IDS)
def test_build_is_deterministic_typed_and_reproducible(case: Case, dtype: str):
    dt = np_dtype(dtype)
    first, second = case.build(dtype), case.build(dtype)
    assert all_bits(first) == all_bits(second)
    x = first.x
    assert (first.case, first.dtype, first.axis) == (case.name, dtype, case.axis)
    assert x.dtype == dt and x.shape == case.shape
    assert first.cotangent.dtype == dt and first.cotangent.shape == x.shape
    if case.quick:
        assert x.size <= QUICK_MAX_SIZE
    if set(case.ops) & set(CE_OPS):
        t = first.target
        assert t is not None
        if t.dtype == np.int64:
            assert t.shape == x.shape[:-1]
        else:
            assert t.dtype == dt and t.shape == x.shape
        w = first.ce_options["weight"]
        assert w is None or (w.dtype == dt and w.shape == x.shape[-1:])
        assert first.ce_options["reduction"] in ("mean", "sum", "none")
    else:
        assert first.target is None
    # The repro snippet, executed on its own, rebuilds every array bit for bit (and the layout).
    namespace: dict = {}
    with np.errstate(over="ignore"):
        exec(first.numpy_source(), namespace)
    rebuilt = CaseInput(case.name, dtype, case.axis, namespace["x"], namespace["cotangent"],
                        namespace["target"], namespace["ce_options"])
    assert all_bits(rebuilt) == all_bits(first)
    assert namespace["x"].strides == x.strides
    assert namespace["axis"] == case.axis


@pytest.mark.parametrize(("case", "dtype"), CASE_DTYPES, ids=IDS)
def test_args_match_the_backend_signatures(case: Case, dtype: str):
    inp = case.build(dtype)
    for op in OPS:
        if op not in case.ops:
            continue
        args, kwargs = inp.args(op)
        assert args[0] is inp.x
        if op in CE_OPS:
            assert args[1] is inp.target
            assert set(kwargs) == {"reduction", "label_smoothing", "ignore_index", "weight"}
        else:
            assert kwargs == {"axis": case.axis}
            assert len(args) == (2 if op.endswith("_vjp") else 1)
    if not set(case.ops) & set(CE_OPS):
        with pytest.raises(ValueError, match="no cross-entropy target"):
            inp.args("cross_entropy")
    (x, cot), kwargs = inp.args("logsumexp_grad")
    expected = np.sum(np.ones(x.shape), axis=case.axis).shape if x.ndim else ()
    assert cot.shape == expected and cot.dtype == x.dtype


# -- the descriptions' claims ------------------------------------------------------------------
def f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_cases_sit_where_they_claim(dtype: str):
    fi = finfo(dtype)
    ln_max = np.log(float(fi.max))
    ln_sub = np.log(float(fi.smallest_subnormal))
    # Tolerances are the recipe's range plus rounding to the dtype (bfloat16's ULP at 88 is 0.5).
    with np.errstate(over="ignore", under="ignore"):
        x = f64(get("extreme_near_log_max").build(dtype).x)
        assert np.all(np.abs(x - ln_max) <= 2.6) and np.all(np.exp(x).sum(-1) > float(fi.max))
        x = f64(get("extreme_above_log_max").build(dtype).x)
        assert np.all(x >= ln_max * (1 - 1e-2))
        x = f64(get("extreme_near_log_subnormal").build(dtype).x)
        assert np.all(np.exp(x) < float(fi.tiny)) and np.all(np.abs(x - ln_sub) <= 1.6)
        x = f64(get("extreme_outputs_subnormal").build(dtype).x)
        out = np.exp(x - x.max(-1, keepdims=True))
        assert np.any((out > 0) & (out < float(fi.tiny)))
        x = f64(get("extreme_spread_finfo_max").build(dtype).x)
        assert np.all(x[:, 0] == float(fi.max)) and np.all(x[:, 1] == -float(fi.max))
    for name in ("extreme_near_log_max", "extreme_spread_1e4", "extreme_mixed_anchors"):
        assert np.isfinite(f64(get(name).build(dtype).x)).all(), name


def test_float16_cast_overflow_contains_infinities():
    case = get("extreme_float16_cast_overflow")
    assert case.dtypes == ("float16",)
    x = case.build("float16").x
    assert np.isposinf(x).any() and np.isneginf(x).any() and np.isfinite(x).any()
    with pytest.raises(ValueError, match="applies to float16"):
        case.build("float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_value_cases(dtype: str):
    x = get("special_nan_one").build(dtype).x
    assert np.isnan(x).sum() == 1 and np.isfinite(x[[0, 2, 3]]).all()
    x = get("special_posinf_one").build(dtype).x
    assert (np.isposinf(x).sum(-1) == [0, 1, 0, 0]).all()
    x = get("special_posinf_several").build(dtype).x
    assert np.isposinf(x).sum(-1).max() >= 2
    x = get("special_neginf_all").build(dtype).x
    assert np.isneginf(x).all(-1).sum() == 1
    x = get("special_neginf_among_finite").build(dtype).x
    assert np.isneginf(x).any() and np.isfinite(x).any(-1).all()
    x = get("special_masked_rank4").build(dtype).x
    assert x.ndim == 4 and np.isneginf(x).all(-1).any() and np.isfinite(x).any(-1).any()
    x = get("special_causal_mask").build(dtype).x
    assert np.isfinite(x[0]).sum() == 1 and np.isfinite(x[-1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_near_ties_are_one_ulp_apart(dtype: str):
    dt = np_dtype(dtype)
    for name in ("dist_near_ties_ulp", "dist_near_ties_ulp_1000"):
        values = np.unique(get(name).build(dtype).x)
        assert values.size == 2, name
        assert np.nextafter(values[0], np.array(np.inf, dt)) == values[1], name


def test_equal_logit_cases_break_low_precision_sums():
    x = get("dist_equal_float16_65536").build("float16").x
    assert x.shape[-1] == 65536 and (x == x[:, :1]).all()
    assert x.shape[-1] > float(finfo("float16").max)  # a float16 sum of 65536 ones overflows
    x = get("dist_equal_bfloat16_4096").build("bfloat16").x
    assert x.dtype == np.dtype(ml_dtypes.bfloat16) and x.shape[-1] == 4096 and (x == x[:, :1]).all()
    one = np.array(1.0, x.dtype)
    assert np.array(256.0, x.dtype) + one == np.array(256.0, x.dtype)  # where a bf16 sum stalls


def test_views_are_not_contiguous():
    for name in ("shape_strided_rows", "shape_transposed", "shape_negative_stride",
                 "shape_permuted_rank4", "ce_transposed_logits"):
        x = get(name).build("float32").x
        assert not x.flags.c_contiguous, name


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_cases(dtype: str):
    inp = get("ce_out_of_range_label").build(dtype)
    assert get("ce_out_of_range_label").expect_error
    assert (inp.target >= inp.x.shape[-1]).any()
    inp = get("ce_label_minus100_not_ignored").build(dtype)
    assert inp.ce_options["ignore_index"] is None and (inp.target < 0).any()
    inp = get("ce_all_ignored_mean").build(dtype)
    assert (inp.target == inp.ce_options["ignore_index"]).all()
    inp = get("ce_ignore_index").build(dtype)
    ignored = inp.target == inp.ce_options["ignore_index"]
    assert ignored.any() and not ignored.all()
    inp = get("ce_prob_zero_mass_neginf").build(dtype)
    assert np.isneginf(inp.x).any() and (inp.target[np.isneginf(inp.x)] == 0).all()
    inp = get("ce_weight_smoothing_ignore_mean").build(dtype)
    o = inp.ce_options
    assert o["weight"] is not None and o["label_smoothing"] > 0 and o["ignore_index"] is not None
    for name, c in ((c.name, c) for c in CASES if c.category == "cross_entropy" and not c.expect_error):
        t = c.build(dtype)
        if t.target.dtype == np.int64:
            ok = (t.target >= 0) & (t.target < t.x.shape[-1])
            if t.ce_options["ignore_index"] is not None:
                ok |= t.target == t.ce_options["ignore_index"]
            assert ok.all(), name


# -- CaseInput and lookup ----------------------------------------------------------------------
def test_numpy_source_follows_changed_inputs():
    inp = get("dist_normal_scale_1").build("bfloat16")
    changed = dataclasses.replace(inp, x=inp.x[:, ::-1] * 2)
    assert changed.numpy_source() != inp.numpy_source()
    for candidate in (changed, dataclasses.replace(get("shape_vocab_32000").build("float16"),
                                                   ce_options={**inp.ce_options, "label_smoothing": 0.5})):
        namespace: dict = {}
        exec(candidate.numpy_source(), namespace)
        for var in ("x", "cotangent", "target"):
            assert bits(namespace[var]) == bits(getattr(candidate, var)), var
        assert namespace["ce_options"]["label_smoothing"] == candidate.ce_options["label_smoothing"]


def test_literal_source_of_a_hand_made_input():
    x = np.array([[1.0, -np.inf, np.nan]], dtype=ml_dtypes.bfloat16)
    inp = CaseInput("mine", "bfloat16", -1, x, np.ones_like(x), np.array([2]),
                    {"reduction": "sum", "label_smoothing": 0.1, "ignore_index": -100,
                     "weight": np.array([1, 2, 3], ml_dtypes.bfloat16)})
    namespace: dict = {}
    exec(inp.numpy_source(), namespace)
    assert all_bits(CaseInput("mine", "bfloat16", -1, namespace["x"], namespace["cotangent"],
                              namespace["target"], namespace["ce_options"])) == all_bits(inp)
    with pytest.raises(ValueError, match="unknown op"):
        inp.args("softmax_jvp")


def test_hand_made_input_with_partial_options():
    # The hunt builds CaseInputs without a cotangent and with only some cross-entropy options.
    inp = CaseInput("hunt", "float16", -1, np.ones((2, 3), np.float16), None, np.array([0, 2]),
                    {"label_smoothing": 0.25})
    args, kwargs = inp.args("cross_entropy")
    assert kwargs == {"reduction": "mean", "label_smoothing": 0.25, "ignore_index": None, "weight": None}
    namespace: dict = {}
    exec(inp.numpy_source(), namespace)
    assert namespace["cotangent"] is None and namespace["ce_options"] == kwargs
    assert bits(namespace["target"]) == bits(inp.target)
    with pytest.raises(ValueError, match="no cotangent"):
        inp.args("softmax_vjp")


def test_get_unknown_name_suggests_close_names():
    assert get("special_posinf_one").name == "special_posinf_one"
    with pytest.raises(KeyError, match="special_posinf_one"):
        get("special_posinf_onee")


def test_catalogue_returns_a_fresh_list():
    first = catalogue()
    first.clear()
    assert len(catalogue()) == len(CASES)
    assert cases_mod.get("shape_n1") is cases_mod.get("shape_n1")


# -- softmaxbench cases -------------------------------------------------------------------------
def test_cli_lists_the_catalogue():
    result = CliRunner().invoke(cli, ["cases"])
    assert result.exit_code == 0, result.output
    for c in CASES[:: 10]:
        assert c.name in result.output
    assert f"{len(CASES)} cases" in result.output


def test_cli_json_quick_and_category():
    result = CliRunner().invoke(cli, ["cases", "--json", "--quick"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [d["name"] for d in listed] == [c.name for c in CASES if c.quick]
    assert all(d["quick"] and d["size"] <= QUICK_MAX_SIZE for d in listed)
    result = CliRunner().invoke(cli, ["cases", "--category", "special"])
    assert result.exit_code == 0
    assert f"{sum(c.category == 'special' for c in CASES)} cases" in result.output


def test_cli_unknown_category_is_a_usage_error():
    result = CliRunner().invoke(cli, ["cases", "--category", "nonsense"])
    assert result.exit_code == 2
    assert "nonsense" in result.output and "Traceback" not in result.output


# -- against the reference (skipped until softmaxbench.reference.ops exists) -------------------
@pytest.mark.parametrize("case", [c for c in CASES if c.quick], ids=lambda c: c.name)
def test_reference_accepts_every_quick_case(case: Case):
    import softmaxbench.reference.ops as ops
    for dtype in case.dtypes:
        inp = case.build(dtype)
        for op in case.ops:
            args, kwargs = inp.args(op)
            if case.expect_error:
                with pytest.raises(ValueError):
                    getattr(ops, op)(*args, **kwargs)
                continue
            with np.errstate(all="ignore"):
                out = np.asarray(getattr(ops, op)(*args, **kwargs))
            if op in ("softmax", "log_softmax") or op.endswith("_vjp"):
                assert out.shape == inp.x.shape, (
                    f"reference.ops.{op} returned shape {out.shape} for x of shape {inp.x.shape} ({dtype})")
