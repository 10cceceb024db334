"""Calibration of the error ratio and its thresholds against the reference and the catalogue.

- The textbook shifted algorithm (tests/textbook.py) passes ``compare`` on every case, op and
  dtype of the catalogue (special-value rows may follow an accepted deviation instead), with
  headroom: its largest ratio stays below half of each dtype's threshold.
- Each broken kernel fails on the cases that expose it, and passes a benign case (the metric
  points at the defect, it does not reject everything).

Run as a script to print the calibration table quoted in docs/metrics.md:

    python tests/test_error_ratio_calibration.py
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from textbook import AllZeros, LogOfSoftmax, NarrowAccumulation, NoShift, Textbook  # noqa: E402

import softmaxbench.reference.ops as ops
from softmaxbench.reference.cases import catalogue, get  # noqa: E402
from softmaxbench.reference.metrics import THRESHOLDS, compare  # noqa: E402
from softmaxbench.reference.special import alternatives  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

#: The textbook's largest ratio must stay below this fraction of the threshold.
HEADROOM = 0.5
#: Inputs larger than this many logits keep only their first rows (at least one) in CI.
SAMPLE_LIMIT = 2**17


def sampled(inputs, limit: int | None):
    """``inputs`` with its first batch dimension cut so that at most ``limit`` logits remain
    (whole rows along the class axis always)."""
    x = inputs.x
    if limit is None or x.size <= limit or x.ndim < 2:
        return inputs
    axis = inputs.axis % x.ndim
    dim = next(d for d in range(x.ndim) if d != axis and x.shape[d] > 1)
    keep = [slice(None)] * x.ndim
    keep[dim] = slice(0, max(1, limit // x.shape[axis]))

    def cut(a):
        if a is None:
            return None
        return a[tuple(keep)] if a.shape == x.shape else a[tuple(keep[:a.ndim])]

    return dataclasses.replace(inputs, x=cut(x), cotangent=cut(inputs.cotangent), target=cut(inputs.target))


@cache
def reference(case_name: str, op: str, dtype: str, limit: int | None = SAMPLE_LIMIT):
    """(inputs, exact) of one case, op and dtype; cached because several kernels share them."""
    inputs = sampled(get(case_name).build(dtype), limit)
    return inputs, np.asarray(ops.evaluate(op, inputs))


def grade(kernel, case_name: str, op: str, dtype: str,
          limit: int | None = SAMPLE_LIMIT) -> tuple[str, float, str]:
    """(verdict, max error ratio, message) of ``kernel`` (a Backend) as the suite grades it:
    'pass', the deviation names it follows ('deviation:a+b'), or 'fail'."""
    inputs, exact = reference(case_name, op, dtype, limit)
    args, kwargs = inputs.args(op)
    native = [kernel.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    if kwargs.get("weight") is not None:
        kwargs = dict(kwargs, weight=kernel.asarray(kwargs["weight"]))
    actual = np.asarray(kernel.to_numpy(getattr(kernel, op)(*native, **kwargs)))
    cmp = compare(op, inputs, actual, exact)
    if cmp.ok:
        return ("deviation:flushed_subnormals" if cmp.flushed_subnormals else "pass",
                cmp.max_error_ratio, cmp.message)
    alts = alternatives(op, inputs, exact)
    for k in range(1, len(alts) + 1):     # several special rows may follow several conventions
        for names in itertools.combinations(alts, k):
            expected = np.array(exact, copy=True)
            for n in names:
                differs = ~((alts[n] == exact) | (np.isnan(alts[n]) & np.isnan(exact)))
                expected[differs] = alts[n][differs]
            if compare(op, inputs, actual, expected).ok:
                return "deviation:" + "+".join(names), cmp.max_error_ratio, cmp.message
    return "fail", cmp.max_error_ratio, cmp.message


def checks(case):
    """(op, dtype) pairs of a case."""
    return [(op, dtype) for dtype in case.dtypes for op in case.ops]


# -- the textbook passes everything --------------------------------------------------------------
def textbook_failures(case, limit: int | None) -> list[str]:
    kernel = Textbook()
    failures = []
    for op, dtype in checks(case):
        if case.expect_error:
            inputs = case.build(dtype)
            args, kwargs = inputs.args(op)
            with pytest.raises(ValueError):
                ops.evaluate(op, inputs)
            with pytest.raises(ValueError):
                getattr(kernel, op)(*args, **kwargs)
            continue
        verdict, ratio, message = grade(kernel, case.name, op, dtype, limit)
        if verdict == "fail":
            failures.append(f"{op}/{dtype}: {message}")
        elif verdict == "pass" and ratio > HEADROOM * THRESHOLDS[dtype]:
            failures.append(f"{op}/{dtype}: within the threshold but without headroom: {message}")
    return failures


@pytest.mark.parametrize("case", catalogue(), ids=lambda c: c.name)
def test_textbook_passes_the_catalogue(case):
    failures = textbook_failures(case, SAMPLE_LIMIT)
    assert not failures, "\n".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in catalogue() if np.prod(c.shape) > SAMPLE_LIMIT],
                         ids=lambda c: c.name)
def test_textbook_passes_the_largest_cases_unsampled(case):
    failures = textbook_failures(case, None)
    assert not failures, "\n".join(failures)


def test_textbook_special_rows_use_only_accepted_deviations():
    # The textbook makes a NaN row of one +inf and NaN of 0 * -inf with probability targets: both
    # documented conventions, so verdict "deviation", never "fail".
    assert grade(Textbook(), "special_posinf_one", "softmax", "float32")[0] == "deviation:nan_row_for_posinf"
    assert grade(Textbook(), "ce_prob_zero_mass_neginf", "cross_entropy", "float32")[0] == \
        "deviation:nan_for_zero_mass_neginf"
    assert grade(Textbook(), "special_neginf_all", "softmax", "bfloat16")[0] == "pass"


# -- broken kernels fail where exposed -----------------------------------------------------------
EXPOSED = [
    # kernel, case, ops, dtypes. float16's range ends at e**11, so exp(x) of its largest logits
    # still fits (the float32 sum holds 64 of them): no overflow to expose there.
    (NoShift, "extreme_near_log_max", ("softmax", "log_softmax", "logsumexp", "softmax_vjp"),
     ("bfloat16", "float32", "float64")),
    (NoShift, "extreme_near_log_subnormal", ("softmax",), ("float16", "bfloat16", "float32", "float64")),
    (NoShift, "extreme_near_log_subnormal", ("log_softmax", "logsumexp"), ("float32", "float64")),
    (NoShift, "dist_offset_1000", ("softmax", "cross_entropy"), ("float32", "float64")),
    (LogOfSoftmax, "extreme_outputs_underflow", ("log_softmax", "cross_entropy"),
     ("float16", "bfloat16", "float32", "float64")),
    (LogOfSoftmax, "dist_normal_scale_1000", ("log_softmax",), ("float16", "bfloat16", "float32", "float64")),
    (LogOfSoftmax, "ce_extreme_logits", ("cross_entropy",), ("float32", "float64")),
    (NarrowAccumulation, "dist_equal_float16_65536", ("softmax", "log_softmax", "logsumexp"), ("float16",)),
    (NarrowAccumulation, "dist_equal_bfloat16_4096",
     ("softmax", "log_softmax", "logsumexp", "cross_entropy"), ("bfloat16",)),
    (NarrowAccumulation, "shape_vocab_32000", ("softmax", "log_softmax", "softmax_vjp"),
     ("float16", "bfloat16")),
    (NarrowAccumulation, "ce_vocab_32000", ("cross_entropy_grad",), ("bfloat16",)),
    (AllZeros, "dist_normal_scale_1", ("softmax", "log_softmax", "logsumexp", "softmax_vjp",
                                        "log_softmax_vjp", "cross_entropy", "cross_entropy_grad"),
     ("float16", "bfloat16", "float32", "float64")),
    (AllZeros, "shape_vocab_32000", ("softmax",), ("float32",)),       # outputs ~1e-5: atol would pass
]


@pytest.mark.parametrize("kernel, case_name, op_list, dtypes", EXPOSED,
                         ids=[f"{k.name}-{c}" for k, c, _, _ in EXPOSED])
def test_broken_kernel_fails_where_exposed(kernel, case_name, op_list, dtypes):
    passed = []
    for op, dtype in itertools.product(op_list, dtypes):
        verdict, ratio, message = grade(kernel(), case_name, op, dtype)
        if verdict != "fail":
            passed.append(f"{op}/{dtype}: {verdict} {message}")
    assert not passed, "\n".join(passed)


BENIGN = [
    (NoShift, "dist_normal_scale_1", ("softmax", "log_softmax", "logsumexp")),
    (LogOfSoftmax, "dist_normal_scale_1", ("log_softmax", "cross_entropy")),
    (NarrowAccumulation, "dist_normal_scale_1", ("softmax", "log_softmax", "logsumexp")),
]


@pytest.mark.parametrize("kernel, case_name, op_list", BENIGN, ids=[k.name for k, _, _ in BENIGN])
def test_broken_kernel_passes_a_benign_case(kernel, case_name, op_list):
    for op, dtype in itertools.product(op_list, ("float16", "float32", "float64")):
        assert grade(kernel(), case_name, op, dtype)[0] == "pass", (op, dtype)


# -- the calibration table ---------------------------------------------------------------------
def calibration_table(kernels, verbose: bool = False) -> list[tuple[str, str, float, str, int, int]]:
    """Per kernel and dtype: the largest ratio among passing checks (and where), the fail count
    and the number of checks. Unsupported ops and dtypes are skipped; a raise counts as a fail."""
    rows = []
    for kernel in kernels:
        worst: dict[str, tuple[float, str]] = {}
        fails: dict[str, int] = {}
        total: dict[str, int] = {}
        for case in catalogue():
            if case.expect_error:
                continue
            for op, dtype in checks(case):
                if dtype not in kernel.dtypes or op not in kernel.supported_ops():
                    continue
                try:
                    verdict, ratio, message = grade(kernel, case.name, op, dtype)
                except Exception as exc:  # noqa: BLE001 - a raise is this kernel's failure
                    verdict, ratio, message = "fail", float("inf"), f"raised {exc!r:.200}"
                total[dtype] = total.get(dtype, 0) + 1
                if verdict == "fail":
                    fails[dtype] = fails.get(dtype, 0) + 1
                    if verbose:
                        print(f"  FAIL {kernel.name} {case.name} {op} {dtype}: {message}")
                elif verdict == "pass" and ratio > worst.get(dtype, (0.0, ""))[0]:
                    worst[dtype] = (ratio, f"{case.name}/{op}")
        for dtype in THRESHOLDS:
            if dtype in total:
                ratio, where = worst.get(dtype, (0.0, ""))
                rows.append((kernel.name, dtype, ratio, where, fails.get(dtype, 0), total[dtype]))
    return rows


def running_sum_table() -> None:
    """The plain running float32 sum against the derived allowance (docs/metrics.md table)."""
    from softmaxbench.reference.cases import CaseInput
    from softmaxbench.reference.metrics import _sum_rel

    rng = np.random.default_rng(0)
    n, ua = 262144, 2.0**-24
    rows = {"N(0, 1)": rng.standard_normal((1, n)), "uniform [0, 1)": rng.random((1, n)),
            "near ties (uniform [0, 1e-3))": rng.random((1, n)) * 1e-3,
            "one dominant logit (20) first": np.concatenate([[[20.0]], rng.standard_normal((1, n - 1))], 1)}
    kernel = NarrowAccumulation()            # float32: a plain running sum in float32
    for name, x in rows.items():
        x = x.astype(np.float32)
        terms = np.exp(x.astype(np.float64) - x.max())
        running = np.cumsum(np.exp(x - x.max()), axis=-1, dtype=np.float32)[0, -1]
        lost = abs(float(running) - terms.sum()) / terms.sum() / ua
        inp = CaseInput("running", "float32", -1, x, None, None)
        sm, lse = (compare(op, inp, np.asarray(getattr(kernel, op)(x, axis=-1)),
                           np.asarray(ops.evaluate(op, inp))).max_error_ratio
                   for op in ("softmax", "logsumexp"))
        print(f"{name:32} error of S {lost:8.0f} u_a; 2 sqrt(n) {2 * np.sqrt(n):5.0f} u_a; derived "
              f"{_sum_rel(terms, ua)[0, 0] / ua:7.0f} u_a; ratio softmax {sm:.3g}, logsumexp {lse:.3g}")


def main(argv: list[str]) -> None:
    """No arguments: the test kernels. Else built-in backend names (e.g. numpy torch-cpu jax-cpu),
    whose failing checks are listed too; ``--running-sum``: the running-sum table."""
    if argv == ["--running-sum"]:
        running_sum_table()
        return
    if argv:
        from softmaxbench.backends.registry import builtin

        kernels = [builtin(name) for name in argv]
    else:
        kernels = [Textbook(), NoShift(), LogOfSoftmax(), NarrowAccumulation(), AllZeros()]
    start = time.perf_counter()
    table = calibration_table(kernels, verbose=bool(argv))
    print(f"{'kernel':28} {'dtype':9} {'threshold':>9} {'max passing ratio':>18}  {'fails':>12}  "
          "worst passing")
    for name, dtype, worst, where, fails, total in table:
        print(f"{name:28} {dtype:9} {THRESHOLDS[dtype]:9g} {worst:18.3g}  {fails:5d} of {total:4d}  {where}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
