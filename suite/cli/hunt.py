"""``softmaxbench hunt``: the options, the loop over backends x ops x dtypes, and the output.

The work of one hunt is :func:`softmaxbench.suite.hunt.findings.hunt`; see :mod:`softmaxbench.suite.hunt`.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from softmaxbench.suite.cli.options import selection_options

#: --hypothesis default (``suite.hunt.search.HYPOTHESIS_EXAMPLES``; spelled here so that the
#: command line loads without NumPy: ``softmaxbench list`` imports every verb).
HYPOTHESIS_EXAMPLES = 32


#: Longest row --max-len may ask for (2**24 elements: 128 MiB of float64 per row).
MAX_LEN_LIMIT = 1 << 24


@click.command("hunt")
@selection_options
@click.option("--budget", default=60.0, show_default=True, type=float,
              help="Seconds per backend x op x dtype (--quick: at most 10).")
@click.option("--evals", default=None, type=int, metavar="N",
              help="Rows per backend x op x dtype instead of seconds: fully deterministic.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-len", default=16384, show_default=True, type=int, help="Longest row to try.")
@click.option("--hypothesis", "hypothesis_examples", default=HYPOTHESIS_EXAMPLES, show_default=True, type=int,
              metavar="N",
              help="Inputs hypothesis draws (target()-guided) before the guided search; 0: none.")
@click.option("--out", default=None,
              help="Results dir [default: softmaxbench-results/hunt]; when given, cases go to OUT/found.")
@click.option("--save-dir", default=None, metavar="DIR",
              help="Save new worst cases here [default: OUT/found with --out, else "
                   "$XDG_CACHE_HOME/softmaxbench/found, which check reads].")
@click.option("--save/--no-save", default=True, help="Save new worst cases as regression cases.")
@click.option("--fresh", is_flag=True, help="Do not start from saved cases (replay an earlier hunt).")
@click.option("--timeout", default=60.0, show_default=True, type=float,
              help="Seconds one backend call may take before its worker is killed (a timeout record).")
def hunt_cmd(**kwargs) -> int:
    """Search for inputs that maximise each backend's error ratio and ULP error; save the worst
    as regression cases that check runs, and print the max-known-error table. --cases: catalogue
    cases to start from (default: a sample of all); --quick: softmax, log_softmax, logsumexp."""
    return hunt_main(**kwargs)


def _writable(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
        return os.access(d, os.W_OK)
    except OSError:
        return False


def save_dir_for(save_dir: str | None, out: str | None, out_dir: Path, save: bool) -> Path:
    """Where new cases go: ``--save-dir``, else ``OUT/found`` when ``--out`` is given, else the
    user's cache (``OUT/found`` with a note when that is not writable). A named directory that
    cannot be written is bad input (exit 2)."""
    from softmaxbench.errors import InputError
    from softmaxbench.suite.hunt import store

    if save_dir or out:
        d = Path(save_dir) if save_dir else out_dir / "found"
        if save and not _writable(d):
            raise InputError(f"{'--save-dir' if save_dir else '--out'} {d}: not a writable directory")
        return d
    d = store.user_dir()
    if save and not _writable(d):
        click.echo(f"note: {d} is not writable; saving cases to {out_dir / 'found'}")
        return out_dir / "found"
    return d


def _read_by_check(d: Path) -> bool:
    """Is ``d`` one of the directories ``check`` reads found cases from?"""
    from softmaxbench.suite.hunt import store

    try:
        return any(d.resolve() == x.resolve() for x in store.default_dirs())
    except OSError:
        return False


def hunt_main(backends: str | None = None, ops: str | None = None, dtypes: str | None = None,
              cases: str | None = None, plugins: Sequence[str] = (), quick: bool = False,
              budget: float = 60.0, seed: int = 0, out: str | None = None, save_dir: str | None = None,
              timeout: float = 60.0,
              save: bool = True,
              evals: int | None = None, max_len: int = 16384, hypothesis_examples: int = HYPOTHESIS_EXAMPLES,
              fresh: bool = False, **_: Any) -> int:
    """The ``hunt`` verb: search each selected backend x op x dtype, save and report findings.

    Results go to ``OUT/results.jsonl`` and ``OUT/run.json`` (OUT defaults to
    ``softmaxbench-results/hunt``). New worst cases are saved to ``--save-dir``, else to
    ``OUT/found/`` when ``--out`` is given, else to the user's cache (``store.user_dir()``, which
    ``check`` reads); never into the installed package. Returns the exit code: 1 when a hunt
    found an input on which a backend fails, else 0.
    """
    from softmaxbench.errors import EXIT_NONCONFORMING, EXIT_OK, InputError
    from softmaxbench.suite.cli.options import bounded_int, positive_seconds, split_csv, usable_out_dir
    from softmaxbench.suite.conformance.runner import Terminated
    from softmaxbench.suite.hunt import store as found_cases
    from softmaxbench.suite.hunt.findings import table
    from softmaxbench.suite.isolation.channel import clean_text
    from softmaxbench.suite.records import (
        RESULTS_FILE,
        OutLock,
        ResultsWriter,
        machine_info,
        new_run,
        now_iso,
        write_run,
    )
    from softmaxbench.suite.selection import plugin_path, select_backends, validate_names
    from softmaxbench.vocabulary import FAILING, OPS

    if evals is not None and evals < 1:
        raise InputError("--evals must be at least 1")
    positive_seconds(timeout, "--timeout")
    if evals is None:
        positive_seconds(budget, "--budget")
    if max_len < 2:
        raise InputError("--max-len must be at least 2")
    bounded_int(max_len, "--max-len", 2, MAX_LEN_LIMIT)
    usable_out_dir(out if out is not None else "softmaxbench-results/hunt")
    if hypothesis_examples < 0:
        raise InputError("--hypothesis must be 0 or more")
    validate_names(split_csv(ops), split_csv(dtypes), None, False)
    op_list = split_csv(ops) or (list(OPS[:3]) if quick else list(OPS))
    dtype_list = split_csv(dtypes)
    if quick and evals is None:
        budget = min(budget, 10.0)
    case_names = split_csv(cases)
    if case_names:
        from softmaxbench.reference.cases import get as get_case

        for n in case_names:
            try:
                get_case(n)
            except KeyError as exc:
                raise InputError(str(exc.args[0] if exc.args else exc)) from None

    # Plugin files as absolute paths: workers run in a private working directory.
    plugins = tuple(plugin_path(p) for p in plugins)
    chosen, skipped = select_backends(split_csv(backends), plugins)
    for who, why in skipped.items():
        click.echo(f"not hunted: {who}: {clean_text(why)}")
    out_dir = Path(out) if out else Path("softmaxbench-results/hunt")
    found_dir = save_dir_for(save_dir, out, out_dir, save)
    job = _Job(op_list, dtype_list, budget, evals, seed, found_dir if save else None,
               [d for d in found_cases.default_dirs() if d.resolve() != found_dir.resolve()], save,
               case_names, max_len, hypothesis_examples, not fresh, timeout, plugins)
    bound = f"{evals} rows each" if evals is not None else f"{budget:g} s each"

    out_dir.mkdir(parents=True, exist_ok=True)
    with OutLock(out_dir):
        # A fresh run replaces the previous one's records and worker logs (never appends to them).
        for stale in [out_dir / RESULTS_FILE, *(out_dir / "logs").glob("*.log")]:
            stale.unlink(missing_ok=True)
        given = (("backends", backends), ("ops", ops), ("dtypes", dtypes), ("budget", budget),
                 ("evals", evals), ("seed", seed))
        run = new_run("hunt", "softmaxbench hunt " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in given if v is not None), seed=seed)
        run["status"] = "running"
        write_run(out_dir, run)
        job.label = run["machine"].get("label") or machine_info()["label"]
        job.logs = out_dir / "logs"
        job.logs.mkdir(parents=True, exist_ok=True)
        interrupted: KeyboardInterrupt | None = None
        previous = signal.getsignal(signal.SIGTERM)
        in_main = threading.current_thread() is threading.main_thread()

        def on_term(signum, frame):
            raise Terminated()

        if in_main:
            signal.signal(signal.SIGTERM, on_term)
        try:
            with ResultsWriter(out_dir) as writer:
                try:
                    for described in chosen:
                        _hunt_backend(described.name, job, writer)
                except KeyboardInterrupt as exc:   # Ctrl-C or SIGTERM: what was found is kept
                    interrupted = exc
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
        failing = any(r.verdict in FAILING for r in job.results) or bool(job.lost_at_load)
        code = ((143 if isinstance(interrupted, Terminated) else 130) if interrupted
                else EXIT_NONCONFORMING if failing else EXIT_OK)
        run.update(finished=now_iso(), status="interrupted" if interrupted else "complete", exit_code=code)
        write_run(out_dir, run)
    if not job.results and not job.lost_at_load and not interrupted:
        raise InputError(f"nothing to hunt: no selected backend supports the selected ops/dtypes ({bound})")
    click.echo("")
    click.echo("Max known error (hunt " + bound + f", seed {seed}):")
    click.echo(table(job.results))
    click.echo(f"\nrecords: {out_dir / RESULTS_FILE}" + (f"; saved cases: {found_dir}" if save else ""))
    if save and any(f.saved for r in job.results for f in r.findings) and not _read_by_check(found_dir):
        click.echo(f"check runs them with {found_cases.ENV_DIRS}={found_dir}")
    if evals is None:
        click.echo("replay one row exactly: --evals <hunt_evals> --hypothesis <hunt_hypothesis> "
                   f"--seed {seed} (fields of its records)")
    if interrupted:
        click.echo("interrupted: the records of the hunts that finished are kept", err=True)
    return code


@dataclass
class _Job:
    """What every hunt of one ``softmaxbench hunt`` run shares, and what it collected."""

    ops: list[str]
    dtypes: list[str] | None
    budget: float
    evals: int | None
    seed: int
    found_dir: Path | None
    start_dirs: list[Path]
    save: bool
    case_names: list[str] | None
    max_len: int
    hypothesis_examples: int
    use_saved: bool
    timeout: float
    plugins: tuple[str, ...]
    label: str | None = None
    logs: Path | None = None
    results: list = field(default_factory=list)
    lost_at_load: list[dict] = field(default_factory=list)
    cache: dict = field(default_factory=dict)


def _hunt_backend(name: str, job: _Job, writer) -> None:
    """Every selected op x dtype of one backend, in one worker (a fresh one after each loss)."""
    from softmaxbench.suite.conformance.runner import jit_cache_env
    from softmaxbench.suite.hunt.callers import InWorker
    from softmaxbench.suite.hunt.findings import fmt, hunt, load_lost_record, records
    from softmaxbench.suite.hunt.search import EXPLORE
    from softmaxbench.suite.isolation.channel import WorkerLost, WorkerRefused, clean_text
    from softmaxbench.suite.isolation.scheduler import safe_file_name
    from softmaxbench.vocabulary import DTYPES

    caller = InWorker(name, plugins=job.plugins, log_path=job.logs / f"{safe_file_name(name)}.log",
                      timeout_s=job.timeout, env=jit_cache_env())
    try:
        try:
            info = caller.start()
        except WorkerRefused as exc:   # discovery found it available; its own worker disagrees
            click.echo(f"{name}: unavailable here ({clean_text(str(exc))}), skipped")
            return
        except WorkerLost as lost:
            # Lost while loading: every hunt of this backend is lost (one record each).
            click.echo(f"{name}: {lost.kind} while loading the backend ({lost.note})")
            for op in job.ops:
                for dtype in job.dtypes or DTYPES:
                    rec = load_lost_record(name, op, dtype, lost.kind, lost.note)
                    writer.write(dict(rec, machine=job.label))
                    job.lost_at_load.append(rec)
            return
        for op in job.ops:
            if op not in info.ops:
                click.echo(f"{name} {op}: unsupported, skipped")
                continue
            for dtype in job.dtypes or DTYPES:
                if dtype not in info.dtypes:
                    if job.dtypes:
                        click.echo(f"{name} {op} {dtype}: dtype unsupported, skipped")
                    continue
                r = hunt(caller, op, dtype, budget_s=job.budget, max_evals=job.evals, seed=job.seed,
                         found_dir=job.found_dir, start_dirs=job.start_dirs, save=job.save,
                         case_names=job.case_names, max_len=job.max_len, catalogue_cache=job.cache,
                         plugins=job.plugins, hypothesis_examples=job.hypothesis_examples,
                         use_saved=job.use_saved)
                for rec in records(r, job.label):
                    writer.write(rec)
                if r.stopped_by == "time" and r.evals <= EXPLORE:
                    click.echo(f"note: {name} {op} {dtype} evaluated only {r.evals} rows in "
                               f"{job.budget:g} s (a compile per row length?); give it a larger --budget")
                new = sum(f.saved for f in r.findings)
                refused = sum(bool(f.refused) for f in r.findings)
                lost = (f", {len(r.lost)} worker(s) lost ({', '.join(x['verdict'] for x in r.lost)})"
                        if r.lost else "")
                click.echo(f"{name} {op} {dtype}: {r.evals} rows in {r.elapsed_s:.1f} s, "
                           f"max error ratio {fmt(r.worst_ratio)}, max ULP {fmt(r.worst_ulp)}, "
                           f"{r.verdict}" + lost + (f", {new} new case(s) saved" if new else "")
                           + (f", {refused} not saved (the model algorithm cannot compute it)" if refused
                              else ""))
                job.results.append(r)
    finally:
        caller.close()
