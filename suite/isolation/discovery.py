"""Discovery as data: which backends exist here, asked of worker processes, cached per environment.

The trusted process never imports an adapter, a framework or a plugin, not even to list them.
It starts discovery workers instead, in parallel: one for the built-ins and the installed entry
points, one per ``--plugin``. Each answers with a description of every backend it found
(:class:`~softmaxbench.suite.isolation.channel.BackendInfo`, validated here). A plugin that
prints, raises, hangs, ``os._exit``-s or segfaults at import costs only its own worker: it
becomes one ``unavailable`` entry saying what happened. A backend that reuses a taken name is
refused (the first owner, a built-in first of all, keeps it).

The answer is cached per environment in ``$XDG_CACHE_HOME/softmaxbench/discovery/`` under a key
made of the Python executable and version, the distributions installed on ``sys.path`` (their
``*.dist-info`` names carry the versions), the mtimes and sizes of softmaxbench's own adapter
files and of every ``--plugin`` file, and the environment variables that decide device
availability. Plugins named as modules (not files) are never cached.
``SOFTMAXBENCH_NO_DISCOVERY_CACHE=1`` turns the cache off.

>>> infos = discover()
>>> infos[0].name, infos[0].origin
('numpy', 'builtin')
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from softmaxbench.suite.isolation.channel import BackendInfo, Worker, WorkerLost, WorkerRefused, clean_text

#: How long one discovery worker may take (import its plugin, describe its backends).
DISCOVERY_TIMEOUT_S = float(os.environ.get("SOFTMAXBENCH_DISCOVERY_TIMEOUT", "60"))
#: Environment variables that change what is available (the cache key includes them).
_ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", "JAX_ENABLE_X64", "NVIDIA_VISIBLE_DEVICES",
             "SOFTMAXBENCH_NO_GPU", "PATH", "LD_LIBRARY_PATH")
CACHE_VERSION = 1


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "softmaxbench" / "discovery"


def _plugin_file(spec: str) -> Path | None:
    p = Path(spec)
    return p.resolve() if (spec.endswith(".py") or p.is_file()) and p.is_file() else None


def cache_key(plugins: Sequence[str]) -> str | None:
    """The environment's key (None: not cacheable, a plugin is a module name)."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{sys.executable}|{sys.version}|".encode())
    for entry in sys.path:
        d = Path(entry or ".")
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith((".dist-info", ".egg-info", ".pth",
                                                                   ".egg-link")))
        except OSError:
            continue
        h.update(f"{d.resolve()}:{','.join(names)}|".encode())
    import importlib.util

    for sub in ("softmaxbench.backends", "softmaxbench.reference", "softmaxbench.suite.isolation"):
        spec = importlib.util.find_spec(sub)  # imports only the softmaxbench package itself
        for loc in (spec.submodule_search_locations or []) if spec else []:
            for f in sorted(Path(loc).glob("*")):
                if f.suffix not in (".py", ".toml", ".cu", ".json"):
                    continue
                try:
                    st = f.stat()
                except OSError:
                    continue
                h.update(f"{f}:{st.st_mtime_ns}:{st.st_size}|".encode())
    for spec in plugins:
        f = _plugin_file(spec)
        if f is None:
            return None
        st = f.stat()
        h.update(f"plugin:{f}:{st.st_mtime_ns}:{st.st_size}|".encode())
    for k in _ENV_KEYS:
        h.update(f"{k}={os.environ.get(k, '')}|".encode())
    try:
        h.update(",".join(sorted(n for n in os.listdir("/dev") if n.startswith("nvidia"))).encode())
    except OSError:
        pass
    return h.hexdigest()[:32]


def _worker_env() -> dict:
    from softmaxbench.suite.isolation.threads import thread_env

    return thread_env(1)


def _ask(plugins: tuple[str, ...], entry_points: bool, out: queue.Queue, tag) -> None:
    """Run one discovery worker; put (tag, entries | None, note) in ``out``."""
    w = Worker(None, plugins=plugins, env=_worker_env())
    try:
        w.start(timeout_s=DISCOVERY_TIMEOUT_S)
        reply = w.request("discover", {"check": True, "entry_points": entry_points,
                                       "only_plugins": bool(plugins)}, [], timeout_s=DISCOVERY_TIMEOUT_S)
        entries = reply.header.get("entries")
        if not isinstance(entries, list):
            out.put((tag, None, "the discovery worker answered without a list of entries"))
        else:
            out.put((tag, entries[:256], ""))
    except WorkerLost as lost:
        what = f"no answer within {DISCOVERY_TIMEOUT_S:g} s" if lost.kind == "timeout" else lost.note
        out.put((tag, None, what))
    except WorkerRefused as refused:
        out.put((tag, None, str(refused)))
    except Exception as exc:  # noqa: BLE001 - discovery never stops a run
        out.put((tag, None, f"{type(exc).__name__}: {exc}"))
    finally:
        w.stop(timeout_s=2)


def _run_workers(plugins: tuple[str, ...]) -> list[BackendInfo]:
    from softmaxbench.reference.special import DEVIATIONS

    jobs = [("builtins", (), True)] + [(("plugin", i), (spec,), False) for i, spec in enumerate(plugins)]
    out: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=_ask, args=(p, ep, out, tag), daemon=True) for tag, p, ep in jobs]
    for t in threads:
        t.start()
    answers = {}
    for _ in jobs:
        tag, entries, note = out.get()
        answers[tag] = (entries, note)
    entries, note = answers["builtins"]
    if entries is None:  # an installed entry point broke it: built-ins alone, and say so
        t = threading.Thread(target=_ask, args=((), False, out, "retry"), daemon=True)
        t.start()
        _, entries, note2 = out.get()
        if entries is None:
            raise RuntimeError(f"backend discovery failed: {note2}")
        entries = entries + [{"name": "entry-points", "origin": "entry-point", "loaded": False,
                              "unavailable": f"the installed entry points could not be discovered: {note}"}]
    infos: list[BackendInfo] = []
    known = list(DEVIATIONS)

    def add(raw: dict, origin: str | None = None) -> None:
        if not isinstance(raw, dict):
            return
        if origin:
            raw = {**raw, "origin": origin}
        if not raw.get("loaded", True):
            name = raw.get("name")
            why = clean_text(raw.get("unavailable") or "could not be loaded", 600)
            infos.append(BackendInfo(name=clean_text(name, 64) if isinstance(name, str) else "?",
                                     unavailable=why, origin=clean_text(raw.get("origin") or "", 200),
                                     loaded=False))
            return
        infos.append(BackendInfo.from_header(raw, known_deviations=known))

    for raw in entries:
        add(raw)
    for i, spec in enumerate(plugins):
        got, note = answers[("plugin", i)]
        label = Path(spec).name if spec.endswith(".py") else spec
        if got is None:
            infos.append(BackendInfo(name=clean_text(label, 64), origin=clean_text(f"plugin:{spec}", 200),
                                     unavailable=clean_text(f"plugin failed to load: {note}", 600),
                                     loaded=False))
            continue
        for raw in got:
            add(raw)
    return _refuse_duplicates(infos)


def _refuse_duplicates(infos: list[BackendInfo]) -> list[BackendInfo]:
    from dataclasses import replace

    owners: dict[str, str] = {}
    out = []
    for info in infos:
        if not info.loaded and (info.unavailable or "").startswith("duplicate name") and info.name in owners:
            info = replace(info, loaded=True)  # the worker's registry saw the clash too: say it our way
        if info.loaded and info.name in owners:
            first = owners[info.name]
            why = (f"refused: {info.name!r} is the name of a built-in backend (the built-in is used)"
                   if first == "builtin"
                   else f"refused: duplicate name {info.name!r}, already provided by {first}")
            out.append(replace(info, unavailable=why, loaded=False))
            continue
        if info.loaded:
            owners[info.name] = info.origin
        out.append(info)
    return out


def discover(plugins: Sequence[str] = (), *, use_cache: bool = True,
             refresh: bool = False) -> list[BackendInfo]:
    """Every backend here (built-ins, entry points, ``plugins``), as validated data.

    Never imports backend code in this process; never raises for what a plugin does (it becomes
    an unavailable entry); a plugin file is resolved to an absolute path first."""
    plugins = tuple(str(_plugin_file(p) or p) for p in plugins)
    key = cache_key(plugins) if use_cache and not os.environ.get("SOFTMAXBENCH_NO_DISCOVERY_CACHE") else None
    path = _cache_dir() / f"{key}.json" if key else None
    if path is not None and path.is_file() and not refresh:  # refresh: ask the workers, rewrite the cache
        try:
            data = json.loads(path.read_text())
            return [BackendInfo.from_header(d) for d in data["backends"]]  # validated again
        except (OSError, ValueError, KeyError, TypeError):
            pass
    infos = _run_workers(plugins)
    # A discovery worker that ran out of time (a loaded machine) is not a fact about this
    # environment: caching it would keep that plugin unavailable until its file changes.
    if any(not i.loaded and "no answer within" in (i.unavailable or "") for i in infos):
        path = None
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"created": time.time(), "plugins": list(plugins),
                                       "backends": [i.as_dict() for i in infos]}))
            os.replace(tmp, path)
        except OSError:
            pass
    return infos
