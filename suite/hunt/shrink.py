"""Shrinking a finding: a shorter row that keeps the error (delta debugging over chunks).

Shrinking takes at most :data:`SHRINK_EVALS` further rows per finding, and in the timed mode at
most :data:`SHRINK_SHARE` of the budget, or :data:`SHRINK_MIN_S` when that is more.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np

from softmaxbench.suite.hunt.search import POPULATION, Evaluated, Objective, Score, evaluate
from softmaxbench.suite.hunt.space import SearchSpace, _steps

#: Evaluations the shrinker may spend on each finding (independent of the budget).
SHRINK_EVALS = 64
#: In the timed mode, each shrink may take this share of --budget, at least SHRINK_MIN_S seconds.
SHRINK_SHARE = 0.15
SHRINK_MIN_S = 2.0
#: Rows longer than this are shrunk before they are saved.
SHRINK_ABOVE = 2


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

