"""The plain-Python conformance API: one check of one backend -> one result record, and many.

:func:`check_one` is the single place where a backend is called and its output judged by the
``check_<property>`` functions of :mod:`softmaxbench.suite.conformance.checks`; the CLI runner (in worker
processes), :func:`run_checks` (in this process) and the pytest plugin all go through it, so the
three entry points give the same verdicts. :func:`plan` turns a selection into the
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

import time
import traceback
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from softmaxbench.suite.conformance import checks
from softmaxbench.suite.conformance.checks import CheckFailure
from softmaxbench.suite.records import new_record


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
    dropped (recomputed if asked for again).
    """

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = max_bytes
        self._inputs: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._results: OrderedDict[tuple[str, str, str], tuple[np.ndarray | None, str | None]] = OrderedDict()
        self._bytes = 0
        self.computed = 0

    def inputs(self, case: str, dtype: str):
        """The CaseInput of ``case`` in ``dtype`` (a few kept: tasks come grouped by case)."""
        key = (case, dtype)
        if key not in self._inputs:
            from softmaxbench.suite.hunt.store import get_case

            self._inputs[key] = get_case(case).build(dtype)
            while len(self._inputs) > 4:
                self._inputs.popitem(last=False)
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


# -- one check ----------------------------------------------------------------------------------
def found_by(case_name: str) -> str:
    """'hunt' for a regression case saved by ``softmaxbench hunt``, else 'catalogue'."""
    from softmaxbench.suite.hunt.store import PREFIX

    return "hunt" if case_name.startswith(PREFIX) else "catalogue"


def check_one(backend, op: str, inputs, exact: np.ndarray | None, *, category: str | None = None,
              expect_error: bool = False, reference_error: str | None = None,
              conventions: dict | None = None, plugins: Sequence[str] = ()) -> dict:
    """Call ``backend.<op>`` on ``inputs``, judge the output against ``exact``, return the record.

    Never raises for anything the backend does: a NotImplementedError is ``unsupported``, any
    other exception ``error`` (``pass`` when the case expects one), a failed check ``fail`` or
    ``deviation`` with the check's message and a repro snippet.
    """
    base = dict(backend=backend.name, device=backend.device, op=op, case=inputs.case,
                category=category, dtype=inputs.dtype, shape=[int(n) for n in inputs.x.shape],
                axis=int(inputs.axis), found_by=found_by(inputs.case))

    def record(verdict: str, message: str | None = None, *, check: str | None = None,
               deviation: str | None = None, metrics: dict | None = None, actual=None,
               duration: float | None = None) -> dict:
        m = metrics or {}
        repro = None
        if verdict not in ("pass", "unsupported"):
            try:
                from softmaxbench.suite.conformance.repro import snippet

                repro = snippet(backend, op, inputs, plugins)
            except Exception as exc:  # noqa: BLE001 - a repro must never hide the verdict
                repro = f"# repro unavailable: {type(exc).__name__}: {exc}"
        show = actual is not None and (verdict != "pass" or category == "special")
        return new_record("check", **base, check=check, verdict=verdict, deviation=deviation,
                          max_ulp=_finite(m.get("max_ulp")), median_ulp=_finite(m.get("median_ulp")),
                          max_error_ratio=_finite(m.get("max_error_ratio")), message=message,
                          repro=repro, value_sample=_sample(actual) if show else None,
                          duration_s=None if duration is None else round(duration, 6))

    if inputs.dtype not in backend.dtypes:
        return record("unsupported", f"{backend.name} does not declare dtype {inputs.dtype}")
    if op not in backend.supported_ops():
        return record("unsupported", f"{backend.name} does not implement {op}")
    if exact is None and not expect_error:
        return record("error", f"the reference could not compute this case ({reference_error}); "
                               "a softmaxbench bug, not the backend's", check="reference")

    arrays = checks.input_arrays(op, inputs)
    before = {name: np.array(a, copy=True) for name, a in arrays.items()}
    try:
        return _call_and_judge(backend, op, inputs, exact, arrays, before, record, expect_error, conventions)
    finally:
        # A backend that wrote into its input must not corrupt the next check of the same input.
        for name, a in arrays.items():
            if not checks.same_bits(a, before[name]) and a.flags.writeable:
                np.copyto(a, before[name])


def _call_and_judge(backend, op, inputs, exact, arrays, before, record, expect_error, conventions) -> dict:
    args, kwargs = inputs.args(op)
    t0 = time.perf_counter()
    try:
        native_args = [backend.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        native_kwargs = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        out = getattr(backend, op)(*native_args, **native_kwargs)
        backend.synchronize()
        actual = np.asarray(backend.to_numpy(out))
    except NotImplementedError as exc:
        return record("unsupported", f"{op} raised NotImplementedError{': ' + str(exc) if str(exc) else ''}")
    except Exception as exc:  # noqa: BLE001 - whatever the backend raises is data
        took = time.perf_counter() - t0
        what = _one_line(exc)
        if expect_error:
            return record("pass", f"raised {what}, as expected", check="expected_error", duration=took)
        return record("error", f"{op} raised {what} where the reference defines a result "
                               f"({_where_raised(exc)})", check="no_exception", duration=took)
    took = time.perf_counter() - t0
    if expect_error:
        try:
            checks.check_expected_error(op, inputs, actual)
        except CheckFailure as f:
            return record("fail", f.message, check="expected_error", actual=actual, duration=took)

    failures: list[tuple[str, CheckFailure]] = []
    metrics: dict = {}
    native_named = dict(zip(_names_of(args, arrays), native_args))
    for name in checks.applicable_checks(op, inputs):
        try:
            if name == "output_dtype":
                checks.check_output_dtype(op, inputs, actual)
            elif name == "output_shape":
                checks.check_output_shape(op, inputs, actual, exact)
            elif name == "values":
                metrics = checks.check_values(op, inputs, actual, exact, conventions=conventions)
            elif name == "cross_entropy_options":
                # Only worth its extra reference evaluations when the values are wrong.
                if any(n == "values" and f.verdict == "fail" for n, f in failures):
                    checks.check_cross_entropy_options(op, inputs, actual, exact)
            elif name == "unit_interval":
                checks.check_unit_interval(op, inputs, actual, exact)
            elif name == "rows_sum_to_one":
                # Its bound is the sum of the element bounds: when the values pass, so does every
                # row, so it is only run to name the row property a failing output breaks.
                if any(n == "values" for n, _ in failures):
                    checks.check_rows_sum_to_one(op, inputs, actual, exact)
            elif name == "input_not_mutated":
                checks.check_input_not_mutated(op, inputs, before)
                after = {n: np.asarray(backend.to_numpy(v)) for n, v in native_named.items()}
                checks.check_input_not_mutated(op, inputs, before, after)
        except CheckFailure as f:
            failures.append((name, f))
            metrics = metrics or f.metrics
            if name in ("output_dtype", "output_shape"):  # nothing else can be compared element-wise
                break
        except Exception as exc:  # noqa: BLE001 - a check that crashes on odd output is a finding too
            failures.append((name, CheckFailure("fail", f"check {name} could not judge the output: "
                                                        f"{_one_line(exc)}")))
            if name in ("output_dtype", "output_shape", "values"):
                break
    fails = [(n, f) for n, f in failures if f.verdict == "fail"]
    if "cross_entropy_options" in {n for n, _ in fails}:  # the specific explanation goes first
        fails.sort(key=lambda nf: nf[0] != "cross_entropy_options")
    if fails:
        return record("fail", " | ".join(f.message for _, f in fails), check=fails[0][0],
                      metrics=metrics, actual=actual, duration=took)
    if failures:
        name, dev = failures[0]
        return record("deviation", dev.message, check=name, deviation=dev.deviation, metrics=metrics,
                      actual=actual, duration=took)
    return record("pass", None, check=None, metrics=metrics, actual=actual, duration=took)


def _names_of(args, arrays: dict) -> list[str]:
    """Names (x, cotangent, target) of the positional arguments, matched by identity."""
    names = []
    for a in args:
        names.append(next((n for n, v in arrays.items() if v is a), f"arg{len(names)}"))
    return names


def _finite(v) -> float | None:
    """JSON-safe metric: NaN/inf become None (the message says what happened)."""
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def _sample(actual) -> str:
    a = np.asarray(actual)
    flat = a.ravel()[:6]
    if flat.dtype.kind == "f" or str(flat.dtype) == "bfloat16":
        flat = flat.astype(np.float64)
    text = np.array2string(flat, precision=6, separator=", ", max_line_width=200)
    return f"{text[:-1]}, ...]" if a.size > 6 else text


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0][:300]}" if msg else type(exc).__name__


def _where_raised(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "no traceback"
    last = tb[-1]
    return f"at {last.filename}:{last.lineno} in {last.name}"


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
