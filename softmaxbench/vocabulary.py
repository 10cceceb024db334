"""The words every room shares, with one owner: op names and their families, dtype names, verdicts,
and the cross-entropy defaults. Pure data, importing nothing, so the reference, the backends, the
suite and the reports can all read it without an arrow running back up.

>>> FORWARD_OPS + GRADIENT_OPS == OPS
True
>>> [op for op in OPS if op in CROSS_ENTROPY_OPS]
['cross_entropy', 'cross_entropy_grad']
"""

from __future__ import annotations

from typing import Any

#: Every operation of the Backend protocol, in the order reports list them.
OPS: tuple[str, ...] = ("softmax", "log_softmax", "logsumexp", "cross_entropy",
                        "softmax_vjp", "log_softmax_vjp", "cross_entropy_grad")
FORWARD_OPS: tuple[str, ...] = OPS[:4]
GRADIENT_OPS: tuple[str, ...] = OPS[4:]
#: Ops the reference provides: the protocol's plus logsumexp_grad (used by the certification).
REFERENCE_OPS: tuple[str, ...] = OPS + ("logsumexp_grad",)
#: Families: ops that share an algorithm (a row reduction over the class axis, or the loss).
CROSS_ENTROPY_OPS: tuple[str, ...] = ("cross_entropy", "cross_entropy_grad")
ROW_OPS: tuple[str, ...] = tuple(op for op in REFERENCE_OPS if op not in CROSS_ENTROPY_OPS)

#: Target dtypes (bfloat16 is ml_dtypes.bfloat16 in NumPy).
DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")

#: Verdicts of a record, best first (see DESIGN.md).
VERDICTS: tuple[str, ...] = ("pass", "deviation", "fail", "error", "unsupported", "timeout", "crash")
#: Verdicts that make a backend non-conforming (exit code 1).
FAILING: tuple[str, ...] = ("fail", "error", "timeout", "crash")

#: Cross-entropy options and their defaults (PyTorch's).
DEFAULT_CE_OPTIONS: dict[str, Any] = {"reduction": "mean", "label_smoothing": 0.0,
                                      "ignore_index": None, "weight": None}
