"""``softmaxbench check``'s engine: select, plan, run the workers, record, gate.

The trusted process (this one) resolves the selection from discovery data
(:mod:`softmaxbench.suite.selection`), plans the (case, dtype, op) tasks, and hands them to the
scheduler (:mod:`softmaxbench.suite.isolation.scheduler`), which runs each backend in worker
processes and judges every answer here. It alone writes ``DIR/results.jsonl`` (each record the
moment it is judged) and ``DIR/run.json``, under an exclusive lock on ``DIR/.lock`` (a second run
on the same ``--out`` is refused, exit 2). ``--resume DIR`` finishes an interrupted run without
redoing what it recorded, and runs a ``--plugin`` recorded there only when the user names it
again. Exit code: 0 when every selected backend conforms (no fail, error, crash or timeout; no
deviation either under ``--strict``) and results were written, 1 otherwise, 2 for bad input,
130 after Ctrl-C and 143 after SIGTERM (records kept, run.json says "interrupted").

Every run has a seed: ``--seed N``, else a random 63-bit one, recorded in run.json (``seed``) and
reused by ``--resume``. The fresh cases (``fresh_normal``) are built from it, not from their
name, so a backend that recognises the public catalogue's inputs cannot recognise them; each of
their records says the seed, and its repro rebuilds the same bytes. What this closes is
recognising inputs by their content; it does not hide the harness: a plugin may read (not write)
the user's files, run.json among them, and a given ``--seed`` is public by definition.

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
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from softmaxbench.errors import InputError
from softmaxbench.suite.conformance.api import bind_cases, plan, run_seed
from softmaxbench.suite.conformance.summary import (  # noqa: F401 - summarize, summary_table: re-exported
    SUMMARY_COLUMNS,
    conclude,
    require_checks,
    summarize,
    summary_table,
)
from softmaxbench.suite.isolation.display import make_display
from softmaxbench.suite.isolation.scheduler import CheckRun
from softmaxbench.suite.records import (
    RESULTS_FILE,
    OutLock,
    ResultsWriter,
    new_run,
    now_iso,
    read_results,
    read_run,
    write_run,
)
from softmaxbench.suite.selection import plugin_paths, select_backends, validate_names  # noqa: F401 - re-exported

__all__ = ["run_check", "summarize", "summary_table", "Selection", "SUMMARY_COLUMNS", "jit_cache_env"]


def _input_error(message: str):
    return InputError(message)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (records kept, run.json says interrupted), exit 143."""


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


def jit_cache_env() -> dict[str, str]:
    """Environment for workers: JAX's persistent compilation cache, so a second run does not
    compile every (op, shape, dtype) again (a first full run spends most of its time there), and
    the jax backends' own cache of whole executables (``jax-exec``: a second run neither traces
    nor lowers; see ``softmaxbench.backends.jax_backend.ExecutableCache``). Both live in
    ``$XDG_CACHE_HOME/softmaxbench/`` (``~/.cache/softmaxbench/``). Applied only where the user
    has not set these; SOFTMAXBENCH_NO_JIT_CACHE=1 turns both off."""
    if os.environ.get("SOFTMAXBENCH_NO_JIT_CACHE"):
        return {}
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "softmaxbench"
    return {"SOFTMAXBENCH_JAX_EXECUTABLES": str(base / "jax-exec"),
            "JAX_COMPILATION_CACHE_DIR": str(base / "jax"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}



# -- the verb -------------------------------------------------------------------------------------
def run_check(out_dir: str | os.PathLike, backends: Sequence[str] | None = None,
              ops: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
              cases: Sequence[str] | None = None, plugins: Sequence[str] = (), quick: bool = False,
              timeout: float = 60.0, resume: bool = False, strict: bool = False,
              junit_xml: str | os.PathLike | None = None, seed: int | None = None, jobs: int | None = None,
              command: str | None = None, display: str = "auto", baseline: str | os.PathLike | None = None,
              known_failures: str | os.PathLike | Sequence[str] | None = None) -> int:
    """Check backends; write DIR/results.jsonl and DIR/run.json; return the exit code.

    ``known_failures`` (files, or ``"builtin"``) and ``baseline`` (a previous results directory)
    say which failures are known: then only a new one fails (:mod:`.known`, :mod:`.summary`).
    ``seed`` seeds the fresh cases (None: a random one); run.json records it.

    Bad input raises :class:`softmaxbench.errors.InputError` (exit 2). With ``resume``, the
    selection is read from DIR/run.json and what DIR/results.jsonl holds is not redone; a plugin
    recorded there runs only when it is also in ``plugins`` (named again by the user).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise _input_error(f"--out {out}: exists and is not a directory")
    if timeout is None or not timeout > 0:
        raise _input_error(f"--timeout must be a positive number of seconds, got {timeout!r}")
    if jobs is not None and jobs < 1:
        raise _input_error(f"--jobs must be at least 1, got {jobs}")
    plugins = list(plugin_paths(plugins))
    if seed is not None:
        seed = run_seed(seed)  # a bad seed is bad input (exit 2), before anything is written
    if resume and not out.is_dir():
        raise _input_error(f"--resume {out}: no such directory")
    from softmaxbench.suite.conformance import known as known_mod

    # A bad known-failures file or baseline stops the run before anything is written.
    known = None if resume else known_mod.load(known_failures, baseline)
    out.mkdir(parents=True, exist_ok=True)
    with OutLock(out):
        return _run_locked(out, backends, ops, dtypes, cases, plugins, quick, timeout, resume, strict,
                           junit_xml, seed, jobs, command, display, baseline, known_failures, known)


def _run_locked(out: Path, backends, ops, dtypes, cases, plugins, quick, timeout, resume, strict,
                junit_xml, seed, jobs, command, display, baseline, known_failures, known) -> int:
    from softmaxbench.suite.conformance import known as known_mod

    done: set = set()
    if resume:
        run_meta, sel, done = _load_resume(out)
        recorded = list(sel.plugins)
        missing = [p for p in recorded if p not in plugins]
        if missing:
            raise _input_error(f"--resume {out}: the run used --plugin {', '.join(missing)}; a resumed run "
                               "executes only plugins named on its command line: add "
                               + " ".join(f"--plugin {shlex.quote(p)}" for p in missing))
        extra = [p for p in plugins if p not in recorded]
        if extra:
            raise _input_error(f"--resume {out}: --plugin {', '.join(extra)} was not part of that run")
        recorded_seed = run_meta.get("seed")
        if seed is not None and recorded_seed is not None and seed != recorded_seed:
            raise _input_error(f"--resume {out}: the run's seed is {recorded_seed} (run.json); "
                               f"a resumed run keeps it, so do not give --seed {seed}")
        seed = recorded_seed if recorded_seed is not None else seed
        if not known_failures and not baseline:  # finish the run with what it started with
            known_from = run_meta.get("known_from") or {}
            known_failures, baseline = known_from.get("known_failures"), known_from.get("baseline")
        known = known_mod.load(known_failures, baseline)
    else:
        sel = Selection(list(backends) if backends else None, list(ops) if ops else None,
                        list(dtypes) if dtypes else None, list(cases) if cases else None,
                        list(plugins), bool(quick))
        run_meta = None
    seed = run_seed(seed)  # random unless given (or recorded by the run being resumed)
    case_objs = bind_cases(validate_names(sel.ops, sel.dtypes, sel.cases, sel.quick), seed)
    tasks = plan(case_objs, sel.ops, sel.dtypes)
    if not tasks:
        raise _input_error("the selection has no checks: no selected case applies to the selected "
                           "ops and dtypes (see 'softmaxbench cases')")
    chosen, skipped = select_backends(sel.backends, sel.plugins)
    chosen, nothing_to_do = require_checks(chosen, tasks, explicit=bool(sel.backends))
    skipped.update(nothing_to_do)
    cores = os.cpu_count() or 1
    jobs = jobs or min(len(chosen), max(4, cores))
    threads = max(1, cores // min(jobs, len(chosen)))
    command = command or shlex.join([Path(sys.argv[0]).name or "softmaxbench", *sys.argv[1:]])

    if not resume:
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
    run_meta["backends"] = {b.name: {"device": b.device, "framework": b.framework,
                                     "version": b.framework_version, "dtypes": list(b.dtypes),
                                     "ops": list(b.ops), "origin": b.origin} for b in chosen}
    run_meta["unavailable"] = skipped
    run_meta["seed"] = seed  # (a resumed run that recorded none gets the one it now uses)
    run_meta.setdefault("resumed", [])
    if resume:
        run_meta["resumed"].append({"at": now_iso(), "command": command, "already_recorded": len(done)})
    write_run(out, run_meta)

    disp = make_display(display)
    if skipped:
        disp.note("not checked: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    t0 = time.monotonic()
    interrupted: KeyboardInterrupt | None = None
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise Terminated()

    in_main = _in_main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    runner = None
    try:
        with ResultsWriter(out) as writer:
            runner = CheckRun(out, chosen, tasks, case_objs, plugins=sel.plugins, timeout=timeout, jobs=jobs,
                              done=done, writer=writer, display=disp, threads=threads,
                              machine=run_meta.get("machine", {}).get("label"), env=jit_cache_env())
            try:
                runner.execute()
            except KeyboardInterrupt as exc:
                interrupted = exc
            finally:
                disp.close()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    elapsed = time.monotonic() - t0

    records = read_results(out)
    names = [b.name for b in chosen]
    try:
        conclusion = conclude(records, names, strict=strict, known=known, out_dir=out,
                              interrupted=bool(interrupted))
    except InputError:  # nothing was checked: exit 2, and run.json says so
        run_meta.update(finished=now_iso(), status="interrupted" if interrupted else "complete", exit_code=2)
        write_run(out, run_meta)
        raise
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    lost = {r.info.name: r.lost for r in runner.runs if r.lost} if runner else {}
    run_meta.update(finished=now_iso(), status="interrupted" if interrupted else "complete",
                    duration_s=round(elapsed, 3), references_computed=runner.cache.computed if runner else 0,
                    cpu_s={"parent": round(me.ru_utime + me.ru_stime, 1),
                           "workers": round(kids.ru_utime + kids.ru_stime, 1)},
                    worker_cpu_s={r.info.name: round(r.cpu_s, 2) for r in runner.runs} if runner else {},
                    workers_lost=lost,
                    summary=conclusion.run_summary())
    conforms = conclusion.exit_code == 0 and bool(records) and not lost
    code = (143 if isinstance(interrupted, Terminated) else 130) if interrupted else (0 if conforms else 1)
    run_meta["exit_code"] = code
    write_run(out, run_meta)
    if junit_xml:
        from softmaxbench.suite.conformance.junit import write_junit

        write_junit([r for r in records if r.get("backend") in names], junit_xml, strict=strict)

    if display != "none":
        print(conclusion.text())
        if lost:
            print("workers lost: " + "; ".join(f"{k}: {v}" for k, v in lost.items()))
        print(f"{len(records)} records in {out / RESULTS_FILE} ({elapsed:.1f} s)")
    if interrupted:
        print(f"interrupted; finish with: softmaxbench check --resume {out}"
              + "".join(f" --plugin {shlex.quote(p)}" for p in sel.plugins), file=sys.stderr)
    return code


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _load_resume(out: Path) -> tuple[dict, Selection, set]:
    """run.json, its selection, and the (backend, op, case, dtype) keys already recorded."""
    from softmaxbench.suite.records import RecordError

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


