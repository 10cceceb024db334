"""Judgement: (inputs, exact, what the backend returned) -> one record. Pure, and trusted-side only.

The one place a verdict is decided. It never calls a backend: it gets a
:class:`~softmaxbench.suite.isolation.channel.CallResult` (output bytes, or what was raised, and
the inputs as the backend now holds them) from :mod:`softmaxbench.suite.conformance.call`, which
obtained it from a worker (``softmaxbench check``, hunt, bench validation) or in this process
(the pytest plugin, :func:`~softmaxbench.suite.conformance.api.run_checks`). The expected value
``exact`` exists only here, in the trusted process. The ``check_<property>`` functions are those
of :mod:`softmaxbench.suite.conformance.checks`.

>>> import numpy as np
>>> from softmaxbench.suite.hunt.store import get_case
>>> from softmaxbench.suite.isolation.channel import CallResult
>>> from softmaxbench.reference import ops
>>> inputs = get_case("dist_normal_scale_1").build("float32")
>>> exact = np.asarray(ops.evaluate("softmax", inputs))
>>> zeros = CallResult("output", output=np.zeros_like(inputs.x))
>>> judge("softmax", inputs, exact, zeros, backend="lazy", device="cpu")["verdict"]
'fail'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from softmaxbench.suite.conformance import checks
from softmaxbench.suite.conformance.checks import CheckFailure
from softmaxbench.suite.records import new_record


def found_by(case_name: str) -> str:
    """'hunt' for a regression case saved by ``softmaxbench hunt``, else 'catalogue'."""
    from softmaxbench.suite.hunt.store import PREFIX

    return "hunt" if case_name.startswith(PREFIX) else "catalogue"


class Recorder:
    """Builds the records of one (backend, op, inputs): verdict, metrics, repro, value sample."""

    def __init__(self, backend: str, device: str, op: str, inputs, *, category: str | None = None,
                 plugins: Sequence[str] = (), repro_backend=None, exact=None):
        self.backend, self.op, self.inputs, self.category = backend, op, inputs, category
        self.exact = exact  # only for the special row of special-values records
        self.plugins = tuple(plugins)
        self.repro_backend = repro_backend if repro_backend is not None else backend
        self.base = dict(backend=backend, device=device, op=op, case=inputs.case, category=category,
                         dtype=inputs.dtype, shape=[int(n) for n in inputs.x.shape],
                         axis=int(inputs.axis), found_by=found_by(inputs.case))
        if getattr(inputs, "seed", None) is not None:  # a fresh case: the run seed that built it
            self.base["seed"] = int(inputs.seed)

    def __call__(self, verdict: str, message: str | None = None, *, check: str | None = None,
                 deviation: str | None = None, metrics: dict | None = None, actual=None,
                 duration: float | None = None) -> dict:
        m = metrics or {}
        repro = None
        if verdict not in ("pass", "unsupported"):
            try:
                from softmaxbench.suite.conformance.repro import snippet

                repro = snippet(self.repro_backend, self.op, self.inputs, self.plugins)
            except Exception as exc:  # noqa: BLE001 - a repro must never hide the verdict
                repro = f"# repro unavailable: {type(exc).__name__}: {exc}"
        show = actual is not None and (verdict != "pass" or self.category == "special")
        if message is None and m.get("note"):  # a pass that left elements unjudged says which
            message = m["note"]
        rec = new_record("check", **self.base, check=check, verdict=verdict, deviation=deviation,
                         max_ulp=_finite(m.get("max_ulp")), median_ulp=_finite(m.get("median_ulp")),
                         max_error_ratio=_finite(m.get("max_error_ratio")), message=message,
                         repro=repro, error_kind=m.get("error_kind"),
                         value_sample=checks.value_sample(actual, self.inputs.dtype) if show else None,
                         duration_s=None if duration is None else round(duration, 6))
        if show and self.category == "special":
            rec["special_row"] = special_row(self.op, self.inputs, actual, self.exact)
        return rec


def precheck(op: str, inputs, exact, *, backend: str, device: str, dtypes: Sequence[str],
             ops: Sequence[str], category: str | None = None, expect_error: bool = False,
             reference_error: str | None = None, plugins: Sequence[str] = (),
             repro_backend=None) -> dict | None:
    """The record of a check that needs no call (undeclared dtype or op, reference failure);
    None when the backend must be called."""
    record = Recorder(backend, device, op, inputs, category=category, plugins=plugins,
                      repro_backend=repro_backend)
    if inputs.dtype not in dtypes:
        return record("unsupported", f"{backend} does not declare dtype {inputs.dtype}")
    if op not in ops:
        return record("unsupported", f"{backend} does not implement {op}")
    if exact is None and not expect_error:
        return record("error", f"the reference could not compute this case ({reference_error}); "
                               "a softmaxbench bug, not the backend's", check="reference")
    return None


#: A fresh case (seeded by the run) fails on its values only past this many times the dtype's
#: threshold: random inputs drift an honest kernel across the threshold now and then (jax-cpu's
#: bfloat16 log_softmax_vjp: 4.63 > 4 with --seed 100; float16 4.85 on another random input:
#: 1.2x), a false alarm that would come and go with the seed. A memorizer's constant guess is
#: 7x at the least (0.5 for a bfloat16 cross-entropy: 28.4), 1e4x and more elsewhere. Wrong in
#: kind (dtype, shape, NaN, an input written) fails at once.
FRESH_FACTOR = 2.5
_VALUE_CHECKS = ("values", "unit_interval", "rows_sum_to_one", "cross_entropy_options")


def _fresh_within_margin(inputs, fails, metrics: dict) -> bool:
    if getattr(inputs, "seed", None) is None or any(n not in _VALUE_CHECKS for n, _ in fails):
        return False
    from softmaxbench.reference.metrics import THRESHOLDS

    ratio = (metrics or {}).get("max_error_ratio")
    return (ratio is not None and np.isfinite(ratio)
            and ratio <= FRESH_FACTOR * THRESHOLDS.get(inputs.dtype, 4.0))


def refused_fresh(op: str, inputs, result) -> str | None:
    """The error message when a backend raises NotImplementedError on a fresh case (seeded by the
    run, ``inputs.seed``) for an op and dtype it declares (judge() is only reached for those); else
    None. Plain standard-normal logits with default options are what every declared op must take:
    refusing them while answering the catalogue's public inputs is how a memoriser passes."""
    if result.status != "unsupported" or getattr(inputs, "seed", None) is None:
        return None
    return (f"declares {op} {inputs.dtype} but refuses plain standard-normal logits of a fresh seed "
            "(default options): a backend answers the inputs it declares, not only the catalogue's")


def judge(op: str, inputs, exact: np.ndarray | None, result, *, backend: str, device: str,
          category: str | None = None, expect_error: bool = False, conventions: dict | None = None,
          plugins: Sequence[str] = (), repro_backend=None) -> dict:
    """The record of one call's outcome ``result`` (a CallResult) against ``exact``.

    unsupported -> ``unsupported``; raised -> ``error`` (``pass`` when the case expects one); an
    output is put through every applicable check, the input arrays as the backend now holds them
    through ``input_not_mutated`` (against ``inputs``, the trusted side's own arrays)."""
    record = Recorder(backend, device, op, inputs, category=category, plugins=plugins,
                      repro_backend=repro_backend, exact=exact)
    took = result.reported_s
    refused = refused_fresh(op, inputs, result)
    if refused is not None:
        return record("error", refused, check="no_exception", duration=took)
    if result.status == "unsupported":
        return record("unsupported", result.message or f"{op} raised NotImplementedError")
    if result.status == "untransportable":
        return record("fail", f"{result.message}; expected {inputs.dtype} (as the input)",
                      check="output_dtype", duration=took)
    if result.status == "raised":
        what = result.raised.one_line()
        if expect_error:
            return record("pass", f"raised {what}, as expected", check="expected_error", duration=took)
        return record("error", f"{op} raised {what} where the reference defines a result "
                               f"({result.raised.where or 'no traceback'})", check="no_exception",
                      duration=took)
    actual = result.output
    if expect_error:
        try:
            checks.check_expected_error(op, inputs, actual)
        except CheckFailure as f:
            return record("fail", f.message, check="expected_error", actual=actual, duration=took)

    failures: list[tuple[str, CheckFailure]] = []
    metrics: dict = {}
    for name in checks.applicable_checks(op, inputs):
        try:
            if name == "output_dtype":
                checks.check_output_dtype(op, inputs, actual)
            elif name == "output_shape":
                checks.check_output_shape(op, inputs, actual, exact)
            elif name == "values":
                metrics = checks.check_values(op, inputs, actual, exact, conventions=conventions)
            elif name == "cross_entropy_options":
                # Only worth its extra reference evaluations when the values are wrong.
                if any(n == "values" and f.verdict == "fail" for n, f in failures):
                    checks.check_cross_entropy_options(op, inputs, actual, exact)
            elif name == "unit_interval":
                checks.check_unit_interval(op, inputs, actual, exact)
            elif name == "rows_sum_to_one":
                # Its bound is the sum of the element bounds: when the values pass, so does every
                # row, so it is only run to name the row property a failing output breaks.
                if any(n == "values" for n, _ in failures):
                    checks.check_rows_sum_to_one(op, inputs, actual, exact)
            elif name == "input_not_mutated":
                _check_inputs(op, inputs, result)
        except CheckFailure as f:
            failures.append((name, f))
            metrics = metrics or f.metrics
            if name in ("output_dtype", "output_shape"):  # nothing else can be compared element-wise
                break
        except Exception as exc:  # noqa: BLE001 - a check that crashes on odd output is a finding too
            failures.append((name, CheckFailure("fail", f"check {name} could not judge the output: "
                                                        f"{_one_line(exc)}")))
            if name in ("output_dtype", "output_shape", "values"):
                break
    fails = [(n, f) for n, f in failures if f.verdict == "fail"]
    if "cross_entropy_options" in {n for n, _ in fails}:  # the specific explanation goes first
        fails.sort(key=lambda nf: nf[0] != "cross_entropy_options")
    if fails and _fresh_within_margin(inputs, fails, metrics):
        return record("pass", f"a fresh case is judged within {FRESH_FACTOR:g}x the threshold (random "
                              f"inputs drift honest kernels across it): " + fails[0][1].message[:300],
                      check=None, metrics=metrics, actual=actual, duration=took)
    if fails:
        return record("fail", " | ".join(f.message for _, f in fails), check=fails[0][0],
                      metrics=metrics, actual=actual, duration=took)
    if failures:
        name, dev = failures[0]
        return record("deviation", dev.message, check=name, deviation=dev.deviation, metrics=metrics,
                      actual=actual, duration=took)
    return record("pass", None, check=None, metrics=metrics, actual=actual, duration=took)


def probe_inputs(inputs, seed: int | None = None):
    """``inputs`` with fresh values where a backend's NotImplementedError may not depend on them:
    x (and a cotangent) standard normal, same shape, dtype and memory layout (a view stays a view
    with the same strides); targets, weights and options unchanged (they are what an "option
    combination" is made of). None when there is nothing to probe (an empty or 0-d x).

    A declared op that raises NotImplementedError on a case but answers these inputs refused the
    case for its values: :func:`unsupported_for_values` is that record."""
    import dataclasses

    from softmaxbench.suite.isolation.channel import _view_of

    x = np.asarray(inputs.x)
    if x.ndim == 0 or x.size == 0 or x.dtype.kind not in "fV" and str(x.dtype) != "bfloat16":
        return None
    rng = np.random.default_rng(seed)

    def fresh(a):
        if a is None:
            return None
        view = _view_of(a)
        if view is None:
            return rng.standard_normal(a.shape).astype(a.dtype)
        root, layout = view
        new_root = rng.standard_normal(root.shape).astype(root.dtype)
        return np.ndarray(tuple(layout["shape"]), new_root.dtype, buffer=new_root, offset=layout["offset"],
                          strides=tuple(layout["strides"]))

    try:
        return dataclasses.replace(inputs, case=f"{inputs.case}~probe", x=fresh(inputs.x),
                                   cotangent=fresh(inputs.cotangent), _recipe=None)
    except (TypeError, ValueError):
        return None


def unsupported_group(op: str, inputs) -> tuple:
    """What a NotImplementedError may depend on: the op, the dtype, the form of the input (its
    number of dimensions, whether the axis is the last one, whether it is C-contiguous: a kernel
    written for contiguous rows along the last axis may refuse the rest) and, for cross-entropy,
    the option combination (index or probability targets, reduction, label smoothing on or off,
    ignore_index set or not, a weight or none). Never the values, nor the sizes within a form: a
    declared op that answers one member of a group and refuses another refused it for its inputs.

    >>> from types import SimpleNamespace as NS
    >>> a = NS(dtype="float32", x=np.zeros((4, 8)), axis=-1, target=None, ce_options=None)
    >>> b = NS(dtype="float32", x=np.zeros((16, 3)), axis=1, target=None, ce_options=None)
    >>> unsupported_group("softmax", a) == unsupported_group("softmax", b)
    True
    >>> unsupported_group("softmax", a) == unsupported_group("softmax", NS(**{**vars(a), "axis": 0}))
    False
    """
    x = np.asarray(inputs.x)
    axis = int(getattr(inputs, "axis", -1))
    form = (x.ndim, x.ndim == 0 or axis in (-1, x.ndim - 1), bool(x.flags.c_contiguous))
    if not op.startswith("cross_entropy"):
        return (op, inputs.dtype, *form)
    opts = dict(inputs.ce_options or {})
    target = inputs.target
    kind = ("none" if target is None else
            "indices" if np.asarray(target).dtype.kind in "iu" else "probabilities")
    return (op, inputs.dtype, *form, kind, str(opts.get("reduction")), bool(opts.get("label_smoothing")),
            opts.get("ignore_index") is not None, opts.get("weight") is not None)


def unsupported_for_values(op: str, inputs, original, *, backend: str, device: str,
                           category: str | None = None, plugins: Sequence[str] = (),
                           repro_backend=None, answered: str = "fresh") -> dict:
    """The record of a NotImplementedError that the backend does not raise for other inputs of
    the same :func:`unsupported_group`: ``error`` (unsupported is for an op, a dtype or an
    option combination, declared or not; a kernel that refuses exactly the inputs it gets wrong
    must not conform). ``answered``: "fresh" (the probe of :func:`probe_inputs` was answered) or
    "other" (another case of the group was)."""
    record = Recorder(backend, device, op, inputs, category=category, plugins=plugins,
                      repro_backend=repro_backend)
    said = original.message or f"{op} raised NotImplementedError"
    what = ("fresh standard-normal values of the same shape, dtype, layout and options" if answered == "fresh"
            else f"other inputs of {op} in {inputs.dtype}" + (" with the same options" if op.startswith(
                "cross_entropy") else ""))
    return record("error", f"{said}, but answered {what}: NotImplementedError may depend on the op, the "
                           f"dtype and the options, not on the values or the shape (an unsupported case "
                           f"must be unsupported for every input)", check="unsupported_for_values",
                  duration=original.reported_s)


def _check_inputs(op: str, inputs, result) -> None:
    """input_not_mutated on what the worker reports, against the trusted side's own arrays.

    A NumPy array the adapter was handed that changed is an in-place write. A native argument
    whose to_numpy differs is one too, unless a fresh asarray/to_numpy round trip of the
    original gives the same difference: then the adapter's data movement changes the array
    (a copy to another shape or dtype), which is named as such."""
    before = checks.input_arrays(op, inputs)
    if result.inputs_np_after:
        checks.check_input_not_mutated(op, inputs, before, result.inputs_np_after,
                                       seen_as="the NumPy array the adapter was given")
    if not result.inputs_after:
        return
    roundtrip = {n: a for n, a in result.roundtrip.items() if n in result.inputs_after}
    changed_by_adapter = {n for n, a in roundtrip.items()
                          if np.asarray(a).shape == np.asarray(result.inputs_after[n]).shape
                          and checks.same_bits(np.asarray(a), np.asarray(result.inputs_after[n]))}
    for name in sorted(changed_by_adapter):
        old, new = np.asarray(before[name]), np.asarray(roundtrip[name])
        if new.shape != old.shape or new.dtype != old.dtype:
            raise CheckFailure("fail", f"the adapter's asarray/to_numpy round trip turns input {name!r} "
                                       f"{old.dtype}{list(old.shape)} into {new.dtype}{list(new.shape)} "
                                       f"(not a write by {op})")
        raise CheckFailure("fail", f"the adapter's asarray/to_numpy round trip changes the values of "
                                   f"input {name!r} (not a write by {op})")
    checks.check_input_not_mutated(op, inputs, before, result.inputs_after,
                                   seen_as="the native array asarray made, read back with to_numpy")


def _finite(v) -> float | None:
    """JSON-safe metric: NaN/inf become None (the message says what happened)."""
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def special_row(op: str, inputs, actual, exact, limit: int = 8) -> dict | None:
    """The row of a special-values case that holds the special value (the first row with a NaN
    or an infinity among its logits, else row 0): its index, logits, what came back and the exact
    value, each as texts (JSON has no NaN or inf), at most ``limit`` elements.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> x = np.array([[0.0, 1.0], [np.inf, 0.0]], np.float32)
    >>> inputs = SimpleNamespace(x=x, axis=-1, dtype="float32")
    >>> special_row("softmax", inputs, np.full((2, 2), np.nan, np.float32),
    ...             np.array([[0.27, 0.73], [1.0, 0.0]]))
    {'index': 1, 'input': ['inf', '0'], 'output': ['nan', 'nan'], 'expected': ['1', '0']}
    """
    from softmaxbench.reference.metrics import format_value

    x = np.asarray(inputs.x)
    if x.ndim == 0 or x.size == 0:
        return None
    rows = np.moveaxis(x, inputs.axis, -1).reshape(-1, x.shape[inputs.axis])
    odd = np.flatnonzero(~np.isfinite(rows.astype(np.float64)).all(axis=-1))
    i = int(odd[0]) if odd.size else 0

    def texts(a, dtype) -> list[str] | None:
        if a is None:
            return None
        a = np.asarray(a)
        if a.shape == x.shape:
            a = np.moveaxis(a, inputs.axis, -1).reshape(rows.shape)[i]
        elif a.size == rows.shape[0]:  # one value per row (logsumexp, per-sample losses)
            a = a.reshape(-1)[i:i + 1]
        else:
            return None
        return [format_value(float(v), dtype) for v in a.astype(np.float64)[:limit]]

    out = {"index": i, "input": texts(x, inputs.dtype), "output": texts(actual, inputs.dtype),
           "expected": texts(exact, "float64")}
    return {k: v for k, v in out.items() if v is not None}


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0][:300]}" if msg else type(exc).__name__
