"""fresh_normal: the case seeded by the run, so a kernel that memorised the catalogue fails.

Every catalogue case is seeded by SHA-256 of its name: its inputs are public and predictable, and
a plugin that recognises them (by hash) can be exact on them and wrong everywhere else.
``fresh_normal`` is built from the run's seed instead (``check --seed N``; random by default,
recorded in run.json and in its records): the memorisers of tests/exploits/fresh_memorizer.py
conform on the catalogue and are caught by it alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from softmaxbench.reference import cases
from softmaxbench.suite.conformance.runner import run_check
from softmaxbench.suite.records import read_results, read_run, validate_record

MEMORIZER = str(Path(__file__).parent / "exploits" / "fresh_memorizer.py")
MEMORIZERS = ["exploit-s5-memorizer-notimpl", "exploit-fresh-memorizer-notimpl",
              "exploit-fresh-memorizer-garbage"]
ONE = dict(backends=["numpy"], ops=["softmax"], dtypes=["float32"], cases=["fresh_normal"], display="none")


def _cli(*argv) -> int:
    from softmaxbench.suite.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return exc.value.code


def _x_of(record) -> np.ndarray:
    """The logits the record's repro snippet rebuilds (the snippet is run up to its backend call)."""
    source = record["repro"].split("from softmaxbench.backends.registry import")[0]
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - the suite's own snippet
    return namespace["x"]


def _key(rec) -> tuple:
    return rec["backend"], rec["op"], rec["case"], rec["dtype"]


def _stable(rec) -> dict:
    return {k: v for k, v in rec.items() if k not in ("duration_s", "machine")}


def test_fresh_normal_is_a_quick_case_of_every_op_and_dtype():
    case = cases.get("fresh_normal")
    twin = cases.get("dist_normal_scale_1")
    assert case.fresh and case.quick and case.category == "distribution"
    assert (case.shape, case.axis, case.recipe) == (twin.shape, twin.axis, twin.recipe)
    assert case.ops == cases.ALL_OPS and case.dtypes == cases.DTYPES
    assert cases.FRESH_CASES == ("fresh_normal",)
    assert case.summary()["seeded_by"] == "run"
    bound = case.with_seed(12345)
    assert bound.seed == 12345 and case.seed == cases.case_seed("fresh_normal")
    a, b = bound.build("float32"), case.with_seed(12346).build("float32")
    assert a.seed == 12345 and not np.array_equal(a.x, b.x)
    assert np.array_equal(a.x, bound.build("float32").x)  # the same seed, the same bits
    assert "SEED = 12345" in bound.source("float32")
    with pytest.raises(ValueError, match="seeded by its name"):
        twin.with_seed(1)
    with pytest.raises(ValueError, match="from 0 to 2"):
        case.with_seed(-1)


def test_the_reference_cache_keeps_seeds_apart():
    """One cache serving runs of two seeds (as the pytest plugin's does) mixes neither their inputs
    nor their references."""
    from softmaxbench.suite.conformance.api import ReferenceCache, Task

    cache = ReferenceCache()
    one, two = (cases.get("fresh_normal").with_seed(s) for s in (1, 2))
    task = Task("fresh_normal", "float32", "softmax")
    e1, e2 = cache.result(task, case=one)[0], cache.result(task, case=two)[0]
    assert not np.array_equal(e1, e2)
    assert not np.array_equal(cache.inputs(one, "float32").x, cache.inputs(two, "float32").x)
    bound = ReferenceCache(cases=[two])  # the runner's: names resolve to the run's cases
    assert np.array_equal(bound.result(task)[0], e2)


def test_runs_without_seed_draw_their_own_and_record_it(tmp_path):
    runs = []
    for name in ("a", "b"):
        assert run_check(tmp_path / name, **ONE) == 0
        seed = read_run(tmp_path / name)["seed"]
        (rec,) = read_results(tmp_path / name)
        validate_record(rec)
        assert isinstance(seed, int) and 0 <= seed < 2**63 and rec["seed"] == seed
        assert rec["verdict"] == "pass"
        runs.append((seed, cases.get("fresh_normal").with_seed(seed).build("float32").x))
    (s1, x1), (s2, x2) = runs
    assert s1 != s2 and not np.array_equal(x1, x2)


def test_a_given_seed_repeats_the_run_and_the_repro_rebuilds_its_bytes(tmp_path):
    argv = ["check", "--backends", "exploit-fresh-memorizer-garbage", "--plugin", MEMORIZER,
            "--cases", "fresh_normal", "--ops", "softmax,cross_entropy", "--dtypes", "float32,bfloat16",
            "--seed", "424242"]
    assert _cli(*argv, "--out", str(tmp_path / "a")) == 1
    assert _cli(*argv, "--out", str(tmp_path / "b")) == 1
    a, b = read_results(tmp_path / "a"), read_results(tmp_path / "b")
    assert read_run(tmp_path / "a")["seed"] == read_run(tmp_path / "b")["seed"] == 424242
    assert len(a) == 4 and [_stable(r) for r in a] == [_stable(r) for r in b]
    for rec in a:
        assert rec["seed"] == 424242 and rec["verdict"] == "fail"
        assert "--seed 424242 --cases fresh_normal" in rec["repro"]
        built = cases.get("fresh_normal").with_seed(424242).build(rec["dtype"]).x
        x = _x_of(rec)
        assert x.dtype == built.dtype and x.tobytes() == built.tobytes()


def test_memorizers_conform_on_the_catalogue_and_fail_on_fresh_normal(tmp_path):
    sel = dict(backends=MEMORIZERS, plugins=[MEMORIZER], ops=["softmax", "logsumexp", "cross_entropy"],
               dtypes=["float32", "float16"], display="none")
    # The control: on catalogue inputs alone (the quick cases of the same ops) all three conform,
    # so it is fresh_normal, and only it, that catches them.
    quick = [c.name for c in cases.catalogue() if c.quick and not c.fresh and c.category == "distribution"]
    assert run_check(tmp_path / "catalogue", cases=quick, **sel) == 0
    code = run_check(tmp_path / "fresh", cases=["dist_normal_scale_1", "fresh_normal"], **sel)
    assert code == 1
    seed = read_run(tmp_path / "fresh")["seed"]
    verdicts = {_key(r): r for r in read_results(tmp_path / "fresh")}
    for (backend, op, case, dtype), rec in verdicts.items():
        declared = dtype == "float32" or backend != "exploit-s5-memorizer-notimpl"
        declared = declared and (op == "softmax" or backend != "exploit-s5-memorizer-notimpl")
        if case == "dist_normal_scale_1" or not declared:
            assert rec["verdict"] == ("pass" if declared else "unsupported"), rec
            continue
        assert rec["seed"] == seed
        if backend.endswith("garbage"):
            assert rec["verdict"] == "fail" and rec["check"] == "values", rec
        else:
            assert rec["verdict"] == "error" and rec["check"] == "no_exception", rec
            assert rec["message"] == (f"declares {op} {dtype} but refuses plain standard-normal logits "
                                      "of a fresh seed (default options): a backend answers the "
                                      "inputs it declares, not only the catalogue's")
    red_team = verdicts[("exploit-s5-memorizer-notimpl", "softmax", "fresh_normal", "float32")]
    assert red_team["verdict"] == "error"


def test_honest_numpy_passes_fresh_normal_in_every_entry_point():
    from softmaxbench.backends.registry import builtin
    from softmaxbench.suite.conformance.api import run_checks

    records = run_checks(["numpy", builtin("numpy")], cases=["fresh_normal"], seed=99)
    assert len(records) == 2 * len(cases.ALL_OPS) * 4
    assert {r["verdict"] for r in records if r["dtype"] != "bfloat16"} == {"pass"}
    assert {r["verdict"] for r in records if r["dtype"] == "bfloat16"} == {"unsupported"}
    assert {r["seed"] for r in records} == {99}
    first, second = records[:len(records) // 2], records[len(records) // 2:]
    assert [(_key(r), r["verdict"], r["max_ulp"]) for r in first] == \
           [(_key(r), r["verdict"], r["max_ulp"]) for r in second]  # workers and in-process agree


def test_pytest_plugin_seeds_fresh_checks():
    from softmaxbench.backends.registry import builtin
    from softmaxbench.suite.conformance.pytest_plugin import checks_for

    numpy = builtin("numpy")
    (given,) = checks_for(numpy, ops=["softmax"], dtypes=["float32"], cases=["fresh_normal"], seed=5)
    assert given.seed == 5 and given.record(numpy)["seed"] == 5
    (drawn,) = checks_for(numpy, ops=["softmax"], dtypes=["float32"], cases=["fresh_normal"])
    rec = drawn.record(numpy)
    assert rec["verdict"] == "pass" and rec["seed"] == drawn.seed != 5
    with pytest.raises(pytest.UsageError, match="a seed is an integer"):
        checks_for(numpy, cases=["fresh_normal"], seed=-3)


def test_resume_keeps_the_recorded_seed(tmp_path):
    out = tmp_path / "run"
    assert run_check(out, backends=["numpy"], ops=["softmax", "log_softmax"], dtypes=["float32"],
                     cases=["fresh_normal"], seed=77, display="none") == 0
    path = out / "results.jsonl"
    first = path.read_text().splitlines()
    path.write_text(first[0] + "\n")  # as if killed after its first record
    meta = json.loads((out / "run.json").read_text())
    assert meta["seed"] == 77
    assert run_check(out, resume=True, display="none") == 0
    again = read_results(out)
    assert [r["seed"] for r in again] == [77, 77] and [_stable(r) for r in again] == \
           [_stable(json.loads(line)) for line in first]
    assert read_run(out)["seed"] == 77


def test_bad_seeds_are_one_line_and_exit_2(tmp_path, capsys):
    assert _cli("check", "--backends", "numpy", "--seed", "-1", "--out", str(tmp_path / "x")) == 2
    assert _cli("check", "--resume", str(tmp_path), "--seed", "3") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--seed" in err[0] and "--seed" in err[1], err
    from softmaxbench.errors import InputError
    from softmaxbench.suite.conformance.api import run_checks

    with pytest.raises(InputError, match="a seed is an integer"):
        run_checks(["numpy"], cases=["fresh_normal"], seed="7")
