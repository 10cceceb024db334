"""Conformance checks: one property each, as plain ``check_<property>`` functions.

Each check looks at one property of one backend output (``actual``, a NumPy array) for one case
input, given the reference result ``exact`` (carried in more precision than the target dtype).
A check that finds the property violated raises :class:`CheckFailure` with a verdict (``fail``
or ``deviation``) and a message that says what was expected, what came back and where; a check
that holds returns ``None`` (``check_values`` returns the measured errors). Which checks apply is
decided by :func:`applicable_checks` from the op, never from the backend's name.

>>> import numpy as np
>>> x = np.zeros((2, 4), np.float32)
>>> check_unit_interval("softmax", None, np.full((2, 4), 0.25, np.float32), None)
>>> try:
...     check_unit_interval("softmax", None, np.full((2, 4), 1.5, np.float32), None)
... except CheckFailure as f:
...     print(f.verdict, "-", f.message)
fail - softmax output outside [0, 1]: 8 of 8 elements, e.g. 1.5 at index (0, 0)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np

from softmaxbench.reference.dtypes import finfo, np_dtype

#: Ops whose output is a probability vector along the class axis.
PROBABILITY_OPS = ("softmax",)
#: Default cross-entropy options (PyTorch's); a case option differing from these is "non-default".
CE_DEFAULTS: dict[str, Any] = {"reduction": "mean", "label_smoothing": 0.0, "ignore_index": None,
                               "weight": None}


class CheckFailure(AssertionError):
    """A property does not hold. ``verdict`` is "fail" or "deviation" (then ``deviation`` names
    the accepted convention); ``metrics`` carries measured errors (max_ulp, max_error_ratio, ...)."""

    def __init__(self, verdict: str, message: str, *, deviation: str | None = None,
                 metrics: dict | None = None):
        super().__init__(message)
        self.verdict = verdict
        self.message = message
        self.deviation = deviation
        self.metrics = metrics or {}


# -- helpers ------------------------------------------------------------------------------------
def _fmt(v) -> str:
    """One value, short: 0.1 -> '0.1', large arrays never reach here."""
    if isinstance(v, float | np.floating):
        return np.format_float_positional(float(v), precision=8, trim="-") if np.isfinite(v) else str(v)
    return str(v)


def _where(mask: np.ndarray, values: np.ndarray) -> str:
    """'N of M elements, e.g. V at index (i, j)' for the first True of ``mask``."""
    idx = tuple(int(i) for i in np.argwhere(mask)[0])
    return (f"{int(mask.sum())} of {mask.size} elements, e.g. {_fmt(values[idx])} at index {idx}")


def _carry(a: np.ndarray) -> np.ndarray:
    """Narrow dtypes (bfloat16 has no NumPy arithmetic of its own) -> float64; float64 kept."""
    return a if a.dtype == np.float64 or a.dtype == np.longdouble else a.astype(np.float64)


def _comparison_metrics(cmp) -> dict:
    """The figures a record carries: max_ulp, median_ulp, max_error_ratio, error_kind."""
    return {k: getattr(cmp, k, None) for k in ("max_ulp", "median_ulp", "max_error_ratio", "error_kind")}


def value_sample(actual, dtype: str | None = None, limit: int = 6) -> str:
    """Short text of an output for a record's ``value_sample``: the first ``limit`` values, each
    the shortest text that reads back as the same number of its dtype (0.99999994, not "1.").

    >>> value_sample(np.array([0.99999994, 1.0, np.nan], np.float32))
    '[0.99999994, 1, nan]'
    >>> value_sample(np.arange(8, dtype=np.float16) / 3)
    '[0, 0.3333, 0.6665, 1, 1.333, 1.667, ...]'
    """
    from softmaxbench.reference.dtypes import dtype_name
    from softmaxbench.reference.metrics import format_value

    a = np.asarray(actual)
    flat = a.ravel()[:limit]
    try:
        name = dtype or dtype_name(a.dtype)
    except TypeError:
        name = None
    if name in ("float16", "bfloat16", "float32", "float64"):
        items = [format_value(v, name) for v in flat]
    else:
        items = [str(v) for v in flat.tolist()]
    return "[" + ", ".join(items) + (", ...]" if a.size > limit else "]")


# -- structural checks --------------------------------------------------------------------------
def check_expected_error(op: str, inputs, actual) -> None:
    """The case defines no result (e.g. a class index out of range): the backend must raise.

    Called only when the backend *returned* ``actual`` for such a case, so it always fails."""
    sample = np.array2string(np.asarray(actual).ravel()[:4], precision=4, separator=", ")
    raise CheckFailure("fail", f"{op} returned a value ({sample}{'...' if np.size(actual) > 4 else ''})"
                       f" for case {getattr(inputs, 'case', '?')!r}, which has no defined result: "
                       f"it must raise (e.g. ValueError/IndexError/RuntimeError)")


def check_output_dtype(op: str, inputs, actual: np.ndarray) -> None:
    """The output has the input's dtype (no silent up- or down-cast)."""
    want = np_dtype(inputs.dtype)
    if actual.dtype != want:
        from softmaxbench.reference.dtypes import dtype_name

        try:
            got = dtype_name(actual.dtype)
        except TypeError:
            got = str(actual.dtype)
        raise CheckFailure("fail", f"{op} returned dtype {got} for {inputs.dtype} input; "
                                   f"expected {inputs.dtype}")


def check_output_shape(op: str, inputs, actual: np.ndarray, exact: np.ndarray) -> None:
    """The output has the reference's shape (the input's, or the input's without the class axis)."""
    if actual.shape != exact.shape:
        raise CheckFailure("fail", f"{op} returned shape {actual.shape} for input shape "
                                   f"{inputs.x.shape} (axis={inputs.axis}); expected {exact.shape}")


def check_input_not_mutated(op: str, inputs, before: dict[str, np.ndarray],
                            after: dict[str, np.ndarray] | None = None, *,
                            seen_as: str = "the array passed in") -> None:
    """The backend left its inputs alone: every input array is bit-for-bit what it was.

    ``before`` maps names to copies taken before the call; ``after`` (default: the arrays in
    ``inputs``) to what they hold after it, e.g. ``to_numpy`` of the native arrays passed in
    (then say so with ``seen_as``, e.g. "the native array asarray made"). A different shape or
    dtype afterwards is reported as such, not as writing in place: it is what an adapter that
    replaces or reshapes its own copy shows, and the message says which array was compared."""
    after = after if after is not None else input_arrays(op, inputs)
    for name, old in before.items():
        new = after.get(name)
        if new is None:
            continue
        new = np.asarray(new)
        if new.shape != old.shape or new.dtype != old.dtype:
            raise CheckFailure("fail", f"{op}: input {name!r} ({seen_as}) is {_describe(new)} after the "
                                       f"call and was {_describe(old)} before: something replaced or "
                                       f"reshaped it (the op writing through a view, or the adapter "
                                       f"handing back a different array)")
        if not same_bits(new, old):
            changed = ~_same_elements(new, old)
            if changed.any():
                first = tuple(int(i) for i in np.argwhere(changed)[0])
                where = f": {_where(changed, new)} (was {_fmt(old[first])})"
            else:
                where = " (only NaN payloads or signs of zero)"
            raise CheckFailure("fail", f"{op} modified its input {name!r} in place ({seen_as}){where}; an op "
                                       f"must leave its inputs alone: copy before an in-place kernel")


def _describe(a: np.ndarray) -> str:
    from softmaxbench.reference.dtypes import dtype_name

    try:
        name = dtype_name(a.dtype)
    except TypeError:
        name = str(a.dtype)
    return f"{name} of shape {a.shape}"


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def _same_elements(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f" or str(a.dtype) == "bfloat16":
        a64, b64 = _carry(a), _carry(b)
        return (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
    return a == b


def input_arrays(op: str, inputs) -> dict[str, np.ndarray]:
    """The arrays ``op`` reads from ``inputs``, by name (x, cotangent, target, weight)."""
    arrays = {"x": inputs.x}
    if op.endswith("_vjp") and inputs.cotangent is not None:
        arrays["cotangent"] = inputs.cotangent
    if op.startswith("cross_entropy"):
        if inputs.target is not None:
            arrays["target"] = inputs.target
        w = (inputs.ce_options or {}).get("weight")
        if w is not None:
            arrays["weight"] = w
    return arrays


# -- value checks -------------------------------------------------------------------------------
def check_values(op: str, inputs, actual: np.ndarray, exact: np.ndarray, *,
                 conventions: dict[str, dict] | None = None) -> dict:
    """Values agree with the reference within the dtype's error-ratio threshold, special values
    included; a documented alternative convention gives verdict "deviation" instead of "fail".

    Returns the measured errors (max_ulp, median_ulp, max_error_ratio, error_kind, note).
    ``conventions`` are the backend's declared deviations (name -> {"reason", "link"}), quoted in
    the message.

    Elements the model algorithm itself cannot compute (its intermediates overflow the output
    dtype: ``reference.model.unattainable_elements``) are not judged: when every element beyond
    the threshold is one of them, the check passes with ``error_kind`` "not_attainable" and a
    ``note`` "not judged: ..." that the record carries as its message.

    A failure's message names the element that decided it, chosen among the elements that no
    accepted convention explains (a NaN in a +inf row is not the story when every finite row is
    wrong), with its kind of error and the likely cause.
    """
    from softmaxbench.reference import metrics, model

    cmp = metrics.compare(op, inputs, actual, exact)
    measured = _comparison_metrics(cmp)
    if cmp.ok and not getattr(cmp, "flushed_subnormals", False):
        return measured
    if cmp.ok:  # equal once subnormals count as zero: the accepted flush-to-zero convention
        raise CheckFailure("deviation", _deviation_message("flushed_subnormals", conventions, op),
                           deviation="flushed_subnormals", metrics=measured)
    if cmp.error_kind == "wrong_structure":
        raise CheckFailure("fail", f"{op}: {cmp.message}", metrics=measured)
    unattainable = model.unattainable_elements(op, inputs, exact)
    if unattainable.any():
        cmp = metrics.compare(op, inputs, actual, exact, exclude=unattainable)
        measured = _comparison_metrics(cmp)
        if cmp.ok:
            measured["error_kind"] = "not_attainable"
            measured["note"] = (f"{op}: not judged at {int(unattainable.sum())} of {unattainable.size} "
                                f"elements: {model.attainable(op, inputs, exact)}")
            if cmp.flushed_subnormals:
                raise CheckFailure("deviation", _deviation_message("flushed_subnormals", conventions, op),
                                   deviation="flushed_subnormals", metrics=measured)
            return measured
    name = matching_alternative(op, inputs, actual, exact, exclude=unattainable)
    if name is not None:
        raise CheckFailure("deviation", _deviation_message(name, conventions, op), deviation=name,
                           metrics={**measured, "error_kind": None})
    # The story: the worst element that neither the reference nor any accepted convention explains.
    explained = unattainable | explained_elements(op, inputs, actual, exact)
    focus = metrics.compare(op, inputs, actual, exact, exclude=explained)
    if not focus.ok:
        cmp = focus
        measured = {**measured, "error_kind": focus.error_kind}
    hint = explain_mismatch(op, inputs, actual, exact=exact, comparison=cmp)
    beyond = metrics.error_ratio(op, inputs, actual, exact) > metrics.THRESHOLDS[inputs.dtype]
    by_convention = int((explained & ~unattainable & beyond).sum())
    note = ""
    if not focus.ok and by_convention:
        note += f"; {by_convention} other elements differ from the reference as an accepted convention allows"
    if not focus.ok and unattainable.any():
        note += f"; {int(unattainable.sum())} elements not judged (the model algorithm cannot compute them)"
    raise CheckFailure("fail", f"{op}: {cmp.message}" + (f"; likely cause: {hint}" if hint else "") + note,
                       metrics=measured)


def explained_elements(op: str, inputs, actual, exact) -> np.ndarray:
    """Elements within the threshold of the reference or of some accepted convention's output
    (each element on its own: for focusing a failure's message, not for a verdict)."""
    from softmaxbench.reference import metrics, special

    threshold = metrics.THRESHOLDS[inputs.dtype]
    explained = np.zeros(np.shape(exact), bool)
    for alt in special.alternatives(op, inputs, exact).values():
        try:
            explained |= metrics.error_ratio(op, inputs, actual, alt) <= threshold
        except ValueError:
            continue
    return explained


def matching_alternative(op: str, inputs, actual, exact, *, exclude=None) -> str | None:
    """Name of the accepted convention (or '+'-joined set of them) that ``actual`` follows
    (``exclude``: elements not judged, as in ``metrics.compare``)."""
    from softmaxbench.reference import metrics, special

    alts = special.alternatives(op, inputs, exact)
    if not alts:
        return None
    names = list(alts)
    # A case can hold several special rows (one +inf row, one all -inf row): a backend may follow
    # several conventions at once, so try every combination, each applied where it differs.
    for k in range(1, len(names) + 1):
        for combo in itertools.combinations(names, k):
            expected = alts[combo[0]] if k == 1 else _merge(exact, [alts[n] for n in combo])
            if metrics.compare(op, inputs, actual, expected, exclude=exclude).ok:
                return "+".join(combo)
    return None


def _merge(exact: np.ndarray, alternatives: list[np.ndarray]) -> np.ndarray:
    merged = np.array(exact, copy=True)
    for alt in alternatives:
        differs = ~((alt == exact) | (np.isnan(alt) & np.isnan(exact)))
        merged[differs] = alt[differs]
    return merged


def _deviation_message(name: str, conventions: dict[str, dict] | None, op: str) -> str:
    from softmaxbench.reference.special import DEVIATIONS

    parts = []
    for n in name.split("+"):
        what = DEVIATIONS.get(n, n)
        decl = (conventions or {}).get(n)
        if decl:
            why = decl.get("reason") or ""
            link = decl.get("link") or ""
            parts.append(f"{n}: {what} (documented: {why}{' ' + link if link else ''})")
        else:
            parts.append(f"{n}: {what} (an accepted convention this backend does not declare)")
    return f"{op}: " + "; ".join(parts)


def check_unit_interval(op: str, inputs, actual: np.ndarray, exact) -> None:
    """softmax outputs lie in [0, 1] (NaN is judged by check_values, not here)."""
    a = _carry(actual)
    bad = ~np.isnan(a) & ((a < 0) | (a > 1))
    if bad.any():
        raise CheckFailure("fail", f"{op} output outside [0, 1]: {_where(bad, a)}")


def rows_sum_bound(op: str, inputs, threshold: float) -> np.ndarray:
    """How far each softmax row may sum from 1 when every element passes :func:`check_values`.

    The sum of the elements' allowed errors (``threshold`` times the attainable error of the
    shifted algorithm, :func:`softmaxbench.reference.metrics.attainable_error`), plus what
    flushing subnormal outputs to zero may remove (the smallest normal per element) and the
    rounding of the sum itself. Consistent with the value check by construction: a row can only
    fail here if its elements fail there, so this check names the *row* property that broke
    (a kernel that normalises the wrong axis, a sum that stalls) rather than adding a tolerance.
    Returns one bound per row (the output's shape without ``inputs.axis``).

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> inp = SimpleNamespace(x=np.zeros((2, 1024), np.float32), axis=-1, dtype="float32")
    >>> bool((rows_sum_bound("softmax", inp, 4.0) < 1e-3).all())
    True
    """
    from softmaxbench.reference.metrics import attainable_error

    x = np.asarray(inputs.x)
    axis = inputs.axis
    n = x.shape[axis] if x.ndim else 1
    fi = finfo(inputs.dtype)
    per_element = np.asarray(attainable_error(op, inputs), dtype=np.float64).reshape(x.shape)
    summing = (2 + math.log2(max(n, 1))) * float(np.finfo(np.longdouble).eps)  # our own sum
    bound = threshold * np.sum(per_element, axis=axis) + n * float(fi.smallest_normal) + summing
    # Rows whose every element must be exact (one element, special rows) must sum exactly.
    return np.where(np.any(per_element > 0, axis=axis), bound, 0.0)


def check_rows_sum_to_one(op: str, inputs, actual: np.ndarray, exact: np.ndarray) -> None:
    """Every softmax row with a finite expected result sums to 1 within :func:`rows_sum_bound`.

    Rows that must be exact (one element) are left to the value check, which names the element;
    the allowance is quoted in units of the dtype's u, so it reads the same in every dtype."""
    from softmaxbench.reference.dtypes import eps
    from softmaxbench.reference.metrics import THRESHOLDS

    axis = inputs.axis
    if actual.ndim == 0 or actual.shape[axis] == 0:
        return
    a, e = _carry(actual), _carry(np.asarray(exact, dtype=np.float64))
    finite_rows = np.isfinite(e).all(axis=axis) & np.isfinite(a).all(axis=axis)
    if not finite_rows.any():
        return
    n = actual.shape[axis]
    bound = np.broadcast_to(rows_sum_bound(op, inputs, THRESHOLDS[inputs.dtype]), finite_rows.shape)
    sums = np.sum(a.astype(np.longdouble), axis=axis)
    off = finite_rows & (bound > 0) & (np.abs(sums - 1) > bound)
    if off.any():
        idx = tuple(int(i) for i in np.argwhere(off)[0])
        u = eps(inputs.dtype)
        miss = float(abs(sums[idx] - 1)) / u
        raise CheckFailure("fail", f"{op} rows do not sum to 1 along axis {axis}: {int(off.sum())} of "
                                   f"{off.size} rows, e.g. row {idx} sums to {_fmt(np.float64(sums[idx]))}, "
                                   f"{miss:.3g} u off (allowed {bound[idx] / u:.3g} u for n={n}; "
                                   f"{inputs.dtype} u = {u:.3g})")


def check_cross_entropy_options(op: str, inputs, actual: np.ndarray, exact: np.ndarray) -> None:
    """Each non-default cross-entropy option (reduction, label_smoothing, ignore_index, weight) is
    honoured: the output must not be what the reference gives with that option left at its default.
    """
    from softmaxbench.reference import metrics, ops

    options = dict(inputs.ce_options or {})
    for key, default in CE_DEFAULTS.items():
        value = options.get(key, default)
        if key == "reduction" or _is_default(value, default):
            continue  # a wrong reduction already shows as a wrong shape or value
        changed = dataclasses.replace(inputs, ce_options={**options, key: default})
        try:
            without = np.asarray(ops.evaluate(op, changed))
        except Exception:  # noqa: BLE001 - the option-less case may itself be undefined
            continue
        if without.shape != actual.shape or metrics.compare(op, inputs, without, exact).ok:
            continue  # this option does not change the result of this case
        if metrics.compare(op, inputs, actual, without).ok:
            shown = "a weight vector" if key == "weight" else f"{key}={value!r}"
            raise CheckFailure("fail", f"{op} ignores {shown}: the result equals the reference "
                                       f"computed with {key}={default!r}")


def _is_default(value, default) -> bool:
    if value is None or default is None:
        return value is default
    return value == default


# -- diagnostics for a failed value check ------------------------------------------------------
def explain_mismatch(op: str, inputs, actual: np.ndarray, *, exact: np.ndarray | None = None,
                     comparison=None) -> str:
    """A guess at what a wrong result is instead, in words a kernel author acts on ('the result
    matches the reference along axis 0', 'every finite value is a float32 number: float64 computed
    in float32', 'the sum of exp overflowed float16', ...), or '' when no simple explanation fits.
    ``comparison`` (a ``metrics.Comparison``) points at the element that decided the verdict."""
    from softmaxbench.reference import metrics, ops

    def matches(other_inputs, actual_as=None) -> bool:
        try:
            ref = np.asarray(ops.evaluate(op, other_inputs))
            a = actual if actual_as is None else actual_as
            return ref.shape == a.shape and bool(metrics.compare(op, other_inputs, a, ref).ok)
        except Exception:  # noqa: BLE001 - a diagnostic must never turn into an error verdict
            return False

    if exact is None:
        try:
            exact = np.asarray(ops.evaluate(op, inputs))
        except Exception:  # noqa: BLE001
            return ""
    exact = np.asarray(exact)
    narrower = _narrower_precision(inputs, actual, exact)
    if narrower:
        return (f"every finite value of the result is a {narrower} number: a {narrower} computation "
                f"of the {inputs.dtype} input (or its result rounded through {narrower})")
    if not op.startswith("cross_entropy") and inputs.x.ndim > 1:
        ax = inputs.axis % inputs.x.ndim
        for other in range(inputs.x.ndim):
            if other != ax and matches(dataclasses.replace(inputs, axis=other)):
                return f"the result matches the reference along axis {other} instead of axis {inputs.axis}"
    if op in ("log_softmax", "logsumexp") and actual.shape == exact.shape:
        naive = _naive_log_softmax(inputs) if op == "log_softmax" else None
        if naive is not None and _close_bits(actual, naive):
            return "the result equals log(softmax(x)) rounded in the target dtype (underflows to -inf)"
    if actual.shape == exact.shape and actual.size:
        a, e = _carry(actual).astype(np.float64), np.asarray(exact, dtype=np.float64)
        finite = np.isfinite(a) & np.isfinite(e) & (e != 0)
        if finite.sum() >= 2:  # one number is always "a scaled copy" of another
            if metrics.compare(op, inputs, (-a).astype(actual.dtype), exact).ok:
                return "the result is the negative of the expected value (wrong sign)"
            ratio = np.median(a[finite] / e[finite])
            if np.isfinite(ratio) and ratio != 0 and abs(ratio - 1) > 1e-3:
                if metrics.compare(op, inputs, (a / ratio).astype(actual.dtype), exact).ok:
                    return f"the result is the expected value scaled by {ratio:.6g}"
        if not np.any(_carry(actual)) and np.any(e):
            return "every element of the result is 0"
    return _cause_of_element(op, inputs, actual, exact, comparison)


def _narrower_precision(inputs, actual: np.ndarray, exact: np.ndarray) -> str | None:
    """The narrower dtype every finite result value belongs to, when that is no accident: at least
    four distinct values that are not small integers or powers of two, while the exact values
    rounded to the target mostly are not in it."""
    narrower = {"float64": ("float16", "bfloat16", "float32"), "float32": ("float16", "bfloat16")}
    if inputs.dtype not in narrower or actual.shape != exact.shape or not actual.size:
        return None
    a = _carry(actual).astype(np.float64).ravel()
    a = a[np.isfinite(a) & (a != 0)]
    mant, _ = np.frexp(a)
    telling = np.unique(a[(mant != 0.5) & (a != np.round(a))])
    if telling.size < 4:
        return None
    e = np.asarray(exact, np.float64).ravel()
    e = _through(e[np.isfinite(e) & (e != 0)], inputs.dtype)     # the exact values, rounded
    for narrow in narrower[inputs.dtype]:   # the most specific first
        if np.array_equal(_through(telling, narrow), telling) and (
                not e.size or np.mean(_through(e, narrow) == e) < 0.5):
            return narrow
    return None


def _through(v: np.ndarray, dtype: str) -> np.ndarray:
    """float64 values rounded to ``dtype`` and back (bfloat16 through float32, as ml_dtypes)."""
    from softmaxbench.reference.dtypes import np_dtype

    with np.errstate(over="ignore", invalid="ignore"):
        if dtype == "bfloat16":
            return v.astype(np.float32).astype(np_dtype(dtype)).astype(np.float64)
        return v.astype(np_dtype(dtype)).astype(np.float64)


def _cause_of_element(op: str, inputs, actual, exact, comparison) -> str:
    """The likely cause for the kind of error of the deciding element."""
    if comparison is None or comparison.worst_index is None:
        return ""
    kind = comparison.error_kind
    idx = comparison.worst_index
    dtype = inputs.dtype
    try:
        a = float(_carry(np.asarray(actual))[idx])
        e = float(np.asarray(exact, np.float64)[idx])
    except (IndexError, TypeError, ValueError):
        return ""
    gradient = op.endswith(("_vjp", "_grad"))
    if kind == "rounding_at_exact":
        return ("the result is one rounding away from an exactly representable value: e.g. "
                "multiplying by 1/sum instead of dividing, exp computed as exp2 of a scaled input, "
                "or p * sum(a) - a with p not exactly 1")
    if kind == "special_value":
        if np.isnan(a) and np.isfinite(e):
            return ("NaN where the exact value is finite: an inf - inf or 0/0 inside (exp without the "
                    "max shift overflowing, or a 0 * inf)")
        if np.isinf(a) and np.isfinite(e):
            if op == "log_softmax" and a < 0:
                row = np.moveaxis(_carry(np.asarray(actual)), inputs.axis, -1)[
                    tuple(np.delete(np.array(idx), inputs.axis % len(idx)))] if len(idx) else None
                if row is not None and np.isneginf(row).all():
                    return (f"every element of the row is -inf: the sum of exp(x - max) overflowed "
                            f"{dtype} (keep it in float32)")
                return "-inf where the exact value is finite: log of an underflowed softmax?"
            inside = ("a product or a difference with the cotangent" if gradient
                      else "the sum of exp(x - max)")
            return (f"{a:g} where the exact value {e:.6g} is finite in {dtype}: an intermediate "
                    f"overflowed {dtype} ({inside} kept in {dtype}; accumulate in float32)")
        if np.isfinite(a) and np.isnan(e):
            return "a finite value where NaN is expected: a NaN input was not propagated"
        if np.isfinite(a) and np.isinf(e):
            return f"a finite value where the limit is {e:g}"
        return ""
    if kind == "beyond_bound":
        acc = "float64" if dtype == "float64" else "float32"
        return (f"more error than the model algorithm attains: sums accumulated in a precision "
                f"narrower than {acc}" + (f", or intermediate sums of the backward pass rounded to "
                                         f"{dtype}" if gradient and dtype in ("float16", "bfloat16")
                                         else ", or a less accurate exp/log"))
    return ""


def _naive_log_softmax(inputs) -> np.ndarray | None:
    x = _carry(inputs.x)
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max(axis=inputs.axis, keepdims=True))
        p = (e / e.sum(axis=inputs.axis, keepdims=True)).astype(inputs.x.dtype)
        return np.log(_carry(p)).astype(inputs.x.dtype)


def _close_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Same -inf pattern and within a few ULPs elsewhere (how a naive kernel shows itself)."""
    a64, b64 = _carry(a), _carry(b)
    if not np.array_equal(np.isneginf(a64), np.isneginf(b64)) or not np.isneginf(b64).any():
        return False
    fin = np.isfinite(a64) & np.isfinite(b64)
    return bool(np.allclose(a64[fin], b64[fin], rtol=1e-2, atol=0))


def _narrow_inputs(inputs, dtype: str):
    """``inputs`` with its floating arrays rounded to ``dtype`` (for 'computed in float32')."""
    dt = np_dtype(dtype)

    def narrow(a):
        return a.astype(dt) if a is not None and a.dtype.kind == "f" else a

    opts = dict(inputs.ce_options or {})
    if opts.get("weight") is not None:
        opts["weight"] = narrow(opts["weight"])
    try:
        return dataclasses.replace(inputs, dtype=dtype, x=narrow(inputs.x),
                                   cotangent=narrow(inputs.cotangent), target=narrow(inputs.target),
                                   ce_options=opts)
    except (TypeError, ValueError):
        return None


# -- which checks apply ------------------------------------------------------------------------
def applicable_checks(op: str, inputs) -> tuple[str, ...]:
    """Names of the checks that apply to ``op`` on ``inputs``, in the order they run.

    >>> applicable_checks("softmax", None)
    ('output_dtype', 'output_shape', 'values', 'unit_interval', 'rows_sum_to_one', 'input_not_mutated')
    """
    names = ["output_dtype", "output_shape", "values"]
    if op in PROBABILITY_OPS:
        names += ["unit_interval", "rows_sum_to_one"]
    if op.startswith("cross_entropy") and inputs is not None and any(
            not _is_default((inputs.ce_options or {}).get(k, d), d) for k, d in CE_DEFAULTS.items()
            if k != "reduction"):
        names.insert(3, "cross_entropy_options")  # after values: it explains a values failure
    names.append("input_not_mutated")
    return tuple(names)
