"""The plain-Python conformance API: one check of one backend -> one result record, and many.

Every verdict is decided by :func:`softmaxbench.suite.conformance.judge.judge`, in the trusted
process, from a call result. :func:`run_checks` on backend *names* is ``softmaxbench check``'s
engine (:mod:`~softmaxbench.suite.conformance.runner`, the workers of
:mod:`~softmaxbench.suite.isolation.scheduler`): this process imports nothing of the backend, its
framework or a plugin. :func:`check_one` (:func:`run_checks` on a ``Backend`` instance, the
pytest plugin on an instance) calls the backend here through the worker's own handler, so all
entry points give the same verdicts. :func:`plan` turns a selection into the (case, dtype, op)
keys to check, :class:`ReferenceCache` computes each reference result once.

Every run has a seed (``seed=``; random unless given, recorded in run.json): the fresh cases
(``fresh_normal``) are built from it, so their inputs are not the catalogue's public ones.

>>> from softmaxbench.suite.conformance.api import run_checks
>>> records = run_checks(["numpy"], ops=["softmax", "log_softmax"], dtypes=["float32"],
...                      cases=["dist_normal_scale_1", "special_posinf_one"])
>>> [(r["op"], r["case"], r["verdict"], r["deviation"]) for r in records]   # doctest: +NORMALIZE_WHITESPACE
[('softmax', 'dist_normal_scale_1', 'pass', None), ('log_softmax', 'dist_normal_scale_1', 'pass', None),
 ('softmax', 'special_posinf_one', 'deviation', 'nan_row_for_posinf'),
 ('log_softmax', 'special_posinf_one', 'deviation', 'nan_row_for_posinf')]
"""

from __future__ import annotations

import os
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

    ``cases``: the run's Case objects (its fresh cases bound to the run seed,
    :func:`softmaxbench.reference.cases.bind`); a name is looked up there first, else in the
    catalogue and the found cases. Every key holds the case's run seed (None for a case seeded by
    its name), and :meth:`inputs` / :meth:`result` take a Case object as well as a name: one
    cache shared by runs of different seeds (the pytest plugin's) never serves one run's fresh
    inputs or reference to another.
    """

    def __init__(self, max_bytes: int = 512 * 2**20, max_input_bytes: int = 256 * 2**20, *,
                 cases: Iterable | None = None):
        self.cases = {c.name: c for c in cases or ()}
        self.max_bytes = max_bytes
        self.max_input_bytes = max_input_bytes
        self._inputs: OrderedDict[tuple[str, int | None, str], object] = OrderedDict()
        self._input_bytes: dict[tuple[str, int | None, str], int] = {}
        self._inputs_total = 0
        self._results: OrderedDict[tuple[str, int | None, str, str],
                                   tuple[np.ndarray | None, str | None]] = OrderedDict()
        self._bytes = 0
        self.computed = 0
        self.built = 0

    def case(self, case):
        """The Case object of ``case`` (a name, or a Case object, returned as it is)."""
        if not isinstance(case, str):
            return case
        if case in self.cases:
            return self.cases[case]
        from softmaxbench.suite.hunt.store import get_case

        return get_case(case)

    def inputs(self, case, dtype: str):
        """The CaseInput of ``case`` (a name or a Case) in ``dtype`` (built once while memory allows)."""
        obj = self.case(case)
        key = (obj.name, getattr(obj, "run_seed", None), dtype)
        if key not in self._inputs:
            inp = self._inputs[key] = obj.build(dtype)
            self.built += 1
            size = _input_nbytes(inp)
            self._input_bytes[key] = size
            self._inputs_total += size
            while self._inputs_total > self.max_input_bytes and len(self._inputs) > 4:
                old, _ = self._inputs.popitem(last=False)
                self._inputs_total -= self._input_bytes.pop(old)
        self._inputs.move_to_end(key)
        return self._inputs[key]

    def result(self, task: Task, case=None) -> tuple[np.ndarray | None, str | None]:
        """(exact, None), or (None, why) when the reference raises (an expect_error case).
        ``case``: the Case object of ``task.case`` (default: looked up as :meth:`inputs` does)."""
        obj = self.case(case if case is not None else task.case)
        key = (obj.name, getattr(obj, "run_seed", None), task.dtype, task.op)
        if key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        from softmaxbench.reference import ops

        try:
            value = (np.asarray(ops.evaluate(task.op, self.inputs(obj, task.dtype))), None)
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


# -- many checks ------------------------------------------------------------------------------------
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
               cases: Sequence[str] | None = None, quick: bool = False, *, plugins: Sequence[str] = (),
               timeout_s: float = 60.0, jobs: int | None = None,
               out_dir: str | os.PathLike | None = None, seed: int | None = None) -> list[dict]:
    """Check ``backends``; return one result record per backend x op x case x dtype selected.

    A backend *name* (a built-in, an entry point, or one that a ``plugins`` module or ``.py``
    file provides) is checked exactly as ``softmaxbench check --backends NAME`` checks it, by
    the same engine: in worker processes, judged here. This process never imports the backend,
    its framework or the plugins; a crash or a hang costs the case it happened on (a ``crash`` or
    ``timeout`` record, ``timeout_s`` seconds per call) and the backend's other cases run in a
    fresh worker. ``jobs`` is ``check --jobs``; with ``out_dir`` the run's ``results.jsonl``,
    ``run.json`` and worker logs are kept there (as ``check --out``), else in a temporary folder
    removed at the end. ``seed`` seeds the fresh cases (``fresh_normal``) of names and instances
    alike: random unless given (``check --seed``); every fresh record says it (``seed``).

    ``Backend`` *instances* are already imported by the caller: instances run here, unisolated
    (a crash or hang of the backend is this process's); pass names to isolate. Their checks are
    judged by the same code (:func:`check_one`).

    Records come in the order of ``backends``, then case, dtype and op (:func:`plan`). Bad input
    (an unknown or unavailable backend, a missing plugin file, an unknown op, dtype or case, a
    selection with nothing to check) raises :class:`softmaxbench.errors.InputError` with the
    one-line message ``softmaxbench check`` prints for it; Ctrl-C raises KeyboardInterrupt once
    the workers are stopped.
    """
    from softmaxbench.errors import InputError

    try:
        ops, dtypes, cases = _names("ops", ops), _names("dtypes", dtypes), _names("cases", cases)
        names, order = _split_backends(backends)
        paths = _plugin_paths(plugins)
        if timeout_s is None or not timeout_s > 0:
            raise InputError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        seed = run_seed(seed)
        case_objs = bind_cases(_validated_cases(ops, dtypes, cases, quick), seed)
        tasks = plan(case_objs, ops, dtypes)
        if not tasks:
            raise InputError("the selection has no checks: no selected case applies to the selected "
                             "ops and dtypes (see 'softmaxbench cases')")
        by_backend: dict[str, list[dict]] = {}
        if names:
            for rec in _run_in_workers(names, ops, dtypes, cases, quick, paths, timeout_s, jobs, out_dir,
                                       seed):
                by_backend.setdefault(rec["backend"], []).append(rec)
    except InputError as exc:  # one line, raised from here (not from deep inside the selection)
        raise InputError(f"run_checks: {exc.message}") from None
    index = {(t.op, t.case, t.dtype): i for i, t in enumerate(tasks)}  # the plan's order
    records: list[dict] = []
    for kind, item in order:
        if kind == "name":
            recs = by_backend.pop(item, [])
            records.extend(sorted(recs, key=lambda r: index.get(
                (r["op"], r["case"], r["dtype"]), len(index))))
        else:
            records.extend(_run_in_process(item, case_objs, tasks))
    for recs in by_backend.values():  # a name the worker reported under another spelling: kept
        records.extend(recs)
    return records


def run_seed(seed) -> int:
    """The run's seed: ``seed`` checked (InputError unless an integer in [0, 2**64)), or a random
    63-bit one when None."""
    from softmaxbench.errors import InputError
    from softmaxbench.reference.cases import check_seed, new_seed

    if seed is None:
        return new_seed()
    try:
        return check_seed(seed)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def bind_cases(case_objs, seed: int) -> list:
    """The run's Case objects: its fresh cases bound to ``seed``."""
    from softmaxbench.reference.cases import bind

    return bind(case_objs, seed)


def _split_backends(backends) -> tuple[list[str], list[tuple[str, object]]]:
    """Names (to run in workers) and instances (to run here), and their order as given."""
    from softmaxbench.backends.base import Backend
    from softmaxbench.errors import InputError
    from softmaxbench.suite.isolation.channel import clean_text

    if isinstance(backends, (str, Backend)):
        backends = [backends]
    try:
        given = list(backends)
    except TypeError:
        raise InputError(f"backends must be a list of backend names or Backend instances, got "
                         f"{clean_text(repr(backends), 80)}") from None
    if not given:
        raise InputError("no backend given: name at least one (see 'softmaxbench list')")
    names, order = [], []
    for b in given:
        if isinstance(b, Backend):
            order.append(("instance", b))
        elif isinstance(b, str):
            if b not in names:
                names.append(b)
                order.append(("name", b))
        else:
            raise InputError(f"a backend is a name or a Backend instance, got {clean_text(repr(b), 80)}")
    return names, order


def _plugin_paths(plugins) -> tuple[str, ...]:
    from softmaxbench.suite.selection import plugin_paths

    if isinstance(plugins, (str, os.PathLike)):
        plugins = [plugins]
    return plugin_paths([os.fspath(p) for p in plugins])


def _validated_cases(ops, dtypes, cases, quick) -> list:
    from softmaxbench.suite.selection import validate_names

    return validate_names(ops, dtypes, cases, quick)


def _names(what: str, given) -> list[str] | None:
    """None, or a list of names (one string is one name, not its letters)."""
    from softmaxbench.errors import InputError
    from softmaxbench.suite.isolation.channel import clean_text

    if given is None:
        return None
    if isinstance(given, str):
        return [given]
    try:
        return [str(g) for g in given]
    except TypeError:
        raise InputError(f"{what} must be a list of names, got {clean_text(repr(given), 80)}") from None


def _run_in_workers(names, ops, dtypes, cases, quick, plugins, timeout_s, jobs, out_dir,
                    seed) -> list[dict]:
    """``softmaxbench check``'s engine on the named backends; their check records."""
    import shutil
    import tempfile

    from softmaxbench.suite.conformance.runner import run_check
    from softmaxbench.suite.records import read_results

    tmp = tempfile.mkdtemp(prefix="softmaxbench-run-checks-") if out_dir is None else None
    out = tmp or out_dir
    try:
        code = run_check(out, backends=names, ops=ops, dtypes=dtypes, cases=cases, plugins=plugins,
                         quick=quick, timeout=timeout_s, jobs=jobs, display="none", seed=seed,
                         command=f"run_checks({names!r})")
        if code == 143:
            raise SystemExit(143)  # SIGTERM arrived during the run: end as it asked
        if code == 130:
            raise KeyboardInterrupt
        return [r for r in read_results(out) if r.get("kind") == "check"]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _run_in_process(backend, case_objs: list, tasks: list[Task]) -> list[dict]:
    """The records of a ``Backend`` instance, called here (no isolation)."""
    by_name = {c.name: c for c in case_objs}
    cache = ReferenceCache(cases=case_objs)
    conv = conventions_of(backend)
    records = []
    for task in tasks:
        case = by_name[task.case]
        inputs = cache.inputs(task.case, task.dtype)
        try:
            declared = supports(backend, task)
        except Exception:  # noqa: BLE001 - raising metadata: check_one records it
            declared = False
        exact, why = cache.result(task) if declared else (None, None)
        records.append(check_one(backend, task.op, inputs, exact, category=case.category,
                                 expect_error=case.expect_error, reference_error=why,
                                 conventions=conv))
    return records
