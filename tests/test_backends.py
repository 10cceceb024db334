"""The built-in CPU backends against the reference over the case catalogue, and the adapters' own
contracts (round trips, cross-entropy semantics, float64 in JAX, compile-time hooks, availability).

A backend agrees with the reference when every (case, op, dtype) either passes
``reference.metrics.compare`` or follows an accepted deviation that the backend declares
(``backends/conventions.toml``); the remaining disagreements must each be a known failure recorded
with its reason in the same file, and every known failure must still happen (no stale entries).
Cases larger than ``LARGE`` elements run only under ``-m slow`` (the reference's long-double passes
over them take most of a minute); JAX compiles every (op, shape, dtype), so CI runs it on the quick
cases and the full catalogue under ``-m slow``.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass
from math import prod

import ml_dtypes
import numpy as np
import pytest

import softmaxbench.reference.cases as cases_mod
import softmaxbench.reference.metrics as metrics
import softmaxbench.reference.ops as ref_ops
from softmaxbench.backends import conventions, registry
from softmaxbench.backends.base import OPS
from softmaxbench.reference.dtypes import np_dtype
from softmaxbench.suite.conformance.checks import matching_alternative

LARGE = 1 << 16
CPU_BACKENDS = ("numpy", "scipy", "torch-cpu")
GPU_BACKENDS = ("torch-cuda", "torch-compile-cuda", "jax-gpu", "cupy", "cupy-fused")


# -- judging one (backend, case, op, dtype) ------------------------------------------------------
@dataclass
class Outcome:
    verdict: str  # pass | deviation | fail | error
    backend: str
    op: str
    case: str
    dtype: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.verdict}: {self.backend} {self.op} {self.case} {self.dtype}: {self.detail}"


# The reference and the case recipes are the slow part: once per session for all the backends.
# (Inputs are shared, not copied: a copy would lose the strided layouts some cases are about.)
_EXACT: dict[tuple[str, str, str], np.ndarray] = {}
_INPUTS: dict[tuple[str, str], object] = {}


def _inputs(case, dtype: str):
    key = (case.name, dtype)
    if key not in _INPUTS:
        _INPUTS[key] = case.build(dtype)
    return _INPUTS[key]


def _exact(case, op: str, dtype: str, inputs) -> np.ndarray:
    key = (case.name, op, dtype)
    if key not in _EXACT:
        _EXACT[key] = np.asarray(ref_ops.evaluate(op, inputs))
    return _EXACT[key]


def judge(backend, case, op: str, dtype: str, declared: dict) -> Outcome:
    """Run ``op`` of ``backend`` on the case and grade it like the suite's value check does."""
    inputs = _inputs(case, dtype)
    args, kwargs = inputs.args(op)
    out = Outcome("pass", backend.name, op, case.name, dtype)
    try:
        native = [backend.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        native_kw = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = getattr(backend, op)(*native, **native_kw)
            backend.synchronize()
            actual = np.asarray(backend.to_numpy(result))
    except Exception as exc:  # what the backend raises is the finding
        if case.expect_error:
            return out
        out.verdict, out.detail = "error", f"{type(exc).__name__}: {str(exc)[:120]}"
        return out
    if case.expect_error:
        out.verdict, out.detail = "fail", "did not raise"
        return out
    exact = _exact(case, op, dtype, inputs)
    cmp = metrics.compare(op, inputs, actual, exact)
    if cmp.ok:
        return out
    matched = matching_alternative(op, inputs, actual, exact)  # the suite's own convention matcher
    if matched is not None:
        undeclared = [n for n in matched.split("+") if n not in declared]
        out.verdict = "fail" if undeclared else "deviation"
        out.detail = matched + (f" (not declared: {undeclared})" if undeclared else "")
        return out
    out.verdict, out.detail = "fail", cmp.message[:200]
    return out


def selected_cases(*, large: bool, quick_only: bool = False) -> list:
    return [c for c in cases_mod.catalogue()
            if (large or prod(c.shape) <= LARGE) and (c.quick or not quick_only)]


def run_catalogue(backend, cases, pick=None) -> list[Outcome]:
    """Judge every (op, dtype) of every case the backend offers, or those ``pick(case)`` names.

    On one CPU thread (the backend's ``set_threads`` hook, undone after), as ``check`` gives each
    backend when several share the cores: with two, each of torch's parallel ops waits for a core
    that a neighbour holds on a shared 2-core runner (torch-cpu over 40 catalogue cases: 44 s of
    wall time and 13.5 CPU-s with two threads, 8.8 s and 4.0 CPU-s with one, at load 11)."""
    declared = conventions.for_backend(backend)
    before = backend.threads_in_use()
    backend.set_threads(1)
    outcomes = []
    try:
        for case in cases:
            pairs = pick(case) if pick else [(op, dt) for op in case.ops for dt in case.dtypes]
            for op, dtype in pairs:
                if op in OPS and dtype in backend.dtypes:
                    outcomes.append(judge(backend, case, op, dtype, declared))
    finally:
        if before:
            backend.set_threads(before)
    return outcomes


def _matches(entry: dict, o: Outcome) -> bool:
    return (o.op in entry["ops"] and any(fnmatch.fnmatchcase(o.case, p) for p in entry["cases"])
            and (not entry["dtypes"] or o.dtype in entry["dtypes"]))


def assert_agrees(backend_name: str, outcomes: list[Outcome], *, sampled: bool = False) -> None:
    """Every disagreement is a known failure, and (unless the (op, dtype) pairs were ``sampled``, so
    that an entry's failing pairs may not have been drawn) every known failure in scope still happens."""
    assert outcomes, "nothing was checked"
    known = [e for e in conventions.known_failures() if backend_name in e["backends"]]
    bad = [o for o in outcomes if o.verdict in ("fail", "error")]
    unexplained = [o for o in bad if not any(_matches(e, o) for e in known)]
    # An entry is stale when what it describes was judged and none of it failed.
    in_scope = [e for e in known if any(_matches(e, o) for o in outcomes)]
    stale = [e for e in in_scope if not any(_matches(e, o) for o in bad)]
    assert not unexplained, f"{len(unexplained)} disagreements with the reference:\n" + \
        "\n".join(map(str, unexplained[:40]))
    assert sampled or not stale, "known failures that no longer happen (update conventions.toml):\n" + \
        "\n".join(e["reason"] for e in stale)


# -- the catalogue -------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_cpu_backend_agrees_with_reference(name):
    cases = selected_cases(large=False)
    assert_agrees(name, run_catalogue(registry.get(name), cases))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", CPU_BACKENDS + ("jax-cpu",))
def test_cpu_backend_agrees_with_reference_on_large_cases(name):
    cases = [c for c in cases_mod.catalogue() if prod(c.shape) > LARGE]
    assert_agrees(name, run_catalogue(registry.get(name), cases))


def _one_check_per_case(case) -> list[tuple[str, str]]:
    """JAX compiles every (op, shape, dtype) (a third of a second each here): cycle the ops and the
    dtypes over the quick cases so that each is exercised with one compile per case."""
    i = sorted(c.name for c in cases_mod.catalogue()).index(case.name)
    ops = [op for op in case.ops if op in OPS]
    return [(ops[i % len(ops)], case.dtypes[i % len(case.dtypes)])]


def test_jax_cpu_agrees_with_reference_on_quick_cases():
    cases = selected_cases(large=False, quick_only=True)
    outcomes = run_catalogue(registry.get("jax-cpu"), cases, pick=_one_check_per_case)
    assert {o.dtype for o in outcomes} == {"float16", "bfloat16", "float32", "float64"}
    assert {o.op for o in outcomes} == set(OPS)
    assert_agrees("jax-cpu", outcomes, sampled=True)


@pytest.mark.slow
def test_jax_cpu_agrees_with_reference():
    cases = selected_cases(large=False)
    assert_agrees("jax-cpu", run_catalogue(registry.get("jax-cpu"), cases))


def test_torch_compile_agrees_on_a_small_subset():
    """torch.compile takes seconds per graph here: two ops, one dtype; the rest under -m slow."""
    b = registry.get("torch-compile")
    cases = [cases_mod.get("special_neginf_among_finite"), cases_mod.get("ce_weight_smoothing_ignore_mean")]
    outcomes = run_catalogue(b, cases[:1], pick=lambda c: [("softmax", "float32")])
    outcomes += run_catalogue(b, cases[1:], pick=lambda c: [("cross_entropy_grad", "float32")])
    assert [o.verdict for o in outcomes] == ["pass", "pass"], outcomes
    shape = cases[0].shape
    assert b.compile_times[("softmax", shape, "float32")] > 0  # the bench harness's key form


@pytest.mark.slow
def test_torch_compile_agrees_with_reference_on_quick_cases():
    """One compile per quick case (about 10 s each here): every op and dtype, sampled."""
    cases = selected_cases(large=False, quick_only=True)
    outcomes = run_catalogue(registry.get("torch-compile"), cases, pick=_one_check_per_case)
    assert_agrees("torch-compile", outcomes, sampled=True)


def test_known_failures_and_deviations_name_real_things():
    from softmaxbench.reference.special import DEVIATIONS
    from softmaxbench.suite.hunt.store import load_found_cases

    # known failures may name the regression cases hunt saved with the package, too
    catalogue = [c.name for c in cases_mod.catalogue()] + [c.name for c in load_found_cases()]
    for e in conventions.entries():
        assert e["name"] in DEVIATIONS, e["name"]
        assert set(e["backends"]) <= set(registry.BUILTINS), e["backends"]
        assert set(e["ops"]) <= set(OPS) and e["reason"] and e["link"].startswith("https://")
    for e in conventions.known_failures():
        assert set(e["backends"]) <= set(registry.BUILTINS) and set(e["ops"]) <= set(OPS)
        assert all(any(fnmatch.fnmatchcase(n, p) for n in catalogue) for p in e["cases"]), e["cases"]
        assert e["reason"] and e["observed"]


# -- observations behind conventions.toml --------------------------------------------------------
def _run(name, op, x, **kw):
    b = registry.get(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return b.to_numpy(getattr(b, op)(b.asarray(x), **kw))


def test_jax_cpu_flushes_subnormals_and_the_others_do_not():
    x = np.array([[0.0, -100.0]], np.float32)  # exact softmax: [1, 3.78e-44], a float32 subnormal
    assert _run("jax-cpu", "softmax", x, axis=-1)[0, 1] == 0
    for name in ("numpy", "scipy", "torch-cpu"):
        assert _run(name, "softmax", x, axis=-1)[0, 1] > 0, name
    assert "flushed_subnormals" in conventions.for_backend(registry.get("jax-cpu"))
    assert "flushed_subnormals" not in conventions.for_backend(registry.get("torch-cpu"))


def test_posinf_gives_a_nan_row_where_declared():
    x = np.array([[1.0, np.inf, 2.0]])
    for name in ("numpy", "scipy", "torch-cpu", "jax-cpu"):
        assert np.isnan(_run(name, "softmax", x, axis=-1)).all(), name
        assert "nan_row_for_posinf" in conventions.for_backend(registry.get(name))


# -- the adapters' contracts ---------------------------------------------------------------------
@pytest.mark.parametrize("name", CPU_BACKENDS + ("jax-cpu", "torch-compile"))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_round_trip_keeps_values_dtype_and_shape(name, dtype):
    b = registry.get(name)
    if dtype not in b.dtypes:
        pytest.skip(f"{name} does not offer {dtype}")
    base = np.arange(24, dtype=np.float32).reshape(4, 6).astype(np_dtype(dtype))
    for a in (base, base[:, ::2], base[::-1], base.T, base[0, 0]):
        back = np.asarray(b.to_numpy(b.asarray(a)))
        assert back.dtype == a.dtype and back.shape == a.shape
        assert np.array_equal(back.astype(np.float64), np.asarray(a).astype(np.float64))


def test_torch_reads_bfloat16_bits_exactly():
    b = registry.get("torch-cpu")
    a = np.array([1.0, 1.0 + 2**-7, -3.5e38, np.inf], ml_dtypes.bfloat16)
    t = b.asarray(a)
    assert str(t.dtype) == "torch.bfloat16"
    assert t.float().tolist() == a.astype(np.float32).tolist()


CE_OPTIONS = [
    dict(reduction=r, label_smoothing=s, ignore_index=i, weighted=w, probs=p)
    for r in ("none", "sum", "mean") for s in (0.0, 0.2) for i in (None, 3) for w in (False, True)
    for p in (False, True) if not (p and i is not None)
]


@pytest.mark.parametrize("opt", CE_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_textbook_cross_entropy_has_pytorch_semantics(opt):
    """numpy's cross-entropy (backends/textbook.py, shared by scipy, jax and cupy) = torch's."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)) * 3
    if opt["probs"]:
        target = rng.dirichlet(np.ones(7), size=(3, 5))
    else:
        target = rng.integers(0, 7, size=(3, 5))
        target[0, :2] = 3  # rows hit by ignore_index=3
    kw = dict(reduction=opt["reduction"], label_smoothing=opt["label_smoothing"],
              ignore_index=opt["ignore_index"], weight=rng.uniform(0.1, 2, 7) if opt["weighted"] else None)
    for op in ("cross_entropy", "cross_entropy_grad"):
        mine = registry.get("numpy").__getattribute__(op)(logits, target, **kw)
        torch_b = registry.get("torch-cpu")
        theirs = torch_b.to_numpy(getattr(torch_b, op)(torch_b.asarray(logits), torch_b.asarray(target), **{
            **kw, "weight": None if kw["weight"] is None else torch_b.asarray(kw["weight"])}))
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14, err_msg=op)


def test_jax_float64_results_are_float64_accurate():
    """x64 is on: float64 in gives float64 out, within the reference's float64 error bound, which
    the same values computed in float32 (what JAX gives without x64) miss by far."""
    from softmaxbench.reference.cases import DEFAULT_CE_OPTIONS, CaseInput

    b = registry.get("jax-cpu")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 1000)) * 10
    inputs = CaseInput("x64", "float64", -1, x, rng.normal(size=x.shape), np.arange(8) * 100,
                       {**DEFAULT_CE_OPTIONS, "reduction": "none"})
    for op in OPS:
        args, kwargs = inputs.args(op)
        out = np.asarray(b.to_numpy(getattr(b, op)(*map(b.asarray, args), **kwargs)))
        exact = ref_ops.evaluate(op, inputs)
        assert out.dtype == np.float64, op
        cmp = metrics.compare(op, inputs, out, exact)
        assert cmp.ok, (op, cmp.message)
        as_float32 = out.astype(np.float32).astype(np.float64)
        assert not metrics.compare(op, inputs, as_float32, exact).ok, op


def test_jax_compile_times_are_recorded_once_per_shape():
    b = type(registry.get("jax-cpu"))()  # a fresh instance: empty hook
    x = b.asarray(np.zeros((3, 5), np.float32))
    b.softmax(x, axis=-1)
    first = dict(b.compile_times)
    assert list(first) == [("softmax", (3, 5), "float32")] and first[("softmax", (3, 5), "float32")] > 0
    b.softmax(x, axis=-1)
    b.synchronize()
    assert b.compile_times == first  # the second call ran the cached executable
    b.softmax(b.asarray(np.zeros((2, 5), np.float32)), axis=-1)
    assert len(b.compile_times) == 2


def test_out_of_range_class_index_raises_everywhere():
    logits = np.zeros((2, 3))
    for name in CPU_BACKENDS + ("jax-cpu",):
        b = registry.get(name)
        for bad in ([3, 0], [-1, 0]):
            with pytest.raises(Exception, match="out of|range|bounds"):
                b.cross_entropy(b.asarray(logits), b.asarray(np.array(bad)))
        # an ignored index may be anything, PyTorch's default -100 included
        b.cross_entropy(b.asarray(logits), b.asarray(np.array([-100, 0])), ignore_index=-100)


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_gpu_backends_say_in_one_line_why_they_cannot_run(name):
    b = registry.get(name)
    assert b.device == "gpu"
    why = b.unavailable()
    if why is None:
        pytest.skip(f"{name} is available here (tests/gpu covers it)")
    assert isinstance(why, str) and why and "\n" not in why and len(why) < 300


def test_every_builtin_offers_every_op():
    for name in registry.BUILTINS:
        assert registry.get(name).supported_ops() == OPS, name
