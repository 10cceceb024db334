"""The textbook formulas, written once for any NumPy-like namespace (numpy, cupy, jax.numpy).

Adapters whose framework has no cross-entropy of its own (NumPy, SciPy, CuPy, JAX) build it here
from their framework's ``log_softmax``, with PyTorch's semantics and the class axis last; the
NumPy-like adapters also take their analytic gradients from here. Everything is written without
in-place updates so that the same code runs under ``jax.jit``.

>>> import numpy as np
>>> logp = np.log(np.array([[0.25, 0.75], [0.5, 0.5]]))
>>> float(cross_entropy(np, logp, np.array([1, 0])))          # mean of -log 0.75 and -log 0.5
0.4904146265058631
>>> p = np.exp(logp)
>>> cross_entropy_grad(np, p, np.array([1, 0]), reduction="sum")
array([[ 0.25, -0.25],
       [-0.5 ,  0.5 ]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

REDUCTIONS = ("none", "sum", "mean")


def is_index_target(target: Any) -> bool:
    """True for class-index targets (an integer array), False for probability targets."""
    return np.dtype(target.dtype).kind in "iu"


def check_class_indices(xp: Any, target: Any, n_classes: int, ignore_index: int | None) -> None:
    """Raise ValueError for a class index outside [0, n_classes) that is not ``ignore_index``.

    PyTorch raises here too; a gather would silently wrap or clamp. This reads the targets on the
    host (a device sync), which costs little: targets are one integer per row.
    """
    bad = (target < 0) | (target >= n_classes)
    if ignore_index is not None:
        bad = bad & (target != ignore_index)
    if bool(xp.any(bad)):
        first = target[bad].ravel()[0]
        raise ValueError(f"class index {int(first)} is out of range [0, {n_classes})")


def _check_options(reduction: str, label_smoothing: float) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")


def _index_parts(xp: Any, n_classes: int, target: Any, ignore_index: int | None, weight: Any, dtype: Any):
    """valid mask, target with ignored entries replaced by 0, and w[t] (0 where ignored)."""
    if ignore_index is None:
        valid = xp.ones(target.shape, dtype=bool)
    else:
        valid = target != ignore_index
    safe = xp.where(valid, target, xp.zeros_like(target))
    w_t = weight[safe] if weight is not None else xp.ones(target.shape, dtype=dtype)
    w_t = xp.where(valid, w_t, xp.zeros_like(w_t))
    return valid, safe, w_t


def cross_entropy(xp: Any, logp: Any, target: Any, *, reduction: str = "mean", label_smoothing: float = 0.0,
                  ignore_index: int | None = None, weight: Any = None) -> Any:
    """PyTorch's ``cross_entropy`` given ``logp = log_softmax(logits, -1)``, classes on the last axis.

    Index targets: ``(1-s) * w[t] * -logp[t] + s/C * sum_c w[c] * -logp[c]`` per row (ignored rows 0);
    ``mean`` divides both terms by the sum of ``w[t]`` over the rows not ignored (NaN when all are).
    Probability targets: ``-sum_c w[c] * q'[c] * logp[c]`` with ``q' = (1-s) q + s/C``; ``mean``
    divides by the number of rows. Computed in ``logp``'s dtype, as the frameworks do.
    """
    _check_options(reduction, label_smoothing)
    n_classes = logp.shape[-1]
    s = float(label_smoothing)
    if not is_index_target(target):
        q = target * (1.0 - s) + s / n_classes if s > 0 else target
        term = logp * q if weight is None else logp * q * weight
        rows = -xp.sum(term, axis=-1)
        if reduction == "none":
            return rows
        if reduction == "sum":
            return xp.sum(rows)
        n_rows = rows.size
        return xp.sum(rows) / n_rows if n_rows else xp.sum(rows) * np.nan
    valid, safe, w_t = _index_parts(xp, n_classes, target, ignore_index, weight, logp.dtype)
    picked = xp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    # where(), not a product with the mask: an ignored row's -inf logit must not turn into NaN.
    nll = xp.where(valid, -picked * w_t, xp.zeros_like(picked))
    if s > 0:
        smooth = -xp.sum(logp if weight is None else logp * weight, axis=-1)
        smooth = xp.where(valid, smooth, xp.zeros_like(smooth))
    if reduction == "none":
        return nll if s == 0 else (1.0 - s) * nll + (s / n_classes) * smooth
    if reduction == "sum":
        total = xp.sum(nll)
        return total if s == 0 else (1.0 - s) * total + (s / n_classes) * xp.sum(smooth)
    denom = xp.sum(w_t)
    loss = xp.sum(nll) / denom
    return loss if s == 0 else (1.0 - s) * loss + (s / n_classes) * (xp.sum(smooth) / denom)


def cross_entropy_grad(xp: Any, p: Any, target: Any, *, reduction: str = "mean", label_smoothing: float = 0.0,
                       ignore_index: int | None = None, weight: Any = None) -> Any:
    """d cross_entropy / d logits given ``p = softmax(logits, -1)`` (``reduction="none"`` summed first).

    Each row's loss is ``sum_j a_j * (lse - x_j)`` with ``a_j = q'_j w_j``, so its gradient is
    ``A p - a`` with ``A = sum_j a_j``; ``mean`` scales by the same denominator as the loss.
    """
    _check_options(reduction, label_smoothing)
    n_classes = p.shape[-1]
    s = float(label_smoothing)
    if is_index_target(target):
        valid, safe, w_t = _index_parts(xp, n_classes, target, ignore_index, weight, p.dtype)
        q = (xp.arange(n_classes) == safe[..., None]).astype(p.dtype)
        denom = xp.sum(w_t)
    else:
        valid, q = None, target
        denom = target.size // n_classes if n_classes else 0
    if s > 0:
        q = q * (1.0 - s) + s / n_classes
    a = q if weight is None else q * weight
    grad = xp.sum(a, axis=-1, keepdims=True) * p - a
    if valid is not None:
        grad = xp.where(valid[..., None], grad, xp.zeros_like(grad))
    if reduction == "mean":
        # Every row ignored: the loss is 0/0 = NaN but its gradient is 0, as in PyTorch (and the
        # rows are all zero already; dividing by 0 would make them NaN).
        grad = grad / (xp.where(denom == 0, xp.ones_like(denom), denom) if valid is not None else denom)
    return grad


def softmax_vjp(xp: Any, y: Any, cotangent: Any, axis: int = -1) -> Any:
    """d<softmax(x), v>/dx = y * (v - sum(y * v)) given ``y = softmax(x)``."""
    return y * (cotangent - xp.sum(y * cotangent, axis=axis, keepdims=True))


def log_softmax_vjp(xp: Any, y: Any, cotangent: Any, axis: int = -1) -> Any:
    """d<log_softmax(x), v>/dx = v - y * sum(v) given ``y = softmax(x)``."""
    return cotangent - y * xp.sum(cotangent, axis=axis, keepdims=True)
