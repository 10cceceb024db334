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
        parametrize_with_checks(42)  # (a string is a backend's name: tests/test_pytest_plugin_isolated.py)


def test_default_selection_runs_the_hunt_found_cases_too(pytester):
    """The quick selection includes the regression cases hunt saved; each one looks its case up.

    These tests run pytest in a subprocess: an in-process run re-imports the suite's modules, and
    a CheckFailure of the new import is not one of the old (a test artefact, never a user's)."""
    from softmaxbench.suite.hunt.store import all_cases

    found = [c.name for c in all_cases(quick=True) if c.name.startswith("found-")
             and "softmax" in c.ops and "float32" in c.dtypes]
    assert found, "the package ships hunt-found float32 softmax cases"
    module = TINY.replace("cases=CASES", "ops=['softmax']").split("@parametrize_with_checks(Zeros")[0]
    handles_empty = "x64.max(axis=axis, keepdims=True, initial=-np.inf)"
    module = module.replace("x64.max(axis=axis, keepdims=True)", handles_empty)
    pytester.makepyfile(test_default=module)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rfE")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes["passed"] > len(found)
    collected = pytester.runpytest_subprocess("--collect-only", "-q", "-p", "no:cacheprovider").stdout.str()
    assert all(name in collected for name in found)


README_KERNEL = '''
import numpy as np
from softmaxbench.backends import Backend
from softmaxbench.suite.conformance.pytest_plugin import parametrize_with_checks


class MyKernel(Backend):
    name = "my-kernel"
    device = "cpu"
    dtypes = ("float32", "float64")

    def softmax(self, x, axis=-1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


@parametrize_with_checks(MyKernel(), KNOWN)
def test_softmaxbench(backend, check):
    check(backend)
'''
KNOWN_TOML = '''
[[known_failure]]
backend = "my-kernel"
case = "shape_empty_rows"
verdict = "error"
reason = "x.max(axis) raises on an empty axis (see issue 1)"
'''


def test_readme_kernel_says_plainly_why_it_fails_and_xfails_when_known(pytester):
    """The README's one-file kernel: the only failures are the empty-axis errors, each saying why;
    with a known-failures file they are strict xfails with its reason and the run is green."""
    pytester.makepyfile(test_readme=README_KERNEL.replace(", KNOWN)", ")"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-W", "ignore::RuntimeWarning")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) == 0 and outcomes["failed"] == 2, result.stdout.str()
    result.stdout.fnmatch_lines(["*FAILED*shape_empty_rows-float32*", "*FAILED*shape_empty_rows-float64*"])
    assert "note: the input has an empty axis" in result.stdout.str()

    pytester.makefile(".toml", known=KNOWN_TOML)
    pytester.makepyfile(test_readme=README_KERNEL.replace(", KNOWN)", ", known_failures='known.toml')"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rx",
                                           "-W", "ignore::RuntimeWarning")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes["xfailed"] == 4  # 2 known + 2 documented deviations (+inf rows)
    assert "known failure: x.max(axis) raises on an empty axis (see issue 1)" in result.stdout.str()


def test_known_failures_are_strict_xfails(pytester):
    """A known failure that passes is XPASS(strict), a failure of another kind still fails."""
    pytester.makefile(".toml", known='''
[[known_failure]]
backend = "tiny*"
case = "dist_normal_scale_1"
verdict = "error"
reason = "pretend it raises"
''')
    known = "known_failures='known.toml')"
    pytester.makepyfile(test_tiny_kernel=TINY.replace("cases=CASES)", f"cases=CASES, {known}")
                        .replace('cases=["dist_normal_scale_1"])', 'cases=["dist_normal_scale_1"], '
                                 'known_failures="known.toml")'))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rX")
    # tiny passes dist_normal_scale_1: XPASS(strict) -> failed; tiny-zeros fails it (not an error) -> failed
    result.assert_outcomes(passed=2, xfailed=1, failed=2)
    result.stdout.fnmatch_lines(["*XPASS(strict)*pretend it raises*"])
    assert "fail: softmax: error ratio" in result.stdout.str()


def test_a_bad_known_failures_file_is_a_usage_error(pytester):
    pytester.makefile(".toml", known="[[known_failure]]\nbackend = 'tiny'\n")
    pytester.makepyfile(test_bad=TINY.replace("cases=CASES)", "cases=CASES, known_failures='known.toml')"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    assert "needs a reason" in result.stdout.str() + result.stderr.str()
