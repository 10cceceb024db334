"""The judgement's speed-ups change no verdict: content-keyed memos, the prepared comparison, the
lazy message, format_value, the median, the results writer's flushing, the inputs cache."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest

from softmaxbench.reference import memo, metrics, model, ops, special
from softmaxbench.reference.cases import CaseInput
from softmaxbench.reference.dtypes import np_dtype
from softmaxbench.suite.hunt.store import get_case

CASES = ["dist_normal_scale_1", "special_posinf_one", "special_neginf_all", "shape_transposed",
         "shape_scalar", "shape_n1_rows", "ce_weight_smoothing_ignore_mean", "ce_prob_zero_mass_neginf"]
OPS = ["softmax", "log_softmax", "logsumexp", "softmax_vjp", "log_softmax_vjp", "cross_entropy",
       "cross_entropy_grad"]


@pytest.fixture(autouse=True)
def fresh_memos():
    memo.clear_memos()
    yield
    memo.clear_memos()


def _inp(x, axis=-1, case="same", cot=None):
    x = np.asarray(x)
    return CaseInput(case, metrics._name(x.dtype), axis, x, cot, None)


def _outputs(op, inputs, exact):
    """Outputs a backend might return: the rounded exact value, a few ULPs off, garbage, NaNs."""
    dt = np_dtype(inputs.dtype)
    e = np.asarray(exact, np.float64)
    good = e.astype(np.float32).astype(dt) if inputs.dtype == "bfloat16" else e.astype(dt)
    out = [good]
    with np.errstate(all="ignore"):
        off = (e * (1 + 40 * float(metrics.eps(inputs.dtype))) + 1e-3)
        out.append(off.astype(np.float32).astype(dt) if inputs.dtype == "bfloat16" else off.astype(dt))
    out.append(np.zeros_like(good))
    nan = good.copy()
    if nan.size:
        nan.reshape(-1)[0] = np.nan
    out.append(nan)
    return out


_BUILT: list = []


def _catalogue():
    """(op, inputs, exact) of a few catalogue cases in every dtype (built once per session)."""
    if not _BUILT:
        _BUILT.extend(_build())
    return _BUILT


def _build():
    for name in CASES:
        case = get_case(name)
        for dtype in case.dtypes:
            inputs = case.build(dtype)
            for op in case.ops:
                if op not in OPS:
                    continue
                try:
                    exact = np.asarray(ops.evaluate(op, inputs))
                except Exception:  # noqa: BLE001 - expect-error cases
                    continue
                yield op, inputs, exact


def test_compare_equals_the_definitions_it_is_built_from():
    """max_error_ratio, max_ulp and median_ulp of compare() are error_ratio's and ulp_error's
    (with term_scale), memo cold or warm, for good, bad and NaN outputs."""
    seen = 0
    for op, inputs, exact in _catalogue():
        for out in _outputs(op, inputs, exact):
            c = metrics.compare(op, inputs, out, exact)
            if c.error_kind == "wrong_structure" or exact.size == 0:
                continue
            with np.errstate(all="ignore"):
                ratio = metrics.error_ratio(op, inputs, out, exact)
                scale = metrics.term_scale(op, inputs).reshape(exact.shape)
                ulps = metrics.ulp_error(out, exact, inputs.dtype, scale=scale)
            if not (ratio.max() > metrics.THRESHOLDS[inputs.dtype]):  # (no flush-to-zero rescue)
                assert c.max_error_ratio == float(ratio.max())
            assert c.max_ulp == float(ulps.max())
            assert c.median_ulp == float(np.median(ulps)) or (np.isnan(c.median_ulp)
                                                               and np.isnan(np.median(ulps)))
            seen += 1
    assert seen > 80


def test_memoized_comparisons_equal_cold_ones():
    """Every field of a comparison, its message included, is the same from a cold memo, a warm
    one, with copies of the arrays, and after the memo was emptied (in another order)."""
    work = [(op, inputs, exact, out) for op, inputs, exact in _catalogue()
            for out in _outputs(op, inputs, exact)]
    first = [metrics.compare(op, i, out, e) for op, i, e, out in work]
    again = [metrics.compare(op, i, out.copy(), e.copy()) for op, i, e, out in work]
    memo.clear_memos()
    cold = [metrics.compare(op, i, out, e) for op, i, e, out in reversed(work)][::-1]
    assert first == again == cold
    assert [repr(c) for c in first] == [repr(c) for c in cold]


def test_same_case_name_different_content_never_shares_a_bound():
    a = _inp(np.array([[0.0, 1.0, 2.0]], np.float32))
    b = _inp(np.array([[0.0, 5.0, -3.0]], np.float32))
    assert a.case == b.case
    ba = metrics.attainable_error("softmax", a)
    bb = metrics.attainable_error("softmax", b)
    memo.clear_memos()
    assert np.array_equal(bb, metrics.attainable_error("softmax", b))
    assert not np.array_equal(ba, bb)
    ea, eb = (np.asarray(ops.evaluate("softmax", i)) for i in (a, b))
    ca = metrics.compare("softmax", a, ea.astype(np.float32), ea)
    cb = metrics.compare("softmax", b, ea.astype(np.float32), eb)
    assert ca.ok and not cb.ok


def test_an_input_changed_in_place_or_replaced_is_judged_on_its_new_content():
    x = np.array([[0.0, 1.0, 2.0]], np.float32)
    inp = _inp(x)
    before = metrics.attainable_error("softmax", inp)
    x[0, 2] = 30.0                                  # the same object, other bytes
    after = metrics.attainable_error("softmax", inp)
    memo.clear_memos()
    assert np.array_equal(after, metrics.attainable_error("softmax", inp))
    assert not np.array_equal(before, after)
    moved = dataclasses.replace(inp, axis=0)        # the same arrays, another axis
    assert metrics.attainable_error("softmax", moved).tolist() == [[0.0, 0.0, 0.0]]   # n = 1 rows


def test_other_dtypes_and_strides_get_their_own_entries():
    x = np.arange(12.0).reshape(3, 4) / 7
    for dtype in ("float16", "float32", "float64"):
        inp = _inp(x.astype(dtype))
        memo.clear_memos()
        cold = metrics.attainable_error("log_softmax", inp)
        assert cold.dtype == np.float64
        t = _inp(np.ascontiguousarray(x.astype(dtype).T).T)   # same values, Fortran order
        assert np.array_equal(metrics.attainable_error("log_softmax", t), cold)


def test_memo_never_freezes_the_callers_arrays():
    base = np.arange(8.0, dtype=np.float32).reshape(2, 4)
    view = base[:, ::2]
    inp = _inp(view)
    exact = np.asarray(ops.evaluate("softmax", inp))
    metrics.compare("softmax", inp, exact.astype(np.float32), exact)
    special.alternatives("softmax", inp, exact)
    model.unattainable_elements("softmax", inp, exact)
    assert base.flags.writeable and exact.flags.writeable and view.flags.writeable
    bound = metrics.attainable_error("softmax", inp)
    bound[...] = 0.0                                   # a copy: the memo's stays as it was
    assert metrics.attainable_error("softmax", inp).max() > 0
    alts = special.alternatives("softmax", inp, exact)
    assert all(a.flags.writeable for a in alts.values())


def test_unplain_inputs_are_not_memoized_but_still_judged():
    class Sub(np.ndarray):
        pass

    x = np.array([[0.0, 1.0]], np.float32).view(Sub)
    inp = CaseInput("sub", "float32", -1, x, None, None)
    assert memo.inputs_key(inp) is None
    assert metrics.attainable_error("softmax", inp).shape == (1, 2)
    assert not [k for k in memo.MEMO._data if k[0] == "bound"]   # (its rows, own arrays, may be)
    odd = dataclasses.replace(_inp(np.zeros((1, 2), np.float32)), ce_options={"reduction": ["mean"]})
    assert memo.inputs_key(odd) is None


def test_memo_is_bounded():
    m = memo.Memo(max_bytes=1000, max_entries=3)
    for i in range(10):
        m.put(i, np.zeros(50), 400)
        assert m.nbytes <= 1000 and len(m) <= 3
    assert m.get(9) is not memo.MISSING and m.get(0) is memo.MISSING
    m.put("big", None, 5000)              # larger than the whole memo: not kept
    assert m.get("big") is memo.MISSING


def test_lazy_message_is_the_eager_one():
    x = np.array([[0.0, 1.0, 2.0]], np.float32)
    inp = _inp(x)
    exact = np.asarray(ops.evaluate("softmax", inp))
    c = metrics.compare("softmax", inp, np.zeros_like(x), exact)
    assert callable(c.story) and not c.ok
    text = c.message
    assert "error ratio" in text and c.story == text and c.message is text
    assert "message='" in repr(c)


def _format_value_reference(v, dtype: str) -> str:
    """format_value as it was: array casts, digits from 1."""
    f = float(v)
    if not np.isfinite(f):
        return str(f)
    dt = np_dtype(dtype)
    target = np.asarray(f).astype(np.float32).astype(dt) if dtype == "bfloat16" else np.asarray(f, dt)
    for digits in range(1, 18):
        text = f"{f:.{digits}g}"
        with np.errstate(over="ignore"):
            back = np.asarray(float(text)).astype(np.float32).astype(dt) if dtype == "bfloat16" else \
                np.asarray(float(text), dt)
        if back == target:
            return text
    return repr(f)


def test_format_value_is_unchanged():
    rng = np.random.default_rng(7)
    values = [0.0, -0.0, 1.0, -1.0, 65504.0, 65520.0, 1e-8, 2.0 ** -24, 3.4e38, np.inf, np.nan]
    values += list(rng.standard_normal(300) * 10.0 ** rng.integers(-30, 30, 300))
    values += list(np.arange(0, 65536, 97, dtype=np.uint16).view(np.float16).astype(np.float64))
    for v in values:
        for dtype in ("float16", "bfloat16", "float32", "float64"):
            with np.errstate(all="ignore"):
                assert metrics.format_value(v, dtype) == _format_value_reference(v, dtype), (v, dtype)
    assert metrics.format_value(-0.0, "float32") == "-0" and metrics.format_value(0.0, "float32") == "0"
    with pytest.raises(ValueError):
        metrics.format_value(1.0, "float8")


def test_median_is_numpys():
    rng = np.random.default_rng(3)
    for n in [1, 2, 3, 4, 5, 64, 511, 512]:
        for t in range(20):
            u = np.abs(rng.standard_normal(n)) * 10.0 ** rng.integers(-3, 30)
            if t % 4 == 1:
                u[rng.integers(0, n)] = np.inf
            if t % 4 == 2:
                u[rng.integers(0, n)] = np.nan
            if t % 4 == 3:
                u = np.round(u)
            want = float(np.median(u))
            got = metrics._median(u.reshape(1, -1))
            assert got == want or (np.isnan(got) and np.isnan(want))


def test_results_writer_flushes_without_another_write(tmp_path):
    from softmaxbench.suite.records import RESULTS_FILE, ResultsWriter

    path = tmp_path / RESULTS_FILE
    with ResultsWriter(tmp_path, flush_every_s=0.05) as w:
        w.write({"n": 1})                       # the first write after opening may wait
        w.write({"n": 2})
        deadline = time.monotonic() + 60        # a bound for a busy machine, not a speed claim
        while time.monotonic() < deadline and path.read_text().count("\n") < 2:
            time.sleep(0.02)
        assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [1, 2]
        w.write({"n": 3})
        w.flush()
        assert path.read_text().count("\n") == 3
    with ResultsWriter(tmp_path, flush_every_s=0) as w:
        w.write({"n": 4})
        assert path.read_text().count("\n") == 4    # flush_every_s=0: every record at once
    assert path.read_text().count("\n") == 4


def test_reference_cache_builds_each_input_once():
    from softmaxbench.suite.conformance.api import ReferenceCache

    cache = ReferenceCache()
    names = ["dist_normal_scale_1", "shape_transposed", "special_posinf_one", "special_masked_rank4",
             "special_neginf_all", "dist_normal_scale_1"]
    first = {n: cache.inputs(n, "float32") for n in names}
    for _ in range(3):   # four backends at their own pace ask in turn
        for n in names:
            assert cache.inputs(n, "float32") is first[n]
    assert cache.built == len(set(names))
    small = ReferenceCache(max_input_bytes=1)   # keeps only the last four
    for n in names[:5]:
        small.inputs(n, "float32")
    assert small.built == 5 and len(small._inputs) == 4
    small.inputs(names[0], "float32")
    assert small.built == 6
