"""The worst-case hunt (``softmaxbench hunt``): inputs that maximise a backend's error.

For each selected backend x op x dtype the hunt looks for the input row that maximises

- the condition-aware **error ratio** (``reference.metrics.error_ratio``), and separately
- the **ULP error over normal-range outputs** (``reference.metrics.ulp_error`` where the exact
  value is finite and at least the dtype's smallest normal number),

in three phases that share one budget:

1. the saved cases of earlier hunts for this backend/op/dtype and a sample of catalogue rows;
2. hypothesis: inputs drawn from ``reference.strategies`` ("extreme", "distribution"), with
   ``hypothesis.target()`` fed both errors (``--hypothesis N`` examples; 0 skips the phase);
3. a guided local search: random rows, then generations of children of the worst inputs found
   so far, each made by one to three mutations from a menu that knows where kernels break:
   ULP nudges of the maximum, near-ties with the maximum, rows shifted or spread so that ``exp``
   lands near the dtype's overflow and underflow thresholds, row lengths at powers of two and
   beyond, reordered and resampled elements, cotangents that cancel (vjp) and targets at the
   extremes (cross-entropy). Mutations that produced new worst cases are chosen more often.

Backends that compile per array shape (jax, torch.compile) pay a compile for every new row
length; every call is padded to the same number of rows and random rows take their lengths
from a fixed grid so that shapes recur, but such backends still need a larger ``--budget``
(the hunt prints a note when a search got fewer rows than its exploration phase).

Every new worst input is shrunk (shorter rows that keep the error), judged once more on its
own exactly as ``check`` judges a case (the numbers ``check`` will report), saved as a named
regression case (see :mod:`softmaxbench.suite.hunt.store`) unless the model algorithm itself
cannot compute it (``reference.model.attainable``), and written as a ``check`` record with
``found_by = "hunt"`` and a copy-paste ``repro`` to ``OUT/results.jsonl``.

Trust: the ``hunt`` verb runs each backend only in a worker process
(:class:`~softmaxbench.suite.hunt.callers.InWorker`); this process builds every input, computes
the reference, scores, judges and saves. A worker that crashes or hangs on a call becomes a
``crash``/``timeout`` record and the hunt goes on with a fresh one (at most three per backend x
op x dtype). Passing a ``Backend`` object to :func:`~softmaxbench.suite.hunt.findings.hunt`
calls it in this process instead (the Python API; no isolation).

Budget and determinism
----------------------
The sequence of inputs a hunt tries is a pure function of ``--seed``, the backend/op/dtype,
the starting cases on disk, and the errors measured so far (a seeded NumPy ``Generator`` and
hypothesis runs under ``@seed`` without an example database, one stream per backend/op/dtype,
so selecting more combinations never changes another's search).

- ``--evals N`` bounds each search by N evaluated rows: the whole hunt is deterministic (given a
  deterministic backend); ``--budget`` is then ignored.
- ``--budget SECONDS`` (the default mode) stops each search when its time is up (the
  hypothesis phase after at most a quarter of it, between runs of 8 examples). Machines and
  loads differ in how far they get, but the inputs tried are always a prefix of the same
  sequence; each record stores the rows evaluated (``hunt_evals``) and the hypothesis examples
  drawn (``hunt_hypothesis``), so ``--evals <hunt_evals> --hypothesis <hunt_hypothesis>
  --seed <same>`` replays a timed hunt of that backend/op/dtype exactly.

Shrinking the findings takes at most 64 further rows each, and in the timed mode at most 15% of
the budget each, or 2 s when that is more (so a timed hunt of one combination takes about
1.3 x --budget, plus one untimed warm-up call and the final check of each finding); a replay
with ``--evals`` repeats the search exactly and may shrink a little further.

Rooms
-----
- :mod:`.space`     what may be tried: ``Candidate`` rows, ``SearchSpace`` (random rows, mutations)
- :mod:`.search`    the guided search, its starting points and the hypothesis phase
- :mod:`.shrink`    shorter rows that keep the error (delta debugging)
- :mod:`.callers`   where the backend runs: a worker process (the verb) or this process (the API)
- :mod:`.objective` how a row is scored and a finding judged, here: reference, metrics, judge
- :mod:`.findings`  one hunt of a backend x op x dtype, its findings, records and table
- :mod:`.store`     the saved regression cases (files), loaded like catalogue cases
- the verb (options, backend loop, output): :mod:`softmaxbench.suite.cli.hunt`
"""
