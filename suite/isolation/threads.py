"""Framework threads on the CPU: the environment that sets them, and what a backend computes with.

One place for what ``--threads N`` means to every framework: the environment a worker starts with
(``bench`` and ``check`` workers alike). What a framework sets at run time (torch's
``set_num_threads``) and how many threads it computes with are the ``Backend.set_threads`` and
``Backend.threads_in_use`` hooks, in the worker; this module imports no framework.

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
