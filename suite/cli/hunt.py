"""``softmaxbench hunt``: the options, the loop over backends x ops x dtypes, and the output.

The work of one hunt is :func:`softmaxbench.suite.hunt.findings.hunt`; see :mod:`softmaxbench.suite.hunt`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from softmaxbench.suite.cli.options import selection_options

#: --hypothesis default (``suite.hunt.search.HYPOTHESIS_EXAMPLES``; spelled here so that the
#: command line loads without NumPy: ``softmaxbench list`` imports every verb).
HYPOTHESIS_EXAMPLES = 32


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
    from softmaxbench.suite.cli.options import split_csv
    from softmaxbench.suite.hunt import store as found_cases
    from softmaxbench.suite.hunt.callers import InWorker
    from softmaxbench.suite.hunt.findings import HuntResult, fmt, hunt, load_lost_record, records, table
    from softmaxbench.suite.hunt.search import EXPLORE
    from softmaxbench.suite.isolation.channel import WorkerLost, WorkerRefused, clean_text
    from softmaxbench.suite.records import ResultsWriter, machine_info, new_run, now_iso, write_run
    from softmaxbench.vocabulary import DTYPES, FAILING, OPS

    if evals is not None and evals < 1:
        raise InputError("--evals must be at least 1")
    if timeout is None or not timeout > 0:
        raise InputError(f"--timeout must be a positive number of seconds, got {timeout!r}")
    if evals is None and not budget > 0:
        raise InputError("--budget must be a positive number of seconds")
    if max_len < 2:
        raise InputError("--max-len must be at least 2")
    if hypothesis_examples < 0:
        raise InputError("--hypothesis must be 0 or more")
    op_list = split_csv(ops) or (list(OPS[:3]) if quick else list(OPS))
    bad = [o for o in op_list if o not in OPS]
    if bad:
        raise InputError(f"unknown op {bad[0]!r}; choose from {', '.join(OPS)}")
    dtype_list = split_csv(dtypes)
    bad = [d for d in dtype_list or () if d not in DTYPES]
    if bad:
        raise InputError(f"unknown dtype {bad[0]!r}; choose from {', '.join(DTYPES)}")
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
    plugins = tuple(os.path.abspath(p) if os.path.exists(p) else p for p in plugins)
    named = split_csv(backends)
    names = select_backends(named, plugins)
    out_dir = Path(out) if out else Path("softmaxbench-results/hunt")
    found_dir = save_dir_for(save_dir, out, out_dir, save)
    start_dirs = [d for d in found_cases.default_dirs() if d.resolve() != found_dir.resolve()]

    run = new_run("hunt", "softmaxbench hunt " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in (("backends", backends), ("ops", ops), ("dtypes", dtypes),
                                                   ("budget", budget), ("evals", evals), ("seed", seed))
        if v is not None), seed=seed)
    write_run(out_dir, run)
    label = run["machine"].get("label") or machine_info()["label"]
    results: list[HuntResult] = []
    lost_at_load: list[dict] = []
    cache: dict = {}
    bound = f"{evals} rows each" if evals is not None else f"{budget:g} s each"
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with ResultsWriter(out_dir) as writer:
        for name in names:
            caller = InWorker(name, plugins=tuple(plugins), log_path=logs / f"{_safe(name)}.log",
                              timeout_s=timeout)
            try:
                info = caller.start()
            except WorkerRefused as exc:
                if named:    # a backend the user named and cannot have: bad input
                    raise InputError(clean_text(str(exc))) from None
                click.echo(f"{clean_text(name, 80)}: unavailable here ({clean_text(str(exc))}), skipped")
                continue
            except WorkerLost as lost:
                # Lost while loading: every hunt of this backend is lost (one record each).
                click.echo(f"{clean_text(name, 80)}: {lost.kind} while loading the backend ({lost.note})")
                for op in op_list:
                    for dtype in dtype_list or DTYPES:
                        rec = load_lost_record(name, op, dtype, lost.kind, lost.note)
                        writer.write(dict(rec, machine=label))
                        lost_at_load.append(rec)
                continue
            try:
                for op in op_list:
                    if op not in info.ops:
                        click.echo(f"{info.name} {op}: unsupported, skipped")
                        continue
                    for dtype in dtype_list or DTYPES:
                        if dtype not in info.dtypes:
                            if dtype_list:
                                click.echo(f"{info.name} {op} {dtype}: dtype unsupported, skipped")
                            continue
                        r = hunt(caller, op, dtype, budget_s=budget, max_evals=evals, seed=seed,
                                 found_dir=found_dir if save else None, start_dirs=start_dirs, save=save,
                                 case_names=case_names, max_len=max_len, catalogue_cache=cache,
                                 plugins=plugins, hypothesis_examples=hypothesis_examples,
                                 use_saved=not fresh)
                        if not save:
                            r.found_dir = None
                        for rec in records(r, label):
                            writer.write(rec)
                        if r.stopped_by == "time" and r.evals <= EXPLORE:
                            click.echo(f"note: {r.backend} {op} {dtype} evaluated only {r.evals} rows in "
                                       f"{budget:g} s (a compile per row length?); give it a larger --budget")
                        new = sum(f.saved for f in r.findings)
                        lost = (f", {len(r.lost)} worker(s) lost ({', '.join(x['verdict'] for x in r.lost)})"
                                if r.lost else "")
                        click.echo(f"{r.backend} {op} {dtype}: {r.evals} rows in {r.elapsed_s:.1f} s, "
                                   f"max error ratio {fmt(r.worst_ratio)}, max ULP {fmt(r.worst_ulp)}, "
                                   f"{r.verdict}" + lost + (f", {new} new case(s) saved" if new else ""))
                        results.append(r)
            finally:
                caller.close()
    run["finished"] = now_iso()
    write_run(out_dir, run)
    if not results and not lost_at_load:
        raise InputError(f"nothing to hunt: no selected backend supports the selected ops/dtypes ({bound})")
    click.echo("")
    click.echo("Max known error (hunt " + bound + f", seed {seed}):")
    click.echo(table(results))
    click.echo(f"\nrecords: {out_dir / 'results.jsonl'}" + (f"; saved cases: {found_dir}" if save else ""))
    if save and any(f.saved for r in results for f in r.findings) and not _read_by_check(found_dir):
        click.echo(f"check runs them with {found_cases.ENV_DIRS}={found_dir}")
    if evals is None:
        click.echo("replay one row exactly: --evals <hunt_evals> --hypothesis <hunt_hypothesis> "
                   f"--seed {seed} (fields of its records)")
    failing = any(r.verdict in FAILING for r in results) or bool(lost_at_load)
    return EXIT_NONCONFORMING if failing else EXIT_OK


def select_backends(names: list[str] | None, plugins: tuple[str, ...]) -> list[str]:
    """The names of the backends to hunt: those named (each is built, or refused with exit 2,
    when its worker starts), or every available one as discovery in a worker finds them. No
    backend code runs in this process."""
    if names:
        return list(dict.fromkeys(names))
    from softmaxbench.errors import InputError
    from softmaxbench.suite.hunt.callers import START_TIMEOUT_S
    from softmaxbench.suite.isolation.channel import (
        Worker,
        WorkerLost,
        WorkerRefused,
        clean_text,
        name_problem,
    )

    w = Worker(None, plugins=plugins)
    try:
        w.start(timeout_s=START_TIMEOUT_S)
        entries = w.request("discover", {"check": True}, timeout_s=START_TIMEOUT_S).header.get("entries")
    except (WorkerLost, WorkerRefused) as exc:
        raise InputError(f"backend discovery failed in its worker: {clean_text(str(exc))}") from None
    finally:
        w.kill()
    chosen = [e["name"] for e in entries if isinstance(e, dict) and name_problem(e.get("name")) is None
              and e.get("loaded") and not e.get("unavailable")] if isinstance(entries, list) else []
    if not chosen:
        raise InputError("no selected backend is available here (see 'softmaxbench list')")
    return list(dict.fromkeys(chosen))


def _safe(name: str) -> str:
    """A backend name as a file name."""
    import re

    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)[:64] or "backend"
