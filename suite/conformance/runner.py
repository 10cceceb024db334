"""``softmaxbench check``: run the conformance checks of many backends, crash-proof, and record them.

Each selected backend runs in its own worker process (:mod:`softmaxbench.suite.isolation.worker`); the
parent computes every reference result once (:class:`~softmaxbench.suite.conformance.api.ReferenceCache`),
ships it with batches of tasks to the workers, writes each record to ``DIR/results.jsonl`` the
moment it arrives, and turns a worker that dies or goes silent into one ``crash`` / ``timeout``
record before starting a fresh worker for the rest. ``--resume DIR`` finishes an interrupted run
without redoing what it recorded. The exit code is the conformance gate: 0 when every selected
backend conforms (no fail, error, crash or timeout; no deviation either under ``--strict``),
1 otherwise, 2 for bad input.

>>> import tempfile
>>> out = tempfile.mkdtemp()
>>> run_check(out, backends=["numpy"], ops=["softmax"], dtypes=["float32"],   # doctest: +SKIP
...           cases=["dist_normal_scale_1"], display="none")
0
"""

from __future__ import annotations

import os
import resource
import shlex
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from softmaxbench.suite.conformance.api import (
    ReferenceCache,
    Task,
    check_one,
    found_by,
    plan,
    select_cases,
    supports,
)
from softmaxbench.suite.conformance.summary import (  # noqa: F401 - summarize, summary_table: re-exported
    SUMMARY_COLUMNS,
    conclude,
    require_checks,
    summarize,
    summary_table,
)
from softmaxbench.suite.isolation.threads import thread_env
from softmaxbench.suite.isolation.worker import WorkerHandle
from softmaxbench.suite.records import (
    FAILING,
    RESULTS_FILE,
    ResultsWriter,
    new_record,
    new_run,
    now_iso,
    read_results,
    read_run,
    write_run,
)

#: Tasks per worker round-trip, and the most reference bytes one batch carries.
BATCH_TASKS = 24
BATCH_BYTES = 64 * 2**20
#: A backend gets another worker (when a slot is free) only with this many tasks left per worker.
HELP_MIN_TASKS = 4 * BATCH_TASKS
#: How long a worker may take to import its framework and build the backend.
STARTUP_LIMIT_S = 180.0


def _input_error(message: str):
    from softmaxbench.errors import InputError

    return InputError(message)


# -- selection ----------------------------------------------------------------------------------
@dataclass
class Selection:
    """What a check run covers; stored in run.json so --resume can finish the same run."""

    backends: list[str] | None = None
    ops: list[str] | None = None
    dtypes: list[str] | None = None
    cases: list[str] | None = None
    plugins: list[str] = field(default_factory=list)
    quick: bool = False

    def as_dict(self) -> dict:
        return {"backends": self.backends, "ops": self.ops, "dtypes": self.dtypes, "cases": self.cases,
                "plugins": self.plugins, "quick": self.quick}


def validate_names(ops: Sequence[str] | None, dtypes: Sequence[str] | None,
                   cases: Sequence[str] | None, quick: bool) -> list:
    """Check op, dtype and case names (InputError, exit 2, on an unknown one); return the cases."""
    import difflib

    from softmaxbench.backends.base import OPS
    from softmaxbench.reference.dtypes import DTYPES

    for kind, given, known in (("op", ops, OPS), ("dtype", dtypes, DTYPES)):
        for name in given or ():
            if name not in known:
                close = difflib.get_close_matches(name, known, n=3)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise _input_error(f"unknown {kind} {name!r}; {hint}choose from {', '.join(known)}")
    try:
        case_objs = select_cases(cases, quick)
    except KeyError as exc:
        raise _input_error(str(exc.args[0]) if exc.args else str(exc)) from None
    return case_objs


def resolve_backends(names: Sequence[str] | None, plugins: Sequence[str]) -> tuple[list, dict[str, str]]:
    """The backend instances to check and {name: why} of the unavailable ones left out.

    Explicitly requested names must exist and be available here (else InputError); without
    ``names`` every available backend is taken, except those that declare ``default_check_skip``.
    """
    import difflib

    from softmaxbench.backends.registry import availability, discover

    # check=False: asking every backend whether it can run imports every framework; only the
    # ones that will run are asked.
    entries = discover(plugins=tuple(plugins), check=False)
    by_name = {e.name: e for e in entries}

    def why_not(entry) -> str | None:
        return entry.unavailable or ("could not be loaded" if entry.backend is None
                                     else availability(entry.backend))

    if not names:
        chosen, skipped = [], {}
        for e in entries:
            reason = why_not(e) or getattr(e.backend, "default_check_skip", None)
            if reason:
                skipped[e.name] = reason
            else:
                chosen.append(e.backend)
        if not chosen:
            raise _input_error("no backend is available here; see 'softmaxbench list'")
        return chosen, skipped
    chosen = []
    for name in names:
        entry = by_name.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(by_name), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            broken = [e.unavailable for e in entries if e.backend is None and e.origin.startswith("plugin")]
            why = f" ({'; '.join(broken)})" if broken else ""
            raise _input_error(f"unknown backend {name!r}{why}; {hint}see 'softmaxbench list'")
        reason = why_not(entry)
        if reason:
            raise _input_error(f"backend {name!r} is unavailable here: {reason}")
        if entry.backend not in chosen:
            chosen.append(entry.backend)
    return chosen, {}


# -- progress display ---------------------------------------------------------------------------
class PlainDisplay:
    """Line output for CI logs and pipes: each problem as it happens, each backend when done."""

    MAX_PROBLEM_LINES = 25

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.problems: Counter = Counter()

    def note(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, backend: str, total: int) -> None:
        self.note(f"{backend}: {total} checks")

    def advance(self, backend: str, rec: dict) -> None:
        if rec["verdict"] in FAILING:
            self.problems[backend] += 1
            if self.problems[backend] <= self.MAX_PROBLEM_LINES:
                self.note(f"  {rec['verdict'].upper():8} {backend} {rec['op']} {rec.get('case')} "
                          f"{rec['dtype']}: {_short(rec.get('message'))}")
            elif self.problems[backend] == self.MAX_PROBLEM_LINES + 1:
                self.note(f"  ... more problems of {backend} in {RESULTS_FILE}")

    def finish(self, backend: str, counts: Counter, seconds: float) -> None:
        parts = ", ".join(f"{counts[v]} {v}" for v in SUMMARY_COLUMNS if counts[v])
        self.note(f"{backend}: done in {seconds:.1f} s ({parts or 'nothing to do'})")

    def close(self) -> None:
        pass


class RichDisplay(PlainDisplay):
    """A live progress bar per backend on a terminal (rich), problems printed above the bars."""

    def __init__(self):
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=False)
        self.progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                 console=self.console, transient=False)
        self.tasks: dict[str, int] = {}
        self.counts: dict[str, Counter] = {}
        self.progress.start()

    def note(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def start(self, backend: str, total: int) -> None:
        self.counts[backend] = Counter()
        self.tasks[backend] = self.progress.add_task(backend, total=total, status="")

    def advance(self, backend: str, rec: dict) -> None:
        super().advance(backend, rec)
        c = self.counts.setdefault(backend, Counter())
        c[rec["verdict"]] += 1
        status = " ".join(f"{v}:{c[v]}" for v in ("fail", "error", "crash", "timeout", "deviation") if c[v])
        if backend in self.tasks:
            self.progress.update(self.tasks[backend], advance=1, status=status)

    def finish(self, backend: str, counts: Counter, seconds: float) -> None:
        if backend in self.tasks:
            task = self.progress.tasks[self.tasks[backend]]
            self.progress.update(self.tasks[backend], completed=task.total)

    def close(self) -> None:
        self.progress.stop()


class SilentDisplay(PlainDisplay):
    def note(self, text: str) -> None:
        pass


def make_display(kind: str = "auto") -> PlainDisplay:
    """'auto': a rich progress bar on a terminal, plain lines otherwise (CI); 'plain'; 'none'."""
    if kind == "none":
        return SilentDisplay()
    if kind == "rich" or (kind == "auto" and sys.stdout.isatty() and not os.environ.get("CI")):
        return RichDisplay()
    return PlainDisplay()


def _short(text: str | None, width: int = 160) -> str:
    line = (text or "").replace("\n", " ")
    return line if len(line) <= width else line[: width - 3] + "..."


# -- the scheduler -------------------------------------------------------------------------------
@dataclass
class _BackendRun:
    backend: object
    pending: deque                      # (task_id, Task) or prepared tuples, in order
    total: int
    handles: list = field(default_factory=list)  # live WorkerHandles (several when cores are free)
    counts: Counter = field(default_factory=Counter)
    started: float = 0.0
    startup_failures: int = 0
    done: bool = False

    def busy(self) -> bool:
        return bool(self.pending) or any(h.inflight for h in self.handles)


class CheckRun:
    """The parent side of a check run: workers, reference cache, records, display."""

    def __init__(self, out_dir: Path, backends: list, tasks: list[Task], case_objs: list, *,
                 plugins: Sequence[str], timeout: float, jobs: int, done: set, writer: ResultsWriter,
                 display: PlainDisplay, threads: int, machine: str | None = None):
        self.out_dir = out_dir
        self.machine = machine
        self.cases = {c.name: c for c in case_objs}
        self.plugins = tuple(plugins)
        self.timeout = timeout
        self.jobs = jobs
        self.writer = writer
        self.display = display
        self.cache = ReferenceCache()
        self.threads = threads
        self.runs: list[_BackendRun] = []
        for b in backends:
            todo = [t for t in tasks if (b.name, t.op, t.case, t.dtype) not in done]
            self.runs.append(_BackendRun(b, deque(enumerate(todo)), len(todo)))
        self.logs = out_dir / "logs"

    # records
    def _write(self, run: _BackendRun, rec: dict) -> None:
        if self.machine:
            rec.setdefault("machine", self.machine)  # so merged results from a CI matrix stay apart
        self.writer.write(rec)
        run.counts[rec["verdict"]] += 1
        self.display.advance(run.backend.name, rec)

    def _parent_record(self, run: _BackendRun, task: Task, verdict: str, message: str) -> dict:
        """A record the parent writes for a task whose worker crashed or hung."""
        from softmaxbench.suite.conformance.repro import snippet

        case = self.cases[task.case]
        inputs = self.cache.inputs(task.case, task.dtype)
        try:
            repro = snippet(run.backend.name, task.op, inputs, self.plugins)
        except Exception as exc:  # noqa: BLE001
            repro = f"# repro unavailable: {exc}"
        return new_record("check", backend=run.backend.name, device=run.backend.device, op=task.op,
                          case=task.case, category=case.category, dtype=task.dtype,
                          shape=[int(n) for n in inputs.x.shape], axis=int(inputs.axis), check=None,
                          verdict=verdict, deviation=None, max_ulp=None, median_ulp=None,
                          max_error_ratio=None, message=message, repro=repro, found_by=found_by(task.case),
                          value_sample=None, duration_s=None)

    # task preparation
    def _unsupported_first(self, run: _BackendRun) -> None:
        """Write the records of tasks the backend does not declare, without a worker round-trip."""
        keep = deque()
        for item in run.pending:
            task = item[1]
            if supports(run.backend, task):
                keep.append(item)
                continue
            case = self.cases[task.case]
            rec = check_one(run.backend, task.op, self.cache.inputs(task.case, task.dtype), None,
                            category=case.category, plugins=self.plugins)
            self._write(run, rec)
        run.pending = keep

    def _prepare(self, item) -> tuple:
        if len(item) > 2:
            return item
        task_id, task = item
        exact, why = self.cache.result(task)
        return (task_id, task.case, task.dtype, task.op, exact, why, task)

    def _dispatch(self, run: _BackendRun, h: WorkerHandle) -> None:
        batch, size = [], 0
        while run.pending and len(batch) < BATCH_TASKS and size < BATCH_BYTES:
            item = self._prepare(run.pending.popleft())
            batch.append(item)
            size += item[4].nbytes if item[4] is not None else 0
        if batch:
            h.send_tasks(batch)

    # worker life cycle
    def _new_worker(self, run: _BackendRun) -> WorkerHandle:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = thread_env(self.threads)
        env.update(jit_cache_env())
        suffix = f"-{len(run.handles)}" if run.handles else ""
        h = WorkerHandle(run.backend.name, plugins=self.plugins, env=env,
                         log_path=self.logs / f"{_safe(run.backend.name)}{suffix}.log")
        run.handles.append(h)
        h.start()
        return h

    def _finish(self, run: _BackendRun) -> None:
        for h in run.handles:
            h.stop()
        run.handles.clear()
        run.done = True
        self.display.finish(run.backend.name, run.counts, time.monotonic() - run.started)

    def _fail_rest(self, run: _BackendRun, verdict: str, message: str) -> None:
        items = [item for h in run.handles for item in h.inflight] + list(run.pending)
        run.pending.clear()
        for h in run.handles:
            h.inflight.clear()
            h.kill()
        run.handles.clear()
        for item in items:
            task = item[-1] if len(item) > 2 else item[1]
            self._write(run, self._parent_record(run, task, verdict, message))

    def _lost_worker(self, run: _BackendRun, h: WorkerHandle, verdict: str, note: str) -> None:
        """A worker died or hung: the task it was on gets ``verdict``, its others are requeued."""
        if not h.ready:
            run.startup_failures += 1
            h.kill()
            if run.startup_failures >= 2:
                self._fail_rest(run, verdict, f"the worker for {run.backend.name} could not start: {note}")
                return
            h.start()
            return
        h.kill()
        if h.inflight:
            item = h.inflight.popleft()
            what = (f"no answer within {self.timeout:g} s (the case hung); the worker was killed"
                    if verdict == "timeout" else note)
            self._write(run, self._parent_record(run, item[-1], verdict, what + "; the remaining cases "
                                                 "ran in a fresh worker"))
            run.pending.extendleft(reversed(h.inflight))
            h.inflight.clear()
        if run.pending:
            h.start()
        else:
            run.handles.remove(h)

    def _handle_messages(self, run: _BackendRun, h: WorkerHandle) -> None:
        dead = not h.alive()  # before draining: a dead worker's last messages are all buffered then
        eof = False
        for msg in h.poll_messages():
            kind = msg[0]
            if kind == "result":
                _, task_id, rec, t = msg
                if h.inflight and h.inflight[0][0] == task_id:
                    h.inflight.popleft()
                h.last_heard = max(h.last_heard, t)
                self._write(run, rec)
            elif kind == "got":
                h.last_heard = max(h.last_heard, msg[2])
            elif kind == "ready":
                h.ready, h.info = True, msg[1]
                h.last_heard = time.monotonic()
                run.startup_failures = 0
            elif kind == "dead":
                self._fail_rest(run, "error", msg[1])
                return
            elif kind == "eof":
                eof = True
        if eof or dead:
            self._lost_worker(run, h, "crash", h.death_note("while running this case" if h.ready
                                                            else "while loading the backend"))

    def _check_silence(self, run: _BackendRun, h: WorkerHandle, now: float) -> None:
        if h.ready and h.inflight and now - h.last_heard > self.timeout:
            self._lost_worker(run, h, "timeout", "")
        elif not h.ready and now - h.last_heard > max(STARTUP_LIMIT_S, self.timeout):
            run.startup_failures = 1
            self._lost_worker(run, h, "timeout", f"loading the backend took over "
                                                 f"{max(STARTUP_LIMIT_S, self.timeout):g} s")

    def _help_the_slowest(self, active: list[_BackendRun]) -> None:
        """When backends finished and worker slots are free, give the backend with the most work
        left another worker: the run ends with the slowest backend, not with an idle core."""
        live = sum(len(r.handles) for r in active)
        if live >= min(self.jobs, os.cpu_count() or 1) or not active:
            return
        run = max(active, key=lambda r: len(r.pending))
        if (len(run.pending) >= HELP_MIN_TASKS * len(run.handles) and run.startup_failures == 0
                and all(h.ready for h in run.handles)):
            self._new_worker(run)

    def execute(self) -> None:
        """Run every backend's tasks to the end (KeyboardInterrupt: workers are killed first)."""
        waiting = deque(self.runs)
        active: list[_BackendRun] = []
        try:
            while waiting or active:
                while waiting and sum(len(r.handles) for r in active) < self.jobs:
                    run = waiting.popleft()
                    run.started = time.monotonic()
                    self.display.start(run.backend.name, run.total)
                    self._unsupported_first(run)
                    if run.pending:
                        self._new_worker(run)
                        active.append(run)
                    else:
                        self._finish(run)
                if not waiting:
                    self._help_the_slowest(active)
                for run in active:
                    for h in run.handles:
                        if h.ready and run.pending and len(h.inflight) <= BATCH_TASKS // 2:
                            self._dispatch(run, h)
                handles = [h for r in active for h in r.handles]
                wait([h.conn for h in handles if h.conn is not None]
                     + [h.proc.sentinel for h in handles if h.proc is not None], timeout=0.25)
                now = time.monotonic()
                for run in list(active):
                    for h in list(run.handles):
                        if h not in run.handles:  # a _fail_rest above took it away
                            continue
                        if h.conn is not None:
                            self._handle_messages(run, h)
                        if h in run.handles and h.alive():
                            self._check_silence(run, h, now)
                    if not run.busy():
                        self._finish(run)
                        active.remove(run)
        finally:
            for run in active:
                for h in run.handles:
                    h.kill()


def jit_cache_env() -> dict[str, str]:
    """Environment for workers: JAX's persistent compilation cache, so a second run does not
    compile every (op, shape, dtype) again (a first full run spends most of its time there).
    Applied only where the user has not set these; SOFTMAXBENCH_NO_JIT_CACHE=1 turns it off."""
    if os.environ.get("SOFTMAXBENCH_NO_JIT_CACHE"):
        return {}
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "softmaxbench"
    return {"JAX_COMPILATION_CACHE_DIR": str(base / "jax"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# -- the verb -------------------------------------------------------------------------------------
def run_check(out_dir: str | os.PathLike, backends: Sequence[str] | None = None,
              ops: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
              cases: Sequence[str] | None = None, plugins: Sequence[str] = (), quick: bool = False,
              timeout: float = 60.0, resume: bool = False, strict: bool = False,
              junit_xml: str | os.PathLike | None = None, seed: int = 0, jobs: int | None = None,
              command: str | None = None, display: str = "auto", baseline: str | os.PathLike | None = None,
              known_failures: str | os.PathLike | Sequence[str] | None = None) -> int:
    """Check backends; write DIR/results.jsonl and DIR/run.json; return the exit code (0 or 1).

    ``known_failures`` (files, or ``"builtin"``) and ``baseline`` (a previous results directory)
    say which failures are known: then only a new one fails (:mod:`.known`, :mod:`.summary`).

    Bad input raises ``softmaxbench.suite.cli.InputError`` (exit 2). With ``resume``, the
    selection is read from DIR/run.json and what DIR/results.jsonl holds is not redone.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise _input_error(f"--out {out}: exists and is not a directory")
    if timeout is None or not timeout > 0:
        raise _input_error(f"--timeout must be a positive number of seconds, got {timeout!r}")
    if jobs is not None and jobs < 1:
        raise _input_error(f"--jobs must be at least 1, got {jobs}")
    from softmaxbench.suite.conformance import known as known_mod

    done: set = set()
    if resume:
        run_meta, sel, done = _load_resume(out)
        if not known_failures and not baseline:  # finish the run with what it started with
            known_failures, baseline = run_meta.get("known_from", {}).get("known_failures"), \
                run_meta.get("known_from", {}).get("baseline")
    else:
        sel = Selection(list(backends) if backends else None, list(ops) if ops else None,
                        list(dtypes) if dtypes else None, list(cases) if cases else None,
                        [str(p) for p in plugins], bool(quick))
        run_meta = None
    known = known_mod.load(known_failures, baseline)  # a bad file stops the run before any work
    case_objs = validate_names(sel.ops, sel.dtypes, sel.cases, sel.quick)
    chosen, skipped = resolve_backends(sel.backends, sel.plugins)
    tasks = plan(case_objs, sel.ops, sel.dtypes)
    if not tasks:
        raise _input_error("the selection has no checks: no selected case applies to the selected "
                           "ops and dtypes (see 'softmaxbench cases')")
    chosen, nothing_to_do = require_checks(chosen, tasks, explicit=bool(sel.backends))
    skipped.update(nothing_to_do)
    cores = os.cpu_count() or 1
    jobs = jobs or min(len(chosen), max(4, cores))
    threads = max(1, cores // min(jobs, len(chosen)))
    command = command or shlex.join([Path(sys.argv[0]).name or "softmaxbench", *sys.argv[1:]])

    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        # A fresh run replaces the previous one's records and worker logs (never appends to them).
        for stale in [out / RESULTS_FILE, *(out / "logs").glob("*.log")]:
            stale.unlink(missing_ok=True)
        run_meta = new_run("check", command, seed=seed, threads=threads)
        run_meta["options"] = sel.as_dict()
    run_meta["status"] = "running"
    run_meta["known_failures"] = known.sources if known else []
    run_meta["known_from"] = {"known_failures": [str(k) for k in ([known_failures] if isinstance(
        known_failures, (str, os.PathLike)) else known_failures or [])],
        "baseline": str(baseline) if baseline else None}
    run_meta["timeout_s"] = timeout
    run_meta["backends"] = {b.name: {"device": b.device, "framework": getattr(b, "framework", ""),
                                     "version": _version(b), "dtypes": list(b.dtypes),
                                     "ops": list(b.supported_ops())} for b in chosen}
    run_meta["unavailable"] = skipped
    run_meta.setdefault("resumed", [])
    if resume:
        run_meta["resumed"].append({"at": now_iso(), "command": command, "already_recorded": len(done)})
    write_run(out, run_meta)

    disp = make_display(display)
    if skipped:
        disp.note("not checked: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    t0 = time.monotonic()
    interrupted = False
    with ResultsWriter(out) as writer:
        runner = CheckRun(out, chosen, tasks, case_objs, plugins=sel.plugins, timeout=timeout, jobs=jobs,
                          done=done, writer=writer, display=disp, threads=threads,
                          machine=run_meta.get("machine", {}).get("label"))
        try:
            runner.execute()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            disp.close()
    elapsed = time.monotonic() - t0

    records = read_results(out)
    names = [b.name for b in chosen]
    from softmaxbench.errors import InputError

    try:
        conclusion = conclude(records, names, strict=strict, known=known, out_dir=out,
                              interrupted=interrupted)
    except InputError:  # nothing was checked: exit 2, and run.json says so
        run_meta.update(finished=now_iso(), status="interrupted" if interrupted else "complete", exit_code=2)
        write_run(out, run_meta)
        raise
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    run_meta.update(finished=now_iso(), status="interrupted" if interrupted else "complete",
                    duration_s=round(elapsed, 3), references_computed=runner.cache.computed,
                    cpu_s={"parent": round(me.ru_utime + me.ru_stime, 1),
                           "workers": round(kids.ru_utime + kids.ru_stime, 1)},
                    summary=conclusion.run_summary())
    conforms = conclusion.exit_code == 0
    run_meta["exit_code"] = 130 if interrupted else (0 if conforms else 1)
    write_run(out, run_meta)
    if junit_xml:
        from softmaxbench.suite.conformance.junit import write_junit

        write_junit([r for r in records if r.get("backend") in names], junit_xml, strict=strict)

    if display != "none":
        print(conclusion.text())
        print(f"{len(records)} records in {out / RESULTS_FILE} ({elapsed:.1f} s)")
    if interrupted:
        print(f"interrupted; finish with: softmaxbench check --resume {out}", file=sys.stderr)
        return 130
    return 0 if conforms else 1


def _version(backend) -> str:
    try:
        return backend.framework_version()
    except Exception:  # noqa: BLE001 - a version lookup never stops a run
        return ""


def _load_resume(out: Path) -> tuple[dict, Selection, set]:
    """run.json, its selection, and the (backend, op, case, dtype) keys already recorded."""
    from softmaxbench.suite.records import RecordError

    if not out.is_dir():
        raise _input_error(f"--resume {out}: no such directory")
    try:
        run_meta = read_run(out)
    except RecordError as exc:
        raise _input_error(f"--resume {out}: {exc}") from None
    if not run_meta or run_meta.get("kind") != "check" or "options" not in run_meta:
        raise _input_error(f"--resume {out}: no run.json of a 'softmaxbench check' run there")
    opts = run_meta["options"]
    sel = Selection(opts.get("backends"), opts.get("ops"), opts.get("dtypes"), opts.get("cases"),
                    list(opts.get("plugins") or []), bool(opts.get("quick")))
    path = out / RESULTS_FILE
    done: set = set()
    if path.exists():
        _drop_cut_line(path)
        try:
            records = read_results(path)
        except RecordError as exc:
            raise _input_error(f"--resume {out}: {exc}") from None
        done = {(r.get("backend"), r.get("op"), r.get("case"), r.get("dtype")) for r in records
                if r.get("kind") == "check"}
    return run_meta, sel, done


def _drop_cut_line(path: Path) -> None:
    """A run killed mid-write can leave a partial last line: cut it so appends start clean."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def check_main(backends: str | None = None, ops: str | None = None, dtypes: str | None = None,
               cases: str | None = None, plugins: tuple[str, ...] = (), quick: bool = False,
               out: str = "softmaxbench-results/check", timeout: float = 60.0, resume: str | None = None,
               strict: bool = False, junit_xml: str | None = None, seed: int = 0,
               jobs: int | None = None, baseline: str | None = None,
               known_failures: tuple[str, ...] = ()) -> int:
    """The ``check`` verb: CLI options (comma-separated strings) -> :func:`run_check`."""
    from softmaxbench.suite.cli.options import split_csv

    for p in plugins:
        if p.endswith(".py") and not Path(p).is_file():
            raise _input_error(f"--plugin {p}: no such file")
    if resume:
        given = [n for n, v in (("--backends", backends), ("--ops", ops), ("--dtypes", dtypes),
                                ("--cases", cases), ("--plugin", plugins), ("--quick", quick)) if v]
        if given:
            raise _input_error(f"--resume finishes the run recorded in {resume}/run.json; "
                               f"do not combine it with {', '.join(given)}")
    return run_check(resume or out, backends=split_csv(backends), ops=split_csv(ops),
                     dtypes=split_csv(dtypes), cases=split_csv(cases), plugins=plugins, quick=quick,
                     timeout=timeout, resume=bool(resume), strict=strict, junit_xml=junit_xml, seed=seed,
                     jobs=jobs, baseline=baseline, known_failures=known_failures)
