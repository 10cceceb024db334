"""Where the backend under search runs: in a worker process (:class:`InWorker`, what the
``hunt`` verb uses) or in this process (:class:`InProcess`, the Python API on a ``Backend`` object).

Both send the one ``call`` request of :mod:`softmaxbench.suite.conformance.call` and return its
``CallResult`` (the output's bytes, or what the backend raised); the hunt scores and judges it in
this process (:mod:`softmaxbench.suite.hunt.objective`). With :class:`InWorker` no backend,
framework or plugin code runs here: the worker gets the input bytes and sends the output bytes
back. A worker that dies or goes silent raises ``WorkerLost`` (kind "crash" or "timeout") from
``call``; the next call starts a fresh one.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Seconds one backend call may take before its worker is killed (``hunt --timeout``).
CALL_TIMEOUT_S = 60.0
#: Seconds a worker may take to build its backend (framework imports, first compile).
START_TIMEOUT_S = 180.0


class InProcess:
    """A ``Backend`` object called in this process: no isolation (a crash or hang of the
    backend is this process's). For the Python API and the search tests."""

    def __init__(self, backend, plugins: Sequence[str] = ()):
        from softmaxbench.suite.conformance.api import conventions_of

        self.backend = backend
        self.name = backend.name
        self.device = getattr(backend, "device", "cpu")
        self.dtypes = tuple(backend.dtypes)
        self.ops = tuple(backend.supported_ops())
        self.conventions = conventions_of(backend)
        self.plugins = tuple(plugins)

    def call(self, op: str, inputs):
        from softmaxbench.suite.conformance.call import call_in_process

        return call_in_process(self.backend, op, inputs)

    def close(self) -> None:
        pass


class InWorker:
    """The backend called ``name`` run in a worker process (``suite.isolation.channel.Worker``).

    :meth:`start` builds the backend there and returns its validated description
    (``BackendInfo``; ``WorkerRefused`` when it cannot be built, ``WorkerLost`` when the worker
    dies or hangs loading it). :meth:`call` returns the ``CallResult`` of one call; a worker lost
    on a call raises ``WorkerLost`` and the next call starts a fresh one (``starts`` counts them).
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

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(self.info.dtypes) if self.info is not None else ()

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(self.info.ops) if self.info is not None else ()

    @property
    def conventions(self) -> dict:
        return dict(self.info.conventions) if self.info is not None else {}

    def start(self):
        """A fresh worker with the backend built: its ``BackendInfo`` (validated metadata)."""
        from softmaxbench.suite.isolation.channel import Worker

        self.close()
        worker = Worker(self.name, plugins=self.plugins, env=self.env, log_path=self.log_path)
        self.starts += 1
        try:
            self.info = worker.start(timeout_s=self.start_timeout_s)
        except BaseException:
            worker.kill()
            raise
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

    def call(self, op: str, inputs):
        """The ``CallResult`` of ``op`` on ``inputs`` (WorkerLost when the worker is lost)."""
        from softmaxbench.suite.conformance.call import call_in_worker
        from softmaxbench.suite.isolation.channel import WorkerLost

        worker = self._live()
        try:
            return call_in_worker(worker, op, inputs, timeout_s=self.timeout_s)
        except WorkerLost:
            self.worker = None        # the channel has killed its process group
            raise

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
