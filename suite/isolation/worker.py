"""The worker process: the only place where backend, framework and plugin code runs.

Started by :class:`softmaxbench.suite.isolation.channel.Worker` as
``python -m softmaxbench.suite.isolation.worker FD PARENT_PID``; FD is its end of the channel.
It first makes the kernel kill it when the parent dies, ignores Ctrl-C (the parent decides what
an interrupt means), enables faulthandler (a fatal signal's stack goes to the captured output),
then reads ``init`` (backend name, ``--plugin`` list, the parent's ``sys.path``), builds the
backend by name and answers ``ready`` with its description, or ``dead`` with why not.

Then it answers requests, one at a time, in order. Each request names a kind; the handler for
that kind is looked up in :data:`HANDLERS` (dotted names, imported when first asked for) and
called as ``handler(backend, header, arrays) -> (header, arrays)``. A handler that raises gives an
``error`` reply (type, one line, where) and the worker lives on. The worker judges nothing and
never sees an expected value: ``call`` returns the output's bytes and the parent judges them.

>>> sorted(HANDLERS)[:3]
['bench', 'call', 'describe']
"""

from __future__ import annotations

import faulthandler
import importlib
import itertools
import os
import signal
import sys
import time
import traceback
from typing import Any

import numpy as np

#: kind -> "module:function" of its handler (bench and hunt add theirs here).
HANDLERS: dict[str, str] = {
    "call": "softmaxbench.suite.isolation.worker:handle_call",
    "describe": "softmaxbench.suite.isolation.worker:handle_describe",
    "discover": "softmaxbench.suite.isolation.worker:handle_discover",
    "roundtrip": "softmaxbench.suite.isolation.worker:handle_roundtrip",
    "bench": "softmaxbench.suite.bench.in_worker:handle_bench",
}

_resolved: dict[str, Any] = {}


def _handler(kind: str):
    if kind not in _resolved:
        target = HANDLERS.get(kind)
        if target is None:
            raise KeyError(f"no handler for request kind {kind!r}")
        module, _, fn = target.partition(":")
        _resolved[kind] = getattr(importlib.import_module(module), fn)
    return _resolved[kind]


def one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0][:300] if msg else ""


def where_raised(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "no traceback"
    last = tb[-1]
    return f"at {last.filename}:{last.lineno} in {last.name}"


def raised_info(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": one_line(exc), "where": where_raised(exc)}


# -- describe -------------------------------------------------------------------------------------
def describe(backend, origin: str = "builtin") -> dict:
    """Everything the parent needs to know about ``backend``, each field asked for separately:
    a method that raises becomes a problem (or the unavailable reason), never a crash."""
    problems: list[str] = []

    def ask(what: str, fn, default):
        try:
            return fn()
        except BaseException as exc:  # noqa: BLE001 - hostile metadata is data
            if isinstance(exc, KeyboardInterrupt):
                raise
            problems.append(f"{what} raised {type(exc).__name__}: {one_line(exc)}")
            return default

    name = ask("name", lambda: backend.name, None)
    info: dict[str, Any] = {"name": name if isinstance(name, str) else repr(name)[:200], "origin": origin}
    info["device"] = _jsonable_str(ask("device", lambda: backend.device, None))
    # (at most 17 of each: an endless iterable is a long list, not a hang or a memory bomb)
    dtypes = ask("dtypes", lambda: list(itertools.islice(backend.dtypes, 17)), [])
    info["dtypes"] = [d if isinstance(d, str) else repr(d) for d in dtypes][:16]
    ops = ask("supported_ops()", lambda: list(itertools.islice(backend.supported_ops(), 17)), None)
    info["ops"] = [o if isinstance(o, str) else repr(o) for o in ops][:16] if ops is not None else []
    info["framework"] = _jsonable_str(ask("framework", lambda: backend.framework, ""))
    info["framework_version"] = _jsonable_str(ask("framework_version()", backend.framework_version, ""))
    skip = ask("default_check_skip", lambda: getattr(backend, "default_check_skip", None), None)
    info["default_check_skip"] = None if skip is None else _jsonable_str(skip)

    def conventions():
        from softmaxbench.backends.conventions import for_backend

        return {str(k): {"reason": _jsonable_str(v.get("reason", "")),
                         "link": _jsonable_str(v.get("link", "")), "ops": [str(o) for o in v.get("ops", ())]}
                for k, v in for_backend(backend).items()}

    info["conventions"] = ask("conventions", conventions, {})
    reason = ask("unavailable()", backend.unavailable, None)
    if ops is None:
        reason = reason or problems[-1] if problems else "supported_ops() failed"
    if any(p.startswith("unavailable()") for p in problems):
        reason = next(p for p in problems if p.startswith("unavailable()"))
    info["unavailable"] = None if reason is None else _jsonable_str(reason)
    info["problems"] = problems
    return info


def _jsonable_str(v) -> str | None:
    if v is None:
        return None
    return v[:1000] if isinstance(v, str) else repr(v)[:1000]


def handle_describe(backend, header: dict, arrays: list) -> tuple[dict, list]:
    return {"info": describe(backend)}, []


def handle_discover(backend, header: dict, arrays: list) -> tuple[dict, list]:
    """Every backend discovery finds (built-ins, entry points, the init's plugins), described.

    ``check`` (default true) asks each one's ``unavailable()``; a backend that could not be built
    is ``{"name", "origin", "unavailable", "loaded": false}``."""
    from softmaxbench.backends.registry import discover

    out = []
    only_plugins = bool(header.get("only_plugins"))
    for e in discover(tuple(_PLUGINS), check=False, entry_points=bool(header.get("entry_points", True))):
        if only_plugins and not e.origin.startswith("plugin:"):
            continue
        if e.backend is None:
            out.append({"name": e.name if isinstance(e.name, str) else repr(e.name), "origin": e.origin,
                        "unavailable": e.unavailable, "loaded": False})
            continue
        d = describe(e.backend, e.origin)
        if not header.get("check", True) and d.get("unavailable") is None:
            d["unavailable"] = None
        d["loaded"] = True
        out.append(d)
    return {"entries": out}, []


# -- call -------------------------------------------------------------------------------------------
def _decode_args(header: dict, arrays: list):
    """Positional and keyword arguments of a call, with each array argument rebuilt (a view
    on its own writable copy of the buffer it views)."""
    from softmaxbench.suite.isolation.channel import view_from

    def dec(item):
        if not isinstance(item, dict):
            raise ValueError("bad argument encoding")
        if "a" in item:
            buf = arrays[item["a"]]
            return view_from(buf, item["view"]) if "view" in item else buf
        return item.get("v")

    args = [dec(a) for a in header.get("args", [])]
    kwargs = {k: dec(v) for k, v in (header.get("kwargs") or {}).items()}
    return args, kwargs


def _sent_inputs(header: dict, arrays: list) -> list:
    """The array arguments as the parent sent them (read-only), in argument order."""
    from softmaxbench.suite.isolation.channel import view_from

    items = [a for a in header.get("args", [])] + list((header.get("kwargs") or {}).values())
    return [view_from(arrays[i["a"]], i["view"]) if "view" in i else arrays[i["a"]]
            for i in items if isinstance(i, dict) and "a" in i]


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.size:
        return True
    return bool(np.array_equal(np.ascontiguousarray(a).reshape(-1).view(np.uint8),
                               np.ascontiguousarray(b).reshape(-1).view(np.uint8)))


def handle_call(backend, header: dict, arrays: list) -> tuple[dict, list]:
    """asarray every array argument, call the op, synchronize, to_numpy: the output's bytes.

    NotImplementedError -> status "unsupported"; any other exception -> "raised" (type, one
    line, where). The inputs the backend now holds come back only where their bits changed
    (``after``: to_numpy of the native argument; ``np_after``: the NumPy array the adapter was
    given; ``roundtrip``: a fresh to_numpy(asarray(original)) for telling the adapter's round
    trip apart from an in-place write); the parent judges them against its own copies."""
    op = header["op"]
    copies = [np.array(a, copy=True) for a in arrays]      # writable buffers the backend gets
    args, kwargs = _decode_args(header, copies)
    sent = _sent_inputs(header, arrays)
    given = [v for v in [*args, *kwargs.values()] if isinstance(v, np.ndarray)]
    names = list(header.get("names") or [])
    by_id = {id(a): i for i, a in enumerate(given)}
    t0 = time.perf_counter()
    native_of: dict[int, Any] = {}
    try:
        def nat(v):
            if isinstance(v, np.ndarray):
                n = backend.asarray(v)
                native_of[by_id[id(v)]] = n
                return n
            return v

        native_args = [nat(a) for a in args]
        native_kwargs = {k: nat(v) for k, v in kwargs.items()}
        out = getattr(backend, op)(*native_args, **native_kwargs)
        backend.synchronize()
        actual = np.asarray(backend.to_numpy(out))
    except NotImplementedError as exc:
        return {"status": "unsupported", "message": f"{op} raised NotImplementedError"
                f"{': ' + one_line(exc) if one_line(exc) else ''}"}, []
    except Exception as exc:  # noqa: BLE001 - whatever the backend raises is data
        return {"status": "raised", "raised": raised_info(exc),
                "reported_s": time.perf_counter() - t0}, []
    took = time.perf_counter() - t0
    from softmaxbench.suite.isolation.channel import ProtocolError, dtype_of

    try:
        dtype_of(actual)
    except ProtocolError:
        return {"status": "untransportable", "reported_s": took,
                "message": f"{op} returned an array of dtype {actual.dtype} and shape "
                           f"{list(actual.shape)}"}, []
    reply_arrays = [actual]
    reply: dict[str, Any] = {"status": "output", "output": 0, "reported_s": took,
                             "after": {}, "np_after": {}, "roundtrip": {}}
    for i, orig in enumerate(sent):
        name = names[i] if i < len(names) else f"arg{i}"
        if name not in ("x", "cotangent", "target", "weight"):
            continue
        if not _same_bits(given[i], orig):
            reply["np_after"][name] = len(reply_arrays)
            reply_arrays.append(given[i])
        if i in native_of:
            try:
                now = np.asarray(backend.to_numpy(native_of[i]))
            except Exception:  # noqa: BLE001 - an input that cannot be read back is left to the judge
                continue
            if not _same_bits(now, orig):
                reply["after"][name] = len(reply_arrays)
                reply_arrays.append(now)
                try:
                    fresh = np.array(orig, copy=True)
                    again = np.asarray(backend.to_numpy(backend.asarray(fresh)))
                    reply["roundtrip"][name] = len(reply_arrays)
                    reply_arrays.append(again)
                except Exception:  # noqa: BLE001
                    pass
    return reply, reply_arrays


def handle_roundtrip(backend, header: dict, arrays: list) -> tuple[dict, list]:
    """to_numpy(asarray(a)) of every array (the adapter's data movement on its own)."""
    return {}, [np.asarray(backend.to_numpy(backend.asarray(np.array(a, copy=True)))) for a in arrays]


# -- the process ---------------------------------------------------------------------------------
_PLUGINS: list[str] = []


def _die_with_parent(parent_pid: int) -> None:
    """Linux: have the kernel SIGKILL this worker when the parent dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _build(name: str, plugins: list[str]):
    from softmaxbench.backends.registry import BUILTINS, builtin, discover

    if name in BUILTINS:
        return builtin(name), "builtin"
    for e in discover(tuple(plugins), check=False):
        if e.name == name and e.backend is not None:
            return e.backend, e.origin
    for e in discover(tuple(plugins), check=False):
        if e.name == name:
            raise LookupError(f"backend {name!r} cannot be used: {e.unavailable}")
    raise LookupError(f"no backend named {name!r} was discovered in the worker")


def main(argv: list[str]) -> None:
    from multiprocessing.connection import Connection

    from softmaxbench.suite.isolation.channel import recv, send

    fd, parent_pid = int(argv[0]), int(argv[1])
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable(file=sys.stderr, all_threads=False)
    conn = Connection(fd)
    try:
        init, _ = recv(conn)
    except (EOFError, OSError):
        return
    seq = init.get("seq", 0)
    for p in reversed(init.get("sys_path") or []):
        if isinstance(p, str) and p not in sys.path:
            sys.path.insert(1, p)
    _PLUGINS[:] = [str(p) for p in init.get("plugins") or []]
    name = init.get("backend")
    from softmaxbench.backends.registry import BUILTINS

    if name is None or name not in BUILTINS:  # third-party code runs next: confine it first
        from softmaxbench.suite.isolation.sandbox import confine

        confine(os.getcwd(), _PLUGINS)
    backend = None
    if name is not None:
        try:
            backend, origin = _build(name, _PLUGINS)
            info = describe(backend, origin)
            if info.get("unavailable"):
                send(conn, {"kind": "dead", "seq": seq,
                            "message": f"{name} is unavailable in the worker: {info['unavailable']}"})
                return
            if not info["ops"] and info["problems"]:
                send(conn, {"kind": "dead", "seq": seq, "message": "; ".join(info["problems"])[:600]})
                return
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            if isinstance(exc, KeyboardInterrupt):
                raise
            send(conn, {"kind": "dead", "seq": seq,
                        "message": f"could not load backend {name!r} in the worker: "
                                   f"{type(exc).__name__}: {one_line(exc)}"})
            return
    else:
        info = {"name": None}
    send(conn, {"kind": "ready", "seq": seq, "pid": os.getpid(), "info": info})
    while True:
        try:
            header, arrays = recv(conn)
        except (EOFError, OSError):
            return
        kind, seq = header.get("kind"), header.get("seq")
        if kind == "stop":
            return
        try:
            out_header, out_arrays = _handler(kind)(backend, header, arrays)
            send(conn, {**out_header, "kind": "reply", "seq": seq}, out_arrays)
        except Exception as exc:  # noqa: BLE001 - a handler's failure is the parent's to report
            send(conn, {"kind": "error", "seq": seq, "raised": raised_info(exc)})


if __name__ == "__main__":
    # Run as the importable module, not as __main__: the handlers (looked up by dotted name) must
    # see the same module state (_PLUGINS) as this entry point.
    from softmaxbench.suite.isolation.worker import main as _main

    _main(sys.argv[1:])
