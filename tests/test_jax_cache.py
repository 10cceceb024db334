"""The jax backends' executable cache: used, where documented, and harmless when broken.

A second process loads what the first stored (no trace, no lowering, no compile) and computes the
same bits; a truncated, corrupt or foreign file is compiled afresh and rewritten; a check run
keeps it in ``$XDG_CACHE_HOME/softmaxbench/jax-exec`` and gives the same records whatever state
the cache is in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

from softmaxbench.backends.jax_backend import EXEC_CACHE_ENV  # noqa: E402
from softmaxbench.suite.conformance.runner import jit_cache_env  # noqa: E402

# One process: softmax and a cross-entropy gradient on fixed inputs; prints the cache's hits and
# misses and the outputs' bytes (hex), so that two processes can be compared bit for bit.
CHILD = r"""
import json, sys
import numpy as np
from softmaxbench.backends.jax_backend import JaxCPU
b = JaxCPU()
x = np.linspace(-3, 3, 35, dtype=np.float32).reshape(5, 7)
t = np.array([0, 6, 3, 2, 1])
y = b.to_numpy(b.softmax(b.asarray(x), axis=-1))
g = b.to_numpy(b.cross_entropy_grad(b.asarray(x), b.asarray(t), reduction="sum"))
disk = b._disk_cache()
print(json.dumps({"hits": disk.hits if disk else None, "misses": disk.misses if disk else None,
                  "y": y.tobytes().hex(), "g": g.tobytes().hex(),
                  "dir": str(disk.dir) if disk else None}))
"""


def _child(cache: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != EXEC_CACHE_ENV and not k.startswith("JAX_")}
    if cache is not None:
        env[EXEC_CACHE_ENV] = str(cache)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def uncached() -> dict:
    return _child(None)


def test_a_second_process_loads_what_the_first_stored(tmp_path, uncached):
    first = _child(tmp_path)
    assert (first["hits"], first["misses"]) == (0, 2)
    files = sorted(Path(first["dir"]).glob("*.xla"))
    assert len(files) == 2 and Path(first["dir"]).parent == tmp_path
    second = _child(tmp_path)
    assert (second["hits"], second["misses"]) == (2, 0)
    for run in (first, second):  # the same bits as without any cache
        assert (run["y"], run["g"]) == (uncached["y"], uncached["g"])
    assert uncached["hits"] is None  # no variable, no cache


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad_payload", "empty"])
def test_a_broken_file_is_compiled_afresh_and_rewritten(tmp_path, uncached, damage):
    import hashlib

    from softmaxbench.backends import jax_backend

    first = _child(tmp_path)
    for f in Path(first["dir"]).glob("*.xla"):
        data = f.read_bytes()
        if damage == "truncated":
            f.write_bytes(data[: len(data) // 2])
        elif damage == "garbage":
            f.write_bytes(os.urandom(len(data)))
        elif damage == "bad_payload":  # a digest that matches, over a payload that is no executable
            payload = b"\x80\x04N."  # pickle of None
            f.write_bytes(jax_backend._MAGIC + hashlib.sha256(payload).digest() + payload)
        else:
            f.write_bytes(b"")
    again = _child(tmp_path)
    assert (again["hits"], again["misses"]) == (0, 2)
    assert (again["y"], again["g"]) == (uncached["y"], uncached["g"])
    third = _child(tmp_path)  # rewritten: loaded again
    assert (third["hits"], third["misses"]) == (2, 0)


def test_an_unwritable_cache_is_no_error(tmp_path, uncached):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    run = _child(blocker)
    assert (run["y"], run["g"]) == (uncached["y"], uncached["g"])


def test_the_check_run_puts_it_in_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("SOFTMAXBENCH_NO_JIT_CACHE", raising=False)
    env = jit_cache_env()
    assert env[EXEC_CACHE_ENV] == str(tmp_path / "softmaxbench" / "jax-exec")
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "softmaxbench" / "jax")
    monkeypatch.setenv("SOFTMAXBENCH_NO_JIT_CACHE", "1")
    assert jit_cache_env() == {}


FIELDS = ("verdict", "check", "max_ulp", "median_ulp", "max_error_ratio", "error_kind", "message")


def _records(out: Path) -> dict:
    from softmaxbench.suite.records import read_results

    return {(r["op"], r["case"], r["dtype"]): tuple(r.get(f) for f in FIELDS) for r in read_results(out)}


def test_check_records_do_not_depend_on_the_cache(monkeypatch, tmp_path):
    from softmaxbench.suite.conformance.runner import run_check

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SOFTMAXBENCH_NO_JIT_CACHE", raising=False)
    for var in (EXEC_CACHE_ENV, "JAX_COMPILATION_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    sel = dict(backends=["jax-cpu"], ops=["softmax", "cross_entropy_grad"], dtypes=["float32", "bfloat16"],
               cases=["dist_normal_scale_1", "special_posinf_one"], display="none")
    run_check(tmp_path / "cold", **sel)
    stored = list((tmp_path / "cache" / "softmaxbench" / "jax-exec").glob("*/*.xla"))
    assert stored, "the check run stored no executable"
    run_check(tmp_path / "warm", **sel)
    for f in stored:  # every entry broken: the run compiles afresh, records unchanged
        f.write_bytes(f.read_bytes()[:100])
    run_check(tmp_path / "broken", **sel)
    monkeypatch.setenv("SOFTMAXBENCH_NO_JIT_CACHE", "1")
    run_check(tmp_path / "none", **sel)
    cold = _records(tmp_path / "cold")
    assert len(cold) == 8
    for other in ("warm", "broken", "none"):
        assert _records(tmp_path / other) == cold, other


def test_stale_environments_are_pruned(tmp_path, uncached):
    old, recent = tmp_path / ("0" * 24), tmp_path / ("1" * 24)
    for d in (old, recent):
        d.mkdir()
        (d / "x.xla").write_bytes(b"stale")
    past = 1_000_000_000  # 2001
    os.utime(old, (past, past))
    run = _child(tmp_path)
    assert not old.exists() and recent.exists() and Path(run["dir"]).is_dir()
