"""Target dtypes: their NumPy types, limits, and the precision the reference carries for each.

The reference never rounds to the target dtype: results are carried in ``carry_dtype(name)``
(float64 for float16/bfloat16/float32, np.longdouble with a 64-bit significand for float64), so
errors of a backend can be measured in fractional ULPs.

>>> carry_dtype("float32")
dtype('float64')
>>> finfo("bfloat16").nmant
7
"""

from __future__ import annotations

from functools import cache

import ml_dtypes
import numpy as np

from softmaxbench.vocabulary import DTYPES  # noqa: E402 - the one list of dtype names

#: How the reference computes for each target dtype (stated in the README).
PRECISION_TIER: dict[str, str] = {
    "float16": "float64 arithmetic (42 extra bits)",
    "bfloat16": "float64 arithmetic (45 extra bits)",
    "float32": "float64 arithmetic (29 extra bits)",
    "float64": ("IEEE binary128 (numpy-quaddtype), rounded once to np.longdouble (64-bit significand); "
                "rows whose cancellation exceeds the bound escalate to mpmath at 50 digits"),
}


def np_dtype(name: str) -> np.dtype:
    """The NumPy dtype for a target dtype name ('bfloat16' is ml_dtypes.bfloat16)."""
    if name == "bfloat16":
        return np.dtype(ml_dtypes.bfloat16)
    if name in ("float16", "float32", "float64"):
        return np.dtype(name)
    raise ValueError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")


def dtype_name(dtype) -> str:
    """The target dtype name of a NumPy dtype (inverse of :func:`np_dtype`)."""
    dt = np.dtype(dtype)
    if dt == np.dtype(ml_dtypes.bfloat16):
        return "bfloat16"
    return dt.name


@cache
def longdouble_is_extended() -> bool:
    """True when np.longdouble has at least a 64-bit significand (x86 80-bit or quad)."""
    return np.finfo(np.longdouble).nmant >= 63


def carry_dtype(name: str) -> np.dtype:
    """The dtype in which the reference carries results for target dtype ``name``."""
    np_dtype(name)
    if name == "float64":
        return np.dtype(np.longdouble)
    return np.dtype(np.float64)


def finfo(name: str):
    """Machine limits of a target dtype (ml_dtypes.finfo also knows bfloat16)."""
    return ml_dtypes.finfo(np_dtype(name))


def eps(name: str) -> float:
    """Unit roundoff u = 2**-(nmant+1) of the target dtype (half the spacing at 1)."""
    return 2.0 ** -(finfo(name).nmant + 1)
