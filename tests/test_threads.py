"""Framework threads (suite/threads.py): ``--threads 1`` means one computing core, JAX included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from softmaxbench.suite.isolation import threads

# Runs a sizeable XLA computation (after compiling it) and reports, per thread name, how many
# threads the process has and the CPU seconds they spent (from /proc: what ran, not how fast, so
# the figures hold on a busy machine, where a CPU/wall ratio measures the neighbours).
_PROBE = r"""
import json, os
import jax, jax.numpy as jnp
x = jnp.asarray(jax.random.normal(jax.random.PRNGKey(0), (512, 32768)))
f = jax.jit(lambda x: jax.nn.log_softmax(x, axis=-1).sum())
g = jax.jit(lambda x: x + 1.0)
for _ in range(20):
    f(g(x)).block_until_ready()
tick = os.sysconf("SC_CLK_TCK")
by_name = {}
for tid in os.listdir("/proc/self/task"):
    try:
        comm = open(f"/proc/self/task/{tid}/comm").read().strip()
        fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    n, cpu = by_name.get(comm, (0, 0.0))
    by_name[comm] = (n + 1, cpu + (int(fields[11]) + int(fields[12])) / tick)
print(json.dumps(by_name))
"""


def _probe(env: dict[str, str | None]) -> dict:
    """Run the probe with ``env`` over this environment (None: leave the variable out)."""
    full = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=full, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _eigen(by_name: dict) -> tuple[int, float]:
    """(threads, their share of the process's CPU seconds) of XLA's intra-op pool."""
    total = sum(cpu for _, cpu in by_name.values()) or 1e-9
    pools = [(n, cpu) for name, (n, cpu) in by_name.items() if "XLAEigen" in name]
    return sum(n for n, _ in pools), sum(cpu for _, cpu in pools) / total


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to tell one thread from two")
def test_one_thread_means_one_core_for_jax():
    """Found here: with --xla_cpu_multi_thread_eigen=false alone (what --threads 1 set before),
    XLA:CPU still made an intra-op pool of every core (2 XLAEigen threads on this 2-core machine,
    a third of the CPU seconds); NPROC=1 makes it one. Counted from /proc, so a busy machine
    (where a CPU/wall ratio fell to 0.65 at load 5) gives the same answer."""
    pytest.importorskip("jax")
    flag_only = _eigen(_probe({"NPROC": None, "XLA_FLAGS": threads.XLA_ONE_THREAD}))
    one = _eigen(_probe(threads.thread_env(1, base={})))
    assert flag_only[0] >= 2, flag_only        # the probe sees the pool of every core
    assert one[0] <= 1, one                    # --threads 1: a pool of one
    assert one[1] < flag_only[1], (one, flag_only)  # and that pool does less of the work


def test_thread_env_keeps_user_xla_flags_and_says_what_jax_uses(monkeypatch):
    env = threads.thread_env(1, base={"XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=false"
    assert "XLA_FLAGS" not in threads.thread_env(1, base={"XLA_FLAGS": env["XLA_FLAGS"]})
    assert threads.thread_env(3, base={})["NPROC"] == "3"
    monkeypatch.setenv("NPROC", "3")
    from softmaxbench.backends.jax_backend import JaxCPU, JaxGPU

    assert JaxCPU().threads_in_use() == 3  # the hook reads what XLA:CPU sizes its pool from
    assert JaxGPU().threads_in_use() is None
