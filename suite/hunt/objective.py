"""How the hunt scores rows and judges its findings: the backend is called through a caller
(:mod:`softmaxbench.suite.hunt.callers`: a worker process, or this process for a ``Backend``
object), the certified reference computes the exact values here, and ``reference.metrics`` turns
both into the error ratio and the ULP error (:class:`ReferenceObjective`). A finding is judged
once more on its own exactly as ``check`` judges a case (:func:`measure`). Everything but the
backend call happens in this process.

A worker lost during a call (crash, timeout) scores its rows 0 with a :class:`Lost` message (they
are never parents or findings), is kept in ``objective.losses`` for the hunt's records, and the
next call starts a fresh worker; after :data:`MAX_LOSSES` the objective says ``stopped`` and the
hunt of that backend x op x dtype ends with what it has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from softmaxbench.reference.dtypes import finfo, np_dtype
from softmaxbench.suite.hunt.callers import InProcess
from softmaxbench.suite.hunt.search import POPULATION, Lost, Score
from softmaxbench.suite.hunt.space import Candidate, case_input

#: Workers one hunt of a backend x op x dtype may lose (crash, timeout) before it stops.
MAX_LOSSES = 3


@dataclass
class LostCall:
    """A call whose worker died (``kind`` "crash") or went silent ("timeout")."""

    kind: str
    note: str
    inputs: object                   # the CaseInput of the call (every row of the batch)
    how: tuple[str, ...]             # the recipes of the rows


def as_caller(backend_or_caller, plugins: Sequence[str] = ()):
    """A caller of :mod:`~softmaxbench.suite.hunt.callers` as it is; a ``Backend`` object
    wrapped in :class:`~softmaxbench.suite.hunt.callers.InProcess`."""
    from softmaxbench.suite.hunt.callers import InWorker

    if isinstance(backend_or_caller, InProcess | InWorker):
        return backend_or_caller
    return InProcess(backend_or_caller, plugins)


class ReferenceObjective:
    """Scores rows of a backend against the certified reference (the hunt's objective).

    Per row: the largest ``metrics.error_ratio`` and the largest ``metrics.ulp_error`` over
    elements whose exact value is finite and normal. Subnormal outputs flushed to zero score 0,
    as ``metrics.compare`` forgives them (``check`` reports them as a deviation). Elements the
    model algorithm itself cannot compute (``reference.model.unattainable_elements``: its
    intermediates overflow the output dtype) score 0: the suite's standard says nothing about
    them, so the search is not led to cases ``hunt`` would refuse to save. A backend that
    raises, or returns the wrong shape, scores inf with the reason.

    Every backend call gets at least ``rows`` rows (short batches are padded with copies of
    their last row, whose results are dropped), so a row length is one array shape to backends
    that compile per shape.

    ``backend``: a caller (:mod:`~softmaxbench.suite.hunt.callers`) or a ``Backend`` object.
    """

    def __init__(self, backend, op: str, dtype: str, rows: int = POPULATION, max_losses: int = MAX_LOSSES):
        from softmaxbench.reference import metrics, model, ops

        self.caller = as_caller(backend)
        self.op, self.dtype, self.rows, self.max_losses = op, dtype, rows, max_losses
        self.ops, self.metrics, self.model = ops, metrics, model
        self.tiny = float(finfo(dtype).tiny)
        self.calls = 0
        self.losses: list[LostCall] = []

    @property
    def stopped(self) -> bool:
        """True once the hunt has lost ``max_losses`` workers: it should end."""
        return len(self.losses) >= self.max_losses

    def __call__(self, cands: Sequence[Candidate]) -> list[Score]:
        from softmaxbench.suite.isolation.channel import WorkerLost

        inputs = case_input(self.op, self.dtype, cands)
        r = len(cands)
        if self.stopped:
            return [(0.0, 0.0, Lost("not called: the hunt lost too many workers"))] * r
        padded = inputs if r >= self.rows else case_input(
            self.op, self.dtype, [*cands, *[cands[-1]] * (self.rows - r)])
        self.calls += 1
        try:
            result = self.caller.call(self.op, padded)
        except WorkerLost as lost:
            self.losses.append(LostCall(lost.kind, lost.note, padded, tuple(c.describe() for c in cands)))
            return [(0.0, 0.0, Lost(f"{lost.kind}: {lost.note}"))] * r
        if result.status != "output":  # any exception of the backend is a finding
            why = result.raised.one_line() if result.raised else (result.message or "unsupported")
            return [(math.inf, math.inf, why)] * r
        actual = np.asarray(result.output)
        if padded is not inputs and actual.ndim:
            actual = actual[:r]
        exact = self.ops.evaluate(self.op, inputs)
        if actual.shape != exact.shape:
            return [(math.inf, math.inf, f"shape {actual.shape}, expected {exact.shape}")] * r
        if actual.dtype != np_dtype(self.dtype):
            # Dtype conformance is check's business; the hunt scores the values as the dtype.
            actual = actual.astype(np_dtype(self.dtype))
        with np.errstate(all="ignore"):
            ratio = np.asarray(self.metrics.error_ratio(self.op, inputs, actual, exact), np.float64)
            ulp = np.asarray(self.metrics.ulp_error(actual, exact, self.dtype), np.float64)
            ex = np.asarray(exact, np.float64)
            ulp = np.where(np.isfinite(ex) & (np.abs(ex) >= self.tiny), ulp, 0.0)
            flushed = (actual.astype(np.float64) == 0) & (np.abs(ex) < self.tiny)
            ratio = np.where(flushed, 0.0, ratio)
            unjudged = self.model.unattainable_elements(self.op, inputs, exact)
            ratio, ulp = np.where(unjudged, 0.0, ratio), np.where(unjudged, 0.0, ulp)
        ratio = np.where(np.isnan(ratio), np.inf, ratio).reshape(r, -1)
        ulp = np.where(np.isnan(ulp), np.inf, ulp).reshape(r, -1)
        rmax = ratio.max(axis=1) if ratio.shape[1] else np.zeros(r)
        umax = ulp.max(axis=1) if ulp.shape[1] else np.zeros(r)
        return [(float(a), float(b), None) for a, b in zip(rmax, umax)]


def measure(backend, op: str, dtype: str, cand: Candidate, name: str = "hunt",
            plugins: Sequence[str] = ()) -> dict:
    """Judge one row exactly as ``check`` does: the check record, with ``case`` = ``name``,
    ``category`` "found", ``found_by`` "hunt" and a repro snippet. ``backend``: a caller or a
    ``Backend`` object; a worker lost on this call gives a ``crash``/``timeout`` record."""
    from softmaxbench.reference import ops
    from softmaxbench.suite.conformance.judge import judge, precheck
    from softmaxbench.suite.conformance.repro import snippet
    from softmaxbench.suite.isolation.channel import WorkerLost

    caller = as_caller(backend, plugins)
    inputs = case_input(op, dtype, [cand], name)
    try:
        exact, why = np.asarray(ops.evaluate(op, inputs)), None
    except Exception as exc:  # noqa: BLE001 - the judge turns this into an 'error' record
        exact, why = None, f"{type(exc).__name__}: {exc}"
    common = dict(backend=caller.name, device=caller.device, category="found", plugins=plugins,
                  repro_backend=caller.name)
    rec = precheck(op, inputs, exact, dtypes=caller.dtypes, ops=caller.ops, reference_error=why, **common)
    if rec is None:
        try:
            result = caller.call(op, inputs)
        except WorkerLost as lost:
            rec = lost_record(caller, op, inputs, lost.kind, f"{lost.note} (judging the finding)", plugins)
        else:
            rec = judge(op, inputs, exact, result, conventions=caller.conventions, **common)
    repro = snippet(caller.name, op, inputs, plugins) + (
        "from softmaxbench.reference import metrics\n"
        "from softmaxbench.reference.cases import CaseInput\n"
        f"inputs = CaseInput({name!r}, {dtype!r}, -1, x, cotangent, target, ce_options)\n"
        f"print(metrics.compare({op!r}, inputs, out, exact))  # the error ratio and ULPs the hunt measured\n")
    rec.update(found_by="hunt", repro=repro)
    return rec



def lost_record(caller, op: str, inputs, kind: str, note: str, plugins: Sequence[str] = ()) -> dict:
    """The ``crash``/``timeout`` record of a call whose worker was lost (the parent writes it)."""
    from softmaxbench.suite.conformance.repro import snippet
    from softmaxbench.suite.records import new_record

    try:
        repro = snippet(caller.name, op, inputs, plugins)
    except Exception as exc:  # noqa: BLE001 - a repro must never hide the verdict
        repro = f"# repro unavailable: {type(exc).__name__}: {exc}"
    return new_record("check", backend=caller.name, device=caller.device, op=op, case=inputs.case,
                      category="found", dtype=inputs.dtype, shape=[int(n) for n in inputs.x.shape],
                      axis=int(inputs.axis), check=None, verdict=kind, deviation=None, max_ulp=None,
                      median_ulp=None, max_error_ratio=None, message=note, repro=repro, found_by="hunt",
                      value_sample=None, duration_s=None)
