"""Hypothesis strategies that generate further :class:`~softmaxbench.reference.cases.CaseInput`\\ s.

One strategy per catalogue category, each parameterised by target dtype and op, so property tests
and the worst-case search (``softmaxbench hunt``) explore the same kinds of input the catalogue
names, beyond its fixed seeds. Every generated input follows the catalogue's rules: values built in
float64 and cast to the target dtype (so they are exactly representable), a seeded normal
cotangent of ``x``'s shape, and, when the class axis is the last one, cross-entropy targets and
options. Inputs for a cross-entropy op always have their class axis last. Their
``numpy_source()`` writes the arrays out bit for bit.

>>> from hypothesis import given, settings
>>> from softmaxbench.reference.strategies import case_inputs
>>> @settings(max_examples=5, deadline=None)
... @given(case_inputs("bfloat16", "softmax"))
... def test_dtype(inputs):
...     assert str(inputs.x.dtype) == "bfloat16"
>>> test_dtype()
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from softmaxbench.reference.cases import (
    ARG_OPS,
    CATEGORIES,
    CE_OPS,
    DEFAULT_CE_OPTIONS,
    CaseInput,
)
from softmaxbench.reference.dtypes import finfo, np_dtype

Strategy = st.SearchStrategy

_seeds = st.integers(0, 2**32 - 1)
# Small 2-D batches: hypothesis explores values and shapes, the catalogue covers the big rows.
_rows = st.integers(1, 4)
_row_length = st.integers(1, 64)


def _validate(dtype: str, op: str) -> None:
    np_dtype(dtype)
    if op not in ARG_OPS:
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(ARG_OPS)}")


def anchors(dtype: str) -> list[float]:
    """The dtype's extreme logits: +-ln(max), +-ln(smallest normal), +-ln(smallest subnormal),
    +-max and +-max/2 (float64 values, all finite in the dtype).

    >>> [round(a, 2) for a in anchors("float16")[:3]]
    [11.09, -9.7, -16.64]
    """
    fi = finfo(dtype)
    logs = [float(np.log(float(fi.max))), float(np.log(float(fi.tiny))),
            float(np.log(float(fi.smallest_subnormal)))]
    big = [float(fi.max), float(fi.max) / 2]
    return logs + [-v for v in logs] + big + [-v for v in big]


def _cast(x64: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x64, dtype=np.float64).astype(np_dtype(dtype))


def _default_target(rng: np.random.Generator, x: np.ndarray) -> np.ndarray | None:
    if x.ndim == 0 or x.shape[-1] == 0:
        return None
    return np.asarray(rng.integers(0, x.shape[-1], size=x.shape[:-1]), dtype=np.int64)


def _finish(category: str, dtype: str, x: np.ndarray, axis: int, seed: int, *,
            target: np.ndarray | None | str = "default", ce_options: dict | None = None) -> CaseInput:
    """Add the seeded cotangent and (when the class axis is last) targets to cast logits."""
    dt = np_dtype(dtype)
    cotangent = np.asarray(np.random.default_rng([seed, 1]).standard_normal(x.shape)).astype(dt)
    class_axis_last = x.ndim >= 1 and axis in (-1, x.ndim - 1)
    if isinstance(target, str):
        target = _default_target(np.random.default_rng([seed, 2]), x) if class_axis_last else None
    return CaseInput(f"hypothesis-{category}", dtype, axis, x, cotangent, target,
                     dict(ce_options or DEFAULT_CE_OPTIONS))


def extreme(dtype: str, op: str) -> Strategy:
    """Logits at and around the dtype's anchors (:func:`anchors`) mixed with ordinary values;
    every row's first logit is a non-zero anchor, and every value is finite in the dtype."""
    _validate(dtype, op)
    return _extreme(dtype, op)


@st.composite
def _extreme(draw, dtype: str, op: str) -> CaseInput:
    fi_max = float(finfo(dtype).max)
    points = anchors(dtype)
    near_anchor = st.builds(lambda a, d: a + d, st.sampled_from(points), st.floats(-4, 4))
    shape = (draw(_rows), draw(_row_length))
    x64 = draw(hnp.arrays(np.float64, shape, elements=st.one_of(near_anchor, st.floats(-10, 10))))
    x64[:, 0] = draw(st.sampled_from(points)) + draw(st.floats(-4, 4))
    x = _cast(np.clip(x64, -fi_max, fi_max), dtype)
    return _finish("extreme", dtype, x, -1, draw(_seeds))


def special(dtype: str, op: str) -> Strategy:
    """Finite logits with NaN, +inf and -inf sprinkled in, and whole rows masked with -inf
    (as attention masks do); at least one value is not finite."""
    _validate(dtype, op)
    return _special(dtype, op)


@st.composite
def _special(draw, dtype: str, op: str) -> CaseInput:
    specials = st.sampled_from([np.nan, np.inf, -np.inf])
    shape = (draw(_rows), draw(_row_length))
    x64 = draw(hnp.arrays(np.float64, shape, elements=st.one_of(st.floats(-10, 10), specials)))
    masked = draw(st.lists(st.booleans(), min_size=shape[0], max_size=shape[0]))
    x64[np.array(masked, dtype=bool)] = -np.inf
    if np.isfinite(x64).all():
        x64[draw(st.integers(0, shape[0] - 1)), draw(st.integers(0, shape[1] - 1))] = draw(specials)
    return _finish("special", dtype, _cast(x64, dtype), -1, draw(_seeds))


_LAYOUTS = ("contiguous", "transposed", "strided", "reversed")


def shape(dtype: str, op: str) -> Strategy:
    """Ranks 0-4 with dimensions 0-6 (empty and length-1 axes included), any axis, and
    non-contiguous layouts: transposed, strided-slice and negative-stride views of a base array.
    For cross-entropy ops the class axis is the last one and has at least one class."""
    _validate(dtype, op)
    return _shape(dtype, op)


@st.composite
def _shape(draw, dtype: str, op: str) -> CaseInput:
    ce = op in CE_OPS
    rank = draw(st.integers(1 if ce else 0, 4))
    dims = draw(st.lists(st.integers(0, 6), min_size=rank, max_size=rank))
    if ce:
        dims[-1] = max(dims[-1], 1)
        axis = -1
    else:
        axis = draw(st.integers(-rank, rank - 1)) if rank else -1
    layout = draw(st.sampled_from(_LAYOUTS)) if rank else "contiguous"
    seed = draw(_seeds)
    rng = np.random.default_rng([seed, 0])
    scale = draw(st.sampled_from([1.0, 10.0]))
    base_shape = {"transposed": tuple(reversed(dims)),
                  "strided": tuple(2 * d for d in dims)}.get(layout, tuple(dims))
    base = _cast(scale * rng.standard_normal(base_shape), dtype)
    view: Callable[[np.ndarray], np.ndarray] = {
        "contiguous": lambda a: a,
        "transposed": lambda a: a.T,
        "strided": lambda a: a[(slice(None, None, 2),) * rank],
        "reversed": lambda a: a[..., ::-1],
    }[layout]
    x = view(base)
    assert x.shape == tuple(dims)  # the views above keep the drawn shape by construction
    return _finish("shape", dtype, x, axis, seed)


_DISTRIBUTIONS = ("normal", "uniform", "ties", "near_ties", "dominant", "sorted", "constant", "offset")


def distribution(dtype: str, op: str) -> Strategy:
    """Seeded rows from one of several distributions at scales 1-1000: normal, uniform, integer
    ties, near-ties one ULP of the dtype apart, one dominant logit, sorted rows, constant rows
    and large offsets; rows of up to 512 logits."""
    _validate(dtype, op)
    return _distribution(dtype, op)


@st.composite
def _distribution(draw, dtype: str, op: str) -> CaseInput:
    fi = finfo(dtype)
    kind = draw(st.sampled_from(_DISTRIBUTIONS))
    scale = draw(st.sampled_from([1.0, 10.0, 100.0, 1000.0]))
    shape = (draw(st.integers(1, 8)), draw(st.integers(1, 512)))
    seed = draw(_seeds)
    rng = np.random.default_rng([seed, 0])
    if kind == "normal":
        x64 = scale * rng.standard_normal(shape)
    elif kind == "uniform":
        x64 = rng.uniform(-scale, scale, shape)
    elif kind == "ties":
        x64 = rng.integers(-3, 4, shape) * (scale / 10)
    elif kind == "near_ties":
        # ULP of the dtype at `base`: base's binade times the dtype's epsilon, exact in float64.
        base = draw(st.sampled_from([1.0, 3.0, 1000.0]))
        ulp = 2.0 ** np.floor(np.log2(base)) * float(fi.eps)
        x64 = base + ulp * rng.integers(0, 2, shape)
    elif kind == "dominant":
        x64 = rng.standard_normal(shape)
        x64[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] += scale
    elif kind == "sorted":
        x64 = np.sort(scale * rng.standard_normal(shape), axis=-1)
    elif kind == "constant":
        x64 = np.repeat(scale * rng.standard_normal((shape[0], 1)), shape[1], axis=1)
    else:  # offset: small differences on a large common value
        x64 = scale * 10 + rng.standard_normal(shape)
    return _finish("distribution", dtype, _cast(np.clip(x64, -float(fi.max), float(fi.max)), dtype),
                   -1, seed)


def cross_entropy(dtype: str, op: str) -> Strategy:
    """Logits ``(N, C)`` or ``(B, T, C)`` (N may be 0), optionally with -inf entries, and
    targets: class indices (some replaced by ignore_index) or probabilities (zero mass on -inf
    logits); any reduction, label smoothing, class weights (some zero)."""
    _validate(dtype, op)
    return _cross_entropy(dtype, op)


@st.composite
def _cross_entropy(draw, dtype: str, op: str) -> CaseInput:
    dt = np_dtype(dtype)
    classes = draw(st.integers(1, 16))
    batch = draw(st.one_of(st.tuples(st.integers(0, 8)), st.tuples(st.integers(1, 3), st.integers(1, 4))))
    shape = batch + (classes,)
    seed = draw(_seeds)
    rng = np.random.default_rng([seed, 0])
    x64 = draw(st.sampled_from([1.0, 3.0, 30.0])) * rng.standard_normal(shape)
    if draw(st.booleans()):
        x64[rng.random(shape) < 0.2] = -np.inf
    x = _cast(x64, dtype)
    trng = np.random.default_rng([seed, 2])
    options = dict(DEFAULT_CE_OPTIONS)
    options["reduction"] = draw(st.sampled_from(["mean", "sum", "none"]))
    options["label_smoothing"] = draw(st.one_of(st.just(0.0), st.sampled_from([0.1, 1.0]),
                                                st.floats(0.0, 1.0)))
    if draw(st.booleans()):  # probability targets; PyTorch ignores ignore_index for them
        p = trng.random(shape)
        p[np.isneginf(x)] = 0.0
        total = p.sum(-1, keepdims=True)
        target = (p / np.where(total > 0, total, 1.0)).astype(dt)
    else:
        target = np.asarray(trng.integers(0, classes, size=batch), dtype=np.int64)
        ignore = draw(st.one_of(st.none(), st.just(-100), st.integers(0, classes - 1)))
        options["ignore_index"] = ignore
        if ignore is not None and target.size:
            target[trng.random(batch) < draw(st.sampled_from([0.0, 0.3, 1.0]))] = ignore
    if draw(st.booleans()):
        weight = trng.uniform(0.1, 3.0, classes)
        if draw(st.booleans()):
            weight[trng.random(classes) < 0.3] = 0.0
        options["weight"] = weight.astype(dt)
    return _finish("cross_entropy", dtype, x, -1, seed, target=target, ce_options=options)


#: category -> strategy factory ``(dtype, op) -> SearchStrategy[CaseInput]``.
STRATEGIES: dict[str, Callable[[str, str], Strategy]] = {
    "extreme": extreme, "special": special, "shape": shape,
    "distribution": distribution, "cross_entropy": cross_entropy,
}


def case_inputs(dtype: str, op: str, categories: tuple[str, ...] | list[str] | None = None) -> Strategy:
    """Inputs of any of ``categories`` (default: all) for ``op`` in ``dtype``."""
    _validate(dtype, op)
    chosen = tuple(categories) if categories else CATEGORIES
    unknown = [c for c in chosen if c not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; choose from {', '.join(CATEGORIES)}")
    return st.one_of(*(STRATEGIES[c](dtype, op) for c in chosen))


__all__ = ["STRATEGIES", "anchors", "case_inputs", "cross_entropy", "distribution",
           "extreme", "shape", "special"]
