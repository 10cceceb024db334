"""Session-wide test settings.

One cache directory for the whole session (``XDG_CACHE_HOME``), empty at its start: every test
and every ``softmaxbench`` subprocess a test starts share the discovery cache and JAX's compilation
cache, as one user's runs do, and nothing from earlier runs (``~/.cache/softmaxbench/found`` cases
saved by a developer's ``hunt``, a stale discovery answer) leaks in. A local run then starts as
cold as CI on a fresh runner. Tests of the caches themselves point ``XDG_CACHE_HOME`` at their own
``tmp_path``. ``SOFTMAXBENCH_TEST_CACHE=DIR`` keeps the session's cache in DIR instead (it then
survives the session: a warm rerun, never what CI measures).
"""

from __future__ import annotations

import os
import tempfile


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # a pytest-xdist worker (addopts: -n 2)
        # pytest-benchmark turns itself off in any process that has PYTEST_XDIST_WORKER set, and
        # every process a test starts (the bench's worker, which runs pytest-benchmark) inherits
        # it: the tests' processes must see the environment a user's run has.
        os.environ.pop("PYTEST_XDIST_WORKER", None)
    keep = os.environ.get("SOFTMAXBENCH_TEST_CACHE")
    if keep:
        os.makedirs(keep, exist_ok=True)
        cache = os.path.abspath(keep)
    else:
        cache = tempfile.mkdtemp(prefix="softmaxbench-test-cache-")
        config.add_cleanup(lambda: _remove(cache))
    config._softmaxbench_saved_cache = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = cache


def pytest_unconfigure(config):
    saved = getattr(config, "_softmaxbench_saved_cache", None)
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


def _remove(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
