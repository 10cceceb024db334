"""The plain-Python conformance API: one check of one backend -> one result record, and many.

Every verdict is decided by :func:`softmaxbench.suite.conformance.judge.judge`, in the trusted
process, from a call result: ``softmaxbench check`` gets it from worker processes, :func:`check_one`
(used by :func:`run_checks` and the pytest plugin) by calling the backend here through the
worker's own handler, so the entry points give the same verdicts. :func:`plan` turns a selection into the
(case, dtype, op) keys to check, :class:`ReferenceCache` computes each reference result once.

>>> from softmaxbench.suite.conformance.api import run_checks
>>> records = run_checks(["numpy"], ops=["softmax", "log_softmax"], dtypes=["float32"],
...                      cases=["dist_normal_scale_1", "special_posinf_one"])
>>> [(r["op"], r["case"], r["verdict"], r["deviation"]) for r in records]   # doctest: +NORMALIZE_WHITESPACE
[('softmax', 'dist_normal_scale_1', 'pass', None), ('log_softmax', 'dist_normal_scale_1', 'pass', None),
 ('softmax', 'special_posinf_one', 'deviation', 'nan_row_for_posinf'),
 ('log_softmax', 'special_posinf_one', 'deviation', 'nan_row_for_posinf')]
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from softmaxbench.suite.conformance.judge import found_by, judge, precheck  # noqa: F401 - found_by re-exported


@dataclass(frozen=True)
class Task:
    """One (case, dtype, op) to check: the key of a record (with the backend) and of a reference."""

    case: str
    dtype: str
    op: str


# -- selection ----------------------------------------------------------------------------------
def select_cases(cases: Sequence[str] | None = None, quick: bool = False) -> list:
    """Case objects by name (KeyError with close names for an unknown one), or the catalogue
    followed by the regression cases saved by ``softmaxbench hunt`` (``suite.found_cases``)."""
    from softmaxbench.suite.hunt import store as found_cases

    if cases:
        return [found_cases.get_case(name) for name in cases]
    return found_cases.all_cases(quick=quick)


def plan(case_objs: Iterable, ops: Sequence[str] | None = None,
         dtypes: Sequence[str] | None = None) -> list[Task]:
    """Every (case, dtype, op) the selection covers, grouped by case then dtype (so one input
    build and one reference computation serve consecutive checks)."""
    tasks = []
    for case in case_objs:
        for dtype in case.dtypes:
            if dtypes and dtype not in dtypes:
                continue
            tasks.extend(Task(case.name, dtype, op) for op in case.ops if not ops or op in ops)
    return tasks


def supports(backend, task: Task) -> bool:
    """Does ``backend`` declare the op and the dtype of ``task``?"""
    return task.dtype in backend.dtypes and task.op in backend.supported_ops()


# -- reference results, computed once per case + dtype + op ---------------------------------------
class ReferenceCache:
    """Case inputs and reference results, computed once and kept while memory allows.

    The reference is the expensive half of a check (extended precision for float64), and every
    backend checks the same (case, dtype, op): the runner computes it here, in the parent, and
    ships it to each backend's worker. Least recently used results beyond ``max_bytes`` are
    dropped (recomputed if asked for again). Inputs are kept the same way within
    ``max_input_bytes`` (at least the last four): the backends of a run go through the same
    cases at their own pace, so a case's inputs are asked for by each of them, and building
    them again for each (as a four-entry cache did) cost a quick check 1000 builds for 124 inputs.
    """

    def __init__(self, max_bytes: int = 512 * 2**20, max_input_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self.max_input_bytes = max_input_bytes
        self._inputs: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._input_bytes: dict[tuple[str, str], int] = {}
        self._inputs_total = 0
        self._results: OrderedDict[tuple[str, str, str], tuple[np.ndarray | None, str | None]] = OrderedDict()
        self._bytes = 0
        self.computed = 0
        self.built = 0

    def inputs(self, case: str, dtype: str):
        """The CaseInput of ``case`` in ``dtype`` (built once while memory allows)."""
        key = (case, dtype)
        if key not in self._inputs:
            from softmaxbench.suite.hunt.store import get_case

            inp = self._inputs[key] = get_case(case).build(dtype)
            self.built += 1
            size = _input_nbytes(inp)
            self._input_bytes[key] = size
            self._inputs_total += size
            while self._inputs_total > self.max_input_bytes and len(self._inputs) > 4:
                old, _ = self._inputs.popitem(last=False)
                self._inputs_total -= self._input_bytes.pop(old)
        self._inputs.move_to_end(key)
        return self._inputs[key]

    def result(self, task: Task) -> tuple[np.ndarray | None, str | None]:
        """(exact, None), or (None, why) when the reference raises (an expect_error case)."""
        key = (task.case, task.dtype, task.op)
        if key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        from softmaxbench.reference import ops

        try:
            value = (np.asarray(ops.evaluate(task.op, self.inputs(task.case, task.dtype))), None)
        except Exception as exc:  # noqa: BLE001 - expect_error cases: the reference raises too
            value = (None, f"{type(exc).__name__}: {exc}")
        self.computed += 1
        self._results[key] = value
        self._bytes += value[0].nbytes if value[0] is not None else 0
        while self._bytes > self.max_bytes and len(self._results) > 1:
            _, (old, _) = self._results.popitem(last=False)
            self._bytes -= old.nbytes if old is not None else 0
        return value


def _input_nbytes(inputs) -> int:
    arrays = (inputs.x, inputs.cotangent, inputs.target, (inputs.ce_options or {}).get("weight"))
    return sum(int(getattr(a, "nbytes", 0)) for a in arrays if a is not None)


# -- one check ----------------------------------------------------------------------------------
def check_one(backend, op: str, inputs, exact: np.ndarray | None, *, category: str | None = None,
              expect_error: bool = False, reference_error: str | None = None,
              conventions: dict | None = None, plugins: Sequence[str] = ()) -> dict:
    """Call ``backend.<op>`` on ``inputs`` in this process and judge the output against ``exact``.

    The in-process form of a check (the pytest plugin, :func:`run_checks`): the backend is called
    through :func:`~softmaxbench.suite.conformance.call.call_in_process` (the worker's own
    handler) and judged by :func:`~softmaxbench.suite.conformance.judge.judge`, as ``softmaxbench
    check`` judges what its workers return. No isolation: a crashing or hanging backend takes this
    process with it. Never raises for anything the backend does.
    """
    from softmaxbench.suite.conformance.call import call_in_process

    try:
        ops = tuple(backend.supported_ops())
    except Exception as exc:  # noqa: BLE001 - raising metadata is a finding, not a crash
        ops = ()
        reference_error = reference_error or f"supported_ops() raised {type(exc).__name__}: {exc}"
    common = dict(backend=backend.name, device=backend.device, category=category, plugins=plugins,
                  repro_backend=backend)
    pre = precheck(op, inputs, exact, dtypes=tuple(backend.dtypes), ops=ops, expect_error=expect_error,
                   reference_error=reference_error, **common)
    if pre is not None:
        return pre
    result = call_in_process(backend, op, inputs)
    return judge(op, inputs, exact, result, expect_error=expect_error, conventions=conventions, **common)


# -- many checks, in this process ----------------------------------------------------------------
def resolve_backends(backends: Iterable, plugins: Sequence[str] = ()) -> list:
    """Backend names and/or instances -> instances (LookupError names an unknown one)."""
    from softmaxbench.backends.base import Backend

    out = []
    for b in backends:
        if isinstance(b, Backend):
            out.append(b)
        else:
            from softmaxbench.backends.registry import get

            out.append(get(str(b), plugins=tuple(plugins)))
    return out


def conventions_of(backend) -> dict:
    """The backend's declared conventions (name -> reason/link); {} when it declares none."""
    try:
        from softmaxbench.backends.conventions import for_backend
    except ImportError:
        return {}
    try:
        return dict(for_backend(backend) or {})
    except Exception:  # noqa: BLE001 - malformed convention data must not stop a check
        return {}


def run_checks(backends: Iterable, ops: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
               cases: Sequence[str] | None = None, quick: bool = False, *,
               plugins: Sequence[str] = ()) -> list[dict]:
    """Check ``backends`` (names or ``Backend`` instances) in this process; return the records.

    No isolation: a hanging or crashing backend takes this process with it (``softmaxbench
    check`` runs each backend in a worker process instead).
    """
    instances = resolve_backends(backends, plugins)
    case_objs = select_cases(cases, quick)
    by_name = {c.name: c for c in case_objs}
    tasks = plan(case_objs, ops, dtypes)
    cache = ReferenceCache()
    records = []
    for backend in instances:
        conv = conventions_of(backend)
        for task in tasks:
            case = by_name[task.case]
            inputs = cache.inputs(task.case, task.dtype)
            if not supports(backend, task):
                exact, why = None, None
            else:
                exact, why = cache.result(task)
            records.append(check_one(backend, task.op, inputs, exact, category=case.category,
                                     expect_error=case.expect_error, reference_error=why,
                                     conventions=conv, plugins=plugins))
    return records
