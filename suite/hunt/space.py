"""What the hunt may try: input rows (:class:`Candidate`), the search space of one op and dtype
(:class:`SearchSpace`: random rows and the mutation menu), and the conversions between rows and
the ``reference.cases.CaseInput`` the reference and the backends take.

The mutation menu knows where kernels break: ULP nudges of the maximum, near-ties with the
maximum, rows shifted or spread so that ``exp`` lands near the dtype's overflow and underflow
thresholds, row lengths at powers of two and beyond, reordered and resampled elements,
cotangents that cancel (vjp) and targets at the extremes (cross-entropy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from softmaxbench.reference.dtypes import DTYPES, finfo, np_dtype
from softmaxbench.vocabulary import CROSS_ENTROPY_OPS, GRADIENT_OPS

#: Options the hunt gives cross-entropy: per-row losses (so rows of a batch score separately),
#: and the summed loss for the gradient (so a row's gradient does not depend on the batch).
CE_OPTIONS: dict[str, dict] = {
    "cross_entropy": {"reduction": "none", "label_smoothing": 0.0, "ignore_index": None, "weight": None},
    "cross_entropy_grad": {"reduction": "sum", "label_smoothing": 0.0, "ignore_index": None, "weight": None},
}
#: Ops that take a cotangent row, and ops that take a class index.
VJP_OPS: tuple[str, ...] = tuple(op for op in GRADIENT_OPS if op not in CROSS_ENTROPY_OPS)
CE_OPS: tuple[str, ...] = CROSS_ENTROPY_OPS


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



# -- rows <-> case inputs ---------------------------------------------------------------------
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

