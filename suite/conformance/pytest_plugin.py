"""The softmaxbench checks as a pytest parametrization, for a framework's or kernel's own test suite.

Like scikit-learn's ``parametrize_with_checks``: decorate one test function and every check the
backend declares (its ops and dtypes) becomes one test, named ``<backend>-<op>-<case>-<dtype>``.
A wrong result fails with the check's message and a copy-paste repro; a documented deviation
(a NaN row for +inf, ...) is an xfail with the convention's reason; an op that raises
NotImplementedError is skipped.

Two ways to name the backend. A ``Backend`` instance (or a factory) is called in the test process
itself: simplest, no isolation (a segfault takes pytest with it). A *name* (a built-in, an entry
point, or one a ``plugins=`` module provides) runs every check in a worker process, exactly as
``softmaxbench check`` does: the test process never imports the backend, judges what comes back
as bytes, and a crash or hang fails that one test (``crash``/``timeout``, the worker is replaced)::

    @parametrize_with_checks("mykernel", plugins=["mykernel/softmaxbench_plugin.py"])
    def test_softmaxbench(backend, check):
        check(backend)

In the project under test, e.g. ``tests/test_softmaxbench.py``::

    from softmaxbench.suite.conformance.pytest_plugin import parametrize_with_checks
    from mykernel.softmaxbench_backend import MyKernel

    @parametrize_with_checks(MyKernel())          # or a factory: MyKernel
    def test_softmaxbench(backend, check):
        check(backend)

Known failures (:mod:`softmaxbench.suite.conformance.known`): ``known_failures="known.toml"``
(or ``"builtin"``, or several) marks every check an entry names ``xfail(strict=True)`` with the
entry's reason: the failure it explains is an xfail, a different failure still fails, and a pass
is an XPASS(strict) failure: the known failure was fixed, so the entry should go.

By default the catalogue's quick subset (with the regression cases ``softmaxbench hunt`` saved)
is taken; ``quick=False``, ``pytest --softmaxbench-full``
or the environment variable ``SOFTMAXBENCH_FULL=1`` take every case. ``ops``, ``dtypes`` and
``cases`` narrow the selection. ``seed`` seeds the fresh cases (``fresh_normal``, inputs no
catalogue of hashes can hold): random unless given; a failing fresh check's message and repro
say the seed. This module is also the pytest plugin ``softmaxbench`` (entry
point ``pytest11``), which adds the ``--softmaxbench-full`` option and imports nothing heavy.

>>> from softmaxbench.suite.conformance.pytest_plugin import SoftmaxCheck
>>> SoftmaxCheck("softmax", "dist_normal_scale_1", "float32")
softmax-dist_normal_scale_1-float32
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from functools import cache

import pytest

#: Set by the --softmaxbench-full option for the session being configured.
_FULL_OPTION = False


class KnownFailureOccurred(AssertionError):
    """The failure a known-failures entry explains (what the strict xfail marker expects)."""


class SoftmaxCheck:
    """One check, callable on a backend: passes, fails, xfails (deviation) or skips (unsupported)."""

    def __init__(self, op: str, case: str, dtype: str, plugins: Sequence[str] = (), known=None,
                 seed: int | None = None):
        self.op, self.case, self.dtype = op, case, dtype
        self.plugins = tuple(plugins)
        self.known = known  # KnownFailures or None
        self.seed = seed  # the run seed a fresh case is built from (None: ignored by other cases)

    def __repr__(self) -> str:
        return f"{self.op}-{self.case}-{self.dtype}"

    def record(self, backend) -> dict:
        """Run the check; return its result record without raising."""
        from softmaxbench.suite.conformance.api import Task, check_one, conventions_of
        from softmaxbench.suite.hunt.store import get_case  # catalogue and hunt-found cases alike

        case = get_case(self.case)
        if getattr(case, "fresh", False):
            from softmaxbench.reference.cases import new_seed

            if self.seed is None:
                self.seed = new_seed()
            case = case.with_seed(self.seed)
        cache_ = _reference_cache()
        exact, why = cache_.result(Task(self.case, self.dtype, self.op), case=case)
        inputs = case.build(self.dtype)  # fresh: the backend may misbehave with its input
        if isinstance(backend, IsolatedBackend):
            return backend.check(self.op, inputs, exact, category=case.category,
                                 expect_error=case.expect_error, reference_error=why,
                                 plugins=self.plugins)
        return check_one(backend, self.op, inputs, exact, category=case.category,
                         expect_error=case.expect_error, reference_error=why,
                         conventions=conventions_of(backend), plugins=self.plugins)

    def __call__(self, backend) -> dict:
        rec = self.record(backend)
        verdict = rec["verdict"]
        if verdict == "pass":
            return rec
        if verdict == "deviation":
            pytest.xfail(f"deviation {rec.get('deviation')}: {rec.get('message')}")
        if verdict == "unsupported":
            pytest.skip(rec.get("message") or "unsupported")
        hit = self.known.match(rec) if self.known is not None else None
        if hit is not None:
            raise KnownFailureOccurred(f"known failure ({hit.reason}): {verdict}: {rec.get('message')}")
        from softmaxbench.suite.conformance.summary import EMPTY_AXIS_NOTE, raised_on_empty

        note = f"\n\nnote: {EMPTY_AXIS_NOTE}" if raised_on_empty(rec) else ""
        repro = rec.get("repro") or ""
        seeded = f" (seed {rec['seed']})" if rec.get("seed") is not None else ""
        pytest.fail(f"{verdict}{seeded}: {rec.get('message')}{note}\n\nrepro:\n{repro}", pytrace=False)
        return rec  # unreachable: pytest.fail raises


class IsolatedBackend:
    """A backend known by name: its checks run in a worker process (one per backend, started at
    the first check, replaced after a crash or hang, killed at the end of the session). Only its
    validated description (:class:`~softmaxbench.suite.isolation.channel.BackendInfo`) lives here.
    """

    def __init__(self, info, plugins: Sequence[str] = (), timeout_s: float = 60.0):
        self.info, self.plugins, self.timeout_s = info, tuple(plugins), float(timeout_s)
        self.name, self.device, self.dtypes = info.name, info.device, info.dtypes
        self._worker = None
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<{self.name} in a worker process>"

    def supported_ops(self) -> tuple[str, ...]:
        return self.info.ops

    def check(self, op: str, inputs, exact, *, category=None, expect_error=False,
              reference_error=None, plugins: Sequence[str] = ()) -> dict:
        """The record of ``op`` on ``inputs``, called in the worker, judged here."""
        from softmaxbench.suite.conformance.call import call_in_worker
        from softmaxbench.suite.conformance.judge import Recorder, judge, precheck
        from softmaxbench.suite.isolation.channel import ProtocolError, WorkerLost, WorkerRefused

        common = dict(backend=self.name, device=self.device, category=category, plugins=plugins)
        early = precheck(op, inputs, exact, dtypes=self.dtypes, ops=self.info.ops,
                         expect_error=expect_error, reference_error=reference_error, **common)
        if early is not None:
            return early
        try:
            result = call_in_worker(self._started(), op, inputs, timeout_s=self.timeout_s)
        except (WorkerLost, WorkerRefused, ProtocolError) as exc:
            self.close()
            kind = getattr(exc, "kind", "crash")
            note = getattr(exc, "note", None) or str(exc)
            if kind == "timeout":
                note = f"no answer within {self.timeout_s:g} s (the case hung); the worker was killed"
            return Recorder(self.name, self.device, op, inputs, category=category, plugins=plugins)(
                "timeout" if kind == "timeout" else "crash", note)
        return judge(op, inputs, exact, result, expect_error=expect_error,
                     conventions=self.info.conventions, **common)

    def _started(self):
        from softmaxbench.suite.isolation.channel import Worker

        if self._worker is None or not self._worker.alive():
            self.close()
            worker = Worker(self.name, plugins=self.plugins)
            worker.start(timeout_s=STARTUP_LIMIT_S)
            self._worker = worker
        return self._worker

    def close(self) -> None:
        """Kill the worker (its whole process group), if one runs."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()


#: How long a worker may take to import its framework and build the backend.
STARTUP_LIMIT_S = 180.0
#: Every IsolatedBackend made in this process: their workers are killed at the session's end.
_LIVE: weakref.WeakSet = weakref.WeakSet()


def _isolated(name: str, plugins: Sequence[str], timeout_s: float) -> IsolatedBackend:
    """The named backend, described by a discovery worker (nothing of it imported here)."""
    from softmaxbench.errors import InputError
    from softmaxbench.suite.selection import plugin_paths, select_backends

    try:
        paths = plugin_paths(plugins)
        chosen, _ = select_backends([name], paths, honour_default_skip=False)
    except InputError as exc:  # at collection: a usage error of the test module, said in one line
        raise pytest.UsageError(f"parametrize_with_checks: {exc.message}") from None
    return IsolatedBackend(chosen[0], paths, timeout_s)


@cache
def _reference_cache():
    # One cache per test process: a reference result is computed once, however many tests use it.
    from softmaxbench.suite.conformance.api import ReferenceCache

    return ReferenceCache(max_bytes=256 * 2**20)


def _instance(backend_or_factory):
    from softmaxbench.backends.base import Backend

    if isinstance(backend_or_factory, Backend):
        return backend_or_factory
    if callable(backend_or_factory):
        made = backend_or_factory()
        if isinstance(made, Backend):
            return made
    raise TypeError(f"parametrize_with_checks needs a Backend instance or a factory returning one, "
                    f"got {backend_or_factory!r}")


def checks_for(backend, *, ops: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
               cases: Sequence[str] | None = None, quick: bool = True,
               plugins: Sequence[str] = (), known=None, seed: int | None = None) -> list[SoftmaxCheck]:
    """Every check the backend declares (its ops and dtypes) within the selection; the fresh
    cases seeded by ``seed`` (random when None)."""
    from softmaxbench.errors import InputError
    from softmaxbench.suite.conformance.api import plan, run_seed, select_cases, supports

    try:
        seed = run_seed(seed)
    except InputError as exc:  # at collection: a usage error of the test module, said in one line
        raise pytest.UsageError(f"parametrize_with_checks: {exc.message}") from None
    tasks = plan(select_cases(cases, quick), ops, dtypes)
    return [SoftmaxCheck(t.op, t.case, t.dtype, plugins, known, seed) for t in tasks if supports(backend, t)]


def _known(known_failures):
    """None, a KnownFailures, or what ``--known-failures`` takes (a path, 'builtin', several)."""
    from softmaxbench.errors import InputError
    from softmaxbench.suite.conformance.known import KnownFailures, load

    if known_failures is None or isinstance(known_failures, KnownFailures):
        return known_failures
    try:
        return load(known_failures)
    except InputError as exc:  # at collection: a usage error of the test module, said in one line
        raise pytest.UsageError(f"parametrize_with_checks: {exc.message}") from None


def parametrize_with_checks(backend_or_factory, *, ops: Sequence[str] | None = None,
                            dtypes: Sequence[str] | None = None, cases: Sequence[str] | None = None,
                            quick: bool | None = None, known_failures=None,
                            plugins: Sequence[str] = (), timeout_s: float = 60.0,
                            seed: int | None = None) -> Callable:
    """A ``pytest.mark.parametrize("backend, check", ...)`` over every check of the backend.

    ``backend_or_factory`` is a Backend instance, or a callable returning one (called once, at
    collection), both run in this process; or a backend's name (a string: a built-in, an entry
    point, or provided by a ``plugins`` module or file), run in a worker process with
    ``timeout_s`` per check. ``quick=None`` means the quick subset unless
    ``SOFTMAXBENCH_FULL=1``. ``known_failures``: a known-failures TOML path, ``"builtin"``, a list
    of them, or a ``KnownFailures``; the checks its entries name become ``xfail(strict=True)``.
    ``seed``: the fresh cases' seed (default: a random one per decorated function).
    """
    if isinstance(backend_or_factory, str):
        backend = _isolated(backend_or_factory, plugins, timeout_s)
        plugins = backend.plugins
    else:
        backend = _instance(backend_or_factory)
    if quick is None:
        quick = not _full_requested()
    known = _known(known_failures)
    params = []
    for check in checks_for(backend, ops=ops, dtypes=dtypes, cases=cases, quick=quick,
                            plugins=plugins, known=known, seed=seed):
        key = {"backend": backend.name, "op": check.op, "case": check.case, "dtype": check.dtype}
        entry = known.covering(key) if known is not None else None
        marks = (pytest.mark.xfail(strict=True, raises=KnownFailureOccurred,
                                   reason=f"known failure: {entry.reason}"),) if entry else ()
        params.append(pytest.param(backend, check, id=f"{backend.name}-{check!r}", marks=marks))
    return pytest.mark.parametrize("backend, check", params)


# -- pytest hooks (this module is the ``softmaxbench`` pytest11 plugin) ------------------------------
def pytest_addoption(parser) -> None:
    group = parser.getgroup("softmaxbench")
    group.addoption("--softmaxbench-full", action="store_true", default=False,
                    help="parametrize_with_checks: every catalogue case, not only the quick subset "
                         "(same as SOFTMAXBENCH_FULL=1).")


def pytest_configure(config) -> None:
    # Test modules are imported (and their decorators run) after configure, so the option can
    # still choose the cases parametrize_with_checks enumerates.
    global _FULL_OPTION
    _FULL_OPTION = bool(config.getoption("softmaxbench_full", default=False))


def pytest_unconfigure(config) -> None:
    global _FULL_OPTION
    _FULL_OPTION = False
    for backend in list(_LIVE):
        backend.close()


def _full_requested() -> bool:
    return _FULL_OPTION or os.environ.get("SOFTMAXBENCH_FULL", "") in ("1", "true", "yes")
