"""Crash-proof execution: one backend's checks run in a worker process the runner can kill.

The worker is started with the ``spawn`` context (torch and JAX do not survive ``fork`` after
initialisation), builds its backend by name (loading the same ``--plugin`` files), and then
answers batches of tasks with one record per task, in order, each sent as soon as it is judged.
Because the parent knows which task a worker is on (the first one not answered), a worker that
dies (segfault, abort, out-of-memory kill) costs exactly that task a ``crash`` record, and one
that stops answering for longer than the timeout costs it a ``timeout`` record; the parent then
starts a fresh worker for the remaining tasks.

Messages, parent -> worker: ``("tasks", [(task_id, case, dtype, op, exact, reference_error), ...])``,
``("stop",)``. Worker -> parent: ``("ready", info)``, ``("dead", why)``, ``("got", n, t)``,
``("result", task_id, record, t)`` where ``t`` is ``time.monotonic()`` (one clock for all
processes on a host, so the parent measures silence in the worker's own time).

>>> handle = WorkerHandle("numpy", plugins=(), env={}, log_path=None)
>>> handle.backend, handle.alive()
('numpy', False)
"""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
import os
import queue
import re
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path


def worker_main(conn, backend_name: str, plugins: tuple[str, ...], env: dict[str, str],
                log_path: str | None) -> None:
    """Entry point of the worker process (runs until told to stop or the pipe closes)."""
    for key, value in env.items():
        os.environ.setdefault(key, value)
    # Ctrl-C reaches the whole process group: the parent decides what an interrupt means (it
    # kills the workers), so a worker must not die mid-check and look like a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if log_path:
        # The backend's own prints and a fatal signal's traceback (faulthandler) go to a log the
        # parent quotes in crash records, instead of garbling the progress display.
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
    faulthandler.enable(file=sys.stderr, all_threads=False)
    try:
        from softmaxbench.suite.conformance.api import check_one, conventions_of, resolve_backends

        backend = resolve_backends([backend_name], plugins)[0]
        why = backend.unavailable()  # also imports the framework before the first timed task
        if why:
            conn.send(("dead", f"{backend_name} is unavailable in the worker: {why}"))
            return
        conventions = conventions_of(backend)
        conn.send(("ready", {"pid": os.getpid(), "framework_version": backend.framework_version()}))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which records it
        conn.send(("dead", f"could not load backend {backend_name!r} in the worker: "
                           f"{type(exc).__name__}: {exc}"))
        return

    from softmaxbench.suite.hunt.store import get_case
    from softmaxbench.suite.records import new_record

    inputs_cache: OrderedDict[tuple[str, str], object] = OrderedDict()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] != "tasks":
            return
        conn.send(("got", len(msg[1]), time.monotonic()))
        for task_id, case_name, dtype, op, exact, reference_error in msg[1]:
            case = get_case(case_name)
            key = (case_name, dtype)
            if key not in inputs_cache:
                inputs_cache[key] = case.build(dtype)
                while len(inputs_cache) > 2:
                    inputs_cache.popitem(last=False)
            try:
                record = check_one(backend, op, inputs_cache[key], exact, category=case.category,
                                   expect_error=case.expect_error, reference_error=reference_error,
                                   conventions=conventions, plugins=plugins)
            except Exception as exc:  # noqa: BLE001 - a bug of the suite, not a crash of the backend
                record = new_record("check", backend=backend.name, device=backend.device, op=op,
                                    case=case_name, category=case.category, dtype=dtype,
                                    shape=list(case.shape), axis=case.axis, verdict="error",
                                    message=f"softmaxbench could not judge this case (a suite bug): "
                                            f"{type(exc).__name__}: {exc}")
            conn.send(("result", task_id, record, time.monotonic()))


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when the parent dies (even by SIGKILL), so a
    killed run leaves no hung worker behind."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)
    except (OSError, AttributeError):
        pass


class WorkerHandle:
    """The parent's side of one worker process: start, send batches, receive, kill, restart."""

    def __init__(self, backend: str, *, plugins: tuple[str, ...], env: dict[str, str],
                 log_path: str | os.PathLike | None):
        self.backend = backend
        self.plugins = tuple(plugins)
        self.env = dict(env)
        self.log_path = str(log_path) if log_path else None
        self.proc = None
        self.conn = None
        self.ready = False
        self.info: dict = {}
        self.inflight: deque = deque()   # tasks sent and not yet answered, in order
        self.last_heard = 0.0            # monotonic time of the latest message (or the start)
        self.starts = 0
        self._outbox: queue.Queue | None = None
        self._log_offset = 0

    def start(self) -> None:
        """Start a fresh worker process (the previous one, if any, must be gone)."""
        ctx = mp.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=worker_main, name=f"softmaxbench-{self.backend}", daemon=True,
                                args=(child_conn, self.backend, self.plugins, self.env, self.log_path))
        self.proc.start()
        child_conn.close()
        self.conn = parent_conn
        self.ready = False
        self.inflight.clear()
        self.last_heard = time.monotonic()
        self.starts += 1
        self._log_offset = os.path.getsize(self.log_path) if self.log_path and os.path.exists(
            self.log_path) else 0
        # Sending runs in a thread: a batch with reference arrays can exceed the pipe buffer, and
        # a worker busy answering must never deadlock against a parent blocked in send().
        self._outbox = queue.Queue()
        threading.Thread(target=_send_loop, args=(self.conn, self._outbox), daemon=True).start()

    def send_tasks(self, batch: list[tuple]) -> None:
        """Queue a batch: tuples (task_id, case, dtype, op, exact, reference_error, task)."""
        if not self.inflight:  # an idle worker's silence so far was the parent's doing, not a hang
            self.last_heard = time.monotonic()
        self.inflight.extend(batch)
        self._outbox.put(("tasks", [t[:6] for t in batch]))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def poll_messages(self) -> list[tuple]:
        """Every message waiting from the worker; ('eof',) once the pipe is closed."""
        out = []
        if self.conn is None:
            return out
        try:
            while self.conn.poll():
                out.append(self.conn.recv())
        except (EOFError, OSError, ConnectionError):
            out.append(("eof",))
        except Exception as exc:  # noqa: BLE001 - an unpicklable message from a broken worker
            out.append(("eof", f"unreadable message: {exc}"))
        return out

    def kill(self) -> None:
        """Stop the worker now (SIGKILL: a hung backend does not answer anything gentler)."""
        if self._outbox is not None:
            self._outbox.put(None)
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(timeout=10)
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.ready = False

    def stop(self) -> None:
        """Ask the worker to finish, then make sure it is gone."""
        if self._outbox is not None and self.alive():
            self._outbox.put(("stop",))
            self._outbox.put(None)
            self.proc.join(timeout=5)
        self.kill()

    def death_note(self, during: str = "") -> str:
        """Why the worker process ended ('killed by SIGSEGV <during> (Fatal Python error: ...)')."""
        if self.proc is not None and self.proc.exitcode is None:
            # The pipe can report EOF before the dead process is reaped: give it a moment, so
            # that a kill is named (SIGKILL, SIGSEGV) rather than reported as silence.
            self.proc.join(timeout=2)
        code = self.proc.exitcode if self.proc is not None else None
        if code is None:
            what = "the worker stopped answering"
        elif code < 0:
            try:
                what = f"the worker was killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"the worker was killed by signal {-code}"
            if code == -signal.SIGKILL:
                what += " (out of memory?)"
        else:
            what = f"the worker exited with code {code}"
        tail = log_tail(self.log_path, self._log_offset)
        return what + (f" {during}" if during else "") + (f" ({tail})" if tail else "")


def _send_loop(conn, outbox: queue.Queue) -> None:
    while True:
        msg = outbox.get()
        if msg is None:
            return
        try:
            conn.send(msg)
        except (OSError, ValueError, EOFError):
            return


def log_tail(path: str | None, offset: int = 0, lines: int = 3, width: int = 300) -> str:
    """What a worker log says about its death, on one line: the fatal error and the backend frames
    of faulthandler's stack ('Fatal Python error: Segmentation fault; in string_at
    (ctypes/__init__.py:519) <- softmax (mykernel.py:12)'), else its last lines. Only what was
    written after ``offset`` (the log's size when this worker started) counts."""
    if not path or not Path(path).is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(offset, fh.tell() - 16384))
        text = fh.read().decode("utf-8", "replace")
    all_lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fatal = [i for i, ln in enumerate(all_lines) if ln.startswith("Fatal Python error")]
    if fatal:
        i = fatal[-1]
        frames = []
        for ln in all_lines[i + 1:]:
            m = _FRAME.match(ln)
            if not m:
                if frames:
                    break
                continue
            if "/softmaxbench/suite/" in m["file"] or m["file"].endswith(("suite/api.py", "suite/worker.py")):
                break  # the suite's own frames: the backend's part of the stack is above them
            frames.append(f"{m['func']} ({'/'.join(Path(m['file']).parts[-2:])}:{m['line']})")
        return (all_lines[i] + ("; in " + " <- ".join(frames[:4]) if frames else ""))[:width]
    return " / ".join(all_lines[-lines:])[-width:]


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')
