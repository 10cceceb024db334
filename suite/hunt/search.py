"""The guided search: maximise the error ratio and the ULP error an objective measures.

:func:`search` runs random rows, then generations of children of the worst inputs found so far,
each made by one to three mutations of :class:`~softmaxbench.suite.hunt.space.SearchSpace`;
mutations that produced new worst cases are chosen more often. Before it, a hunt scores its
starting points (:func:`found_starts`, :func:`catalogue_starts`) and the inputs hypothesis draws
from ``reference.strategies`` (:func:`hypothesis_phase`). Budget and determinism: see
:mod:`softmaxbench.suite.hunt`.

>>> from softmaxbench.suite.hunt.space import SearchSpace
>>> from softmaxbench.suite.hunt.search import search
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
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from softmaxbench.suite.hunt.space import Candidate, SearchSpace, rows_of

OBJECTIVES: tuple[str, ...] = ("error_ratio", "ulp")
#: Rows evaluated per generation (one backend call per row length).
POPULATION = 8
#: Rows of the exploration phase (saved cases, catalogue rows, random rows) before mutation starts.
EXPLORE = 32
#: Worst inputs kept per objective; parents are drawn from them, the worst most often.
ELITE = 4
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

# An objective scores candidates of one row length: (error ratio, ULP error, error message or None).
# An objective that says ``stopped`` (an attribute, optional) ends the search it serves.
Score = tuple[float, float, "str | None"]
Objective = Callable[[Sequence[Candidate]], list[Score]]


class Lost(str):
    """The error message of a row whose call lost the worker (crash, timeout): such rows are
    recorded by the objective and never become parents or findings."""


def stopped(objective: Objective) -> bool:
    """Has the objective asked the search to end (a hunt that lost too many workers)?"""
    return bool(getattr(objective, "stopped", False))


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
    stopped_by: str                                   # "evals", "time" or "lost" (workers)
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
        if stopped(objective):
            stopped_by = "lost"
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
    if isinstance(ev.error, Lost):
        return None
    s = ev.score(objective)
    if len(pool) >= size and s <= pool[-1].score(objective):
        return None
    rank = next((i for i, p in enumerate(pool) if s > p.score(objective)), len(pool))
    pool.insert(rank, ev)
    del pool[size:]
    return rank



# -- starting points and the hypothesis phase -------------------------------------------------
def stream_seed(seed: int, backend: str, op: str, dtype: str) -> list[int]:
    """One independent random stream per backend/op/dtype: selection order never matters."""
    return [int(seed), zlib.crc32(f"{backend}/{op}/{dtype}".encode())]


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
        if time.monotonic() >= deadline or (max_evals is not None and len(scored) >= max_evals) \
                or stopped(objective):
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

