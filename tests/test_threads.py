"""Framework threads (suite/threads.py): ``--threads 1`` means one computing core, JAX included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from softmaxbench.suite.isolation import threads

# Times a sizeable XLA computation (after compiling it) and reports the CPU seconds the process
# spent per wall second: the number of cores it really computed on.
_PROBE = r"""
import json, resource, time
import jax, jax.numpy as jnp
x = jnp.asarray(jax.random.normal(jax.random.PRNGKey(0), (512, 32768)))
f = jax.jit(lambda x: jax.nn.log_softmax(x, axis=-1).sum())
g = jax.jit(lambda x: x + 1.0)
for _ in range(3):
    f(g(x)).block_until_ready()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(30):
    f(g(x)).block_until_ready()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
print(json.dumps({"cpu_per_wall": cpu / (t1 - t0)}))
"""


def _probe(env: dict[str, str | None]) -> dict:
    """Run the probe with ``env`` over this environment (None: leave the variable out)."""
    full = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=full, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to tell one thread from two")
def test_one_thread_means_one_core_for_jax():
    """Found here: with --xla_cpu_multi_thread_eigen=false alone (what --threads 1 set before),
    jax-cpu computed on 1.85 cores per wall second on this 2-core machine."""
    pytest.importorskip("jax")
    flag_only = _probe({"NPROC": None, "XLA_FLAGS": threads.XLA_ONE_THREAD})
    one = _probe(threads.thread_env(1, base={}))
    assert flag_only["cpu_per_wall"] > 1.2, flag_only    # the probe sees a second core at work
    assert one["cpu_per_wall"] < 1.1, one                 # --threads 1 leaves it alone


def test_thread_env_keeps_user_xla_flags_and_says_what_jax_uses(monkeypatch):
    env = threads.thread_env(1, base={"XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=false"
    assert "XLA_FLAGS" not in threads.thread_env(1, base={"XLA_FLAGS": env["XLA_FLAGS"]})
    assert threads.thread_env(3, base={})["NPROC"] == "3"
    monkeypatch.setenv("NPROC", "3")

    class Jax:
        framework, device = "jax", "cpu"

    assert threads.threads_used(Jax()) == 3
    Jax.device = "gpu"
    assert threads.threads_used(Jax()) is None
