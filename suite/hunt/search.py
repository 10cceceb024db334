"""Worst-case search (``softmaxbench hunt``): inputs that maximise a backend's error.

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

Every new worst input is shrunk (shorter rows that keep the error), measured once more on its
own with ``reference.metrics.compare`` (the numbers ``check`` will report), saved as a named
regression case (see :mod:`softmaxbench.suite.hunt.store`) and written as a ``check`` record
with ``found_by = "hunt"`` and a copy-paste ``repro`` to ``OUT/results.jsonl``.

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

>>> from softmaxbench.suite.hunt.search import SearchSpace, search
>>> import numpy as np
>>> space = SearchSpace("softmax", "float32")
>>> def objective(rows):            # any scorer: here, how far the max sits above 80
...     return [(max(0.0, float(c.x.max()) - 80.0), 0.0, None) for c in rows]
>>> res = search(objective, space, seed=1, max_evals=200)
>>> res.evals, res.best["error_ratio"].error_ratio > 0
(200, True)
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from softmaxbench.reference.dtypes import DTYPES, finfo, np_dtype

OBJECTIVES: tuple[str, ...] = ("error_ratio", "ulp")
#: Options the hunt gives cross-entropy: per-row losses (so rows of a batch score separately),
#: and the summed loss for the gradient (so a row's gradient does not depend on the batch).
CE_OPTIONS: dict[str, dict] = {
    "cross_entropy": {"reduction": "none", "label_smoothing": 0.0, "ignore_index": None, "weight": None},
    "cross_entropy_grad": {"reduction": "sum", "label_smoothing": 0.0, "ignore_index": None, "weight": None},
}
VJP_OPS = ("softmax_vjp", "log_softmax_vjp")
CE_OPS = ("cross_entropy", "cross_entropy_grad")

#: Rows evaluated per generation (one backend call per row length).
POPULATION = 8
#: Rows of the exploration phase (saved cases, catalogue rows, random rows) before mutation starts.
EXPLORE = 32
#: Worst inputs kept per objective; parents are drawn from them, the worst most often.
ELITE = 4
#: Evaluations the shrinker may spend on each finding (independent of the budget).
SHRINK_EVALS = 64
#: Examples hypothesis draws from reference.strategies before the guided search (--hypothesis).
HYPOTHESIS_EXAMPLES = 32
#: Examples per hypothesis run (a timed hunt stops between runs).
HYPOTHESIS_CHUNK = 8
#: In the timed mode the hypothesis phase may take this share of --budget (its draws are slow).
HYPOTHESIS_SHARE = 0.25
#: The strategy categories with finite inputs worth maximising errors over.
HYPOTHESIS_CATEGORIES = ("extreme", "distribution")
#: Catalogue rows used as starting points per backend x op x dtype.
CATALOGUE_SEEDS = 12
#: In the timed mode, each shrink may take this share of --budget, at least SHRINK_MIN_S seconds.
SHRINK_SHARE = 0.15
SHRINK_MIN_S = 2.0
#: Rows longer than this are shrunk before they are saved.
SHRINK_ABOVE = 2

# An objective scores candidates of one row length: (error ratio, ULP error, error message or None).
Score = tuple[float, float, "str | None"]
Objective = Callable[[Sequence["Candidate"]], list[Score]]


# -- floating-point grid helpers --------------------------------------------------------------
def _ordered(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Map floats to integers that count representable values (monotone, -0 == +0)."""
    w = a.dtype.itemsize * 8
    bits = a.view(np.dtype(f"uint{w}")).astype(np.uint64)
    mag = (bits & np.uint64((1 << (w - 1)) - 1)).astype(np.int64)
    sign = (bits >> np.uint64(w - 1)).astype(bool)
    return np.where(sign, -mag, mag), w


def nudge(a: np.ndarray, k: int | np.ndarray) -> np.ndarray:
    """Move each element ``k`` representable values up (down for k < 0), never past ±max.

    >>> bool(nudge(np.array([1.0], np.float32), 1)[0] == np.nextafter(np.float32(1), np.float32(2)))
    True
    """
    a = np.asarray(a)
    fmax = np.array([finfo_max(a.dtype)], a.dtype)
    o, w = _ordered(a)
    top = _ordered(fmax)[0][0]
    o = np.clip(o + np.asarray(k, np.int64), -top, top)
    bits = np.abs(o).astype(np.uint64) | (np.where(o < 0, 1, 0).astype(np.uint64) << np.uint64(w - 1))
    return bits.astype(np.dtype(f"uint{w}")).view(a.dtype).reshape(a.shape)


def finfo_max(dtype) -> float:
    import ml_dtypes

    return float(ml_dtypes.finfo(dtype).max)


# -- candidates and the search space ----------------------------------------------------------
@dataclass
class Candidate:
    """One input row: logits ``x`` (target dtype, finite), plus what the op needs besides."""

    x: np.ndarray
    cotangent: np.ndarray | None = None     # for *_vjp: same length as x
    target: int | None = None               # for cross_entropy*: a class index
    how: tuple[str, ...] = ("random",)      # how it was made, newest step last

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def describe(self) -> str:
        """The recipe, shortened: 'random > near_tie > length' (repeats folded)."""
        steps: list[str] = []
        for s in self.how:
            if steps and steps[-1].split(" x")[0] == s:
                base, _, times = steps[-1].partition(" x")
                steps[-1] = f"{base} x{int(times or 1) + 1}"
            else:
                steps.append(s)
        head, tail = steps[:1], steps[1:]
        while tail and len(" > ".join([*head, "...", *tail])) > 160:   # keep the origin, the latest steps
            tail.pop(0)
        return " > ".join(steps if len(tail) == len(steps) - 1 else [*head, "...", *tail])


def _steps(how: tuple[str, ...], step: str, keep: int = 24) -> tuple[str, ...]:
    """The recipe with one more step: the origin and the latest ``keep - 1`` steps."""
    how = (*how, step)
    return how if len(how) <= keep else (how[0], *how[-(keep - 1):])


class SearchSpace:
    """What the hunt may try for one op and dtype: random rows and the mutation menu.

    ``start_len`` bounds the row lengths of random rows; ``max_len`` those mutations may reach.

    >>> space = SearchSpace("softmax", "float16")
    >>> rng = np.random.default_rng(0)
    >>> c = space.random(rng)
    >>> c.x.dtype == np.float16 and 2 <= c.n <= space.start_len
    True
    >>> child = space.mutate(rng, c, "overflow")         # float16 exp overflows above 11.09
    >>> bool(abs(float(child.x.max()) - 11.09) <= np.log(c.n) + 2.5), child.how
    (True, ('random', 'overflow'))
    """

    def __init__(self, op: str, dtype: str, *, max_len: int = 16384, start_len: int = 1024):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        self.op, self.dtype = op, dtype
        self.dt = np_dtype(dtype)
        self.max_len, self.start_len = max(2, int(max_len)), max(2, min(int(start_len), int(max_len)))
        fi = finfo(dtype)
        self.fmax = float(fi.max)
        self.log_max = math.log(self.fmax)
        self.log_tiny = math.log(float(fi.tiny))                 # exp(x) below this is subnormal
        self.log_sub = math.log(float(fi.smallest_subnormal))    # ... and below this it is 0
        self.log_eps = math.log(float(fi.eps))
        self.needs_cotangent = op in VJP_OPS
        self.needs_target = op in CE_OPS
        self.mutations: tuple[str, ...] = (
            "nudge_max", "near_tie", "nudge_some", "overflow", "underflow", "spread_to_threshold",
            "spread", "shift", "length", "resample", "permute")
        if self.needs_cotangent:
            self.mutations += ("cotangent",)
        if self.needs_target:
            self.mutations += ("target",)
        k = np.arange(1, int(math.log2(self.max_len)) + 1)
        ladder = np.concatenate([2**k - 1, 2**k, 2**k + 1])
        self.length_ladder = np.unique(ladder[(ladder >= 2) & (ladder <= self.max_len)])
        # Random rows take their lengths from a fixed grid (log-spaced, plus the ladder): backends
        # that compile per shape (jax, torch.compile) then compile each length once, not per row.
        grid = np.geomspace(2, self.start_len, 24).round().astype(int)
        self.length_grid = np.unique(np.concatenate(
            [grid, self.length_ladder[self.length_ladder <= self.start_len]]))

    # values -> the target dtype, finite
    def cast(self, values) -> np.ndarray:
        v = np.nan_to_num(np.asarray(values, np.float64), nan=0.0, posinf=self.fmax, neginf=-self.fmax)
        return np.clip(v, -self.fmax, self.fmax).astype(self.dt)

    def random(self, rng: np.random.Generator, n: int | None = None) -> Candidate:
        """A plain random row: normal logits of random location and scale, random length."""
        if n is None:
            n = int(rng.choice(self.length_grid))
        mu = rng.uniform(-10, 10)
        sigma = math.exp(rng.uniform(math.log(0.1), math.log(10)))
        x = self.cast(rng.normal(mu, sigma, n))
        cot = self.cast(rng.normal(0, 1, n)) if self.needs_cotangent else None
        target = int(rng.integers(n)) if self.needs_target else None
        return Candidate(x, cot, target, ("random",))

    def mutate(self, rng: np.random.Generator, parent: Candidate, name: str) -> Candidate:
        """``parent`` changed by mutation ``name`` (one of ``self.mutations``)."""
        with np.errstate(all="ignore"):  # means/spreads of rows near ±max overflow; cast() clips them
            child = getattr(self, f"_m_{name}")(rng, parent)
        return replace(child, how=_steps(parent.how, name))

    # -- the mutation menu. Each returns a new Candidate (how is set by mutate) ---------------
    def _with_x(self, c: Candidate, x64) -> Candidate:
        return replace(c, x=self.cast(x64))

    def _m_nudge_max(self, rng, c: Candidate) -> Candidate:
        x = c.x.copy()
        i = int(np.argmax(x))
        x[i] = nudge(x[i:i + 1], int(rng.choice([-4, -3, -2, -1, 1, 2, 3, 4])))[0]
        return replace(c, x=x)

    def _m_near_tie(self, rng, c: Candidate) -> Candidate:
        """Put 1-3 other elements within a few ULP of the maximum (0 ULP: an exact tie)."""
        if c.n < 2:
            return self._m_nudge_max(rng, c)
        x = c.x.copy()
        i = int(np.argmax(x))
        others = np.delete(np.arange(c.n), i)
        idx = rng.choice(others, size=int(rng.integers(1, min(3, c.n - 1) + 1)), replace=False)
        ks = rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3], size=idx.size)
        x[idx] = nudge(np.repeat(x[i:i + 1], idx.size), ks)
        return replace(c, x=x)

    def _m_nudge_some(self, rng, c: Candidate) -> Candidate:
        x = c.x.copy()
        idx = rng.choice(c.n, size=int(rng.integers(1, min(8, c.n) + 1)), replace=False)
        x[idx] = nudge(x[idx], rng.integers(-8, 9, size=idx.size))
        return replace(c, x=x)

    def _m_overflow(self, rng, c: Candidate) -> Candidate:
        """Shift the row so its max sits near where exp(max), or n*exp(max), overflows."""
        x = c.x.astype(np.float64)
        level = self.log_max - rng.choice([0.0, 0.0, math.log(max(c.n, 2)), math.log(2.0)])
        offset = rng.choice([-1.0, 1.0]) * rng.choice([0.0, 1e-3, 1e-2, 0.3, 2.0])
        return self._with_x(c, x + (level + offset - x.max()))

    def _m_underflow(self, rng, c: Candidate) -> Candidate:
        """Put some elements where exp(x_i - max) turns subnormal or flushes to zero."""
        if c.n < 2:
            return self._m_overflow(rng, c)
        x = c.x.astype(np.float64)
        i = int(np.argmax(x))
        others = np.delete(np.arange(c.n), i)
        idx = rng.choice(others, size=int(rng.integers(1, max(2, (c.n - 1) // 2 + 1))), replace=False)
        level = rng.choice([self.log_tiny, self.log_sub, 0.5 * (self.log_tiny + self.log_sub),
                            self.log_eps, self.log_tiny + self.log_eps])
        x[idx] = x[i] + level + rng.uniform(-2.0, 2.0, size=idx.size)
        return self._with_x(c, x)

    def _m_spread_to_threshold(self, rng, c: Candidate) -> Candidate:
        """Scale the row so max - min equals a threshold of exp (overflow, underflow, eps)."""
        x = c.x.astype(np.float64)
        span = float(x.max() - x.min())
        if span == 0.0 or not np.isfinite(span):
            return self._m_underflow(rng, c)
        level = rng.choice([self.log_max, -self.log_tiny, -self.log_sub, -self.log_eps,
                            self.log_max - math.log(max(c.n, 2))])
        level *= 1.0 + rng.choice([0.0, 1e-3, -1e-3, 0.05, -0.05])
        return self._with_x(c, x.max() + (x - x.max()) * (level / span))

    def _m_spread(self, rng, c: Candidate) -> Candidate:
        x = c.x.astype(np.float64)
        f = math.exp(rng.uniform(math.log(0.1), math.log(30.0)))
        return self._with_x(c, x.max() + (x - x.max()) * f)

    def _m_shift(self, rng, c: Candidate) -> Candidate:
        """Add a constant: large offsets make the grid coarse around the maximum."""
        hi = min(self.fmax / 8, 1e6)
        shift = rng.choice([-1.0, 1.0]) * math.exp(rng.uniform(math.log(1e-2), math.log(hi)))
        return self._with_x(c, c.x.astype(np.float64) + shift)

    def _m_length(self, rng, c: Candidate) -> Candidate:
        """New row length: powers of two and their neighbours (kernel block edges), x2, /2, ±1."""
        beyond = self.length_ladder[self.length_ladder > self.start_len]
        if beyond.size and rng.random() < 0.5:
            # Random rows already cover lengths up to start_len: half the moves go beyond.
            n_new = int(rng.choice(beyond))
        else:
            choices = [*self.length_ladder.tolist(), 2 * c.n, c.n // 2, c.n + 1, c.n - 1]
            n_new = int(np.clip(rng.choice(choices), 2, self.max_len))
        if n_new == c.n:
            n_new = min(self.max_len, c.n + 1) if c.n < self.max_len else c.n - 1
        if n_new > c.n:
            idx = np.concatenate([np.arange(c.n), rng.choice(c.n, n_new - c.n)])
            new = self._take(c, idx)
            # The added elements are copies (ties when they copy the max), fresh values of the
            # row's distribution, or values just below the max: a flat long row, where the sum's
            # rounding error grows and every element carries weight.
            fill = int(rng.integers(3))
            if fill:
                x = new.x.astype(np.float64)
                x[c.n:] = (rng.normal(x[:c.n].mean(), x[:c.n].std() + 1e-3, n_new - c.n) if fill == 1
                           else x[:c.n].max() - rng.exponential(1.0, n_new - c.n))
                new = self._with_x(new, x)
            return new
        keep = self._keep(rng, c, n_new)
        return self._take(c, keep)

    def _keep(self, rng, c: Candidate, n_new: int) -> np.ndarray:
        """Sorted indices of ``n_new`` elements, always including the max and the target."""
        must = {int(np.argmax(c.x))}
        if c.target is not None:
            must.add(int(c.target))
        rest = np.setdiff1d(np.arange(c.n), np.fromiter(must, int))
        extra = rng.choice(rest, size=max(0, n_new - len(must)), replace=False) if rest.size else []
        return np.sort(np.concatenate([np.fromiter(must, int), np.asarray(extra, int)]))

    def _take(self, c: Candidate, idx: np.ndarray) -> Candidate:
        target = None
        if c.target is not None:
            hits = np.flatnonzero(idx == c.target)
            target = int(hits[0]) if hits.size else 0
        return replace(c, x=c.x[idx].copy(), target=target,
                       cotangent=None if c.cotangent is None else c.cotangent[idx].copy())

    def _m_permute(self, rng, c: Candidate) -> Candidate:
        """Reorder the row: blocked kernels and tail loops treat positions differently."""
        order = np.argsort(c.x.astype(np.float64), kind="stable")
        i = int(np.argmax(c.x))
        rest = np.delete(np.arange(c.n), i)
        idx = [order, order[::-1], np.arange(c.n)[::-1], np.roll(np.arange(c.n), int(rng.integers(1, c.n))),
               np.append(rest, i), np.insert(rest, 0, i), rng.permutation(c.n)][int(rng.integers(7))]
        return self._take(c, np.asarray(idx))

    def _m_resample(self, rng, c: Candidate) -> Candidate:
        if c.n < 2:
            return self._m_shift(rng, c)
        x = c.x.astype(np.float64)
        others = np.delete(np.arange(c.n), int(np.argmax(x)))
        frac = rng.choice([0.05, 0.2, 0.5])
        idx = rng.choice(others, size=max(1, int(frac * others.size)), replace=False)
        x[idx] = rng.normal(x.mean(), x.std() + 1e-3, idx.size)
        return self._with_x(c, x)

    def _m_cotangent(self, rng, c: Candidate) -> Candidate:
        """Cotangents that make the vjp cancel: constant, one-hot at the max, equal to x, huge."""
        n = c.n
        kind = rng.integers(5)
        if kind == 0:
            v = rng.normal(0, 1, n)
        elif kind == 1:     # constant + tiny noise: v - <v, s> cancels almost exactly
            v = rng.normal() + rng.normal(0, 1e-3, n) * rng.choice([0.0, 1.0])
        elif kind == 2:
            v = np.zeros(n)
            v[int(np.argmax(c.x))] = 1.0
        elif kind == 3:
            v = c.x.astype(np.float64)
        else:
            v = (c.cotangent.astype(np.float64) if c.cotangent is not None else rng.normal(0, 1, n)) * 1e3
        return replace(c, cotangent=self.cast(v))

    def _m_target(self, rng, c: Candidate) -> Candidate:
        order = np.argsort(c.x.astype(np.float64), kind="stable")
        pick = rng.integers(4)
        t = [order[-1], order[0], order[-2] if c.n > 1 else order[-1], rng.integers(c.n)][pick]
        return replace(c, target=int(t))


# -- the search engine ------------------------------------------------------------------------
@dataclass
class Evaluated:
    """A candidate with its scores; ``index`` is its evaluation number (for ties and provenance)."""

    cand: Candidate
    error_ratio: float
    ulp: float
    index: int
    error: str | None = None

    def score(self, objective: str) -> float:
        return self.error_ratio if objective == "error_ratio" else self.ulp


@dataclass
class SearchResult:
    """What a search found: the worst input per objective, and how far it got."""

    best: dict[str, Evaluated]
    evals: int
    elapsed_s: float
    stopped_by: str                                   # "evals" or "time"
    improvements: list[tuple[int, str, float]] = field(default_factory=list)  # (eval, objective, score)
    mutation_credit: dict[str, float] = field(default_factory=dict)


def _clean(v: float) -> float:
    """NaN scores count as the worst (a NaN where a value exists is wrong)."""
    v = float(v)
    return math.inf if math.isnan(v) else v


def evaluate(objective: Objective, cands: Sequence[Candidate]) -> list[Score]:
    """Score candidates, one objective call per row length, results in the input order."""
    by_len: dict[int, list[int]] = {}
    for i, c in enumerate(cands):
        by_len.setdefault(c.n, []).append(i)
    out: list[Score | None] = [None] * len(cands)
    for positions in by_len.values():
        scores = objective([cands[i] for i in positions])
        for i, (ratio, ulp, err) in zip(positions, scores):
            out[i] = (_clean(ratio), _clean(ulp), err)
    return out  # type: ignore[return-value]


def search(objective: Objective, space: SearchSpace, *, seed: int | Sequence[int] = 0,
           max_evals: int | None = None, budget_s: float | None = None, guided: bool = True,
           starts: Iterable[Candidate] = (), prior: Sequence[tuple[Candidate, Score]] = (),
           population: int = POPULATION, explore: int = EXPLORE, elite: int = ELITE) -> SearchResult:
    """Maximise the error ratio and the ULP error that ``objective`` measures.

    ``guided=False`` is plain random sampling of the same space and budget (the baseline the
    tests compare against). ``prior`` are rows scored already (the hypothesis phase): they
    count as evaluations; ``starts`` are evaluated first. Exactly one of ``max_evals`` (rows;
    deterministic) or ``budget_s`` (seconds) must bound the search; see the module docstring.
    """
    if (max_evals is None) == (budget_s is None):
        raise ValueError("give exactly one of max_evals or budget_s")
    prior = list(prior)
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    deadline = t0 + budget_s if budget_s is not None else math.inf
    pending = list(starts)
    elites: dict[str, list[Evaluated]] = {o: [] for o in OBJECTIVES}
    credit = dict.fromkeys(space.mutations, 0.0)
    improvements: list[tuple[int, str, float]] = []
    evals, generation, stopped_by = 0, 0, "evals"
    for cand, (ratio, ulp, err) in prior:
        ev = Evaluated(cand, _clean(ratio), _clean(ulp), evals, err)
        for obj in OBJECTIVES:
            if _admit(elites[obj], ev, obj, elite) == 0:
                improvements.append((ev.index, obj, ev.score(obj)))
        evals += 1
    while True:
        room = population if max_evals is None else min(population, max_evals - evals)
        if room <= 0:
            break
        if time.monotonic() >= deadline:
            stopped_by = "time"
            break
        batch: list[Candidate] = []
        used: list[tuple[str, ...]] = []
        target_obj = OBJECTIVES[generation % len(OBJECTIVES)]
        while len(batch) < room:
            if pending:
                batch.append(pending.pop(0))
                used.append(())
            elif not guided or evals - len(prior) + len(batch) < explore or not elites[target_obj]:
                batch.append(space.random(rng))
                used.append(())
            else:
                pool = elites[target_obj]
                parent = pool[min(int(rng.geometric(0.5)) - 1, len(pool) - 1)].cand
                names = list(credit)
                # Half uniform, half by credit: mutations that paid off are tried more often, yet
                # none starves (credit also flows from noise-level gains on a correct kernel).
                weights = np.array([1.0 + credit[m] for m in names])
                p = 0.5 / len(names) + 0.5 * weights / weights.sum()
                steps = 1 + int(rng.random() < 0.35) + int(rng.random() < 0.1)
                child, chosen = parent, []
                for _ in range(steps):
                    m = names[int(rng.choice(len(names), p=p / p.sum()))]
                    child = space.mutate(rng, child, m)
                    chosen.append(m)
                batch.append(child)
                used.append(tuple(chosen))
        for k, (cand, (ratio, ulp, err)) in enumerate(zip(batch, evaluate(objective, batch))):
            ev = Evaluated(cand, ratio, ulp, evals + k, err)
            for obj in OBJECTIVES:
                rank = _admit(elites[obj], ev, obj, elite)
                if rank is None:
                    continue
                if rank == 0:
                    improvements.append((ev.index, obj, ev.score(obj)))
                for m in used[k]:
                    credit[m] += 1.0 if rank == 0 else 0.2
        evals += len(batch)
        generation += 1
    best = {o: elites[o][0] for o in OBJECTIVES if elites[o]}
    return SearchResult(best, evals, time.monotonic() - t0, stopped_by, improvements, credit)


def _admit(pool: list[Evaluated], ev: Evaluated, objective: str, size: int) -> int | None:
    """Insert ``ev`` into the sorted elite ``pool``; its rank, or None when not admitted."""
    s = ev.score(objective)
    if len(pool) >= size and s <= pool[-1].score(objective):
        return None
    rank = next((i for i, p in enumerate(pool) if s > p.score(objective)), len(pool))
    pool.insert(rank, ev)
    del pool[size:]
    return rank


# -- measuring a backend against the reference ------------------------------------------------
def ce_options(op: str) -> dict | None:
    return dict(CE_OPTIONS[op]) if op in CE_OPS else None


def case_input(op: str, dtype: str, cands: Sequence[Candidate], name: str = "hunt"):
    """The candidates (same length) stacked into one ``reference.cases.CaseInput``, class axis last."""
    from softmaxbench.reference.cases import CaseInput

    x = np.stack([c.x for c in cands])
    cot = np.stack([c.cotangent for c in cands]) if op in VJP_OPS else None
    target = np.array([c.target for c in cands], np.int64) if op in CE_OPS else None
    return CaseInput(case=name, dtype=dtype, axis=-1, x=x, cotangent=cot, target=target,
                     ce_options=ce_options(op) or {})


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
    as ``metrics.compare`` forgives them (``check`` reports them as a deviation). A backend that
    raises, or returns the wrong shape, scores inf with the reason.

    Every backend call gets at least ``rows`` rows (short batches are padded with copies of
    their last row, whose results are dropped), so a row length is one array shape to backends
    that compile per shape.
    """

    def __init__(self, backend, op: str, dtype: str, rows: int = POPULATION):
        from softmaxbench.reference import metrics, ops

        self.backend, self.op, self.dtype, self.rows = backend, op, dtype, rows
        self.ops, self.metrics = ops, metrics
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
        ratio = np.where(np.isnan(ratio), np.inf, ratio).reshape(r, -1)
        ulp = np.where(np.isnan(ulp), np.inf, ulp).reshape(r, -1)
        rmax = ratio.max(axis=1) if ratio.shape[1] else np.zeros(r)
        umax = ulp.max(axis=1) if ulp.shape[1] else np.zeros(r)
        return [(float(a), float(b), None) for a, b in zip(rmax, umax)]


# -- shrinking --------------------------------------------------------------------------------
def shrink(objective: Objective, space: SearchSpace, ev: Evaluated, objective_name: str, *,
           max_evals: int = SHRINK_EVALS, keep: float = 0.9, threshold: float | None = None,
           deadline: float = math.inf, batch: int = POPULATION) -> Evaluated:
    """A shorter row that keeps the error: at least ``keep`` of it, and above ``threshold`` if
    the original was.

    Delta debugging (Zeller's ddmin) over contiguous chunks, never removing the max or the
    target: split the row into 2, 4, 8, ... chunks, try keeping only one chunk, then removing
    one; take the first row that keeps the error and split again. Deterministic; stops after
    ``max_evals`` rows or at ``deadline`` (``time.monotonic()``, the timed mode of a hunt).
    """
    best, spent, parts = ev, 0, 2
    goal = ev.score(objective_name)
    floor = goal * keep if math.isfinite(goal) else math.inf

    def good(score: Score) -> bool:
        s = score[0] if objective_name == "error_ratio" else score[1]
        if threshold is not None and goal > threshold and not s > threshold:
            return False
        return s >= floor

    while spent < max_evals and best.cand.n > 2 and parts <= best.cand.n and time.monotonic() < deadline:
        c = best.cand
        everything = np.arange(c.n)
        protect = np.array(sorted({int(np.argmax(c.x)), *(() if c.target is None else (c.target,))}))
        chunks = np.array_split(everything, parts)
        subsets = [np.union1d(ch, protect) for ch in chunks] if parts > 2 else []
        complements = [np.setdiff1d(everything, np.setdiff1d(ch, protect)) for ch in chunks]
        tries = [space._take(c, idx) for idx in [*subsets, *complements] if 2 <= idx.size < c.n]
        winner = None
        for start in range(0, len(tries), batch):
            part = tries[start:start + min(batch, max_evals - spent)]
            if not part or time.monotonic() >= deadline:
                break
            scores = evaluate(objective, part)
            spent += len(part)
            hit = next((i for i, sc in enumerate(scores) if good(sc)), None)
            if hit is not None:
                winner = (part[hit], scores[hit])
                break
        if winner is None:
            parts *= 2
            continue
        (cand, (r, u, e)) = winner
        best = Evaluated(replace(cand, how=_steps(c.how, "shrink")), r, u, ev.index, e)
        parts = 2
    return best


# -- one hunt ---------------------------------------------------------------------------------
@dataclass
class Finding:
    """The worst input found for one objective, judged on its own as ``check`` judges it."""

    objective: str
    cand: Candidate
    record: dict                     # the check record (verdict, max_ulp, max_error_ratio, repro...)
    score: float                     # the search's score for the objective (inf where a record has None)
    case: str                        # the regression case's name
    saved: bool                      # newly written to the found-cases file

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
        order = ("error", "fail", "deviation", "pass", "unsupported")
        return min((f.verdict for f in self.findings), key=order.index, default="pass")


def stream_seed(seed: int, backend: str, op: str, dtype: str) -> list[int]:
    """One independent random stream per backend/op/dtype: selection order never matters."""
    return [int(seed), zlib.crc32(f"{backend}/{op}/{dtype}".encode())]


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


def rows_of(inputs, space: SearchSpace, origin: str, max_rows: int | None = 2) -> list[Candidate]:
    """The rows of a ``CaseInput`` the hunt can start from: class axis last, finite, with a
    cotangent or an in-range class index where the op needs one, at most ``max_rows``."""
    if inputs is None or np.ndim(inputs.x) == 0:
        return []
    x = np.moveaxis(np.asarray(inputs.x), inputs.axis, -1)
    if not 2 <= x.shape[-1] <= space.max_len or x.size == 0:
        return []
    x = x.reshape(-1, x.shape[-1])
    cot = tgt = None
    if space.needs_cotangent:
        if inputs.cotangent is None:
            return []
        cot = np.moveaxis(np.asarray(inputs.cotangent), inputs.axis, -1).reshape(x.shape)
    if space.needs_target:
        t = inputs.target
        if t is None or np.asarray(t).dtype.kind not in "iu" or np.asarray(t).size != x.shape[0]:
            return []
        tgt = np.asarray(t).reshape(-1)
    rows: list[Candidate] = []
    for r in range(x.shape[0] if max_rows is None else min(max_rows, x.shape[0])):
        if not np.all(np.isfinite(x[r].astype(np.float64))):
            continue
        if cot is not None and not np.all(np.isfinite(cot[r].astype(np.float64))):
            continue
        if tgt is not None and not 0 <= int(tgt[r]) < x.shape[1]:
            continue
        rows.append(Candidate(x[r].astype(space.dt), None if cot is None else cot[r].astype(space.dt),
                              None if tgt is None else int(tgt[r]), (origin,)))
    return rows


def catalogue_starts(space: SearchSpace, rng: np.random.Generator, case_names: Sequence[str] | None,
                     limit: int = CATALOGUE_SEEDS, cache: dict | None = None) -> list[Candidate]:
    """Rows of catalogue cases for this op and dtype (finite, class axis last) to start from."""
    from softmaxbench.reference import cases as catalogue_mod

    cases = ([catalogue_mod.get(n) for n in case_names] if case_names else catalogue_mod.catalogue())
    rows: list[Candidate] = []
    for case in cases:
        if space.op not in case.ops or space.dtype not in case.dtypes or case.expect_error:
            continue
        key = (case.name, space.dtype)
        if cache is not None and key in cache:
            inputs = cache[key]
        else:
            try:
                inputs = case.build(space.dtype)
            except Exception:  # noqa: BLE001 - a case that cannot build here is no starting point
                inputs = None
            if cache is not None:
                cache[key] = inputs
        rows += rows_of(inputs, space, f"catalogue:{case.name}")
    if len(rows) > limit:
        rows = [rows[i] for i in np.sort(rng.choice(len(rows), limit, replace=False))]
    return rows


def hypothesis_phase(objective: Objective, space: SearchSpace, *, seed: int, examples: int,
                     max_evals: int | None = None, deadline: float = math.inf,
                     categories: tuple[str, ...] = HYPOTHESIS_CATEGORIES,
                     chunk: int = HYPOTHESIS_CHUNK) -> tuple[list[tuple[Candidate, Score]], int]:
    """Score ``examples`` inputs drawn by hypothesis from ``reference.strategies``, guided by
    ``hypothesis.target()`` on the error ratio and the ULP error.

    Returns every scored row and the number of examples drawn. Deterministic: runs of ``chunk``
    examples, each under ``@seed``, no example database, no deadline. It stops before a run once
    ``deadline`` has passed and skips rows beyond ``max_evals``, so a timed phase that drew K
    examples scores exactly what ``examples=K`` scores.
    """
    from hypothesis import HealthCheck, Phase, given, settings, target
    from hypothesis import seed as hseed

    from softmaxbench.reference.strategies import case_inputs

    scored: list[tuple[Candidate, Score]] = []
    strategy = case_inputs(space.dtype, space.op, categories)

    def probe(inputs) -> None:
        if max_evals is not None and len(scored) >= max_evals:
            return
        rows = rows_of(inputs, space, f"hypothesis:{inputs.case}", max_rows=None)
        if max_evals is not None:
            rows = rows[:max_evals - len(scored)]
        if not rows:
            return
        scores = evaluate(objective, rows)
        scored.extend(zip(rows, scores))
        # target() wants finite observations: an infinite error is simply the largest one.
        target(min(max(sc[0] for sc in scores), 1e300), label="error_ratio")
        target(min(max(sc[1] for sc in scores), 1e300), label="ulp")

    drawn = 0
    for run, start in enumerate(range(0, examples, chunk)):
        if time.monotonic() >= deadline or (max_evals is not None and len(scored) >= max_evals):
            break
        drawn += min(chunk, examples - start)
        settings_ = settings(max_examples=min(chunk, examples - start), database=None, deadline=None,
                             phases=(Phase.generate, Phase.target), suppress_health_check=list(HealthCheck),
                             print_blob=False)
        hseed(zlib.crc32(f"{seed}/{run}".encode()))(settings_(given(strategy)(probe)))()
    return scored, drawn


def found_starts(dirs: Sequence[Path], backend: str, op: str, dtype: str) -> list[Candidate]:
    """The saved cases of this backend/op/dtype as starting points (earlier hunts build on)."""
    from softmaxbench.suite.hunt import store as found_cases

    out: list[Candidate] = []
    for fc in found_cases.cases_for(list(dirs), backend, op, dtype):
        e = fc.entry
        x = found_cases.decode_array(e["x"]).reshape(-1)
        cot = found_cases.decode_array(e.get("cotangent"))
        tgt = found_cases.decode_array(e.get("target"))
        out.append(Candidate(x, None if cot is None else cot.reshape(-1),
                             None if tgt is None else int(tgt.reshape(-1)[0]), (f"saved:{fc.name}",)))
    return out


def hunt(backend, op: str, dtype: str, *, budget_s: float | None = None, max_evals: int | None = None,
         seed: int = 0, found_dir: str | os.PathLike | None = None, start_dirs: Sequence[Path] = (),
         use_catalogue: bool = True, case_names: Sequence[str] | None = None, max_len: int = 16384,
         start_len: int = 1024, save: bool = True, objective: Objective | None = None,
         catalogue_cache: dict | None = None, plugins: Sequence[str] = (),
         hypothesis_examples: int = HYPOTHESIS_EXAMPLES, use_saved: bool = True) -> HuntResult:
    """Hunt one backend x op x dtype; save new worst cases to ``found_dir`` when ``save``.

    Starts from the saved cases in ``found_dir`` and ``start_dirs`` (unless not ``use_saved``)
    and, when ``use_catalogue``, a sample of catalogue rows (of ``case_names``, default all).

    >>> from softmaxbench.backends.registry import get
    >>> r = hunt(get("numpy"), "softmax", "float32", max_evals=64, save=False, use_catalogue=False)
    >>> r.evals, r.verdict
    (64, 'pass')
    """
    from softmaxbench.reference.metrics import THRESHOLDS
    from softmaxbench.suite.hunt import store as found_cases

    space = SearchSpace(op, dtype, max_len=max_len, start_len=start_len)
    key = stream_seed(seed, backend.name, op, dtype)
    objective = objective or ReferenceObjective(backend, op, dtype)
    starts = found_starts([*([Path(found_dir)] if found_dir else []), *start_dirs], backend.name, op,
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
        if ev is None or id(ev.cand) in done:     # the same input can be the worst for both
            continue
        done.add(id(ev.cand))
        if ev.cand.n > SHRINK_ABOVE and ev.error is None:
            allowance = max(SHRINK_SHARE * budget_s, SHRINK_MIN_S) if timed else math.inf
            ev = shrink(objective, space, ev, obj, deadline=time.monotonic() + allowance,
                        threshold=THRESHOLDS.get(dtype) if obj == "error_ratio" else None)
        c = ev.cand
        arrays = (c.x[None, :], None if c.cotangent is None else c.cotangent[None, :],
                  None if c.target is None else np.array([c.target], np.int64), ce_options(op))
        name = found_cases.case_name(backend.name, op, dtype, *arrays)
        rec = measure(backend, op, dtype, c, name, plugins)
        saved = False
        if save and found_dir is not None and rec["verdict"] != "unsupported":
            entry = found_cases.make_entry(
                op, dtype, *arrays, backend=backend.name, objective=obj,
                max_error_ratio=rec.get("max_error_ratio"), max_ulp=rec.get("max_ulp"),
                how=c.describe(), seed=seed, evals=res.evals, verdict=rec["verdict"])
            _, saved = found_cases.save_found_case(found_dir, backend.name, op, dtype, entry)
        findings.append(Finding(obj, c, rec, ev.score(obj), name, saved))
    return HuntResult(backend.name, getattr(backend, "device", "cpu"), op, dtype, res.evals, res.elapsed_s,
                      res.stopped_by, findings, seed, None if found_dir is None else str(found_dir), drawn)


# -- records, repro, table --------------------------------------------------------------------
def records(result: HuntResult, machine: str | None = None) -> list[dict]:
    """The ``check`` records of a hunt's findings (``found_by`` "hunt"), for ``OUT/results.jsonl``.

    Beyond the check record's fields: ``hunt_objective`` (what the search maximised),
    ``hunt_evals`` and ``hunt_hypothesis`` (rows evaluated, hypothesis examples drawn:
    ``--evals``/``--hypothesis`` replay the search) and ``seed``.
    """
    out = []
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


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def table(results: Sequence[HuntResult]) -> str:
    """The max-known-error table: backend x op x dtype -> worst error ratio, worst ULP, case."""
    from tabulate import tabulate

    rows = []
    for r in results:
        by_ratio = max(r.findings, key=lambda f: f.metric("max_error_ratio") or 0.0, default=None)
        rows.append((r.backend, r.op, r.dtype, _fmt(r.worst_ratio), _fmt(r.worst_ulp), r.verdict, r.evals,
                     by_ratio.case if by_ratio else "-"))
    return tabulate(rows, headers=["backend", "op", "dtype", "max error ratio", "max ULP", "verdict",
                                   "evals", "worst case"])


# -- the CLI verb -----------------------------------------------------------------------------
def _writable(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
        return os.access(d, os.W_OK)
    except OSError:
        return False


def hunt_main(backends: str | None = None, ops: str | None = None, dtypes: str | None = None,
              cases: str | None = None, plugins: Sequence[str] = (), quick: bool = False,
              budget: float = 60.0, seed: int = 0, out: str | None = None, save: bool = True,
              evals: int | None = None, max_len: int = 16384, hypothesis_examples: int = HYPOTHESIS_EXAMPLES,
              fresh: bool = False, **_: Any) -> int:
    """The ``hunt`` verb: search each selected backend x op x dtype, save and report findings.

    Results go to ``OUT/results.jsonl`` and ``OUT/run.json`` (OUT defaults to
    ``softmaxbench-results/hunt``). New worst cases are saved to ``OUT/found/`` when ``--out``
    is given, else to the package's ``reference/found/`` (when writable). Returns the exit code:
    1 when a hunt found an input on which a backend fails, else 0.
    """
    import click

    from softmaxbench.backends.base import OPS
    from softmaxbench.errors import InputError
    from softmaxbench.suite.cli.options import split_csv
    from softmaxbench.suite.hunt import store as found_cases
    from softmaxbench.suite.records import ResultsWriter, machine_info, new_run, now_iso, write_run

    if evals is not None and evals < 1:
        raise InputError("--evals must be at least 1")
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

    selected = _select_backends(split_csv(backends), tuple(plugins), InputError)
    out_dir = Path(out) if out else Path("softmaxbench-results/hunt")
    if out:
        found_dir = out_dir / "found"
    else:
        found_dir = found_cases.package_dir()
        if save and not _writable(found_dir):
            found_dir = out_dir / "found"
            click.echo(f"note: {found_cases.package_dir()} is not writable; saving cases to {found_dir}")
    start_dirs = [d for d in found_cases.default_dirs() if d.resolve() != found_dir.resolve()]

    run = new_run("hunt", "softmaxbench hunt " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in (("backends", backends), ("ops", ops), ("dtypes", dtypes),
                                                   ("budget", budget), ("evals", evals), ("seed", seed))
        if v is not None), seed=seed)
    write_run(out_dir, run)
    label = run["machine"].get("label") or machine_info()["label"]
    results: list[HuntResult] = []
    cache: dict = {}
    bound = f"{evals} rows each" if evals is not None else f"{budget:g} s each"
    with ResultsWriter(out_dir) as writer:
        for b in selected:
            supported = set(b.supported_ops())
            for op in op_list:
                if op not in supported:
                    click.echo(f"{b.name} {op}: unsupported, skipped")
                    continue
                for dtype in dtype_list or DTYPES:
                    if dtype not in b.dtypes:
                        if dtype_list:
                            click.echo(f"{b.name} {op} {dtype}: dtype unsupported, skipped")
                        continue
                    r = hunt(b, op, dtype, budget_s=budget, max_evals=evals, seed=seed,
                             found_dir=found_dir if save else None, start_dirs=start_dirs, save=save,
                             case_names=case_names, max_len=max_len, catalogue_cache=cache, plugins=plugins,
                             hypothesis_examples=hypothesis_examples, use_saved=not fresh)
                    if not save:
                        r.found_dir = None
                    for rec in records(r, label):
                        writer.write(rec)
                    if r.stopped_by == "time" and r.evals <= EXPLORE:
                        click.echo(f"note: {b.name} {op} {dtype} evaluated only {r.evals} rows in "
                                   f"{budget:g} s (a compile per row length?); give it a larger --budget")
                    new = sum(f.saved for f in r.findings)
                    click.echo(f"{b.name} {op} {dtype}: {r.evals} rows in {r.elapsed_s:.1f} s, "
                               f"max error ratio {_fmt(r.worst_ratio)}, max ULP {_fmt(r.worst_ulp)}, "
                               f"{r.verdict}" + (f", {new} new case(s) saved" if new else ""))
                    results.append(r)
    run["finished"] = now_iso()
    write_run(out_dir, run)
    if not results:
        raise InputError(f"nothing to hunt: no selected backend supports the selected ops/dtypes ({bound})")
    click.echo("")
    click.echo("Max known error (hunt " + bound + f", seed {seed}):")
    click.echo(table(results))
    click.echo(f"\nrecords: {out_dir / 'results.jsonl'}" + (f"; saved cases: {found_dir}" if save else ""))
    if evals is None:
        click.echo("replay one row exactly: --evals <hunt_evals> --hypothesis <hunt_hypothesis> "
                   f"--seed {seed} (fields of its records)")
    return 1 if any(r.verdict in ("fail", "error") for r in results) else 0


def _select_backends(names: list[str] | None, plugins: tuple[str, ...], error) -> list:
    """Named backends (unknown -> error, unavailable -> skipped with a note), or every available one."""
    import click

    from softmaxbench.backends import registry

    if names:
        chosen = []
        for n in names:
            try:
                b = registry.get(n, plugins=plugins)
            except LookupError as exc:
                raise error(str(exc.args[0] if exc.args else exc)) from None
            why = b.unavailable()
            if why:
                click.echo(f"{n}: unavailable here ({why}), skipped")
            else:
                chosen.append(b)
    else:
        chosen = [e.backend for e in registry.discover(plugins)
                  if e.backend is not None and not e.unavailable]
    if not chosen:
        raise error("no selected backend is available here (see 'softmaxbench list')")
    return chosen
