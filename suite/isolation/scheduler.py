"""The check run's scheduler: workers per backend, requests in flight, records as answers arrive.

Each selected backend gets a :class:`~softmaxbench.suite.isolation.channel.Worker` (a second one
when cores are free and it has the most work left). The trusted side builds every case input and
reference result (:class:`~softmaxbench.suite.conformance.api.ReferenceCache`), sends the inputs
as bytes, keeps a few requests in flight per worker so the worker never waits for the judge,
judges each answer (:func:`~softmaxbench.suite.conformance.judge.judge`) and writes the record at
once. A worker that dies costs the case it was on a ``crash`` record, one silent past the
timeout (the parent's clock) a ``timeout`` record; the rest of its cases go to a fresh worker.
A worker that twice fails to start costs its backend's remaining cases; a backend that the
worker reports unavailable gets ``error`` records saying why.
"""

from __future__ import annotations

import os
import queue
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from softmaxbench.suite.conformance.api import ReferenceCache, Task
from softmaxbench.suite.conformance.call import request_for
from softmaxbench.suite.conformance.judge import (
    Recorder,
    found_by,
    judge,
    precheck,
    probe_inputs,
    unsupported_for_values,
    unsupported_group,
)
from softmaxbench.suite.isolation.channel import (
    BackendInfo,
    CallResult,
    ProtocolError,
    Worker,
    WorkerLost,
    WorkerRefused,
)
from softmaxbench.suite.isolation.display import PlainDisplay
from softmaxbench.suite.isolation.threads import thread_env

#: Requests in flight per worker (the worker computes the next ones while the parent judges:
#: with 4, workers were seen blocked until the parent had judged another backend's answers).
DEPTH = 8
#: ... unless their input arrays already hold this many bytes (at least one is always in flight).
DEPTH_BYTES = 256 << 20
#: A backend gets another worker (when a slot is free) only with this many tasks left per worker.
HELP_MIN_TASKS = 96
#: The most array bytes one answer of a check worker may carry (outputs plus changed inputs).
MAX_REPLY_BYTES = 2 << 30
#: How long a worker may take to import its framework and build the backend.
STARTUP_LIMIT_S = 180.0


@dataclass
class BackendRun:
    info: BackendInfo
    pending: deque                      # (task_id, Task), in order
    total: int
    workers: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    started: float = 0.0
    startup_failures: int = 0
    done: bool = False
    lost: int = 0                       # workers lost (crash or timeout)
    cpu_s: float = 0.0                  # CPU seconds of its workers (read when each is killed)

    def busy(self) -> bool:
        return bool(self.pending) or any(w.jobs for w in self.workers)


class CheckRun:
    """The trusted side of a check run: workers, reference cache, judgement, records, display."""

    def __init__(self, out_dir: Path, backends: Sequence[BackendInfo], tasks: list[Task], case_objs: list, *,
                 plugins: Sequence[str], timeout: float, jobs: int, done: set, writer, display: PlainDisplay,
                 threads: int, machine: str | None = None, env: dict | None = None):
        self.out_dir = Path(out_dir)
        self.machine = machine
        self.cases = {c.name: c for c in case_objs}
        self.plugins = tuple(plugins)
        self.timeout = timeout
        self.jobs = jobs
        self.writer = writer
        self.display = display
        self.cache = ReferenceCache(cases=case_objs)  # the run's cases: fresh ones bound to its seed
        self.threads = threads
        self.env = dict(env or {})
        self.inbox: queue.Queue = queue.Queue()
        self.runs: list[BackendRun] = []
        for b in backends:
            todo = [t for t in tasks if (b.name, t.op, t.case, t.dtype) not in done]
            self.runs.append(BackendRun(b, deque(enumerate(todo)), len(todo)))
        self.logs = self.out_dir / "logs"
        self.written = 0
        self.answered: set = set()     # (backend, unsupported group) answered with an output
        self.deferred: dict = {}       # (backend, group) -> [(op, inputs, CallResult)] refused so far

    def _flush_deferred(self, run: BackendRun) -> None:
        """The refusals of groups the backend never answered: ``unsupported`` records."""
        for group in [g for g in self.deferred if g[0] == run.info.name]:
            for op, inputs, result in self.deferred.pop(group):
                case = self.cases[inputs.case]
                self._write(run, judge(op, inputs, None, result, expect_error=case.expect_error,
                                       conventions=run.info.conventions, **self._common(run, case)))

    # records
    def _write(self, run: BackendRun, rec: dict) -> None:
        if self.machine:
            rec.setdefault("machine", self.machine)  # so merged results from a CI matrix stay apart
        self.writer.write(rec)
        self.written += 1
        run.counts[rec["verdict"]] += 1
        self.display.advance(run.info.name, rec)

    def _parent_record(self, run: BackendRun, task: Task, verdict: str, message: str) -> dict:
        """The record of a task whose worker crashed or hung (or never started)."""
        case = self.cases[task.case]
        inputs = self.cache.inputs(task.case, task.dtype)
        rec = Recorder(run.info.name, run.info.device, task.op, inputs, category=case.category,
                       plugins=self.plugins)
        return rec(verdict, message, check=None)

    def _common(self, run: BackendRun, case) -> dict:
        return dict(backend=run.info.name, device=run.info.device, category=case.category,
                    plugins=self.plugins)

    def _unsupported_first(self, run: BackendRun) -> None:
        """Records of tasks needing no call (undeclared op/dtype, reference failure), at once."""
        keep = deque()
        for item in run.pending:
            task = item[1]
            case = self.cases[task.case]
            inputs = self.cache.inputs(task.case, task.dtype)
            declared = task.dtype in run.info.dtypes and task.op in run.info.ops
            exact, why = self.cache.result(task) if declared else (None, None)
            pre = precheck(task.op, inputs, exact, dtypes=run.info.dtypes, ops=run.info.ops,
                           expect_error=case.expect_error, reference_error=why, **self._common(run, case))
            if pre is None:
                keep.append(item)
            else:
                self._write(run, pre)
        run.pending = keep

    # worker life cycle
    def _new_worker(self, run: BackendRun) -> Worker:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = thread_env(self.threads)
        env.update(self.env)
        suffix = f"-{len(run.workers)}" if run.workers else ""
        w = Worker(run.info.name, plugins=self.plugins, env=env, inbox=self.inbox, max_bytes=MAX_REPLY_BYTES,
                   log_path=self.logs / f"{safe_file_name(run.info.name)}{suffix}.log")
        w.jobs = deque()        # (seq, task_id, task) in flight, in order
        w.ready = False
        w.run = run
        run.workers.append(w)
        self._spawn(w)
        return w

    def _spawn(self, w: Worker) -> None:
        w.ready = False
        w.jobs.clear()
        w.spawn()
        w.init_seq = w.pending[0][0]
        w.spawned_at = time.monotonic()

    def _finish(self, run: BackendRun) -> None:
        # Every answer is in: nothing the worker could still do is wanted, and a framework's
        # interpreter teardown (torch, XLA) takes up to a second of the run's wall time. Kill.
        self._flush_deferred(run)
        for w in run.workers:
            w.kill()
            run.cpu_s += w.cpu_s
        run.workers.clear()
        run.done = True
        self.display.finish(run.info.name, run.counts, time.monotonic() - run.started)

    def _fail_rest(self, run: BackendRun, verdict: str, message: str) -> None:
        items = [(tid, task) for w in run.workers for _, tid, task, *_ in w.jobs] + list(run.pending)
        run.pending.clear()
        for w in run.workers:
            w.jobs.clear()
            w.kill()
            run.cpu_s += w.cpu_s
        run.workers.clear()
        for _, task in items:
            self._write(run, self._parent_record(run, task, verdict, message))

    def _lost_worker(self, run: BackendRun, w: Worker, verdict: str, note: str) -> None:
        """A worker died or hung: the task it was on gets ``verdict``, its others are requeued."""
        w.kill()
        run.lost += 1
        if not w.ready:
            run.startup_failures += 1
            if run.startup_failures >= 2:
                self._fail_rest(run, verdict, f"the worker for {run.info.name} could not start: {note}")
                return
            self._spawn(w)
            return
        if w.jobs:
            _, _, task, *_ = w.jobs.popleft()
            what = (f"no answer within {self.timeout:g} s (the case hung); the worker was killed"
                    if verdict == "timeout" else note)
            self._write(run, self._parent_record(run, task, verdict, what + "; the remaining cases "
                                                 "ran in a fresh worker"))
            run.pending.extendleft(reversed([(tid, t) for _, tid, t, *_ in w.jobs]))
            w.jobs.clear()
        if run.pending:
            self._spawn(w)
        else:
            run.workers.remove(w)
            run.cpu_s += w.cpu_s

    def _dispatch(self, run: BackendRun, w: Worker) -> None:
        sizes = getattr(w, "job_bytes", {})
        w.job_bytes = sizes = {job[0]: sizes.get(job[0], 0) for job in w.jobs}  # seq -> request bytes
        # A helper takes from the other end: consecutive tasks share shapes, and so the
        # executables a compiling backend builds (and caches) for them, once per worker.
        take = run.pending.popleft if not run.workers or w is run.workers[0] else run.pending.pop
        while run.pending and len(w.jobs) < DEPTH and (not w.jobs or sum(sizes.values()) < DEPTH_BYTES):
            task_id, task = take()
            inputs = self.cache.inputs(task.case, task.dtype)
            exact, _ = self.cache.result(task)
            header, arrays = request_for(task.op, inputs)
            seq = w.submit("call", header, arrays)
            sizes[seq] = sum(int(getattr(a, "nbytes", 0)) for a in arrays)
            w.jobs.append((seq, task_id, task, inputs, exact))

    def _on_message(self, w: Worker, seq: int, item) -> None:
        run = w.run
        if w not in run.workers:
            return
        if isinstance(item, WorkerLost):
            if w.ready and (not w.jobs or seq != w.jobs[0][0]):
                return  # a stale report of a killed generation
            self._lost_worker(run, w, "crash", item.note)
            return
        if not w.ready:
            if seq != getattr(w, "init_seq", None):
                return
            try:
                info = w._accept_ready(item)
            except WorkerRefused as refused:
                self._fail_rest(run, "error", str(refused))
                return
            except WorkerLost as lost:
                self._lost_worker(run, w, "crash", lost.note)
                return
            w.ready = True
            run.startup_failures = 0
            if info.dtypes != run.info.dtypes or info.ops != run.info.ops:
                run.info = _merge(run.info, info)
            return
        if not w.jobs or seq != w.jobs[0][0]:
            return
        job = w.jobs.popleft()
        _, task_id, task, inputs, exact = job[:5]
        original = job[5] if len(job) > 5 else None   # a probe's: the NotImplementedError it tests
        case = self.cases[task.case]
        if item.kind == "error":
            raised = item.header.get("raised") or {}
            rec = self._parent_record(run, task, "error", f"the worker could not run the call: "
                                      f"{raised.get('type', '?')}: {raised.get('message', '')}")
            self._write(run, rec)
            return
        try:
            result = CallResult.from_reply(item.header, item.arrays, item.wall_s)
        except ProtocolError as exc:
            w.jobs.appendleft((seq, task_id, task, inputs, exact))
            self._lost_worker(run, w, "crash", f"protocol violation: {exc}")
            return
        # A NotImplementedError of a declared op and dtype is "unsupported" only when the backend
        # refuses its whole group (judge.unsupported_group) in this run and fresh values of the
        # case too (judge.probe_inputs); refused in the group's meantime, it waits in deferred.
        group = (run.info.name, unsupported_group(task.op, inputs))
        if result.status == "output":
            self.answered.add(group)
            for held in self.deferred.pop(group, []):
                self._write(run, unsupported_for_values(*held, **self._common(run, self.cases[held[1].case]),
                                                        answered="other"))
        if original is not None:   # the answer to a probe
            if result.status == "output":
                self._write(run, unsupported_for_values(task.op, inputs, original, **self._common(run, case)))
                return
            result = original
            if group in self.answered:
                self._write(run, unsupported_for_values(task.op, inputs, result, **self._common(run, case),
                                                        answered="other"))
            else:
                self.deferred.setdefault(group, []).append((task.op, inputs, result))
            return
        # (The run-seeded case is judged at once: refusing it is an error of its own, judge.refused_fresh.)
        if result.status == "unsupported" and not case.expect_error and getattr(inputs, "seed", None) is None:
            if group in self.answered:
                self._write(run, unsupported_for_values(task.op, inputs, result, **self._common(run, case),
                                                        answered="other"))
                return
            probe = probe_inputs(inputs)
            if probe is not None:
                header, arrays = request_for(task.op, probe)
                w.jobs.append((w.submit("call", header, arrays), task_id, task, inputs, exact, result))
                return
            self.deferred.setdefault(group, []).append((task.op, inputs, result))
            return
        try:
            rec = judge(task.op, inputs, exact, result, expect_error=case.expect_error,
                        conventions=run.info.conventions, **self._common(run, case))
        except Exception as exc:  # noqa: BLE001 - a bug of the judge, not of the backend
            rec = self._parent_record(run, task, "error", f"softmaxbench could not judge this case "
                                      f"(a suite bug): {type(exc).__name__}: {exc}")
        self._write(run, rec)

    def _check_silence(self, run: BackendRun, w: Worker, now: float) -> None:
        if w.ready and w.jobs and now - w.last_heard > self.timeout:
            self._lost_worker(run, w, "timeout", "")
        elif not w.ready and now - w.spawned_at > max(STARTUP_LIMIT_S, self.timeout):
            run.startup_failures = 1
            self._lost_worker(run, w, "timeout", f"loading the backend took over "
                                                 f"{max(STARTUP_LIMIT_S, self.timeout):g} s")

    def _help_the_slowest(self, active: list[BackendRun]) -> None:
        """When backends finished and worker slots are free, give the backend with the most work
        left another worker: the run ends with the slowest backend, not with an idle core."""
        live = sum(len(r.workers) for r in active)
        if live >= min(self.jobs, os.cpu_count() or 1) or not active:
            return
        run = max(active, key=lambda r: len(r.pending))
        if (len(run.pending) >= HELP_MIN_TASKS * len(run.workers) and run.startup_failures == 0
                and all(w.ready for w in run.workers)):
            self._new_worker(run)

    def _next_messages(self, timeout: float) -> list:
        items = []
        try:
            items.append(self.inbox.get(timeout=timeout))
            while True:
                items.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        return items

    def execute(self) -> None:
        """Run every backend's tasks to the end (KeyboardInterrupt: workers are killed first)."""
        waiting = deque(self.runs)
        active: list[BackendRun] = []
        try:
            while waiting or active:
                while waiting and sum(len(r.workers) for r in active) < self.jobs:
                    run = waiting.popleft()
                    run.started = time.monotonic()
                    self.display.start(run.info.name, run.total)
                    self._unsupported_first(run)
                    if run.pending:
                        self._new_worker(run)
                        active.append(run)
                    else:
                        self._finish(run)
                if not waiting:
                    self._help_the_slowest(active)
                for run in active:
                    for w in run.workers:
                        if w.ready and run.pending and len(w.jobs) < DEPTH:
                            self._dispatch(run, w)
                for w, seq, _, item in self._next_messages(0.25):
                    self._on_message(w, seq, item)
                    if w.ready and w in w.run.workers and w.run.pending and len(w.jobs) < DEPTH:
                        self._dispatch(w.run, w)
                now = time.monotonic()
                for run in list(active):
                    for w in list(run.workers):
                        if w in run.workers:
                            self._check_silence(run, w, now)
                    if not run.busy():
                        self._finish(run)
                        active.remove(run)
        finally:
            for run in active:
                for w in run.workers:
                    w.kill()
                self._flush_deferred(run)   # (interrupted: the refusals so far keep their records)


def _merge(planned: BackendInfo, fresh: BackendInfo) -> BackendInfo:
    """The worker's own description wins over a cached one (its ops and dtypes may have changed)."""
    from dataclasses import replace

    return replace(planned, dtypes=fresh.dtypes, ops=fresh.ops, conventions=fresh.conventions)


def safe_file_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


__all__ = ["CheckRun", "BackendRun", "found_by"]
