"""The case catalogue: named, deterministic inputs that every backend is checked on.

A :class:`Case` describes an input (category, shape, axis, the ops and dtypes it applies to, why
it matters); :meth:`Case.build` turns it into a :class:`CaseInput` of NumPy arrays in one target
dtype. Every case is defined by a short NumPy *recipe*: statements that build the logits ``x64``
in float64 (relative to the target dtype's limits ``fi``), after which they are cast to the
target dtype, so every value is exactly representable there. Building a case executes exactly
the Python source that :meth:`CaseInput.numpy_source` returns, so a repro snippet cannot drift
from what the suite ran. Randomness is seeded from a SHA-256 of the case name (never Python's
salted ``hash()``), with one stream each for the logits, the cotangent and the targets.

Those seeds are public, so every catalogue input is predictable: a kernel could recognise them
(by hash) and be right on nothing else. The *fresh* cases (:data:`FRESH_CASES`, ``fresh_normal``)
are seeded by the run instead: a run draws a seed (:func:`new_seed`, or ``check --seed N``),
records it, and binds the fresh cases to it (:func:`bind`, :meth:`Case.with_seed`); their inputs,
records and repro snippets carry that seed. An unbound fresh case (as :func:`catalogue` lists
it, for tests and for hunt's starting points) builds from its name's seed like any other case,
so nothing a run checks is ever built from it.

>>> from softmaxbench.reference.cases import catalogue, get
>>> case = get("special_posinf_one")
>>> case.category, case.shape, case.axis
('special', (4, 16), -1)
>>> inputs = case.build("bfloat16")
>>> str(inputs.x.dtype), int((inputs.x == float("inf")).sum())
('bfloat16', 1)
>>> args, kwargs = inputs.args("softmax_vjp")
>>> [a.shape for a in args], kwargs
([(4, 16), (4, 16)], {'axis': -1})
>>> namespace = {}
>>> exec(inputs.numpy_source(), namespace)          # the repro snippet rebuilds the same bits
>>> bool((namespace["x"].view("uint16") == inputs.x.view("uint16")).all())
True
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import hashlib
import secrets
import zlib
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import numpy as np

from softmaxbench.reference.dtypes import DTYPES, dtype_name, np_dtype
from softmaxbench.vocabulary import CROSS_ENTROPY_OPS, DEFAULT_CE_OPTIONS, OPS

CATEGORIES: tuple[str, ...] = ("extreme", "special", "shape", "distribution", "cross_entropy")

ALL_OPS: tuple[str, ...] = OPS
CE_OPS: tuple[str, ...] = CROSS_ENTROPY_OPS
NON_CE_OPS: tuple[str, ...] = tuple(op for op in ALL_OPS if op not in CE_OPS)
#: Ops that CaseInput.args() can feed: the protocol's ops plus the reference's logsumexp_grad.
ARG_OPS: tuple[str, ...] = ALL_OPS + ("logsumexp_grad",)


#: Cases in the --quick subset must be at most this many logits (CI runs them on every backend).
QUICK_MAX_SIZE = 4096

_DEFAULT_TARGET = ("target = np.asarray(rng.integers(0, x.shape[-1], size=x.shape[:-1]), "
                   "dtype=np.int64)")


def case_seed(name: str) -> int:
    """The 64-bit seed of a case: the first 8 bytes of SHA-256(name), stable across processes.

    >>> case_seed("a") == case_seed("a") != case_seed("b")
    True
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


#: Seeds a run may use: a non-negative integer below 2**64 (NumPy's SeedSequence takes more, but a
#: seed that fits 64 bits is one to type and to record).
SEED_LIMIT = 2**64


def new_seed() -> int:
    """A random 63-bit run seed (from the OS's entropy: nothing a backend could predict).

    >>> 0 <= new_seed() < 2**63
    True
    """
    return secrets.randbits(63)


def check_seed(seed) -> int:
    """``seed`` as a run seed; ValueError (one line) unless it is an integer in [0, 2**64).

    >>> check_seed(7)
    7
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    ValueError: a seed is an integer from 0 to 2**64 - 1, got -1
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"a seed is an integer from 0 to 2**64 - 1, got {seed!r}")
    return int(seed)


def bind(cases, seed: int | None) -> list:
    """``cases`` with every fresh case bound to the run seed ``seed`` (others as they are)."""
    return [c.with_seed(seed) if getattr(c, "fresh", False) and seed is not None else c for c in cases]


def _dtype_source(dtype: str) -> str:
    """Python source for the NumPy dtype of a target dtype name."""
    return "np.dtype(ml_dtypes.bfloat16)" if dtype == "bfloat16" else f'np.dtype("{dtype}")'


def _ce_options_source(options: dict[str, Any]) -> str:
    """The ce_options line of a snippet; ``weight`` refers to the snippet's variable."""
    options = {**DEFAULT_CE_OPTIONS, **options}  # hand-made inputs may give only some options
    parts = [f"{key!r}: {options[key]!r}" for key in ("reduction", "label_smoothing", "ignore_index")]
    return "ce_options = {" + ", ".join(parts) + ", 'weight': weight}"


def _fingerprint(x, cotangent, target, ce_options, axis) -> str:
    """Digest of everything a snippet rebuilds, to notice inputs changed after build()."""
    digest = hashlib.sha256(repr((axis, {k: v for k, v in ce_options.items() if k != "weight"})).encode())
    for a in (x, cotangent, target, ce_options.get("weight")):
        if a is None:
            digest.update(b"none")
            continue
        a = np.asarray(a)
        digest.update(repr((a.dtype.str, a.shape, a.strides)).encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


# -- literal encoding, for inputs that no recipe made (hypothesis, hunt) ---------------------------
_LITERAL_MAX = 64  # up to this many elements, bit patterns are written out; beyond, zlib + base85


def _array_literal(a: np.ndarray) -> str:
    """Source of an expression that rebuilds ``a`` bit for bit (values, dtype and shape).

    Floating arrays are written as their bit patterns and viewed as the snippet's ``dt``;
    integer arrays (class indices) as int64. Byte order is fixed to little-endian in the text.
    """
    a = np.asarray(a, order="C")  # not ascontiguousarray: that turns 0-d into 1-d
    if a.dtype.kind in "iu":
        wire, native, view, fmt = "<i8", "i8", "", str
        flat = a.astype(wire)
    else:
        size = a.dtype.itemsize
        wire, native, view, fmt = f"<u{size}", f"u{size}", ".view(dt)", hex
        flat = a.view(np.dtype(native)).astype(wire)
    if a.size <= _LITERAL_MAX:
        values = ", ".join(fmt(int(v)) for v in flat.ravel())
        body = f'np.array([{values}], dtype="{wire}")'
    else:
        packed = base64.b85encode(zlib.compress(flat.tobytes(), 9)).decode("ascii")
        body = f'np.frombuffer(zlib.decompress(base64.b85decode("{packed}")), dtype="{wire}")'
    return f'{body}.astype("{native}"){view}.reshape({a.shape!r})'


@dataclass(eq=False)
class CaseInput:
    """One case built in one target dtype: exactly what a backend and the reference receive.

    ``x`` may be a non-contiguous view (that is the point of some shape cases). ``cotangent`` has
    ``x``'s shape and dtype. ``target`` is None when the case does not apply to cross-entropy
    (its class axis is not the last), else int64 class indices of shape ``x.shape[:-1]`` or
    probabilities of ``x``'s shape and dtype. ``ce_options`` always holds reduction,
    label_smoothing, ignore_index and weight (``(C,)`` in x's dtype, or None).

    >>> import numpy as np
    >>> inp = CaseInput("mine", "float32", -1, np.ones((2, 3), np.float32), None, None,
    ...                 dict(DEFAULT_CE_OPTIONS))
    >>> inp.args("logsumexp")[1]
    {'axis': -1}
    """

    case: str
    dtype: str
    axis: int
    x: np.ndarray
    cotangent: np.ndarray | None
    target: np.ndarray | None
    ce_options: dict = field(default_factory=lambda: dict(DEFAULT_CE_OPTIONS))
    # (snippet, fingerprint) when a catalogue recipe built this input; numpy_source() reuses the
    # snippet only while the arrays still match the fingerprint.
    _recipe: tuple[str, str] | None = field(default=None, repr=False)
    #: The run seed a fresh case was built from (None for every other input): its records say it.
    seed: int | None = None

    def args(self, op: str) -> tuple[tuple, dict]:
        """``(args, kwargs)`` for ``backend.<op>(*args, **kwargs)`` and ``reference.ops.<op>``.

        The arrays are passed as they are, not copied: a caller checking that an op does not
        mutate its input compares against its own copy.
        """
        if op in ("softmax", "log_softmax", "logsumexp"):
            return (self.x,), {"axis": self.axis}
        if op in ("softmax_vjp", "log_softmax_vjp"):
            return (self.x, self._cotangent()), {"axis": self.axis}
        if op == "logsumexp_grad":
            return (self.x, self._reduced_cotangent()), {"axis": self.axis}
        if op in CE_OPS:
            if self.target is None:
                raise ValueError(f"case {self.case!r} has no cross-entropy target "
                                 f"(its class axis {self.axis} is not the last)")
            return (self.x, self.target), {**DEFAULT_CE_OPTIONS, **self.ce_options}
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(ARG_OPS)}")

    def _cotangent(self) -> np.ndarray:
        if self.cotangent is None:
            raise ValueError(f"case {self.case!r} has no cotangent")
        return self.cotangent

    def _reduced_cotangent(self) -> np.ndarray:
        # logsumexp_grad takes a cotangent of the reduced shape: the first slice along the axis
        # keeps it seeded and in the target dtype; an empty axis has nothing to slice, so ones.
        cot = self._cotangent()
        if cot.ndim == 0:
            return cot
        if cot.shape[self.axis] == 0:
            reduced = cot.shape[:self.axis % cot.ndim] + cot.shape[self.axis % cot.ndim + 1:]
            return np.ones(reduced, cot.dtype)
        return np.take(cot, 0, axis=self.axis)

    def numpy_source(self) -> str:
        """Python source that rebuilds ``x``, ``cotangent``, ``target`` and ``ce_options`` exactly.

        For catalogue inputs this is the case's recipe (the very code build() ran, so views and
        strides are rebuilt too); for other inputs, or after the arrays were changed, the arrays
        are written as bit patterns (zlib + base85 beyond 64 elements) in C order, so a view's
        values are rebuilt but not its strides. Runnable on its own.
        """
        if self._recipe is not None:
            source, fingerprint = self._recipe
            if fingerprint == _fingerprint(self.x, self.cotangent, self.target, self.ce_options,
                                           self.axis):
                return source
        return self._literal_source()

    def _literal_source(self) -> str:
        arrays = {"x": self.x, "cotangent": self.cotangent, "target": self.target,
                  "weight": self.ce_options.get("weight")}
        large = any(a is not None and np.asarray(a).size > _LITERAL_MAX for a in arrays.values())
        lines = [f"# softmaxbench input {self.case!r}, dtype {self.dtype}, axis {self.axis}"]
        if large:
            lines += ["import base64", "import zlib", ""]
        lines += ["import ml_dtypes", "import numpy as np", "", f"dt = {_dtype_source(self.dtype)}",
                  f"axis = {self.axis}"]
        for var, a in arrays.items():
            if a is None:
                lines.append(f"{var} = None")
                continue
            a = np.asarray(a)
            if a.dtype.kind not in "iu" and dtype_name(a.dtype) != self.dtype:
                raise TypeError(f"{var} of case {self.case!r} has dtype {a.dtype}, not {self.dtype}")
            lines.append(f"{var} = {_array_literal(a)}")
        lines.append(_ce_options_source(self.ce_options))
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Case:
    """A named input of the catalogue; :meth:`build` makes its arrays in one target dtype.

    Beyond the public fields, a case carries its recipe: ``recipe`` (statements that set the
    float64 logits ``x64`` from ``rng``, ``shape``, ``dt`` and ``fi``), an optional ``view``
    (an expression of ``x`` such as ``x.T``; ``base_shape`` is then the shape of ``x64``), an
    optional ``target_recipe`` (sets ``target`` and perhaps ``weight``) and ``options``
    (reduction, label_smoothing, ignore_index). A ``fresh`` case is seeded by the run, not by its
    name: :meth:`with_seed` binds it to a run seed (``run_seed``).

    >>> c = Case("tiny", "distribution", (2, 3), -1, ("softmax",), ("float32",), "demo", True, False,
    ...          recipe="x64 = rng.standard_normal(shape)")
    >>> c.build("float32").x.shape
    (2, 3)
    """

    name: str
    category: str
    shape: tuple[int, ...]
    axis: int
    ops: tuple[str, ...]
    dtypes: tuple[str, ...]
    description: str
    quick: bool
    expect_error: bool
    recipe: str = field(default="x64 = rng.standard_normal(shape)", repr=False)
    base_shape: tuple[int, ...] | None = field(default=None, repr=False)
    view: str | None = field(default=None, repr=False)
    target_recipe: str | None = field(default=None, repr=False)
    options: tuple[tuple[str, Any], ...] = field(default=(), repr=False)
    fresh: bool = field(default=False, repr=False)
    run_seed: int | None = field(default=None, repr=False)

    @property
    def seed(self) -> int:
        """The case's seed: SHA-256 of its name, or for a bound fresh case the run's seed."""
        return self.run_seed if self.run_seed is not None else case_seed(self.name)

    def with_seed(self, seed: int) -> Case:
        """This fresh case bound to the run seed ``seed`` (ValueError for a catalogue case, whose
        seed is its name's)."""
        if not self.fresh:
            raise ValueError(f"case {self.name!r} is seeded by its name, not by the run")
        return dataclasses.replace(self, run_seed=check_seed(seed))

    @property
    def has_target(self) -> bool:
        """Whether the case applies to cross-entropy (and so builds a target)."""
        return any(op in CE_OPS for op in self.ops)

    def ce_options(self) -> dict[str, Any]:
        """The cross-entropy options without the weight array (which build() makes)."""
        return {**DEFAULT_CE_OPTIONS, **dict(self.options)}

    def source(self, dtype: str) -> str:
        """The self-contained NumPy source that builds this case in ``dtype``."""
        if dtype not in self.dtypes:
            raise ValueError(f"case {self.name!r} applies to {', '.join(self.dtypes)}, not {dtype!r}")
        options = self.ce_options()
        lines = [
            f"# softmaxbench case {self.name!r} ({self.category}), dtype {dtype}, axis {self.axis}",
            f"# {self.description}",
            f"# (random streams are bit-stable within a NumPy version; built with NumPy {np.__version__})",
            *([f"# SEED is the run's seed: 'softmaxbench check --seed {self.seed} --cases {self.name}' "
               "checks these inputs again"] if self.fresh and self.run_seed is not None else []),
            "import ml_dtypes",
            "import numpy as np",
            "",
            f"dt = {_dtype_source(dtype)}",
            "fi = ml_dtypes.finfo(dt)",
            f"axis = {self.axis}",
            f"SEED = {self.seed}" if self.fresh else f"SEED = {self.seed:#x}",
            f"shape = {self.base_shape or self.shape!r}",
            "rng = np.random.default_rng([SEED, 0])",
            self.recipe,
            "x = np.asarray(x64, dtype=np.float64).astype(dt)",
        ]
        if self.view:
            lines.append(f"x = {self.view}")
        lines.append("cotangent = np.asarray(np.random.default_rng([SEED, 1]).standard_normal(x.shape))"
                     ".astype(dt)")
        lines.append("weight = None")
        if self.has_target:
            lines.append("rng = np.random.default_rng([SEED, 2])")
            lines.append(self.target_recipe or _DEFAULT_TARGET)
        else:
            lines.append("target = None")
        lines.append(_ce_options_source(options))
        return "\n".join(lines) + "\n"

    def build(self, dtype: str) -> CaseInput:
        """The case's arrays in target dtype ``dtype``; the same bits on every call."""
        np_dtype(dtype)
        source = self.source(dtype)
        namespace: dict[str, Any] = {}
        # Executing the snippet itself (our own static recipe text, never user input) is what
        # makes numpy_source() an exact repro rather than a paraphrase of the build.
        with np.errstate(over="ignore"):  # casts that overflow to inf do so on purpose
            exec(_compiled(source, f"<case {self.name} {dtype}>"), namespace)
        x, cotangent, target = namespace["x"], namespace["cotangent"], namespace["target"]
        ce_options = dict(namespace["ce_options"])
        fingerprint = _fingerprint(x, cotangent, target, ce_options, self.axis)
        return CaseInput(self.name, dtype, self.axis, x, cotangent, target, ce_options,
                         _recipe=(source, fingerprint), seed=self.run_seed)

    def summary(self) -> dict[str, Any]:
        """JSON-able description of the case (what ``softmaxbench cases --json`` prints)."""
        options = {k: v for k, v in self.ce_options().items() if k != "weight"}
        return {"name": self.name, "category": self.category, "shape": list(self.shape),
                "axis": self.axis, "ops": list(self.ops), "dtypes": list(self.dtypes),
                "description": self.description, "quick": self.quick,
                "expect_error": self.expect_error, "size": int(np.prod(self.shape, dtype=np.int64)),
                "ce_options": options if self.has_target else None,
                "weighted": self.has_target and "weight =" in (self.target_recipe or ""),
                **({"seeded_by": "run"} if self.fresh else {})}


@lru_cache(maxsize=1024)
def _compiled(source: str, filename: str):
    """The code object of a case's recipe (compiling it took longer than running it)."""
    return compile(source, filename, "exec")


# -- the catalogue ----------------------------------------------------------------------------
def _ce_applicable(shape: tuple[int, ...], axis: int) -> bool:
    return len(shape) >= 1 and axis in (-1, len(shape) - 1) and shape[-1] >= 1


def _case(name: str, category: str, shape: tuple[int, ...], description: str,
          recipe: str = "x64 = rng.standard_normal(shape)", *, axis: int = -1,
          base: tuple[int, ...] | None = None, view: str | None = None, target: str | None = None,
          options: dict[str, Any] | None = None, ops: tuple[str, ...] | None = None,
          dtypes: tuple[str, ...] = DTYPES, quick: bool = False, expect_error: bool = False,
          fresh: bool = False) -> Case:
    if ops is None:
        if category == "cross_entropy":
            ops = CE_OPS
        else:
            ops = ALL_OPS if _ce_applicable(shape, axis) else NON_CE_OPS
    return Case(name, category, shape, axis, ops, dtypes, description, quick, expect_error,
                recipe=recipe, base_shape=base, view=view, target_recipe=target,
                options=tuple(sorted((options or {}).items())), fresh=fresh)


_LN_MAX = "np.log(float(fi.max))"
_LN_TINY = "np.log(float(fi.tiny))"
_LN_SUB = "np.log(float(fi.smallest_subnormal))"
_ROWS = "np.arange(shape[0])"


def _extreme() -> list[Case]:
    E = "extreme"
    return [
        _case("extreme_near_log_max", E, (4, 64),
              "logits in [ln(max)-2, ln(max)] of the dtype: exp without the max shift overflows",
              f"x64 = {_LN_MAX} - rng.uniform(0, 2, shape)", quick=True),
        _case("extreme_above_log_max", E, (4, 64),
              "logits in [ln(max), ln(max)+8]: exp(x) alone overflows, only the shifted algorithm works",
              f"x64 = {_LN_MAX} + rng.uniform(0, 8, shape)"),
        _case("extreme_log_max_among_small", E, (8, 128),
              "every 4th logit at ln(max), the rest standard normal: unshifted sums overflow",
              f"x64 = rng.standard_normal(shape)\nx64[:, ::4] = {_LN_MAX}"),
        _case("extreme_near_log_tiny", E, (8, 128),
              "all logits within 1 of ln(smallest normal): unshifted exp lands on the subnormal boundary",
              f"x64 = {_LN_TINY} + rng.uniform(-1, 1, shape)"),
        _case("extreme_outputs_near_tiny", E, (4, 64),
              "one logit 0, the rest within 2 of ln(smallest normal): outputs straddle the end of the "
              "normal range",
              f"x64 = {_LN_TINY} + rng.uniform(-2, 2, shape)\nx64[:, 0] = 0.0"),
        _case("extreme_near_log_subnormal", E, (8, 128),
              "all logits within 1 of ln(smallest subnormal): unshifted exp underflows to 0, giving 0/0",
              f"x64 = {_LN_SUB} + rng.uniform(-1, 1, shape)"),
        _case("extreme_outputs_subnormal", E, (4, 64),
              "one logit 0, the rest between ln(smallest subnormal) and ln(smallest normal): "
              "subnormal outputs (flush-to-zero shows here)",
              f"x64 = rng.uniform({_LN_SUB} - 0.5, {_LN_TINY} + 0.5, shape)\nx64[:, 0] = 0.0",
              quick=True),
        _case("extreme_outputs_underflow", E, (8, 128),
              "one logit 0, the rest 1-50 below ln(smallest subnormal): softmax is exactly 0 there "
              "while log_softmax stays finite",
              f"x64 = {_LN_SUB} - rng.uniform(1, 50, shape)\nx64[:, 0] = 0.0"),
        _case("extreme_spread_1e4", E, (4, 64),
              "logits uniform in [-5e3, 5e3] (spread 1e4): exp of the differences underflows",
              "x64 = rng.uniform(-5e3, 5e3, shape)", quick=True),
        _case("extreme_spread_1e30", E, (8, 128),
              "logits uniform in [-5e29, 5e29] (spread 1e30; float16 cannot hold it)",
              "x64 = rng.uniform(-5e29, 5e29, shape)", dtypes=("bfloat16", "float32", "float64")),
        _case("extreme_spread_finfo_max", E, (4, 64),
              "+finfo.max and -finfo.max in every row: x - max overflows to -inf "
              "(log_softmax exact value -2*max is beyond the range)",
              "x64 = rng.standard_normal(shape)\nx64[:, 0] = float(fi.max)\nx64[:, 1] = -float(fi.max)",
              quick=True),
        _case("extreme_rows_of_finfo_max", E, (8, 128),
              "rows of all +finfo.max and rows of all -finfo.max: uniform outputs, naive exp overflows",
              "x64 = np.full(shape, float(fi.max))\nx64[1::2] = -float(fi.max)"),
        _case("extreme_float16_cast_overflow", E, (4, 64),
              "built in float64 as normal(0, 6e4) then cast to float16: values beyond 65504 become "
              "+-inf, so the input contains +inf and -inf (several +inf per row)",
              "x64 = rng.normal(0.0, 6e4, shape)", dtypes=("float16",), quick=True),
        _case("extreme_subnormal_inputs", E, (8, 128),
              "logits that are small multiples of the smallest subnormal: flushing them must not matter",
              "x64 = float(fi.smallest_subnormal) * rng.integers(-16, 17, shape)"),
        _case("extreme_mixed_anchors", E, (4, 64),
              "each logit one of +-ln(max), +-ln(smallest normal), +-ln(smallest subnormal), 0",
              f"a = np.array([{_LN_MAX}, {_LN_TINY}, {_LN_SUB}])\n"
              "x64 = rng.choice(np.concatenate([a, -a, [0.0]]), size=shape)", quick=True),
    ]


def _special() -> list[Case]:
    S = "special"
    normal = "x64 = rng.standard_normal(shape)\n"
    return [
        _case("special_nan_one", S, (4, 16),
              "one NaN in row 1: that row is NaN, the other rows stay exact",
              normal + "x64[1, 3] = np.nan", quick=True),
        _case("special_nan_row", S, (4, 16), "row 2 all NaN", normal + "x64[2] = np.nan"),
        _case("special_nan_and_posinf", S, (4, 16), "NaN and +inf in the same row: NaN wins",
              normal + "x64[0, 1] = np.nan\nx64[0, 5] = np.inf"),
        _case("special_posinf_one", S, (4, 16),
              "one +inf in row 1: the limit is one-hot (log_softmax 0 / -inf); a NaN row is a "
              "documented deviation", normal + "x64[1, 7] = np.inf", quick=True),
        _case("special_posinf_several", S, (4, 16),
              "two +inf in row 1 (the limit does not exist: NaN row)",
              normal + "x64[1, [2, 9]] = np.inf", quick=True),
        _case("special_posinf_all", S, (4, 16), "row 0 all +inf (NaN row)", normal + "x64[0] = np.inf"),
        _case("special_neginf_all", S, (4, 16),
              "row 2 all -inf: NaN expected; zeros or uniform are documented deviations",
              normal + "x64[2] = -np.inf", quick=True),
        _case("special_neginf_among_finite", S, (4, 16),
              "about 30% -inf entries among finite logits: softmax exactly 0 there, gradients 0 not NaN",
              normal + "mask = rng.random(shape) < 0.3\nmask[:, 0] = False\nx64[mask] = -np.inf",
              quick=True),
        _case("special_neginf_one_finite", S, (8, 32),
              "all -inf except one finite logit per row: exactly one-hot",
              "x64 = np.full(shape, -np.inf)\n"
              f"x64[{_ROWS}, rng.integers(0, shape[1], shape[0])] = rng.standard_normal(shape[0])"),
        _case("special_posinf_and_neginf", S, (4, 16), "+inf and -inf in the same row: one-hot limit",
              normal + "x64[1, 0] = np.inf\nx64[1, 1] = -np.inf"),
        _case("special_causal_mask", S, (16, 16),
              "attention causal mask: -inf above the diagonal (row 0 has a single finite logit)",
              normal + "x64[np.triu_indices(shape[0], 1)] = -np.inf"),
        _case("special_padding_mask", S, (8, 32),
              "padding mask: last 12 keys -inf in every row, and rows 6-7 (padded queries) all -inf",
              normal + "x64[:, 20:] = -np.inf\nx64[6:] = -np.inf"),
        _case("special_masked_rank4", S, (2, 4, 8, 8),
              "(batch, heads, queries, keys) scores with a causal mask; batch 1's last two queries "
              "fully masked (all -inf rows)",
              normal + "x64[..., np.triu(np.ones(shape[-2:], dtype=bool), 1)] = -np.inf\n"
              "x64[1, :, 6:, :] = -np.inf", quick=True),
        _case("special_mask_finfo_min", S, (8, 32),
              "masked with finfo.min instead of -inf (as Hugging Face models do); fully masked "
              "rows are then uniform, not NaN",
              normal + "x64[:, 24:] = -float(fi.max)\nx64[6:] = -float(fi.max)"),
        _case("special_signed_zeros", S, (4, 16),
              "a mix of +0.0 and -0.0: exactly uniform output, log_softmax exactly -ln(n)",
              "x64 = rng.choice(np.array([0.0, -0.0]), size=shape)"),
    ]


def _shape() -> list[Case]:
    H = "shape"
    return [
        _case("shape_scalar", H, (), "0-d input with axis -1: treated as one element (softmax 1, "
              "log_softmax 0, logsumexp x)", quick=True),
        _case("shape_empty", H, (0,), "empty 1-d input: empty results (logsumexp -inf)"),
        _case("shape_empty_rows", H, (3, 0), "three rows of zero length: empty softmax, logsumexp -inf",
              quick=True),
        _case("shape_empty_batch", H, (0, 5), "no rows of five classes: empty results "
              "(cross-entropy mean over nothing: NaN)", quick=True),
        _case("shape_empty_axis0", H, (0, 5), "reduction over an empty axis 0", axis=0),
        _case("shape_n1", H, (1,), "a single logit: softmax exactly 1, log_softmax exactly 0"),
        _case("shape_n1_rows", H, (64, 1), "N x 1 with axis -1: 64 rows of one element", quick=True),
        _case("shape_nx1_axis0", H, (64, 1), "N x 1 reduced over axis 0 (64 logits, stride 1)", axis=0),
        _case("shape_1xn", H, (1, 1000), "1 x N: one row of 1000"),
        _case("shape_1xn_axis0", H, (1, 1000), "1 x N reduced over axis 0: 1000 rows of one element",
              axis=0),
        _case("shape_n2", H, (8, 2), "two classes per row (sigmoid-like)"),
        _case("shape_1d_axis0", H, (257,), "1-d input with an explicit axis=0", axis=0),
        _case("shape_rank4_axis0", H, (3, 4, 5, 6), "rank 4 reduced over axis 0", axis=0),
        _case("shape_rank4_axis1", H, (3, 4, 5, 6), "rank 4 reduced over axis 1", axis=1, quick=True),
        _case("shape_rank4_axis_neg2", H, (3, 4, 5, 6), "rank 4 with a negative, non-last axis -2",
              axis=-2),
        _case("shape_rank4_axis_last", H, (3, 4, 5, 6), "rank 4 reduced over the last axis"),
        _case("shape_rank3_axis1", H, (4, 37, 5), "rank 3 reduced over the middle axis (odd length)",
              axis=1),
        _case("shape_strided_rows", H, (4, 64), "x is the strided slice base[::2, ::2] of an (8, 128) "
              "array: non-contiguous along the reduced axis", base=(8, 128), view="x[::2, ::2]",
              quick=True),
        _case("shape_strided_axis0", H, (4, 64), "strided slice base[::2, ::2], reduced over axis 0",
              base=(8, 128), view="x[::2, ::2]", axis=0),
        _case("shape_negative_stride", H, (4, 64), "x is base[:, ::-1]: negative stride along the axis",
              view="x[:, ::-1]"),
        _case("shape_transposed", H, (8, 64), "x is the transpose of a (64, 8) array: the reduced axis "
              "has stride 8", base=(64, 8), view="x.T", quick=True),
        _case("shape_transposed_axis0", H, (64, 8), "transposed view reduced over axis 0 "
              "(contiguous in memory, but not the last axis)", base=(8, 64), view="x.T", axis=0),
        _case("shape_permuted_rank4", H, (2, 4, 3, 5), "x is base.transpose(0, 2, 1, 3) as in attention "
              "head reshapes", base=(2, 3, 4, 5), view="x.transpose(0, 2, 1, 3)"),
        _case("shape_odd_1025", H, (3, 1025), "rows of 1025: one past a power of two (vector tails)"),
        _case("shape_pow2_1024", H, (3, 1024), "rows of 1024 (power of two)"),
        _case("shape_many_short_rows", H, (4096, 8), "4096 rows of 8 (many tiny reductions)"),
        _case("shape_vocab_32000", H, (4, 32000), "LLM vocabulary rows of 32000 (Llama 2)",
              "x64 = 3.0 * rng.standard_normal(shape)"),
        _case("shape_vocab_32000_axis0", H, (32000, 2), "32000 logits reduced over axis 0 (strided)",
              "x64 = 3.0 * rng.standard_normal(shape)", axis=0),
        _case("shape_vocab_128256", H, (2, 128256), "LLM vocabulary rows of 128256 (Llama 3)",
              "x64 = 3.0 * rng.standard_normal(shape)"),
        _case("shape_vocab_262144", H, (2, 262144), "LLM vocabulary rows of 262144 (Gemma 3)",
              "x64 = 3.0 * rng.standard_normal(shape)"),
    ]


def _distribution() -> list[Case]:
    D = "distribution"
    return [
        _case("dist_normal_scale_1", D, (4, 64), "standard normal logits", quick=True),
        # The one case whose seed is the run's (check --seed, random by default, recorded in
        # run.json and in its records): dist_normal_scale_1's shape and recipe (nothing new to
        # compile), inputs no catalogue of hashes can hold.
        _case("fresh_normal", D, (4, 64), "standard normal logits seeded by the run (check --seed; "
              "random by default, recorded in run.json): a backend that only knows the catalogue's "
              "inputs does not pass it", quick=True, fresh=True),
        _case("dist_normal_scale_10", D, (16, 256), "normal logits, scale 10",
              "x64 = 10.0 * rng.standard_normal(shape)"),
        _case("dist_normal_scale_100", D, (16, 256), "normal logits, scale 100",
              "x64 = 100.0 * rng.standard_normal(shape)"),
        _case("dist_normal_scale_1000", D, (4, 64), "normal logits, scale 1000",
              "x64 = 1000.0 * rng.standard_normal(shape)", quick=True),
        _case("dist_uniform_unit", D, (16, 256), "uniform logits in [0, 1)", "x64 = rng.random(shape)"),
        _case("dist_uniform_wide", D, (16, 256), "uniform logits in [-50, 50)",
              "x64 = rng.uniform(-50, 50, shape)"),
        _case("dist_ties_constant_rows", D, (16, 256), "every row constant: exactly uniform output",
              "x64 = np.repeat(rng.standard_normal((shape[0], 1)), shape[1], axis=1)"),
        _case("dist_ties_integers", D, (4, 64), "integers in [-3, 3]: many ties, tied maxima",
              "x64 = rng.integers(-3, 4, shape).astype(np.float64)", quick=True),
        _case("dist_near_ties_ulp", D, (4, 64), "1 and 1 + one ULP of the target dtype",
              "x64 = 1.0 + float(fi.eps) * rng.integers(0, 2, shape)", quick=True),
        _case("dist_near_ties_ulp_1000", D, (16, 256), "1000 and 1000 + one ULP of the target dtype",
              "x64 = 1000.0 + 512 * float(fi.eps) * rng.integers(0, 2, shape)"),
        _case("dist_dominant_eps", D, (16, 256),
              "one logit per row ln(1/eps) above the rest: the others sum to about n*eps",
              "x64 = rng.standard_normal(shape)\n"
              f"x64[{_ROWS}, rng.integers(0, shape[1], shape[0])] = x64.max(-1) + np.log(1 / float(fi.eps))"),
        _case("dist_dominant_100", D, (4, 64),
              "one logit per row 100 above the rest: log_softmax of it is about -1e-42 (mixed error)",
              "x64 = rng.standard_normal(shape)\n"
              f"x64[{_ROWS}, rng.integers(0, shape[1], shape[0])] += 100.0", quick=True),
        _case("dist_equal_float16_65536", D, (2, 65536),
              "65536 equal float16 logits per row: a float16 sum of exp overflows (65536 > 65504), "
              "outputs 2**-16 are subnormal",
              "x64 = np.repeat(rng.standard_normal((shape[0], 1)), shape[1], axis=1)", dtypes=("float16",)),
        _case("dist_equal_bfloat16_4096", D, (4, 4096),
              "4096 equal bfloat16 logits per row: a bfloat16 running sum stalls at 256",
              "x64 = np.repeat(rng.standard_normal((shape[0], 1)), shape[1], axis=1)",
              dtypes=("bfloat16",)),
        _case("dist_sorted_ascending", D, (4, 64),
              "rows sorted ascending (scale 10): an online softmax rescales at every element",
              "x64 = np.sort(10.0 * rng.standard_normal(shape), axis=-1)"),
        _case("dist_sorted_descending", D, (16, 256), "rows sorted descending (scale 10)",
              "x64 = -np.sort(-10.0 * rng.standard_normal(shape), axis=-1)"),
        _case("dist_heavy_tailed", D, (16, 256), "Student-t (2 degrees of freedom) times 10, clipped "
              "to +-1e4", "x64 = np.clip(10.0 * rng.standard_t(2, shape), -1e4, 1e4)"),
        _case("dist_bimodal", D, (16, 256), "half the logits near 0, half near -20",
              "x64 = rng.choice(np.array([0.0, -20.0]), size=shape) + 0.1 * rng.standard_normal(shape)"),
        _case("dist_offset_1000", D, (16, 256), "1000 + standard normal: shift invariance with "
              "coarsely rounded inputs", "x64 = 1000.0 + rng.standard_normal(shape)"),
        _case("dist_offset_minus_1e4", D, (16, 256), "-1e4 + 10 * standard normal",
              "x64 = -1e4 + 10.0 * rng.standard_normal(shape)"),
        _case("dist_normalized_logprobs", D, (16, 256),
              "logits that are already log-probabilities: logsumexp near 0 (relative error blows up)",
              "x64 = np.log(rng.dirichlet(np.ones(shape[1]), shape[0]))"),
    ]


def _cross_entropy() -> list[Case]:
    C = "cross_entropy"
    logits = "x64 = 3.0 * rng.standard_normal(shape)"
    weights = "\nweight = rng.uniform(0.5, 2.0, x.shape[-1]).astype(dt)"
    ignored = "\ntarget[rng.random(target.shape) < 0.25] = -100\ntarget[0] = -100\ntarget[1] = 0"
    probs = ("p = rng.random(x.shape)\n"
             "target = (p / p.sum(-1, keepdims=True)).astype(dt)")
    combo = _DEFAULT_TARGET + ignored + weights
    combo_opts = {"label_smoothing": 0.2, "ignore_index": -100}
    return [
        _case("ce_mean", C, (16, 10), "class indices, reduction mean", logits, quick=True),
        _case("ce_sum", C, (16, 10), "class indices, reduction sum", logits, options={"reduction": "sum"}),
        _case("ce_none", C, (16, 10), "class indices, reduction none (per-sample losses)", logits,
              options={"reduction": "none"}, quick=True),
        _case("ce_ignore_index", C, (16, 10), "about a quarter of the targets are -100 and ignored",
              logits, target=_DEFAULT_TARGET + ignored, options={"ignore_index": -100}, quick=True),
        _case("ce_ignore_index_class", C, (16, 10), "ignore_index=3, a real class: rows with target 3 "
              "are ignored", logits, target=_DEFAULT_TARGET + "\ntarget[::3] = 3",
              options={"ignore_index": 3}),
        _case("ce_all_ignored_mean", C, (16, 10), "every target ignored, mean: 0/0 = NaN "
              "(0 is a documented deviation)", logits,
              target="target = np.full(x.shape[:-1], -100, dtype=np.int64)",
              options={"ignore_index": -100}, quick=True),
        _case("ce_all_ignored_sum", C, (16, 10), "every target ignored, sum: 0", logits,
              target="target = np.full(x.shape[:-1], -100, dtype=np.int64)",
              options={"ignore_index": -100, "reduction": "sum"}),
        _case("ce_all_ignored_none", C, (16, 10), "every target ignored, none: all zeros", logits,
              target="target = np.full(x.shape[:-1], -100, dtype=np.int64)",
              options={"ignore_index": -100, "reduction": "none"}),
        _case("ce_prob_targets", C, (16, 10), "probability targets (rows sum to about 1)", logits,
              target=probs),
        _case("ce_prob_targets_onehot", C, (16, 10), "one-hot probability targets (equal to index targets)",
              logits, target="target = np.eye(x.shape[-1])[rng.integers(0, x.shape[-1], "
              "x.shape[:-1])].astype(dt)"),
        _case("ce_prob_zero_mass_neginf", C, (16, 10),
              "probability targets with zero mass exactly where the logits are -inf: the limit is "
              "finite (0 * -inf = NaN is a documented deviation)",
              logits + "\nmask = rng.random(shape) < 0.3\nmask[:, 0] = False\nx64[mask] = -np.inf",
              target="p = rng.random(x.shape)\np[np.isneginf(x)] = 0.0\n"
              "target = (p / p.sum(-1, keepdims=True)).astype(dt)", quick=True),
        _case("ce_label_smoothing", C, (16, 10), "label_smoothing=0.1 with index targets", logits,
              options={"label_smoothing": 0.1}),
        _case("ce_label_smoothing_prob", C, (16, 10), "label_smoothing=0.1 with probability targets",
              logits, target=probs, options={"label_smoothing": 0.1}),
        _case("ce_label_smoothing_full", C, (16, 10), "label_smoothing=1.0: the target is uniform",
              logits, options={"label_smoothing": 1.0}),
        _case("ce_weight", C, (16, 10), "class weights in [0.5, 2): weighted mean", logits,
              target=_DEFAULT_TARGET + weights),
        _case("ce_weight_sum", C, (16, 10), "class weights, reduction sum", logits,
              target=_DEFAULT_TARGET + weights, options={"reduction": "sum"}),
        _case("ce_weight_some_zero", C, (16, 10), "every third class has weight 0", logits,
              target=_DEFAULT_TARGET + "\nweight = rng.uniform(0.5, 2.0, x.shape[-1])\nweight[::3] = 0.0"
              "\nweight = weight.astype(dt)\ntarget[1] = 1"),
        _case("ce_weight_prob_targets", C, (16, 10), "class weights with probability targets", logits,
              target=probs + weights),
        _case("ce_weight_smoothing_ignore_mean", C, (16, 10),
              "class weights + label_smoothing 0.2 + ignore_index -100 together, mean", logits,
              target=combo, options=combo_opts, quick=True),
        _case("ce_weight_smoothing_ignore_sum", C, (16, 10),
              "class weights + label_smoothing 0.2 + ignore_index -100 together, sum", logits,
              target=combo, options={**combo_opts, "reduction": "sum"}),
        _case("ce_weight_smoothing_ignore_none", C, (16, 10),
              "class weights + label_smoothing 0.2 + ignore_index -100 together, none", logits,
              target=combo, options={**combo_opts, "reduction": "none"}),
        _case("ce_out_of_range_label", C, (16, 10), "a class index equal to C: the op must raise",
              logits, target=_DEFAULT_TARGET + "\ntarget[5] = x.shape[-1]", expect_error=True,
              quick=True),
        _case("ce_label_minus100_not_ignored", C, (16, 10),
              "a -100 label while ignore_index is None (nothing ignored): out of range, the op must raise",
              logits, target=_DEFAULT_TARGET + "\ntarget[2] = -100", expect_error=True),
        _case("ce_unbatched", C, (10,), "unbatched logits (C,) with a 0-d target", logits),
        _case("ce_rank3", C, (4, 8, 32), "(batch, sequence, classes) logits with (batch, sequence) "
              "targets", logits),
        _case("ce_transposed_logits", C, (16, 10), "logits are the transpose of a (10, 16) array "
              "(non-contiguous class axis)", logits, base=(10, 16), view="x.T"),
        _case("ce_single_class", C, (8, 1), "one class: the loss is exactly 0", logits),
        _case("ce_empty_batch", C, (0, 5), "no samples: mean is NaN, sum 0", logits),
        _case("ce_extreme_logits", C, (16, 10), "logits uniform in [-1e4, 1e4]: huge losses",
              "x64 = rng.uniform(-1e4, 1e4, shape)"),
        _case("ce_target_neginf_logit", C, (16, 10), "even rows' target class has a -inf logit: "
              "their loss is +inf", logits + "\nx64[:, 0] = -np.inf",
              target=_DEFAULT_TARGET + "\ntarget[::2] = 0"),
        _case("ce_dominant_correct", C, (16, 10), "the target logit is 100 above the rest: the loss "
              "is about 1e-43 (relative accuracy of a tiny loss)", logits + "\nx64[:, 0] += 100.0",
              target="target = np.zeros(x.shape[:-1], dtype=np.int64)"),
        _case("ce_vocab_32000", C, (4, 32000), "LLM-sized vocabulary of 32000 classes", logits),
    ]


#: Names of the cases seeded by the run rather than by their name.
FRESH_CASES: tuple[str, ...] = ("fresh_normal",)


@cache
def _catalogue() -> tuple[Case, ...]:
    cases = _extreme() + _special() + _shape() + _distribution() + _cross_entropy()
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:  # a programming error in this file, caught by the first import in the tests
        raise RuntimeError(f"duplicate case names: {sorted(duplicates)}")
    if tuple(c.name for c in cases if c.fresh) != FRESH_CASES:
        raise RuntimeError("FRESH_CASES does not name the catalogue's fresh cases")
    return tuple(cases)


def catalogue() -> list[Case]:
    """Every case, grouped by category in the order of :data:`CATEGORIES`.

    >>> len(catalogue()) >= 80
    True
    """
    return list(_catalogue())


def get(name: str) -> Case:
    """The case called ``name``; KeyError (naming close matches) when there is none.

    >>> get("shape_scalar").shape
    ()
    """
    by_name = {c.name: c for c in _catalogue()}
    try:
        return by_name[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(by_name), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see 'softmaxbench cases'"
        raise KeyError(f"no case named {name!r}{hint}") from None
