"""Tests of the worst-case search (``softmaxbench hunt``) and its saved regression cases.

The central claim (issue "Worst-case search", point 4): against the deliberately broken backends
of ``hunt_broken.py`` the guided hunt finds each fault within a small, fixed budget of evaluated
rows, while plain random sampling of the same search space and budget does not.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import hunt_broken  # pytest puts tests/ on sys.path
import ml_dtypes
import numpy as np
import pytest

from softmaxbench.suite.hunt import store as found_cases
from softmaxbench.suite.hunt.findings import hunt
from softmaxbench.suite.hunt.objective import ReferenceObjective
from softmaxbench.suite.hunt.search import EXPLORE, hypothesis_phase, search
from softmaxbench.suite.hunt.space import Candidate, SearchSpace, nudge

HERE = Path(__file__).parent
BUDGET = 500          # rows per search: the hunt finds every fault in under 200 (12 seeds tried)


def _toy_objective(log: list | None = None):
    """A scorer needing no reference: how far the max logit sits above 80 (and row length)."""
    def objective(rows):
        if log is not None:
            log.extend((c.x.tobytes(), None if c.target is None else c.target) for c in rows)
        return [(max(0.0, float(c.x.max()) - 80.0), float(c.n), None) for c in rows]
    return objective


# -- the floating-point grid ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.float64])
def test_nudge_steps_exactly_one_representable_value(dtype):
    a = np.array([1.0, -1.0, 0.0, 3.5, -1e-3, 100.0], dtype)
    up = np.nextafter(a, np.array([np.inf] * a.size, dtype))
    down = np.nextafter(a, np.array([-np.inf] * a.size, dtype))
    assert np.array_equal(nudge(a, 1).view(np.uint8), up.view(np.uint8)) or \
        np.array_equal(nudge(a, 1).astype(np.float64), up.astype(np.float64))
    assert np.array_equal(nudge(a, -1).astype(np.float64), down.astype(np.float64))
    assert np.array_equal(nudge(nudge(a, 3), -3).astype(np.float64), a.astype(np.float64))
    top = np.array([ml_dtypes.finfo(dtype).max], dtype)
    assert np.isfinite(nudge(top, 5).astype(np.float64)).all()          # never steps into inf


# -- the search engine (no reference needed) --------------------------------------------------
def test_search_is_deterministic_for_a_seed():
    space = SearchSpace("cross_entropy", "float16")
    runs = []
    for seed in (7, 7, 8):
        log: list = []
        res = search(_toy_objective(log), space, seed=seed, max_evals=120)
        runs.append((log, res.best["error_ratio"].cand.x.tobytes()))
        assert res.evals == 120 and len(log) == 120
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]


def test_timed_search_tries_a_prefix_of_the_counted_one():
    space = SearchSpace("softmax", "float32")
    timed_log: list = []
    timed = search(_toy_objective(timed_log), space, seed=3, budget_s=0.3)
    assert timed.stopped_by == "time" and timed.evals > EXPLORE
    counted_log: list = []
    counted = search(_toy_objective(counted_log), space, seed=3, max_evals=timed.evals)
    assert counted_log == timed_log
    assert counted.best["error_ratio"].cand.x.tobytes() == timed.best["error_ratio"].cand.x.tobytes()


def test_hypothesis_phase_is_deterministic_and_bounded():
    import softmaxbench.reference.strategies  # noqa: F401 - a missing module is a failure

    space = SearchSpace("softmax_vjp", "bfloat16")
    runs = []
    for seed in (5, 5, 6):
        rows, drawn = hypothesis_phase(_toy_objective(), space, seed=seed, examples=12)
        assert drawn == 12
        assert rows and all(c.how[0].startswith("hypothesis:") for c, _ in rows)
        assert all(c.cotangent is not None and c.x.dtype == space.dt for c, _ in rows)
        runs.append([c.x.tobytes() for c, _ in rows])
    assert runs[0] == runs[1] and runs[0] != runs[2]
    capped, _ = hypothesis_phase(_toy_objective(), space, seed=5, examples=12, max_evals=7)
    assert [c.x.tobytes() for c, _ in capped] == runs[0][:7]


def test_guided_search_climbs_where_random_sampling_cannot():
    space = SearchSpace("softmax", "float32")
    guided = search(_toy_objective(), space, seed=0, max_evals=BUDGET)
    rand = search(_toy_objective(), space, seed=0, max_evals=BUDGET, guided=False)
    assert guided.best["error_ratio"].error_ratio > 0       # reached max > 80 (exp overflow region)
    assert rand.best["error_ratio"].error_ratio == 0         # random rows stay below 80
    assert guided.best["ulp"].ulp > space.start_len          # and grew rows beyond the random lengths


@pytest.mark.parametrize("name", ["nudge_max", "near_tie", "nudge_some", "overflow", "underflow",
                                  "spread_to_threshold", "spread", "shift", "length", "resample", "permute",
                                  "cotangent", "target"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_mutations_keep_rows_finite_and_consistent(name, dtype):
    op = "softmax_vjp" if name == "cotangent" else "cross_entropy" if name == "target" else "softmax_vjp"
    space = SearchSpace(op, dtype, max_len=512)
    rng = np.random.default_rng(0)
    c = space.random(rng)
    for _ in range(20):
        c = space.mutate(rng, c, name)
        assert c.x.dtype == space.dt and 2 <= c.n <= space.max_len
        assert np.isfinite(c.x.astype(np.float64)).all()
        if space.needs_cotangent:
            assert c.cotangent.shape == c.x.shape and c.cotangent.dtype == space.dt
        if space.needs_target:
            assert 0 <= c.target < c.n
    assert c.how[-1] == name


def test_near_tie_mutation_makes_near_ties():
    space = SearchSpace("softmax", "float32")
    rng = np.random.default_rng(1)
    c = space.mutate(rng, space.random(rng, n=100), "near_tie")
    top2 = np.sort(c.x.astype(np.float64))[-2:]
    assert top2[1] - top2[0] <= 3 * np.spacing(np.float32(top2[1]))


# -- hunting real faults with the reference ---------------------------------------------------
@pytest.fixture(scope="module")
def reference_ready():
    import softmaxbench.reference.ops  # noqa: F401 - a missing module is a failure
    import softmaxbench.suite.conformance.api  # noqa: F401 - a missing module is a failure


@pytest.fixture(scope="module")
def hunted(reference_ready, tmp_path_factory):
    """``hunted(cls, examples)``: (result, found_dir) of one BUDGET-row hunt of ``cls()`` (seed 0,
    saved into a fresh folder), run once per module and shared by the tests that look at it."""
    done: dict = {}

    def get(cls, examples):
        if (cls, examples) not in done:
            d = tmp_path_factory.mktemp("found")
            done[cls, examples] = (hunt(cls(), "softmax", "float32", max_evals=BUDGET, seed=0, found_dir=d,
                                        use_catalogue=False, hypothesis_examples=examples), d)
        return done[cls, examples]
    return get


@pytest.fixture(scope="module")
def sampled(reference_ready):
    """``sampled(cls)``: plain random sampling of the hunt's space with its budget, once per backend."""
    done: dict = {}

    def get(cls):
        if cls not in done:
            done[cls] = search(ReferenceObjective(cls(), "softmax", "float32"),
                               SearchSpace("softmax", "float32"), seed=0, max_evals=BUDGET, guided=False)
        return done[cls]
    return get


@pytest.mark.parametrize("examples", [0, 16], ids=["guided", "hypothesis+guided"])
@pytest.mark.parametrize("broken", hunt_broken.BROKEN, ids=lambda c: c.name)
def test_hunt_finds_the_fault_random_sampling_misses(broken, examples, hunted, sampled):
    from softmaxbench.reference.metrics import THRESHOLDS

    b = broken()
    found, found_dir = hunted(broken, examples)
    assert found.verdict == "fail", found.findings[0].record["message"]
    assert found.worst_ratio > THRESHOLDS["float32"]
    rand = sampled(broken)
    assert rand.best["error_ratio"].error_ratio <= THRESHOLDS["float32"]
    # The saved case reproduces the failure on its own, as check will run it.
    saved = found_cases.load_found_cases([found_dir])
    assert saved and all(c.found_by == "hunt" for c in saved)
    worst = next(c for c in saved if c.name == found.findings[0].case)
    assert _check(b, worst)["verdict"] == "fail"
    assert _check(hunt_broken.CorrectSoftmax(), worst)["verdict"] == "pass"


def test_hunt_of_a_correct_backend_finds_nothing(reference_ready, tmp_path):
    found = hunt(hunt_broken.CorrectSoftmax(), "softmax", "float32", max_evals=BUDGET, found_dir=tmp_path,
                 use_catalogue=False, hypothesis_examples=8)
    assert found.verdict == "pass"
    assert 0 < found.worst_ratio <= 1.0


def test_timed_hunt_is_replayed_by_its_counts(reference_ready):
    b = hunt_broken.CorrectSoftmax()
    timed = hunt(b, "softmax", "float32", budget_s=1.0, save=False, use_catalogue=False,
                 hypothesis_examples=16)
    assert timed.stopped_by == "time"
    again = hunt(b, "softmax", "float32", max_evals=timed.evals, save=False, use_catalogue=False,
                 hypothesis_examples=timed.hypothesis_examples)
    assert [f.case for f in again.findings] == [f.case for f in timed.findings]


def test_findings_are_shrunk_but_still_fail(hunted):
    b = hunt_broken.LongRowSoftmax()
    found, _ = hunted(hunt_broken.LongRowSoftmax, 0)
    assert all(b.LIMIT < f.cand.n < 8192 and f.verdict == "fail" for f in found.findings)
    found, _ = hunted(hunt_broken.NearTieSoftmax, 0)
    assert all(f.cand.n <= 4 and f.verdict == "fail" for f in found.findings)
    assert all(f.cand.how[-1] == "shrink" for f in found.findings)


def _check(backend, case):
    from softmaxbench.reference import ops
    from softmaxbench.suite.conformance.api import check_one

    inputs = case.build(case.dtypes[0])
    return check_one(backend, case.ops[0], inputs, np.asarray(ops.evaluate(case.ops[0], inputs)),
                     category=case.category)


@pytest.mark.parametrize("op", ["log_softmax", "logsumexp", "softmax_vjp", "cross_entropy",
                                "cross_entropy_grad"])
def test_every_op_can_be_hunted(op, reference_ready):
    import softmaxbench.backends.registry as registry
    r = hunt(registry.get("numpy"), op, "float32", max_evals=48, save=False, use_catalogue=False,
             hypothesis_examples=4)
    assert r.evals == 48 and r.findings
    assert r.verdict in ("pass", "deviation"), r.findings[0].record["message"]
    assert all(f.record["found_by"] == "hunt" and f.record["repro"] for f in r.findings)


# -- saved cases ------------------------------------------------------------------------------
def test_found_case_file_round_trips_bit_exact(tmp_path):
    import softmaxbench.reference.cases  # noqa: F401 - a missing module is a failure
    rng = np.random.default_rng(0)
    long_row = rng.normal(size=(1, 3000)).astype(ml_dtypes.bfloat16)
    short = np.array([[1.0, -0.0, 65504.0, 6e-8]], np.float16)
    for x, op, tgt in ((long_row, "cross_entropy", np.array([5], np.int64)), (short, "softmax", None)):
        dtype = found_cases.dtype_name(x.dtype) if hasattr(found_cases, "dtype_name") else str(x.dtype)
        entry = found_cases.make_entry(op, dtype, x, None, tgt, {"reduction": "none"}, backend="b/x",
                                       objective="ulp", max_error_ratio=float("inf"), max_ulp=2.0,
                                       verdict="fail")
        name, added = found_cases.save_found_case(tmp_path, "b/x", op, dtype, entry)
        assert added and name == entry["name"]
        assert found_cases.save_found_case(tmp_path, "b/x", op, dtype, entry) == (name, False)
    text = (tmp_path / "b_x__softmax__float16.json").read_text()
    assert '"values": [1.0, -0.0, 65504.0' in text                   # short rows stay readable
    json.loads(text)                                                 # standard JSON (no Infinity)
    cases = {c.name: c for c in found_cases.load_found_cases([tmp_path])}
    assert len(cases) == 2
    for c in cases.values():
        built = c.build(c.dtypes[0])
        want = long_row if c.dtypes[0] == "bfloat16" else short
        assert built.x.dtype == want.dtype and built.x.tobytes() == want.tobytes()
        assert c.max_error_ratio == math.inf and c.category == "found" and c.quick
        with pytest.raises(ValueError):
            c.build("float64")
    ce = next(c for c in cases.values() if c.ops == ("cross_entropy",))
    assert ce.build("bfloat16").target.tolist() == [5]
    assert ce.build("bfloat16").ce_options["reduction"] == "none"


def test_found_case_has_the_case_interface(tmp_path):
    import softmaxbench.reference.cases as cases_mod
    entry = found_cases.make_entry("softmax", "float32", np.ones((1, 3), np.float32), backend="numpy",
                                   objective="error_ratio", max_error_ratio=0.1, max_ulp=0.0)
    found_cases.save_found_case(tmp_path, "numpy", "softmax", "float32", entry)
    (fc,) = found_cases.load_found_cases([tmp_path])
    catalogue_case = cases_mod.catalogue()[0]
    for attr in ("name", "category", "shape", "axis", "ops", "dtypes", "description", "quick",
                 "expect_error"):
        assert type(getattr(fc, attr)) is type(getattr(catalogue_case, attr)), attr
    assert isinstance(fc.build("float32"), cases_mod.CaseInput)
    assert set(catalogue_case.summary()) - set(fc.summary()) <= {"size", "ce_options", "weighted"}


def test_check_can_look_found_cases_up_by_name(tmp_path, monkeypatch):
    import softmaxbench.reference.cases  # noqa: F401 - a missing module is a failure
    e = found_cases.make_entry("softmax", "float32", np.array([[0.0, 1.0]], np.float32), backend="n",
                               objective="error_ratio", max_error_ratio=9.0, max_ulp=1.0, verdict="fail")
    found_cases.save_found_case(tmp_path, "n", "softmax", "float32", e)
    monkeypatch.setenv(found_cases.ENV_DIRS, str(tmp_path))
    assert found_cases.get_case(e["name"]).build("float32").x.tolist() == [[0.0, 1.0]]
    catalogue_name = found_cases.all_cases()[0].name
    assert found_cases.get_case(catalogue_name).name == catalogue_name
    quick = {c.name for c in found_cases.all_cases(quick=True)}
    assert e["name"] in quick                          # a failing regression case runs in --quick
    with pytest.raises(KeyError):
        found_cases.get_case("found-missing")


def test_file_keeps_only_the_worst_cases(tmp_path):
    for i in range(found_cases.MAX_CASES_PER_FILE + 3):
        e = found_cases.make_entry("softmax", "float32", np.full((1, 2), i, np.float32), backend="n",
                                   objective="error_ratio", max_error_ratio=float(i), max_ulp=0.0)
        found_cases.save_found_case(tmp_path, "n", "softmax", "float32", e)
    kept = [c.max_error_ratio for c in found_cases.load_found_cases([tmp_path])]
    assert sorted(kept, reverse=True) == kept and len(kept) == found_cases.MAX_CASES_PER_FILE
    assert min(kept) == 3.0


def test_broken_files_raise_one_clear_error(tmp_path):
    (tmp_path / "x__softmax__float32.json").write_text('{"format": "other"}')
    with pytest.raises(found_cases.FoundCaseError, match="not a softmaxbench found-cases file"):
        found_cases.load_found_cases([tmp_path])
    assert found_cases.load_found_cases([tmp_path / "missing"]) == []


def test_shipped_found_cases_load():
    shipped = found_cases.load_found_cases([found_cases.package_dir()])
    for c in shipped:
        assert c.name.startswith("found-") and len(c.ops) == 1 and len(c.dtypes) == 1


# -- the CLI verb -----------------------------------------------------------------------------
def _cli(args, capsys):
    from softmaxbench.suite.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_hunt_saves_cases_records_and_prints_the_table(reference_ready, tmp_path, capsys):
    import softmaxbench.backends.registry  # noqa: F401 - a missing module is a failure
    from softmaxbench.suite.records import read_results, validate_record

    args = ["hunt", "--plugin", str(HERE / "hunt_broken.py"), "--backends", "broken-overflow,fine-softmax",
            "--ops", "softmax", "--dtypes", "float32", "--evals", "120", "--hypothesis", "8",
            "--out", str(tmp_path)]
    code, out, err = _cli(args, capsys)
    assert code == 1, err                                   # a failing input was found
    assert "Max known error" in out and "broken-overflow" in out and "fine-softmax" in out
    recs = read_results(tmp_path)
    for r in recs:
        validate_record(r)
    assert {r["found_by"] for r in recs} == {"hunt"}
    bad = [r for r in recs if r["backend"] == "broken-overflow"]
    assert bad and any(r["verdict"] == "fail" for r in bad)
    assert all(r["verdict"] == "pass" for r in recs if r["backend"] == "fine-softmax")
    saved = {c.name for c in found_cases.load_found_cases([tmp_path / "found"])}
    assert {r["case"] for r in recs} <= saved
    assert (tmp_path / "run.json").is_file()
    # The repro snippet runs on its own and reproduces the failure.
    worst = next(r for r in bad if r["verdict"] == "fail")
    ns: dict = {}
    exec(compile(worst["repro"], "repro", "exec"), ns)
    assert not np.isfinite(ns["out"].astype(np.float64)).all()
    # Same seed, same budget: the same findings (deterministic).
    code2, out2, _ = _cli(args[:-1] + [str(tmp_path / "again")], capsys)
    again = read_results(tmp_path / "again")
    assert [r["case"] for r in again] == [r["case"] for r in recs]


def _empty_user_cache(tmp_path, monkeypatch) -> Path:
    """XDG_CACHE_HOME -> tmp_path/cache, with no found cases; the session's discovery answers are
    copied in (these tests are about where found cases go, not about discovery)."""
    import os
    import shutil

    cache = tmp_path / "cache"
    session = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "softmaxbench" / "discovery"
    if session.is_dir():
        shutil.copytree(session, cache / "softmaxbench" / "discovery")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def _package_found_files() -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in found_cases.package_dir().glob("*")}


def test_cli_hunt_saves_to_the_user_cache_never_into_the_package(reference_ready, tmp_path, capsys,
                                                                   monkeypatch):
    _empty_user_cache(tmp_path, monkeypatch)
    monkeypatch.delenv(found_cases.ENV_DIRS, raising=False)
    monkeypatch.chdir(tmp_path)                              # the default OUT is relative
    before = _package_found_files()
    code, out, err = _cli(["hunt", "--plugin", str(HERE / "hunt_broken.py"), "--backends", "broken-overflow",
                           "--ops", "softmax", "--dtypes", "float32", "--evals", "64", "--hypothesis", "0"],
                          capsys)
    assert code == 1, err
    cache = tmp_path / "cache" / "softmaxbench" / "found"
    assert found_cases.user_dir() == cache
    saved = found_cases.load_found_cases([cache])
    assert saved and f"saved cases: {cache}" in out
    assert _package_found_files() == before                 # nothing written into the package
    # check finds them: the user's cache is one of the directories it reads by default.
    names = {c.name for c in found_cases.all_cases()}
    assert {c.name for c in saved} <= names
    assert found_cases.get_case(saved[0].name).build("float32").x.dtype == np.float32
    # and the shipped cases are still there
    shipped = {c.name for c in found_cases.load_found_cases([found_cases.package_dir()])}
    assert shipped <= names


def test_cli_hunt_save_dir_names_the_folder(reference_ready, tmp_path, capsys, monkeypatch):
    _empty_user_cache(tmp_path, monkeypatch)
    args = ["hunt", "--plugin", str(HERE / "hunt_broken.py"), "--backends", "broken-overflow", "--ops",
            "softmax", "--dtypes", "float32", "--evals", "64", "--hypothesis", "0",
            "--out", str(tmp_path / "o")]
    code, out, err = _cli([*args, "--save-dir", str(tmp_path / "mine")], capsys)
    assert code == 1, err
    assert found_cases.load_found_cases([tmp_path / "mine"])
    assert not (tmp_path / "o" / "found").exists()
    assert not (tmp_path / "cache" / "softmaxbench" / "found").exists()
    assert f"{found_cases.ENV_DIRS}={tmp_path / 'mine'}" in out      # how check gets to run them
    (tmp_path / "file").write_text("x")
    code, out, err = _cli([*args, "--save-dir", str(tmp_path / "file" / "sub")], capsys)
    assert code == 2 and "not a writable directory" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--ops", "softmux"], "unknown op 'softmux'"),
    (["--dtypes", "float8"], "unknown dtype 'float8'"),
    (["--evals", "0"], "--evals must be at least 1"),
    (["--backends", "no-such-backend"], "no-such-backend"),
])
def test_cli_hunt_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path):
    import softmaxbench.backends.registry  # noqa: F401 - a missing module is a failure
    code, out, err = _cli(["hunt", "--out", str(tmp_path), *args], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_candidate_recipe_keeps_origin_and_latest_steps():
    c = Candidate(np.zeros(2, np.float32), how=("saved:x", *(["near_tie", "shift"] * 40)))
    text = c.describe()
    assert text.startswith("saved:x > ... >") and text.endswith("shift") and len(text) <= 170


def test_docstring_examples_run():
    import doctest

    from softmaxbench.suite.hunt import findings, search, space, store

    for mod in (space, search, store, findings):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


# -- cases the model algorithm cannot compute are never saved ---------------------------------
#: Issue 15 item 2: float16 softmax_vjp where the textbook algorithm's v - c overflows to -inf
#: (exact -3.0575): a backend returning -inf is no worse than the suite's own model.
UNATTAINABLE = (np.array([[9.96, -0.159]], np.float16), np.array([[10420.0, -65500.0]], np.float16))


def _save_unattainable(d):
    x, v = UNATTAINABLE
    e = found_cases.make_entry("softmax_vjp", "float16", x, v, backend="numpy", objective="error_ratio",
                               max_error_ratio=float("inf"), max_ulp=float("inf"), verdict="fail")
    found_cases.save_found_case(d, "numpy", "softmax_vjp", "float16", e)
    return e["name"]


def test_shipped_found_cases_are_all_attainable_by_the_model():
    for c in found_cases.load_found_cases([found_cases.package_dir()]):
        assert found_cases.refusal(c.ops[0], c.build(c.dtypes[0])) is None, c.name


def test_prune_drops_the_cases_the_model_cannot_compute(tmp_path):
    bad = _save_unattainable(tmp_path)
    ok = found_cases.make_entry("softmax_vjp", "float16", np.array([[1.0, 2.0]], np.float16),
                                np.array([[1.0, -1.0]], np.float16), backend="numpy", objective="ulp",
                                max_error_ratio=0.5, max_ulp=1.0)
    found_cases.save_found_case(tmp_path, "numpy", "softmax_vjp", "float16", ok)
    dropped = found_cases.prune(tmp_path)
    assert [n for n, _ in dropped] == [bad] and "not attainable by the model algorithm" in dropped[0][1]
    assert [c.name for c in found_cases.load_found_cases([tmp_path])] == [ok["name"]]
    assert found_cases.prune(tmp_path) == []


def test_hunt_refuses_to_save_a_case_the_model_cannot_compute(reference_ready, tmp_path):
    import softmaxbench.backends.registry as registry

    bad = _save_unattainable(tmp_path / "start")
    x = UNATTAINABLE[0][0]

    def objective(rows):      # makes the unattainable row the worst input, whatever the backend does
        return [(1e9 if c.x.tobytes() == x.tobytes() else 0.0, 0.0, None) for c in rows]

    r = hunt(registry.get("numpy"), "softmax_vjp", "float16", max_evals=16, found_dir=tmp_path / "out",
             start_dirs=[tmp_path / "start"], use_catalogue=False, hypothesis_examples=0, objective=objective)
    worst = next(f for f in r.findings if f.objective == "error_ratio")
    assert worst.case == bad and not worst.saved and "not attainable" in worst.refused
    assert "not saved: not attainable" in worst.record["message"]
    assert bad not in {c.name for c in found_cases.load_found_cases([tmp_path / "out"])}


def test_hunt_objective_does_not_score_what_the_model_cannot_compute(reference_ready):
    import softmaxbench.backends.registry as registry

    x, v = UNATTAINABLE
    obj = ReferenceObjective(registry.get("numpy"), "softmax_vjp", "float16")
    (score,) = obj([Candidate(x[0], v[0])])
    # numpy gives -inf at index 1, as the model does: not scored (else both would be inf). Index 0
    # cancels (v - c, well-conditioned by the error ratio's measure): a finite ULP error.
    assert score[0] < 1.0 and math.isfinite(score[1])


# -- hostile backends mid-hunt: the backend runs only in a worker -----------------------------
EXPLOITS = HERE / "exploits" / "hunt_hostile.py"


LOSSES = {"hunt-segfault-long": "crash", "hunt-exit-zero": "crash", "hunt-hang-long": "timeout"}


@pytest.fixture(scope="module")
def hostile_hunt(tmp_path_factory):
    """One ``hunt`` (in this process, as the CLI runs it) of the hostile backends beside a correct
    one: three that lose their worker mid-hunt and one whose plugin rigs the judge at import."""
    import contextlib
    import io

    import softmaxbench.reference.ops as ops
    from softmaxbench.suite.cli.main import main

    evaluate = ops.evaluate                         # what the plugin would rig, if this process ran it
    out = tmp_path_factory.mktemp("hostile_hunt")
    args = ["hunt", "--plugin", str(EXPLOITS), "--plugin", str(HERE / "hunt_broken.py"),
            "--backends", ",".join([*LOSSES, "hunt-rigged-judge", "fine-softmax"]), "--ops", "softmax",
            "--dtypes", "float32", "--evals", "64", "--hypothesis", "0", "--timeout", "3", "--out", str(out),
            "--no-save"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, stdout.getvalue(), stderr.getvalue(), out, evaluate


def test_a_backend_lost_mid_hunt_is_a_record_and_the_hunt_goes_on(hostile_hunt):
    from softmaxbench.suite.hunt.objective import MAX_LOSSES
    from softmaxbench.suite.records import read_results, validate_record

    code, out, err, out_dir, _ = hostile_hunt
    assert code == 1, err                           # a lost worker never exits 0
    recs = read_results(out_dir)
    for r in recs:
        validate_record(r)
    for backend, verdict in LOSSES.items():
        lost = [r for r in recs if r["backend"] == backend and r["verdict"] in ("crash", "timeout")]
        assert lost and {r["verdict"] for r in lost} == {verdict}, out
        assert len(lost) <= MAX_LOSSES
        assert all(r["found_by"] == "hunt" and "fresh worker" in r["message"] and r["repro"] for r in lost)
        # The hunt went on after each loss: its other rows were scored, its findings judged.
        judged = [r for r in recs if r["backend"] == backend and r["verdict"] not in ("crash", "timeout")]
        assert judged and all(r["verdict"] == "pass" for r in judged), judged
    assert "worker(s) lost (timeout" in out and "worker(s) lost (crash" in out
    # and the backend hunted after them as if nothing had happened
    fine = [r for r in recs if r["backend"] == "fine-softmax"]
    assert fine and all(r["verdict"] == "pass" for r in fine)


def test_a_plugin_cannot_rig_the_hunts_judge(hostile_hunt):
    """The plugin rewires the reference, the metrics, the objective and check_one at import and
    returns zeros: the trusted process never imports it, so the garbage is still found."""
    import softmaxbench.reference.ops as ops
    from softmaxbench.suite.records import read_results

    code, out, err, out_dir, evaluate = hostile_hunt
    assert code == 1, err
    recs = [r for r in read_results(out_dir) if r["backend"] == "hunt-rigged-judge"]
    assert recs and all(r["verdict"] == "fail" for r in recs)
    assert ops.evaluate is evaluate                 # this process was never rigged
    assert not [m for m in sys.modules if "hunt_hostile" in m]     # nor did it import the plugin


def test_cli_hunt_refuses_an_out_another_run_holds(tmp_path, capsys):
    from softmaxbench.suite.records import OutLock

    with OutLock(tmp_path):
        code, out, err = _cli(["hunt", "--backends", "numpy", "--ops", "softmax", "--dtypes", "float32",
                               "--evals", "8", "--hypothesis", "0", "--out", str(tmp_path)], capsys)
    assert code == 2 and "another softmaxbench run is writing there" in err
    assert len(err.strip().splitlines()) == 1
