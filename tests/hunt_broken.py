"""Deliberately broken float32 softmax backends whose faults random inputs (almost) never show.

Each computes softmax correctly (in float64, rounded once to float32) except on a narrow family
of inputs, as real kernel bugs do. ``tests/test_hunt.py`` checks that ``softmaxbench hunt``
finds each fault within its budget while plain random sampling of the same budget does not. Also
usable as a plugin: ``softmaxbench hunt --plugin tests/hunt_broken.py --backends broken-near-tie``.

>>> import numpy as np
>>> b = NearTieSoftmax()
>>> x = np.array([[0.0, 1.0, 2.0]], np.float32)
>>> bool(np.allclose(b.softmax(x, -1), CorrectSoftmax().softmax(x, -1)))
True
>>> x[0, 1] = np.nextafter(np.float32(2.0), np.float32(0.0))    # one ULP below the max
>>> bool(np.allclose(b.softmax(x, -1), CorrectSoftmax().softmax(x, -1)))
False
"""

from __future__ import annotations

import numpy as np

from softmaxbench.backends import Backend


def _quiet(method):
    """No NumPy warnings: the faults divide by zero and overflow on purpose."""
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return method(*args, **kwargs)
    return wrapper


def _exact_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Softmax in float64, correctly shifted (the part every backend here gets right)."""
    x64 = np.asarray(x, np.float64)
    e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
    return e, e.sum(axis=axis, keepdims=True)


class CorrectSoftmax(Backend):
    """The control: float64 arithmetic rounded once to float32 (a hunt must find nothing)."""

    name = "fine-softmax"
    device = "cpu"
    dtypes = ("float32",)

    def softmax(self, x, axis=-1):
        e, s = _exact_softmax(x, axis)
        return (e / s).astype(x.dtype)


class NearTieSoftmax(CorrectSoftmax):
    """Drops the runner-up from the sum when it is 1-4 ULP below the max (not an exact tie),
    like a max-reduction whose tie test is off by a few ULP."""

    name = "broken-near-tie"

    @_quiet
    def softmax(self, x, axis=-1):
        xm = np.moveaxis(np.asarray(x), axis, -1)
        e, s = _exact_softmax(xm, -1)
        if xm.shape[-1] >= 2:
            top2 = np.sort(xm, axis=-1)[..., -2:]
            first, second = top2[..., 1], top2[..., 0]
            gap = first.astype(np.float64) - second.astype(np.float64)
            near = (gap > 0) & (gap <= 4 * np.spacing(np.abs(first)).astype(np.float64))
            runner_up = np.where(xm == second[..., None], e, 0.0).max(axis=-1, keepdims=True)
            s = np.where(near[..., None], s - runner_up, s)
        return np.moveaxis((e / s).astype(x.dtype), -1, axis)


class LongRowSoftmax(CorrectSoftmax):
    """Rows longer than 5000: the last element is left out of the sum (an off-by-one in the
    tail loop of a kernel's long-row path)."""

    name = "broken-long-row"
    LIMIT = 5000

    @_quiet
    def softmax(self, x, axis=-1):
        xm = np.moveaxis(np.asarray(x), axis, -1)
        e, s = _exact_softmax(xm, -1)
        if xm.shape[-1] > self.LIMIT:
            s = s - e[..., -1:]
        return np.moveaxis((e / s).astype(x.dtype), -1, axis)


class UnshiftedSoftmax(CorrectSoftmax):
    """exp(x) / sum(exp(x)) in float32 without subtracting the max: NaN once exp overflows
    (max logit above about 88.7) or every exp underflows."""

    name = "broken-overflow"

    def softmax(self, x, axis=-1):
        with np.errstate(all="ignore"):
            e = np.exp(np.asarray(x, np.float32))
            return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


BROKEN = (NearTieSoftmax, LongRowSoftmax, UnshiftedSoftmax)


def backends():
    """The plugin hook: every backend of this file."""
    return [CorrectSoftmax(), *(cls() for cls in BROKEN)]
