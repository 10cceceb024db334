"""parametrize_with_checks by name: the backend runs in a worker process, as in `softmaxbench
check`. The test process never imports it, a segfault or a hang fails only its own test, and the
verdicts are the same as in-process ones. Tested with pytester on a plugin file."""

from __future__ import annotations

from faulty_plugin import faulty_plugin_source

# Imported here, once: pytester forgets what its inner runs import, and numpy loads only once.
import softmaxbench.reference.special  # noqa: F401
import softmaxbench.suite.isolation.discovery  # noqa: F401

pytest_plugins = ["pytester"]

PLUGIN = faulty_plugin_source("iso", zeros_for_normal_rows=True)

TESTS = '''
import sys
from softmaxbench.suite.conformance.pytest_plugin import parametrize_with_checks

CASES = ["dist_normal_scale_1", "shape_rank4_axis1", "shape_rank3_axis1", "special_nan_one"]


@parametrize_with_checks("iso-honest", plugins=["iso_plugin.py"], cases=CASES)
def test_honest(backend, check):
    check(backend)


@parametrize_with_checks("iso-faulty", plugins=["iso_plugin.py"], cases=CASES, timeout_s=3)
def test_faulty(backend, check):
    check(backend)


def test_the_plugin_was_never_imported_here():
    files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
    assert not [f for f in files if f.endswith("iso_plugin.py")]
'''


def test_named_backend_runs_in_a_worker_and_faults_cost_only_their_test(pytester):
    pytester.makepyfile(iso_plugin=PLUGIN, test_iso=TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(passed=4 + 1 + 1, failed=3)
    out = result.stdout.str()
    assert "test_faulty[iso-faulty-softmax-shape_rank4_axis1-float32]" in out
    assert "crash: the worker was killed by SIGSEGV" in out
    assert "timeout: no answer within 3 s (the case hung)" in out
    assert "fail:" in out and "dist_normal_scale_1" in out
    # The faulty backend's NaN case ran in a fresh worker after the crash and the hang, and passed.
    assert "test_faulty[iso-faulty-softmax-special_nan_one-float32] FAILED" not in out


def test_an_unknown_name_is_a_usage_error(pytester):
    pytester.makepyfile(test_unknown='''
from softmaxbench.suite.conformance.pytest_plugin import parametrize_with_checks

@parametrize_with_checks("no-such-backend")
def test_x(backend, check):
    check(backend)
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    assert "parametrize_with_checks: " in result.stdout.str() + result.stderr.str()
    assert "no-such-backend" in result.stdout.str() + result.stderr.str()
