"""How the hunt scores rows and judges its findings: the backend is called, the certified
reference computes the exact values, ``reference.metrics`` turns both into the error ratio and
the ULP error (:class:`ReferenceObjective`); a finding is judged once more on its own exactly as
``check`` judges a case (:func:`measure`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from softmaxbench.reference.dtypes import finfo, np_dtype
from softmaxbench.suite.hunt.search import POPULATION, Score
from softmaxbench.suite.hunt.space import Candidate, case_input


def call_backend(backend, op: str, inputs) -> np.ndarray:
    """Run ``backend.<op>`` on a CaseInput: NumPy in, native arrays through, NumPy out."""
    args, kwargs = inputs.args(op)

    def native(a):
        return backend.asarray(a) if isinstance(a, np.ndarray) else a

    out = getattr(backend, op)(*[native(a) for a in args], **{k: native(v) for k, v in kwargs.items()})
    backend.synchronize()
    return np.asarray(backend.to_numpy(out))


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
    """

    def __init__(self, backend, op: str, dtype: str, rows: int = POPULATION):
        from softmaxbench.reference import metrics, model, ops

        self.backend, self.op, self.dtype, self.rows = backend, op, dtype, rows
        self.ops, self.metrics, self.model = ops, metrics, model
        self.tiny = float(finfo(dtype).tiny)
        self.calls = 0

    def __call__(self, cands: Sequence[Candidate]) -> list[Score]:
        inputs = case_input(self.op, self.dtype, cands)
        r = len(cands)
        padded = inputs if r >= self.rows else case_input(
            self.op, self.dtype, [*cands, *[cands[-1]] * (self.rows - r)])
        self.calls += 1
        try:
            actual = call_backend(self.backend, self.op, padded)
            if padded is not inputs and actual.ndim:
                actual = actual[:r]
        except Exception as exc:  # noqa: BLE001 - any exception of the backend is a finding
            return [(math.inf, math.inf, f"{type(exc).__name__}: {exc}"[:300])] * r
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
    """Judge one row exactly as ``check`` does (``suite.api.check_one``): the check record,
    with ``case`` = ``name``, ``category`` "found", ``found_by`` "hunt" and a repro snippet."""
    from softmaxbench.reference import ops
    from softmaxbench.suite.conformance import api
    from softmaxbench.suite.conformance.repro import snippet

    inputs = case_input(op, dtype, [cand], name)
    try:
        exact, why = np.asarray(ops.evaluate(op, inputs)), None
    except Exception as exc:  # noqa: BLE001 - check_one turns this into an 'error' record
        exact, why = None, f"{type(exc).__name__}: {exc}"
    rec = api.check_one(backend, op, inputs, exact, category="found", reference_error=why,
                        conventions=api.conventions_of(backend), plugins=plugins)
    repro = snippet(backend.name, op, inputs, plugins) + (
        "from softmaxbench.reference import metrics\n"
        "from softmaxbench.reference.cases import CaseInput\n"
        f"inputs = CaseInput({name!r}, {dtype!r}, -1, x, cotangent, target, ce_options)\n"
        f"print(metrics.compare({op!r}, inputs, out, exact))  # the error ratio and ULPs the hunt measured\n")
    rec.update(found_by="hunt", repro=repro)
    return rec

