"""The pytest entry point: a kernel project runs the checks from its own test suite with
parametrize_with_checks; wrong results fail with a repro, documented deviations xfail with
their reason, and --softmaxbench-full widens the selection. Tested with pytester on a tiny
plugin backend."""

from __future__ import annotations

import pytest

import softmaxbench.reference.ops  # noqa: F401 - a missing module is a failure

pytest_plugins = ["pytester"]

TINY = '''
import numpy as np
from softmaxbench.backends import Backend
from softmaxbench.suite.conformance.pytest_plugin import parametrize_with_checks


class Tiny(Backend):
    """softmax only, float32 only: the shifted algorithm in float64."""
    name = "tiny"
    dtypes = ("float32",)
    conventions = {"nan_row_for_posinf": {"reason": "inf - inf is NaN", "link": "https://example.org/tiny"}}

    def softmax(self, x, axis=-1):
        x64 = x.astype(np.float64)
        with np.errstate(invalid="ignore"):
            e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
            return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


class Zeros(Tiny):
    name = "tiny-zeros"

    def softmax(self, x, axis=-1):
        return np.zeros_like(x)


CASES = ["dist_normal_scale_1", "special_nan_one", "special_posinf_one", "shape_rank4_axis1"]


@parametrize_with_checks(Tiny(), cases=CASES)
def test_tiny(backend, check):
    check(backend)


@parametrize_with_checks(Zeros, cases=["dist_normal_scale_1"])   # a factory works too
def test_zeros(backend, check):
    check(backend)
'''


def test_verdicts_become_pytest_outcomes(pytester):
    pytester.makepyfile(test_tiny_kernel=TINY)
    result = pytester.runpytest("-rxs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, xfailed=1, failed=1)
    out = result.stdout.str()
    assert "test_tiny[tiny-softmax-dist_normal_scale_1-float32] PASSED" in out or "passed" in out
    assert "XFAIL" in out and "nan_row_for_posinf" in out and "https://example.org/tiny" in out
    result.stdout.fnmatch_lines(["*test_zeros*tiny-zeros-softmax-dist_normal_scale_1-float32*",
                                 "*fail: softmax: error ratio*every element of the result is 0*"])
    assert "repro:" in out and "from test_tiny_kernel import Zeros" in out  # not registered: its class


def test_quick_by_default_and_full_on_request(pytester):
    pytester.makepyfile(test_sel=TINY.replace("cases=CASES", "ops=['softmax']"))
    from softmaxbench.suite.conformance.api import plan, select_cases

    def count(quick):
        return sum(1 for t in plan(select_cases(None, quick), ["softmax"], ["float32"]))

    quick = pytester.runpytest("--collect-only", "-q", "-k", "test_tiny", "-p", "no:cacheprovider")
    full = pytester.runpytest("--collect-only", "-q", "-k", "test_tiny", "-p", "no:cacheprovider",
                              "--softmaxbench-full")
    assert count(True) < count(False)
    quick.stdout.fnmatch_lines([f"*{count(True)}/* tests collected*"])
    full.stdout.fnmatch_lines([f"*{count(False)}/* tests collected*"])


def test_not_a_backend_is_a_clear_error():
    from softmaxbench.suite.conformance.pytest_plugin import parametrize_with_checks

    with pytest.raises(TypeError, match="needs a Backend instance or a factory"):
        parametrize_with_checks("numpy")
