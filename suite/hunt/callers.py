"""Where the backend under search runs: in a worker process (:class:`InWorker`, what the
``hunt`` verb uses) or in this process (:class:`InProcess`, the Python API on a ``Backend`` object).

A caller does two things for the hunt: ``call(op, inputs)`` returns the backend's output for a
``CaseInput`` as a NumPy array (or raises :class:`BackendRaised`), and ``judge(op, inputs, exact)``
returns the ``check`` record of one finding. With :class:`InWorker` the trusted process keeps the
inputs, the reference, the scores and the judgement; the worker gets the input bytes and sends
back the output bytes (``suite.isolation.channel``). A worker that dies or goes silent raises
``WorkerLost`` (kind "crash" or "timeout") from ``call``; the next call starts a fresh one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Seconds one backend call may take before its worker is killed (``hunt --timeout``).
CALL_TIMEOUT_S = 60.0
#: Seconds a worker may take to build its backend (framework imports, first compile).
START_TIMEOUT_S = 180.0


class BackendRaised(Exception):
    """The backend raised for this call (``message``: type and one line), or said unsupported."""

    def __init__(self, message: str, unsupported: bool = False):
        super().__init__(message)
        self.message = message
        self.unsupported = unsupported


class InProcess:
    """A ``Backend`` object called in this process: no isolation (a crash or hang of the
    backend is this process's). For the Python API and the search tests."""

    def __init__(self, backend, plugins: Sequence[str] = ()):
        self.backend = backend
        self.name = backend.name
        self.device = getattr(backend, "device", "cpu")
        self.plugins = tuple(plugins)
        self.restarts = 0

    def dtypes(self) -> tuple[str, ...]:
        return tuple(self.backend.dtypes)

    def ops(self) -> tuple[str, ...]:
        return tuple(self.backend.supported_ops())

    def call(self, op: str, inputs) -> np.ndarray:
        args, kwargs = inputs.args(op)

        def native(a):
            return self.backend.asarray(a) if isinstance(a, np.ndarray) else a

        try:
            out = getattr(self.backend, op)(*[native(a) for a in args],
                                            **{k: native(v) for k, v in kwargs.items()})
            self.backend.synchronize()
            return np.asarray(self.backend.to_numpy(out))
        except NotImplementedError as exc:
            raise BackendRaised(f"NotImplementedError: {exc}"[:300], unsupported=True) from None
        except Exception as exc:  # noqa: BLE001 - any exception of the backend is a finding
            raise BackendRaised(f"{type(exc).__name__}: {exc}"[:300]) from None

    def judge(self, op: str, inputs, exact, reference_error: str | None = None) -> dict:
        from softmaxbench.suite.conformance import api

        return api.check_one(self.backend, op, inputs, exact, category="found",
                             reference_error=reference_error,
                             conventions=api.conventions_of(self.backend), plugins=self.plugins)

    def close(self) -> None:
        pass


class InWorker:
    """The backend called ``name`` run in a worker process (``suite.isolation.channel.Worker``):
    what the ``hunt`` verb uses, so no backend, framework or plugin code runs in this process.

    :meth:`start` builds the backend there and returns its validated description
    (``BackendInfo``; ``WorkerRefused`` when it cannot be built). :meth:`call` sends the input
    bytes and returns the output array; a worker lost on a call raises ``WorkerLost`` and the next
    call starts a fresh one (``starts`` counts them). :meth:`judge` judges one finding here.
    """

    def __init__(self, name: str, *, plugins: Sequence[str] = (), env: dict | None = None,
                 log_path=None, timeout_s: float = CALL_TIMEOUT_S, start_timeout_s: float = START_TIMEOUT_S):
        self.name = name
        self.plugins = tuple(plugins)
        self.env = dict(env or {})
        self.log_path = log_path
        self.timeout_s = timeout_s
        self.start_timeout_s = max(start_timeout_s, timeout_s)
        self.info = None
        self.worker = None
        self.starts = 0

    @property
    def device(self) -> str:
        return self.info.device if self.info is not None else "cpu"

    def dtypes(self) -> tuple[str, ...]:
        return tuple(self.info.dtypes) if self.info is not None else ()

    def ops(self) -> tuple[str, ...]:
        return tuple(self.info.ops) if self.info is not None else ()

    def start(self):
        """A fresh worker with the backend built: its ``BackendInfo`` (validated metadata)."""
        from softmaxbench.suite.isolation.channel import Worker

        self.close()
        worker = Worker(self.name, plugins=self.plugins, env=self.env, log_path=self.log_path)
        self.starts += 1
        self.info = worker.start(timeout_s=self.start_timeout_s)
        self.worker = worker
        return self.info

    def _live(self):
        from softmaxbench.suite.isolation.channel import WorkerLost, WorkerRefused

        if self.worker is None or not self.worker.alive():
            try:
                self.start()
            except WorkerRefused as exc:   # it loaded before: a refusal now is the backend's doing
                raise WorkerLost("crash", f"a fresh worker could not load the backend: {exc}") from None
        return self.worker

    def call(self, op: str, inputs) -> np.ndarray:
        from softmaxbench.suite.isolation.channel import WorkerLost, WorkerRefused

        worker = self._live()
        args, kwargs = inputs.args(op)
        try:
            res = worker.call(op, list(args), dict(kwargs), timeout_s=self.timeout_s)
        except WorkerLost:
            self.worker = None        # the channel has killed its process group
            raise
        except WorkerRefused as exc:  # the worker's call handler itself raised
            raise BackendRaised(str(exc)[:300]) from None
        if res.status == "output":
            return res.output
        if res.status == "unsupported":
            raise BackendRaised(res.message or f"{op} raised NotImplementedError", unsupported=True)
        raise BackendRaised(res.raised.one_line() if res.raised else "the backend raised")

    def judge(self, op: str, inputs, exact, reference_error: str | None = None) -> dict:
        """The ``check`` record of ``op`` on ``inputs``: called in the worker, judged here by
        ``check_one`` on the call's result (:class:`_Replayed`). WorkerLost when the worker is lost."""
        from softmaxbench.suite.conformance import api
        from softmaxbench.suite.isolation.channel import WorkerLost

        worker = self._live()
        args, kwargs = inputs.args(op)
        try:
            res = worker.call(op, list(args), dict(kwargs), timeout_s=self.timeout_s)
        except WorkerLost:
            self.worker = None
            raise
        return api.check_one(_Replayed(self.info, op, res), op, inputs, exact, category="found",
                             reference_error=reference_error, conventions=dict(self.info.conventions),
                             plugins=self.plugins)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None


class _Replayed(str):
    """The result of one call in a worker, presented to ``check_one`` as the backend that gave it:
    ``asarray``/``to_numpy`` pass arrays through, ``<op>`` returns the output (or raises what the
    backend raised). Nothing of the backend runs here.

    A ``str`` (the backend's name), so that the repro snippet names the backend instead of
    looking it up by discovery, which would import the plugins into this process."""

    def __new__(cls, info, op: str, result):
        return super().__new__(cls, info.name)

    def __init__(self, info, op: str, result):
        self.name, self.device = info.name, info.device
        self.dtypes = tuple(info.dtypes)
        self._ops = tuple(info.ops)
        self._op, self._result = op, result

    def supported_ops(self) -> tuple[str, ...]:
        return self._ops

    def asarray(self, a):
        return a

    def to_numpy(self, a):
        return a

    def synchronize(self) -> None:
        pass

    def __getattr__(self, name):
        if name != self.__dict__.get("_op"):
            raise AttributeError(name)
        res = self._result

        def replay(*args, **kwargs):
            if res.status == "output":
                return res.output
            if res.status == "unsupported":
                raise NotImplementedError(res.message)
            raised = res.raised
            kind = type(raised.type if raised else "Exception", (Exception,), {})
            raise kind(raised.message if raised else "")
        return replay
