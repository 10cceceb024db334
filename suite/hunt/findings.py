"""One hunt of a backend x op x dtype (:func:`hunt`: the three phases, shrinking, judging and
saving), what it found (:class:`Finding`, :class:`HuntResult`), the ``check`` records of the
findings and the max-known-error table.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from softmaxbench.suite.hunt.objective import ReferenceObjective, as_caller, lost_record, measure
from softmaxbench.suite.hunt.search import (
    HYPOTHESIS_EXAMPLES,
    HYPOTHESIS_SHARE,
    OBJECTIVES,
    POPULATION,
    Lost,
    Objective,
    Score,
    catalogue_starts,
    evaluate,
    found_starts,
    hypothesis_phase,
    search,
    stream_seed,
)
from softmaxbench.suite.hunt.shrink import SHRINK_ABOVE, SHRINK_MIN_S, SHRINK_SHARE, shrink
from softmaxbench.suite.hunt.space import Candidate, SearchSpace, case_input, ce_options


@dataclass
class Finding:
    """The worst input found for one objective, judged on its own as ``check`` judges it."""

    objective: str
    cand: Candidate
    record: dict                     # the check record (verdict, max_ulp, max_error_ratio, repro...)
    score: float                     # the search's score for the objective (inf where a record has None)
    case: str                        # the regression case's name
    saved: bool                      # newly written to the found-cases file
    refused: str | None = None       # why it was not saved (store.refusal), or None

    @property
    def verdict(self) -> str:
        return self.record["verdict"]

    def metric(self, key: str) -> float | None:
        """``max_error_ratio`` or ``max_ulp`` of the record; inf when the record has None
        because the error is infinite (a NaN or inf where a value exists)."""
        v = self.record.get(key)
        if v is None and self.verdict in ("fail", "error"):
            return math.inf
        return v


@dataclass
class HuntResult:
    """One backend x op x dtype: the findings (one per objective, deduplicated) and the effort."""

    backend: str
    device: str
    op: str
    dtype: str
    evals: int
    elapsed_s: float
    stopped_by: str
    findings: list[Finding]
    seed: int = 0
    found_dir: str | None = None
    hypothesis_examples: int = 0     # examples the hypothesis phase drew (--hypothesis replays it)
    lost: list[dict] = field(default_factory=list)   # crash/timeout records of lost workers

    @property
    def worst_ratio(self) -> float | None:
        vals = [v for f in self.findings if (v := f.metric("max_error_ratio")) is not None]
        return max(vals) if vals else None

    @property
    def worst_ulp(self) -> float | None:
        vals = [v for f in self.findings if (v := f.metric("max_ulp")) is not None]
        return max(vals) if vals else None

    @property
    def verdict(self) -> str:
        order = ("crash", "timeout", "error", "fail", "deviation", "pass", "unsupported")
        verdicts = [*(f.verdict for f in self.findings), *(r["verdict"] for r in self.lost)]
        return min(verdicts, key=order.index, default="pass")


def hunt(backend, op: str, dtype: str, *, budget_s: float | None = None, max_evals: int | None = None,
         seed: int = 0, found_dir: str | os.PathLike | None = None, start_dirs: Sequence[Path] = (),
         use_catalogue: bool = True, case_names: Sequence[str] | None = None, max_len: int = 16384,
         start_len: int = 1024, save: bool = True, objective: Objective | None = None,
         catalogue_cache: dict | None = None, plugins: Sequence[str] = (),
         hypothesis_examples: int = HYPOTHESIS_EXAMPLES, use_saved: bool = True) -> HuntResult:
    """Hunt one backend x op x dtype; save new worst cases to ``found_dir`` when ``save``.

    ``backend``: a caller of :mod:`~softmaxbench.suite.hunt.callers` (``InWorker``: the backend
    runs in a worker process) or a ``Backend`` object (called in this process). Starts from the
    saved cases in ``found_dir`` and ``start_dirs`` (unless not ``use_saved``) and, when
    ``use_catalogue``, a sample of catalogue rows (of ``case_names``, default all). A worker lost
    on a call (crash, timeout) becomes a record in ``result.lost`` and the hunt goes on with a
    fresh one, up to ``objective.MAX_LOSSES``.

    >>> from softmaxbench.backends.registry import get
    >>> r = hunt(get("numpy"), "softmax", "float32", max_evals=64, save=False, use_catalogue=False)
    >>> r.evals, r.verdict
    (64, 'pass')
    """
    from softmaxbench.reference.metrics import THRESHOLDS
    from softmaxbench.suite.hunt import store as found_cases

    caller = as_caller(backend, plugins)
    space = SearchSpace(op, dtype, max_len=max_len, start_len=start_len)
    key = stream_seed(seed, caller.name, op, dtype)
    objective = objective or ReferenceObjective(caller, op, dtype)
    starts = found_starts([*([Path(found_dir)] if found_dir else []), *start_dirs], caller.name, op,
                          dtype) if use_saved else []
    if use_catalogue:
        starts += catalogue_starts(space, np.random.default_rng([*key, 1]), case_names, cache=catalogue_cache)
    # One untimed call first, so the budget is not spent on imports and the first compile.
    objective([space.random(np.random.default_rng([*key, 9]), n=8)])
    timed = max_evals is None
    t0 = time.monotonic()
    deadline = t0 + budget_s if timed else math.inf
    # Phase 1: the saved cases and catalogue rows (a generation at a time, at least one).
    prior: list[tuple[Candidate, Score]] = []
    starts = starts if timed else starts[:max_evals]
    for i in range(0, len(starts), POPULATION):
        if i and time.monotonic() >= deadline:
            break
        chunk = starts[i:i + POPULATION]
        prior += zip(chunk, evaluate(objective, chunk))
    # Phase 2: hypothesis, drawing from the strategies of reference.strategies.
    drawn = 0
    if hypothesis_examples > 0:
        hseed = int(np.random.SeedSequence(key).generate_state(1)[0])
        rows, drawn = hypothesis_phase(
            objective, space, seed=hseed, examples=hypothesis_examples,
            deadline=min(deadline, t0 + HYPOTHESIS_SHARE * budget_s) if timed else math.inf,
            max_evals=None if timed else max_evals - len(prior))
        prior += rows
    # Phase 3: random rows, then the guided local search from the worst rows so far.
    left = max(0.0, deadline - time.monotonic()) if timed else None
    res = search(objective, space, seed=key, max_evals=max_evals, budget_s=left, prior=prior)
    res.elapsed_s = time.monotonic() - t0

    findings: list[Finding] = []
    done: set[int] = set()
    for obj in OBJECTIVES:
        ev = res.best.get(obj)
        if ev is None or id(ev.cand) in done or isinstance(ev.error, Lost):
            continue                              # the same input can be the worst for both
        done.add(id(ev.cand))
        if ev.cand.n > SHRINK_ABOVE and ev.error is None:
            allowance = max(SHRINK_SHARE * budget_s, SHRINK_MIN_S) if timed else math.inf
            ev = shrink(objective, space, ev, obj, deadline=time.monotonic() + allowance,
                        threshold=THRESHOLDS.get(dtype) if obj == "error_ratio" else None)
        c = ev.cand
        arrays = (c.x[None, :], None if c.cotangent is None else c.cotangent[None, :],
                  None if c.target is None else np.array([c.target], np.int64), ce_options(op))
        name = found_cases.case_name(caller.name, op, dtype, *arrays)
        rec = measure(caller, op, dtype, c, name, plugins)
        saved, refused = False, None
        if save and found_dir is not None and rec["verdict"] != "unsupported":
            refused = found_cases.refusal(op, case_input(op, dtype, [c], name))
        if refused:
            rec["message"] = "; ".join(m for m in (rec.get("message"), f"not saved: {refused}") if m)
        elif save and found_dir is not None and rec["verdict"] not in ("unsupported", "crash", "timeout"):
            entry = found_cases.make_entry(
                op, dtype, *arrays, backend=caller.name, objective=obj,
                max_error_ratio=rec.get("max_error_ratio"), max_ulp=rec.get("max_ulp"),
                how=c.describe(), seed=seed, evals=res.evals, verdict=rec["verdict"])
            _, saved = found_cases.save_found_case(found_dir, caller.name, op, dtype, entry)
        findings.append(Finding(obj, c, rec, ev.score(obj), name, saved, refused))
    lost = [lost_record(caller, op, loss.inputs, loss.kind, _lost_message(loss), plugins)
            for loss in getattr(objective, "losses", ())]
    return HuntResult(caller.name, caller.device, op, dtype, res.evals, res.elapsed_s, res.stopped_by,
                      findings, seed, None if found_dir is None else str(found_dir), drawn, lost)


def load_lost_record(backend: str, op: str, dtype: str, kind: str, note: str) -> dict:
    """The ``crash``/``timeout`` record of a hunt whose worker was lost loading the backend."""
    from softmaxbench.suite.records import new_record

    return new_record("check", backend=backend, device="cpu", op=op, case=f"hunt-load-{backend}",
                      category="found", dtype=dtype, shape=[0], axis=-1, check=None, verdict=kind,
                      deviation=None, max_ulp=None, median_ulp=None, max_error_ratio=None,
                      message=f"{note} (loading the backend for the hunt)", repro=None, found_by="hunt",
                      value_sample=None, duration_s=None)


def _lost_message(loss) -> str:
    rows = loss.inputs.x.shape
    how = loss.how[0] if len(set(loss.how)) == 1 else f"{loss.how[0]}; ..."
    return (f"{loss.note} on a hunt call of {rows[0]} rows of length {rows[1]} ({how}); "
            f"the hunt went on with a fresh worker")



# -- records, repro, table --------------------------------------------------------------------
def records(result: HuntResult, machine: str | None = None) -> list[dict]:
    """The ``check`` records of a hunt's findings (``found_by`` "hunt"), for ``OUT/results.jsonl``.

    Beyond the check record's fields: ``hunt_objective`` (what the search maximised),
    ``hunt_evals`` and ``hunt_hypothesis`` (rows evaluated, hypothesis examples drawn:
    ``--evals``/``--hypothesis`` replay the search) and ``seed``.
    """
    out = []
    for i, lost in enumerate(result.lost):
        rec = dict(lost, case=f"hunt-lost-{result.backend}-{result.op}-{result.dtype}-{i}")
        rec.update(machine=machine, hunt_objective=None, hunt_evals=result.evals,
                   hunt_hypothesis=result.hypothesis_examples, seed=result.seed)
        out.append(rec)
    for f in result.findings:
        rec = dict(f.record)
        how = f"worst {f.objective} found by hunt ({f.cand.describe()})"
        rec.update(machine=machine, found_by="hunt", hunt_objective=f.objective, hunt_evals=result.evals,
                   hunt_hypothesis=result.hypothesis_examples, seed=result.seed,
                   message=f"{how}: {rec['message']}" if rec.get("message") else how)
        if result.found_dir and f.saved:
            rec["repro"] = f"# saved as {f.case} in {result.found_dir}\n{rec['repro']}"
        out.append(rec)
    return out


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def table(results: Sequence[HuntResult]) -> str:
    """The max-known-error table: backend x op x dtype -> worst error ratio, worst ULP, case."""
    from tabulate import tabulate

    rows = []
    for r in results:
        by_ratio = max(r.findings, key=lambda f: f.metric("max_error_ratio") or 0.0, default=None)
        rows.append((r.backend, r.op, r.dtype, fmt(r.worst_ratio), fmt(r.worst_ulp), r.verdict, r.evals,
                     by_ratio.case if by_ratio else "-"))
    return tabulate(rows, headers=["backend", "op", "dtype", "max error ratio", "max ULP", "verdict",
                                   "evals", "worst case"])

