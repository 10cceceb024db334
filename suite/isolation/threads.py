"""Framework threads on the CPU: the environment that sets them, and what a backend computes with.

One place for what ``--threads N`` means to every framework, used by ``bench`` (in its own
process) and by ``check``'s workers (through their environment):

- OpenMP, MKL and OpenBLAS read ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` /
  ``OPENBLAS_NUM_THREADS`` when they load; torch also takes ``torch.set_num_threads``.
- XLA's CPU client (JAX) sizes its intra-op thread pool ("XLAEigen") from ``NPROC``, else from
  every core, when the client is made (``xla/pjrt/cpu/cpu_client.cc``, ``DefaultThreadPoolSize``).
  ``--xla_cpu_multi_thread_eigen=false`` alone is not one thread: measured here (jax 0.10.2,
  128 x 50257 cross-entropy), two XLAEigen threads still did a quarter of the work, and on a
  shared 2-core machine a second thread waits for a core a neighbour holds. With ``NPROC=1``
  they are gone.

>>> env = thread_env(1, base={})
>>> env["OMP_NUM_THREADS"], env["NPROC"], env["XLA_FLAGS"]
('1', '1', '--xla_cpu_multi_thread_eigen=false')
>>> "XLA_FLAGS" in thread_env(4, base={})
False
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

#: Variables that carry the thread count itself.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NPROC")
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def thread_env(n: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables that give every CPU framework ``n`` threads.

    ``XLA_FLAGS`` comes back (with ``base``'s own flags kept) only when it changes: for one
    thread, where Eigen's multi-threading is also switched off.
    """
    base = os.environ if base is None else base
    env = {var: str(n) for var in THREAD_VARIABLES}
    flags = base.get("XLA_FLAGS", "")
    if n == 1 and XLA_ONE_THREAD not in flags:
        env["XLA_FLAGS"] = f"{flags} {XLA_ONE_THREAD}".strip()
    return env


def configure_threads(n: int | None) -> list[str]:
    """Set the threads of the CPU frameworks in this process, before they are used; returns warnings.

    JAX reads its variables once, when its CPU client is made: if jax is already imported the
    setting may come too late, and the warning says so.
    """
    warnings: list[str] = []
    if n is None:
        return warnings
    env = thread_env(n)
    xla = {k: v for k, v in env.items() if k in ("NPROC", "XLA_FLAGS")}
    if "jax" in sys.modules and any(os.environ.get(k) != v for k, v in xla.items()):
        warnings.append("jax was imported before --threads was applied; its threads may be unchanged")
    os.environ.update(env)
    torch_threads(n)
    return warnings


def torch_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` when torch is loaded (it is never imported here)."""
    if n is not None and "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def threads_used(backend) -> int | None:
    """Threads the backend's framework computes with on the CPU (None on a GPU or when unknown)."""
    if getattr(backend, "device", "cpu") == "gpu":
        return None
    framework = str(getattr(backend, "framework", "") or "")
    if framework.startswith("torch") and "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    if framework.startswith("jax"):
        nproc = os.environ.get("NPROC", "")
        return int(nproc) if nproc.isdigit() and int(nproc) > 0 else os.cpu_count()
    if framework in ("numpy", "scipy"):
        return 1  # NumPy's ufuncs and reductions run on one thread
    env = os.environ.get("OMP_NUM_THREADS")
    return int(env) if env and env.isdigit() else None
