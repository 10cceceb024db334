"""run_checks by name: the backend runs in worker processes, through ``softmaxbench check``'s own
engine. The calling process never imports the backend, its framework or a plugin; a segfault or
a hang costs its own case; a plugin that rebinds the reference at import rebinds only its own
worker's copy; the records are the CLI's for the same selection; bad input is one line.

The API runs in a subprocess (so that its ``sys.modules`` says what it imported), at the same
time as the CLI on the same selection (the two compare record for record)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from faulty_plugin import faulty_plugin_source

from softmaxbench.errors import InputError
from softmaxbench.suite.conformance.api import run_checks

FAULTY = faulty_plugin_source("api", absent=True)

# Rebinds the reference in whatever process imports it: run here, it would make every honest
# backend fail and its all-zeros kernel pass.
REBIND = '''
import numpy as np
import softmaxbench.reference.ops as ref
from softmaxbench.backends import Backend

ref.softmax = lambda x, axis=-1: np.zeros(np.shape(x))
_evaluate = ref.evaluate
ref.evaluate = lambda op, inputs: np.zeros(np.shape(inputs.x)) if op == "softmax" else _evaluate(op, inputs)


class Zeros(Backend):
    name = "api-rebind"
    dtypes = ("float32",)

    def softmax(self, x, axis=-1):
        return np.zeros_like(x)


def backends():
    return [Zeros()]
'''

# Compared with the CLI: honest backends beside the one that rebinds the reference.
BACKENDS = ["numpy", "torch-cpu", "api-honest", "api-rebind"]
CASES = ["dist_normal_scale_1", "shape_rank4_axis1", "shape_rank3_axis1", "special_nan_one"]
OPS, DTYPES = ["softmax"], ["float32"]
# The faulty backend gets a short timeout (its hang costs that much), in a run of its own: a
# framework's first call on a busy machine may take longer than that.
TIMEOUT_S = 4

CALLER = '''
import json, sys
import numpy as np
from softmaxbench.backends import Backend
from softmaxbench.suite.conformance.api import run_checks

backends, plugins, cases, ops, dtypes, timeout_s, out = json.loads(sys.argv[1])
records = run_checks(backends, ops=ops, dtypes=dtypes, cases=cases, plugins=plugins)
faulty = run_checks(["api-faulty"], ops=ops, dtypes=dtypes, cases=cases, plugins=plugins[:1],
                    timeout_s=timeout_s)
FRAMEWORKS = ("torch", "jax", "jaxlib", "scipy", "cupy")
imported = sorted(m for m in sys.modules if m.split(".")[0] in FRAMEWORKS
                  or (m.startswith("softmaxbench.backends.") and m != "softmaxbench.backends.base"))
plugin_modules = sorted(m for m, mod in list(sys.modules.items())
                        if (getattr(mod, "__file__", None) or "") in plugins)


class Here(Backend):  # an instance: called in this process
    name = "api-instance"
    dtypes = ("float32",)

    def softmax(self, x, axis=-1):
        return np.zeros_like(x)


mixed = run_checks([Here(), "api-honest"], ops=ops, dtypes=dtypes, cases=cases[:1], plugins=plugins)
# The instance's failure has a repro: written without discovering (importing) every adapter here.
from softmaxbench.backends.registry import BUILTINS

adapters = {path.split(":")[0] for path in BUILTINS.values()}
imported += sorted(m for m in sys.modules if m.split(".")[0] in FRAMEWORKS or m in adapters)
json.dump({"records": records, "faulty": faulty, "imported": imported, "plugin_modules": plugin_modules,
           "mixed": [(r["backend"], r["verdict"]) for r in mixed]}, open(out, "w"))
'''

FIELDS = ("verdict", "check", "max_ulp", "median_ulp", "max_error_ratio", "error_kind", "deviation")


def keyed(records):
    out = {(r["backend"], r["op"], r["case"], r["dtype"]): r for r in records if r.get("kind") == "check"}
    assert len(out) == len(records)
    return out


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> list[str]:
    """The two plugin files (faulty, rebind), by absolute path."""
    tmp = tmp_path_factory.mktemp("api_plugins")
    faulty, rebind = tmp / "api_faulty_plugin.py", tmp / "api_rebind_plugin.py"
    faulty.write_text(FAULTY)
    rebind.write_text(REBIND)
    return [str(faulty), str(rebind)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, plugins):
    """The API in a subprocess and ``softmaxbench check`` on the same selection, side by side."""
    tmp = tmp_path_factory.mktemp("api_isolated")
    cli_out, api_out = tmp / "cli", tmp / "api.json"
    # One discovery (in a worker), cached for the session: the two runs below then share it.
    from softmaxbench.suite.selection import select_backends

    select_backends(BACKENDS, plugins)
    cli = subprocess.Popen(
        [sys.executable, "-m", "softmaxbench.suite.cli.main", "check", "--out", str(cli_out),
         "--backends", ",".join(BACKENDS), "--ops", ",".join(OPS), "--dtypes", ",".join(DTYPES),
         "--cases", ",".join(CASES), "--plugin", plugins[0],
         "--plugin", plugins[1]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        api = subprocess.run([sys.executable, "-c", CALLER, json.dumps(
            [BACKENDS, plugins, CASES, OPS, DTYPES, TIMEOUT_S, str(api_out)])],
            capture_output=True, text=True, timeout=300, cwd=tmp)
        cli_stdout, cli_stderr = cli.communicate(timeout=300)
    finally:
        cli.kill()
    assert api.returncode == 0, api.stderr[-3000:]
    assert cli.returncode == 1, cli_stderr[-3000:]  # the zeros backend does not conform
    from softmaxbench.suite.records import read_results

    return json.loads(api_out.read_text()), read_results(cli_out)


def test_the_caller_never_imports_the_framework_or_the_plugins(runs):
    api, _ = runs
    assert api["imported"] == []
    assert api["plugin_modules"] == []
    # An instance still runs in the caller, beside a name run in its worker, in the order given.
    assert api["mixed"] == [["api-instance", "fail"], ["api-honest", "pass"]]


def test_a_segfault_or_a_hang_costs_its_own_case_and_the_caller_survives(runs):
    api, _ = runs
    got = {k[2]: r for k, r in keyed(api["faulty"]).items()}
    assert got["shape_rank4_axis1"]["verdict"] == "crash"
    assert "SIGSEGV" in got["shape_rank4_axis1"]["message"]
    assert got["shape_rank3_axis1"]["verdict"] == "timeout"
    assert f"no answer within {TIMEOUT_S} s" in got["shape_rank3_axis1"]["message"]
    assert got["dist_normal_scale_1"]["verdict"] == "pass"  # its other cases: a fresh worker
    assert got["special_nan_one"]["verdict"] == "pass"


def test_a_plugin_rebinding_the_reference_cannot_change_the_verdicts(runs):
    api, _ = runs
    by = keyed(api["records"])
    for backend in ("numpy", "torch-cpu", "api-honest"):
        verdicts = {r["verdict"] for k, r in by.items() if k[0] == backend}
        assert verdicts <= {"pass", "deviation"}, (backend, verdicts)
    assert {r["verdict"] for k, r in by.items() if k[0] == "api-rebind"} == {"fail"}


def test_the_records_are_those_of_softmaxbench_check(runs):
    api, cli = runs
    a, c = keyed(api["records"]), keyed(cli)
    assert a.keys() == c.keys()
    assert len(a) == len(BACKENDS) * len(CASES)
    for key in a:
        assert {f: a[key].get(f) for f in FIELDS} == {f: c[key].get(f) for f in FIELDS}, key
        if a[key]["verdict"] not in ("crash", "timeout"):
            assert a[key]["message"] == c[key]["message"], key
    # In the order given, then the plan's (case by case).
    assert [r["backend"] for r in api["records"]] == [b for b in BACKENDS for _ in CASES]
    assert [r["case"] for r in api["records"][:len(CASES)]] == CASES


@pytest.mark.parametrize("call, says", [
    (lambda p: run_checks(["no-such-backend"], plugins=p), "run_checks: unknown backend 'no-such-backend'"),
    (lambda p: run_checks(["api-absent"], plugins=p),
     "run_checks: backend 'api-absent' is unavailable here: needs the api-absent accelerator"),
    (lambda p: run_checks(["numpy"], plugins=["/nonexistent/plugin.py"]), "no such file"),
    (lambda p: run_checks(["numpy"], ops=["softmx"]), "unknown op 'softmx'; did you mean softmax"),
    (lambda p: run_checks(["numpy"], cases=["no_such_case"]), "no_such_case"),
    (lambda p: run_checks([42]), "a backend is a name or a Backend instance, got 42"),
    (lambda p: run_checks(["numpy"], timeout_s=0), "timeout_s must be a positive number"),
])
def test_bad_input_is_one_line(plugins, call, says):
    with pytest.raises(InputError) as info:
        call(plugins)
    message = str(info.value)
    assert says in message and "\n" not in message, message
    # Raised by run_checks itself: the traceback ends there, not deep inside the selection.
    assert info.traceback[-1].name == "run_checks"

