"""Backend discovery: the built-ins, the ``softmaxbench.backends`` entry points and ``--plugin``.

Built-ins are registered lazily by name (``"name" -> "module:Class"``): nothing is imported until
a backend is asked for, and no adapter imports its framework before it is used. Third parties
register in either of two ways; both name a module whose ``backends()`` returns Backend instances:

- an entry point in the group ``softmaxbench.backends`` of their distribution's metadata, e.g. in
  pyproject.toml ``[project.entry-points."softmaxbench.backends"] my-kernel = "my_kernel"``
  (the value may also name the function itself: ``"my_kernel:backends"``);
- ``--plugin my_kernel.py`` (a file) or ``--plugin my_kernel`` (an importable module).

Discovery never stops a run: a plugin that fails to import, returns something that is not a
Backend, or reuses a taken name becomes an :class:`Entry` with ``backend=None`` (or a backend
marked unavailable) and the reason, and a one-line warning is logged. Results are cached per
plugin list; :func:`clear_cache` forgets them.

>>> [e.name for e in discover()][:3]
['numpy', 'scipy', 'torch-cpu']
>>> get("numpy").name
'numpy'
>>> get("nmupy")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
LookupError: unknown backend 'nmupy' (did you mean numpy...); known: numpy, scipy, ...
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import itertools
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from softmaxbench.backends.base import Backend
from softmaxbench.reference.dtypes import DTYPES

log = logging.getLogger("softmaxbench.backends")

ENTRY_POINT_GROUP = "softmaxbench.backends"

#: The built-in backends, in the order ``softmaxbench list`` shows them.
BUILTINS: dict[str, str] = {
    "numpy": "softmaxbench.backends.numpy_backend:NumPyBackend",
    "scipy": "softmaxbench.backends.scipy_backend:SciPyBackend",
    "torch-cpu": "softmaxbench.backends.torch_backend:TorchCPU",
    "torch-compile": "softmaxbench.backends.torch_compile:TorchCompileCPU",
    "jax-cpu": "softmaxbench.backends.jax_backend:JaxCPU",
    "torch-cuda": "softmaxbench.backends.torch_backend:TorchCUDA",
    "torch-compile-cuda": "softmaxbench.backends.torch_compile:TorchCompileCUDA",
    "jax-gpu": "softmaxbench.backends.jax_backend:JaxGPU",
    "cupy": "softmaxbench.backends.cupy_backend:CuPyBackend",
    "cupy-fused": "softmaxbench.backends.cupy_fused:CuPyFused",
}


@dataclass
class Entry:
    """One discovered backend. ``backend`` is None when it could not even be built; ``unavailable``
    says why it cannot run here (None: it can); ``origin`` is "builtin", "entry-point" or
    "plugin:<path or module>"."""

    name: str
    backend: Backend | None
    unavailable: str | None
    origin: str


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _load_object(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


@cache
def builtin(name: str) -> Backend:
    """The built-in backend ``name`` (one instance per process); KeyError if there is none."""
    return _load_object(BUILTINS[name])()


def _problem(backend: Any) -> str | None:
    """What makes ``backend`` unusable as a Backend (None when it is fine)."""
    if not isinstance(backend, Backend):
        return f"returned {type(backend).__name__} {backend!r:.60}, not a softmaxbench Backend instance"
    if not isinstance(backend.name, str) or not backend.name or backend.name == Backend.name:
        return "has no name (set the class attribute `name`)"
    if backend.device not in ("cpu", "gpu"):
        return f"device must be 'cpu' or 'gpu', not {backend.device!r}"
    # (17 at most: an endless iterable is one long wrong list, never a hang or a memory bomb)
    unknown = [d for d in itertools.islice(backend.dtypes, 17) if d not in DTYPES]
    if unknown:
        return f"unknown dtypes {unknown} (choose from {', '.join(DTYPES)})"
    return None


def _availability(backend: Backend) -> str | None:
    try:
        reason = backend.unavailable()
    except Exception as exc:  # a plugin's check must not stop discovery
        return f"unavailable() raised {_one_line(exc)}"
    return None if reason is None else str(reason)


def _plugin_module(spec: str) -> Any:
    """Import ``spec``: a .py file (loaded under a private module name) or a dotted module name."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"no such plugin file: {spec}")
        resolved = path.resolve()
        digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
        module_name = f"softmaxbench_plugin_{resolved.stem}_{digest}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        module_spec = importlib.util.spec_from_file_location(module_name, resolved)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module  # registered first: dataclasses and pickling look it up
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module
    return importlib.import_module(spec)


def _instances(provider: Any) -> list[Any]:
    """Backends from a plugin: a module with ``backends()``, that function, a Backend subclass or
    instance, or an iterable of instances."""
    if isinstance(provider, Backend):
        return [provider]
    if isinstance(provider, type) and issubclass(provider, Backend):
        return [provider()]
    if hasattr(provider, "backends") and not isinstance(provider, type):
        provider = provider.backends
    elif isinstance(provider, type(sys)):
        raise TypeError(f"module {provider.__name__} has no backends() function")
    produced = provider() if callable(provider) else provider
    if isinstance(produced, Backend | str | bytes) or not isinstance(produced, Iterable):
        produced = [produced]
    return list(produced)


def _from_plugin(label: str, origin: str, load) -> list[Entry]:
    """Entries of one plugin; any failure becomes an Entry that says why."""
    try:
        found = _instances(load())
    except BaseException as exc:  # SystemExit or KeyboardInterrupt in a plugin's import included
        if isinstance(exc, KeyboardInterrupt):
            raise
        reason = f"plugin failed to load: {_one_line(exc)}"
        log.warning("softmaxbench: %s (%s): %s", label, origin, reason)
        return [Entry(label, None, reason, origin)]
    entries = []
    for i, backend in enumerate(found):
        problem = _problem(backend)
        if problem:
            name = backend.name if isinstance(backend, Backend) and isinstance(backend.name, str) \
                and backend.name and backend.name != Backend.name else f"{label}[{i}]"
            log.warning("softmaxbench: %s (%s) %s", name, origin, problem)
            entries.append(Entry(name, None, f"plugin {problem}", origin))
        else:
            entries.append(Entry(backend.name, backend, None, origin))
    return entries


def _entry_point_entries() -> list[Entry]:
    entries = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        origin = f"entry-point:{dist.name}" if dist is not None else "entry-point"
        entries.extend(_from_plugin(ep.name, origin, ep.load))
    return entries


@cache
def _discover(plugins: tuple[str, ...], entry_points: bool = True) -> tuple[Entry, ...]:
    entries: list[Entry] = []
    for name in BUILTINS:
        try:
            entries.append(Entry(name, builtin(name), None, "builtin"))
        except Exception as exc:  # a broken install of our own adapter must not stop the others
            entries.append(Entry(name, None, f"failed to load: {_one_line(exc)}", "builtin"))
    if entry_points:
        entries.extend(_entry_point_entries())
    for spec in plugins:
        label = Path(spec).name if spec.endswith(".py") else spec  # names a broken plugin's entry
        entries.extend(_from_plugin(label, f"plugin:{spec}", lambda spec=spec: _plugin_module(spec)))
    owners: dict[str, str] = {}
    for e in entries:
        if e.name in owners:
            e.unavailable = f"duplicate name: {e.name!r} is already provided by {owners[e.name]}"
            e.backend = None
            log.warning("softmaxbench: backend %r from %s ignored: %s", e.name, e.origin, e.unavailable)
        else:
            owners[e.name] = e.origin
    return tuple(entries)


# unavailable() may import a framework: ask each backend once per process (keyed by identity;
# the backends themselves stay alive in _discover's cache).
_AVAILABILITY: dict[int, str | None] = {}


def availability(backend: Backend) -> str | None:
    """``backend.unavailable()``, asked once per process; an exception becomes the reason."""
    key = id(backend)
    if key not in _AVAILABILITY:
        _AVAILABILITY[key] = _availability(backend)
    return _AVAILABILITY[key]


def discover(plugins: Iterable[str] = (), *, check: bool = True, entry_points: bool = True) -> list[Entry]:
    """Every backend: built-ins, entry points, then ``plugins`` (files or module names), in order.

    ``check=False`` skips asking each backend's ``unavailable()`` (which may import its
    framework): ``Entry.unavailable`` is then set only where loading itself failed.
    ``entry_points=False`` leaves the installed entry points out. This imports backend code: it
    runs in worker processes (the trusted process asks ``suite.isolation.discovery``).
    """
    entries = _discover(tuple(plugins), entry_points)
    if not check:
        return list(entries)
    return [Entry(e.name, e.backend, availability(e.backend) if e.backend is not None else e.unavailable,
                  e.origin) for e in entries]


def names(plugins: Iterable[str] = ()) -> list[str]:
    """Names of every discovered backend (without checking availability)."""
    return [e.name for e in discover(plugins, check=False)]


def get(name: str, plugins: Iterable[str] = ()) -> Backend:
    """The backend called ``name``. It may still be unavailable here: ask ``.unavailable()``.

    Raises LookupError with one line when no backend has that name or it failed to load.
    """
    if name in BUILTINS:
        try:
            return builtin(name)
        except Exception as exc:
            raise LookupError(f"backend {name!r} failed to load: {_one_line(exc)}") from None
    entries = discover(plugins, check=False)
    for e in entries:
        if e.name == name and e.backend is not None:
            return e.backend
    for e in entries:
        if e.name == name:
            raise LookupError(f"backend {name!r} cannot be used: {e.unavailable}")
    known = [e.name for e in entries if e.backend is not None]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise LookupError(f"unknown backend {name!r}{hint}; known: {', '.join(known)}")


def clear_cache() -> None:
    """Forget discovered backends (after installing a plugin, say)."""
    _discover.cache_clear()
    builtin.cache_clear()
    _AVAILABILITY.clear()
