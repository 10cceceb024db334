"""The one channel between the trusted process and a worker: typed messages, JSON + raw bytes.

The code under test (any backend: built-in, entry point or ``--plugin``) runs only in worker
processes. This module is the trusted side's handle on one of them (:class:`Worker`) and the
framing both sides speak. Nothing a worker sends is ever unpickled: unpickling is code execution,
and the worker is the party being judged. A message is

1. one frame holding a JSON object (at most :data:`HEADER_MAX` bytes), with ``"arrays"``: a list
   of ``{"dtype", "shape", "nbytes"}`` descriptions, dtypes from :data:`ARRAY_DTYPES`;
2. one raw frame per described array: its C-order bytes, exactly ``nbytes`` long, and ``nbytes``
   equal to ``prod(shape) * itemsize``.

Frames are ``Connection.send_bytes`` / ``recv_bytes`` with a size cap on every receive, so an
oversized, mis-sized or garbled frame is a :class:`ProtocolError` (the worker is then killed and
its case recorded as ``crash``), never an allocation the worker chose or an object it built.

The worker process is a fresh interpreter (``python -m softmaxbench.suite.isolation.worker``, the
``spawn`` start method without its pickled bootstrap) that leads its own session and process
group, so :meth:`Worker.kill` ends the plugin's own child processes too. It runs in a private
temporary working directory, with stdin from /dev/null and stdout/stderr into a pipe that the
parent copies into a log file with a size cap (never the user's terminal, so a child that
outlives it cannot hold a CI step's output open). The kernel kills it when the parent dies
(``PR_SET_PDEATHSIG``). Every timeout is measured by the parent's own clock.

>>> import numpy as np
>>> header, arrays = decode(*encode({"kind": "demo", "n": 1}, [np.arange(3.0)]))
>>> header["kind"], arrays[0].tolist()
('demo', [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import TYPE_CHECKING, Any

from softmaxbench.vocabulary import DTYPES, OPS

if TYPE_CHECKING:
    import numpy as np

#: Largest JSON header either side accepts (bytes).
HEADER_MAX = 1 << 20
#: Most arrays one message may carry.
MAX_ARRAYS = 32
#: Most dimensions of one array.
MAX_NDIM = 32
#: Default cap on the array bytes of one message from a worker (the parent sets it per Worker).
MAX_MESSAGE_BYTES = 8 << 30
#: Requests whose reply is bounded by the elements they sent: a call's output (at most 8 bytes an
#: element of its largest argument, whatever dtype or shape it wrongly has) and up to three
#: copies of each changed input (``after``, ``np_after``, ``roundtrip``), each at most 8 bytes an
#: element; a roundtrip's arrays likewise. A reply beyond that is a protocol violation (``crash``),
#: so a worker cannot make the trusted process hold gigabytes per answer to a small case.
REPLY_SCALED = ("call", "roundtrip")
REPLY_BYTES_PER_ELEMENT = 32
REPLY_SLACK_BYTES = 1 << 20
#: How much of a worker's stdout/stderr is kept in its log file.
LOG_CAP_BYTES = 1 << 20
#: How much of the latest output is kept in memory for death notes.
LOG_TAIL_BYTES = 16 << 10

#: The dtypes an array on the channel may have (names as dtype_name() spells them).
ARRAY_DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64", "int64", "bool")


@cache
def _np_dtypes() -> dict:
    """name -> numpy dtype (imported when the first array travels: ``list`` needs none)."""
    import ml_dtypes
    import numpy as np

    return {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16),
            "float32": np.dtype(np.float32), "float64": np.dtype(np.float64),
            "int64": np.dtype(np.int64), "bool": np.dtype(np.bool_)}


@cache
def _dtype_names() -> dict:
    return {dt: name for name, dt in _np_dtypes().items()}

#: Cap on any string a worker reports (names have their own, tighter rule).
TEXT_CAP = 300
#: What a backend name may look like (it names files and table rows).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


class ProtocolError(Exception):
    """A frame that breaks the framing rules (size, dtype, shape, JSON): the sender is not trusted
    further."""


# -- framing ------------------------------------------------------------------------------------
def dtype_of(a: np.ndarray) -> str:
    """The channel name of ``a``'s dtype (ProtocolError outside :data:`ARRAY_DTYPES`)."""
    name = _dtype_names().get(a.dtype)
    if name is None:
        raise ProtocolError(f"an array of dtype {a.dtype} cannot travel on the channel "
                            f"(allowed: {', '.join(ARRAY_DTYPES)})")
    return name


def encode(header: dict, arrays: Sequence[np.ndarray] = ()) -> tuple[bytes, list]:
    """The frames of one message: the JSON header bytes and one bytes-like per array."""
    if len(arrays) > MAX_ARRAYS:
        raise ProtocolError(f"{len(arrays)} arrays in one message (at most {MAX_ARRAYS})")
    import numpy as np

    flat, desc = [], []
    for a in arrays:
        a = np.asarray(a)
        name = dtype_of(a)
        c = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
        desc.append({"dtype": name, "shape": [int(n) for n in c.shape], "nbytes": int(c.nbytes)})
        flat.append(c.reshape(-1).view(np.uint8) if c.size else b"")
    head = json.dumps({**header, "arrays": desc}, separators=(",", ":")).encode()
    if len(head) > HEADER_MAX:
        raise ProtocolError(f"header of {len(head)} bytes (at most {HEADER_MAX})")
    return head, flat


def send(conn: Connection, header: dict, arrays: Sequence[np.ndarray] = ()) -> None:
    """Send one message (header frame, then one frame per array)."""
    head, flat = encode(header, arrays)
    conn.send_bytes(head)
    for buf in flat:
        conn.send_bytes(buf)


def _parse_header(raw: bytes) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # (a deeply nested frame)
        raise ProtocolError(f"the header is not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"the header is a JSON {type(header).__name__}, not an object")
    desc = header.get("arrays", [])
    if not isinstance(desc, list) or len(desc) > MAX_ARRAYS:
        raise ProtocolError("the header's 'arrays' is not a list of at most "
                            f"{MAX_ARRAYS} array descriptions")
    for d in desc:
        if not isinstance(d, dict) or set(d) != {"dtype", "shape", "nbytes"}:
            raise ProtocolError("an array description is not {dtype, shape, nbytes}")
        if d["dtype"] not in ARRAY_DTYPES:
            raise ProtocolError(f"array dtype {str(d['dtype'])[:40]!r} is not allowed "
                                f"(allowed: {', '.join(ARRAY_DTYPES)})")
        shape, nbytes = d["shape"], d["nbytes"]
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(type(n) is int and 0 <= n < 2**48 for n in shape)
                or math.prod(max(n, 1) for n in shape) >= 2**48):  # (NumPy refuses [0, 2**47, 2**47])
            raise ProtocolError(f"array shape {str(shape)[:60]} is not a list of at most "
                                f"{MAX_NDIM} non-negative ints of a possible size")
        if type(nbytes) is not int or nbytes != math.prod(shape) * _np_dtypes()[d["dtype"]].itemsize:
            raise ProtocolError(f"array nbytes {str(nbytes)[:30]} does not match shape {shape} and "
                                f"dtype {d['dtype']}")
    return header


def decode(head: bytes, frames: Sequence[bytes]) -> tuple[dict, list[np.ndarray]]:
    """Header and arrays from already received frames (what :func:`recv` does after reading)."""
    header = _parse_header(bytes(head))
    desc = header.pop("arrays", [])
    if len(frames) != len(desc):
        raise ProtocolError(f"{len(frames)} array frames for {len(desc)} descriptions")
    return header, [_array(d, bytes(f)) for d, f in zip(desc, frames)]


def _array(d: dict, buf: bytes) -> np.ndarray:
    if len(buf) != d["nbytes"]:
        raise ProtocolError(f"an array frame of {len(buf)} bytes where {d['nbytes']} were announced")
    import numpy as np

    try:
        return np.frombuffer(buf, dtype=_np_dtypes()[d["dtype"]]).reshape(d["shape"])
    except ValueError as exc:
        raise ProtocolError(f"an array of shape {str(d['shape'])[:60]} cannot be built: "
                            f"{str(exc)[:80]}") from None


def recv(conn: Connection, *, max_bytes=MAX_MESSAGE_BYTES) -> tuple[dict, list[np.ndarray]]:
    """Receive one message; ProtocolError for anything outside the rules, EOFError at the end.

    ``max_bytes``: the cap on its array bytes, or a function giving it once the header is in
    (the cap of the request the message answers, which may be posted while this waits)."""
    raw = _recv_frame(conn, HEADER_MAX, "header")
    header = _parse_header(raw)
    desc = header.pop("arrays", [])
    total = sum(d["nbytes"] for d in desc)
    if callable(max_bytes):
        max_bytes = max_bytes()
    if total > max_bytes:
        raise ProtocolError(f"a message of {total} array bytes (at most {max_bytes})")
    return header, [_array(d, _recv_frame(conn, d["nbytes"], "array")) for d in desc]


def _recv_frame(conn: Connection, cap: int, what: str) -> bytes:
    try:
        return conn.recv_bytes(max(cap, 1))
    except EOFError:
        raise
    except OSError as exc:
        if "bad message length" in str(exc):
            raise ProtocolError(f"an {what} frame over its cap of {cap} bytes") from None
        raise EOFError(str(exc)) from None


# -- safe text ------------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(value: Any, cap: int = TEXT_CAP) -> str:
    """``value`` as one printable line: control characters (escape codes included) escaped as
    ``\\xNN``/``\\uNNNN``, at most ``cap`` characters (an ellipsis marks a cut)."""
    text = value if isinstance(value, str) else repr(value)
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return text if len(text) <= cap else text[: cap - 3] + "..."


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a backend name (None when it can)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return (f"invalid backend name {clean_text(name, 80)!r}: names are 1-64 characters of "
                "letters, digits and ._+- (starting with a letter or digit)")
    return None


# -- typed messages -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackendInfo:
    """What a worker says about its backend, validated by the parent (see :meth:`from_header`)."""

    name: str
    device: str = "cpu"
    dtypes: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    framework: str = ""
    framework_version: str = ""
    conventions: dict = field(default_factory=dict)   # name -> {"reason", "link", "ops"}
    default_check_skip: str | None = None
    unavailable: str | None = None
    origin: str = "builtin"
    problems: tuple[str, ...] = ()                     # metadata that could not be read
    loaded: bool = True                                # False: could not even be built

    def supported_ops(self) -> tuple[str, ...]:
        """The ops the backend declares (the Backend protocol's spelling, for shared helpers)."""
        return self.ops

    @classmethod
    def from_header(cls, h: dict, *, known_deviations: Sequence[str] | None = None) -> BackendInfo:
        """Validate a worker's description: every string escaped and capped, dtypes and ops
        from the vocabulary, anything malformed becomes a problem or the unavailable reason."""
        problems = [clean_text(p) for p in h.get("problems", []) if isinstance(h.get("problems"), list)][:8]
        raw_name = h.get("name")
        bad_name = name_problem(raw_name)
        name = raw_name if bad_name is None else clean_text(raw_name, 40)
        device = h.get("device")
        unavailable = h.get("unavailable")
        unavailable = None if unavailable is None else clean_text(unavailable)
        if device not in ("cpu", "gpu"):
            unavailable = unavailable or f"device must be 'cpu' or 'gpu', not {clean_text(device, 40)!r}"
            device = "cpu"
        dtypes, ops = h.get("dtypes"), h.get("ops")
        if not isinstance(dtypes, list) or not all(d in DTYPES for d in dtypes):
            unavailable = unavailable or (f"unknown dtypes {clean_text(dtypes, 80)} "
                                          f"(choose from {', '.join(DTYPES)})")
            dtypes = []
        if not isinstance(ops, list) or not all(o in OPS for o in ops):
            unavailable = unavailable or f"supported_ops() gave {clean_text(ops, 80)}, not op names"
            ops = []
        conventions = {}
        raw_conv = h.get("conventions")
        if isinstance(raw_conv, dict):
            for cname, info in list(raw_conv.items())[:64]:
                if not isinstance(cname, str) or (known_deviations is not None
                                                  and cname not in known_deviations):
                    continue
                info = info if isinstance(info, dict) else {}
                conv_ops = info.get("ops") if isinstance(info.get("ops"), list) else []
                conventions[cname] = {"reason": clean_text(info.get("reason", ""), 1500),
                                      "link": clean_text(info.get("link", ""), 500),
                                      "ops": tuple(o for o in conv_ops if o in OPS)}
        skip = h.get("default_check_skip")
        loaded = h.get("loaded", True) is not False
        if bad_name:
            unavailable = bad_name
        if not loaded:
            unavailable = unavailable or "could not be loaded"
        return cls(name=name, device=device, dtypes=tuple(dict.fromkeys(dtypes)),
                   ops=tuple(o for o in OPS if o in ops), framework=clean_text(h.get("framework") or "", 60),
                   framework_version=clean_text(h.get("framework_version") or "", 60),
                   conventions=conventions,
                   default_check_skip=None if skip is None else clean_text(skip),
                   unavailable=unavailable, origin=clean_text(h.get("origin") or "builtin", 200),
                   problems=tuple(problems), loaded=loaded and not bad_name)

    def as_dict(self) -> dict:
        return {"name": self.name, "device": self.device, "dtypes": list(self.dtypes),
                "ops": list(self.ops), "framework": self.framework,
                "framework_version": self.framework_version,
                "conventions": {k: {**v, "ops": list(v["ops"])} for k, v in self.conventions.items()},
                "default_check_skip": self.default_check_skip, "unavailable": self.unavailable,
                "origin": self.origin, "problems": list(self.problems), "loaded": self.loaded}


@dataclass(frozen=True)
class Raised:
    """An exception the backend raised: its type, one line of message, where."""

    type: str
    message: str
    where: str

    @classmethod
    def from_header(cls, h: Any) -> Raised:
        h = h if isinstance(h, dict) else {}
        return cls(clean_text(h.get("type", "Exception"), 80), clean_text(h.get("message", "")),
                   clean_text(h.get("where", ""), 200))

    def one_line(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


@dataclass
class CallResult:
    """The outcome of one op call: exactly one of ``output`` (status "output"), ``raised``
    ("raised") or neither ("unsupported": NotImplementedError; "untransportable": an output of a
    dtype the channel does not carry, such as object or complex; ``message`` says what).

    ``inputs_after`` maps an input's name to the array the backend now holds for it (``to_numpy``
    of the native argument after the call), ``inputs_np_after`` to the NumPy array the adapter
    was given, and ``roundtrip`` to ``to_numpy(asarray(original))`` made afresh: present only for
    inputs whose bits differ from what was sent, so the judge can tell an in-place write from an
    adapter whose asarray/to_numpy round trip changes the array. ``wall_s`` is the parent's clock
    around the request; ``reported_s`` the worker's own figure for the op (not trusted)."""

    status: str
    output: np.ndarray | None = None
    raised: Raised | None = None
    message: str = ""
    inputs_after: dict = field(default_factory=dict)
    inputs_np_after: dict = field(default_factory=dict)
    roundtrip: dict = field(default_factory=dict)
    reported_s: float | None = None
    wall_s: float | None = None

    @classmethod
    def from_reply(cls, header: dict, arrays: list[np.ndarray], wall_s: float | None = None) -> CallResult:
        status = header.get("status")
        if status not in ("output", "raised", "unsupported", "untransportable"):
            raise ProtocolError(f"a call reply with status {clean_text(status, 40)!r}")

        def pick(key) -> dict:
            refs = header.get(key) or {}
            if not isinstance(refs, dict):
                raise ProtocolError(f"a call reply whose {key!r} is not an object")
            out = {}
            for name, idx in refs.items():
                if name not in ("x", "cotangent", "target", "weight") or type(idx) is not int \
                        or not 0 <= idx < len(arrays):
                    raise ProtocolError(f"a call reply with a bad {key} reference {clean_text(name, 20)!r}")
                out[name] = arrays[idx]
            return out

        output = None
        if status == "output":
            idx = header.get("output")
            if type(idx) is not int or not 0 <= idx < len(arrays):
                raise ProtocolError("a call reply with status 'output' and no output array")
            output = arrays[idx]
        reported = header.get("reported_s")
        return cls(status=status, output=output,
                   raised=Raised.from_header(header.get("raised")) if status == "raised" else None,
                   message=clean_text(header.get("message", "")), inputs_after=pick("after"),
                   inputs_np_after=pick("np_after"), roundtrip=pick("roundtrip"),
                   reported_s=float(reported) if isinstance(reported, int | float) else None,
                   wall_s=wall_s)


@dataclass(frozen=True)
class Reply:
    """A handler's answer: its JSON header and arrays, and the parent's clock around the request."""

    header: dict
    arrays: list
    wall_s: float
    seq: int = 0
    kind: str = ""


class WorkerLost(Exception):
    """The worker died (``kind="crash"``: exit, signal, protocol violation) or went silent past
    its timeout (``kind="timeout"``); ``note`` says what happened in one line."""

    def __init__(self, kind: str, note: str):
        super().__init__(f"{kind}: {note}")
        self.kind = kind
        self.note = note


class WorkerRefused(Exception):
    """The worker is alive but could not do what was asked: the backend could not be built
    (``start``), or a handler raised (``request``). ``raised`` says what, in one line."""

    def __init__(self, message: str, raised: Raised | None = None):
        super().__init__(message)
        self.raised = raised


# -- the parent's handle on one worker ------------------------------------------------------------
def stat_cpu_s(path: str) -> float | None:
    """User + system CPU seconds in a ``/proc/<pid>[/task/<tid>]/stat`` file (None when it cannot
    be read: gone, or not Linux). It is the kernel's accounting, nothing the process wrote."""
    try:
        with open(path, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0.0 elsewhere or once it is gone)."""
    return stat_cpu_s(f"/proc/{int(pid)}/stat") or 0.0


class Worker:
    """One worker process for one backend (or ``backend=None``: a discovery worker).

    >>> import numpy as np
    >>> w = Worker("numpy", plugins=(), env={})
    >>> info = w.start(timeout_s=120)
    >>> info.name, info.device
    ('numpy', 'cpu')
    >>> r = w.call("softmax", [np.zeros(4, np.float32)], {"axis": -1}, timeout_s=60)
    >>> r.status, r.output.tolist()
    ('output', [0.25, 0.25, 0.25, 0.25])
    >>> w.kill()
    """

    def __init__(self, backend: str | None, *, plugins: Sequence[str] = (), env: dict | None = None,
                 log_path: str | os.PathLike | None = None, max_bytes: int = MAX_MESSAGE_BYTES,
                 log_cap: int = LOG_CAP_BYTES, inbox: queue.Queue | None = None):
        self.backend = backend
        self.plugins = tuple(str(p) for p in plugins)
        self.env = dict(env or {})
        self.log_path = str(log_path) if log_path else None
        self.max_bytes = max_bytes
        self.log_cap = log_cap
        self.info: BackendInfo | None = None
        self.proc: subprocess.Popen | None = None
        self.cpu_s = 0.0  # CPU seconds of this worker's processes so far (each one read at its kill)
        self.conn: Connection | None = None
        self.cwd: str | None = None
        self.starts = 0
        self._seq = 0
        self.pending: deque = deque()    # (seq, kind, payload) sent and not answered, in order
        self._reply_caps: dict[int, int] = {}  # seq -> most array bytes its reply may carry
        self.last_heard = 0.0            # parent clock: the start, or the latest reply
        self._own_inbox = inbox is None
        self.inbox: queue.Queue = inbox if inbox is not None else queue.Queue()
        self._outbox: queue.Queue | None = None
        self._tail: deque = deque()
        self._tail_len = 0
        self._log_threads: list[threading.Thread] = []
        self._lost: WorkerLost | None = None
        self._killed = False
        self._gen = 0

    # life cycle
    def spawn(self) -> None:
        """Start the process and send it the backend to build (returns at once; see start)."""
        if self.proc is not None:
            self.kill()
        self._gen += 1
        gen = self._gen
        parent_conn, child_conn = Pipe(duplex=True)
        self.cwd = tempfile.mkdtemp(prefix="softmaxbench-worker-")
        env = dict(os.environ)
        for k, v in self.env.items():
            env.setdefault(k, v)
        env["PYTHONDONTWRITEBYTECODE"] = env.get("PYTHONDONTWRITEBYTECODE", "1")
        read_fd, write_fd = os.pipe()
        self._tail.clear()
        self._tail_len = 0
        try:
            _become_subreaper()
            with _PROCS_LOCK:  # a stray sweep never sees a worker that is not registered yet
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "softmaxbench.suite.isolation.worker", str(child_conn.fileno()),
                     str(os.getpid())],
                    stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, cwd=self.cwd, env=env,
                    pass_fds=(child_conn.fileno(),), start_new_session=True, close_fds=True)
                _WORKER_PIDS.add(self.proc.pid)
        finally:
            child_conn.close()
            os.close(write_fd)
        self.conn = parent_conn
        self._killed = False
        self._lost = None
        self.starts += 1
        self.pending.clear()
        self._reply_caps.clear()
        self.last_heard = time.monotonic()
        t = threading.Thread(target=self._drain_log, args=(read_fd,), daemon=True,
                             name=f"softmaxbench-log-{self.backend}")
        t.start()
        self._log_threads = [t]
        self._outbox = queue.Queue()
        threading.Thread(target=_send_loop, args=(parent_conn, self._outbox), daemon=True).start()
        threading.Thread(target=self._read_loop, args=(parent_conn, gen), daemon=True).start()
        init = {"kind": "init", "backend": self.backend, "plugins": list(self.plugins),
                "sys_path": [os.path.abspath(p) if p else os.getcwd() for p in sys.path]}
        self._post("init", init, [], None)

    def start(self, timeout_s: float) -> BackendInfo:
        """Start the worker and wait for its description of the backend (validated).

        WorkerRefused when the worker reports that the backend cannot be built or is unavailable
        there; WorkerLost when it dies or stays silent for ``timeout_s`` (the parent's clock)."""
        self.spawn()
        reply = self._wait_for(self.pending[0][0], timeout_s, "while loading the backend")
        return self._accept_ready(reply)

    def _accept_ready(self, reply: Reply) -> BackendInfo:
        h = reply.header
        if reply.kind == "dead":
            self.kill()
            raise WorkerRefused(clean_text(h.get("message", "the backend could not be loaded"), 600))
        if reply.kind != "ready":
            self.kill()
            raise WorkerLost("crash", f"protocol violation: {clean_text(reply.kind, 30)!r} instead of ready")
        if self.backend is None:   # a discovery worker: nothing to describe yet
            return None
        from softmaxbench.reference.special import DEVIATIONS

        info = BackendInfo.from_header(h.get("info") or {}, known_deviations=list(DEVIATIONS))
        self.info = info
        if self.backend is not None and info.name != self.backend:
            self.kill()
            raise WorkerLost("crash", f"the worker built {info.name!r}, not {self.backend!r}")
        return info

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (its plugin's children too) and clean up."""
        self._gen += 1
        if self._outbox is not None:
            self._outbox.put(None)
            self._outbox = None
        if self.proc is not None and not self._killed:
            self.cpu_s += process_cpu_s(self.proc.pid)
            # The group outlives its leader while the plugin's children live: kill it once,
            # before anything else could reuse the number.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._killed = True
        if self.proc is not None:  # (the reader may have sent the SIGKILL: wait for it either way)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None and self.proc.returncode is not None:
            with _PROCS_LOCK:
                _WORKER_PIDS.discard(self.proc.pid)
            kill_strays()
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None
        for t in self._log_threads:
            t.join(timeout=1.0)
        if self.cwd:
            shutil.rmtree(self.cwd, ignore_errors=True)
            self.cwd = None

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to exit, then make sure its group is gone."""
        if self.alive() and self._outbox is not None:
            self._post("stop", {"kind": "stop"}, [], None)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    # requests
    def _post(self, kind: str, header: dict, arrays: Sequence[np.ndarray], payload: Any) -> int:
        if self._outbox is None:
            raise WorkerLost("crash", "the worker is not running")
        self._seq += 1
        if not self.pending:   # an idle worker's silence so far was the parent's doing
            self.last_heard = time.monotonic()
        frames = encode({**header, "kind": kind, "seq": self._seq}, arrays)
        if kind in REPLY_SCALED:  # its answer can only be as large as what it was sent, scaled
            elements = sum(int(getattr(a, "size", 0)) for a in arrays)
            self._reply_caps[self._seq] = REPLY_BYTES_PER_ELEMENT * elements + REPLY_SLACK_BYTES
        self.pending.append((self._seq, kind, payload, time.monotonic()))
        self._outbox.put(frames)
        return self._seq

    def submit(self, kind: str, header: dict, arrays: Sequence[np.ndarray] = (), payload: Any = None) -> int:
        """Queue a request without waiting; its Reply (or a WorkerLost) arrives in ``inbox`` as
        ``(worker, seq, payload, Reply | WorkerLost)``. Returns the request's sequence number."""
        return self._post(kind, header, arrays, payload)

    def request(self, kind: str, header: dict, arrays: Sequence[np.ndarray] = (), *,
                timeout_s: float) -> Reply:
        """Run the worker's handler for ``kind`` and wait for its reply (parent's clock).

        WorkerRefused when the handler raised (the worker lives on), WorkerLost when the worker
        died or stayed silent for ``timeout_s`` (it is killed)."""
        seq = self._post(kind, header, arrays, None)
        reply = self._wait_for(seq, timeout_s, f"during {kind}")
        if reply.kind == "error":
            raised = Raised.from_header(reply.header.get("raised"))
            raise WorkerRefused(f"the worker's {kind} handler raised {raised.one_line()}", raised)
        return reply

    def call(self, op: str, args: list, kwargs: dict, *, timeout_s: float,
             names: Sequence[str] | None = None) -> CallResult:
        """``backend.<op>(*args, **kwargs)`` in the worker: every ndarray argument travels as
        bytes and is ``asarray``-ed there; the output comes back as bytes (see CallResult)."""
        header, arrays = call_header(op, args, kwargs, names)
        reply = self.request("call", header, arrays, timeout_s=timeout_s)
        return CallResult.from_reply(reply.header, reply.arrays, reply.wall_s)

    def _wait_for(self, seq: int, timeout_s: float, during: str) -> Reply:
        if not self._own_inbox:
            raise RuntimeError("a Worker with a shared inbox is driven through submit()")
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                _, got_seq, _, item = self.inbox.get(timeout=max(left, 0.001))
            except queue.Empty:
                if self.pending and self.pending[0][0] <= seq:
                    self.lose("timeout", f"no answer within {timeout_s:g} s {during}")
                    raise WorkerLost("timeout", f"no answer within {timeout_s:g} s {during}") from None
                continue
            if isinstance(item, WorkerLost):
                self.kill()
                raise item
            if got_seq == seq:
                return item

    def lose(self, kind: str, note: str) -> WorkerLost:
        """Kill the worker and say why (what a scheduler calls on a timeout)."""
        self.kill()
        return WorkerLost(kind, note)

    # the reader: every message is decoded and validated here, off the caller's thread
    def _read_loop(self, conn: Connection, gen: int) -> None:
        while True:
            try:
                header, arrays = recv(conn, max_bytes=self._reply_cap)
                problem = None
            except ProtocolError as exc:
                problem = f"protocol violation: {exc}"
            except (EOFError, OSError):
                problem = ""
            except Exception as exc:  # noqa: BLE001 - whatever a frame makes the decoder raise
                problem = f"protocol violation: an undecodable frame ({type(exc).__name__})"
            if gen != self._gen:
                return
            now = time.monotonic()
            if problem is None:
                seq = header.get("seq")
                if not self.pending or seq != self.pending[0][0]:
                    problem = (f"protocol violation: a reply to request {clean_text(seq, 20)} while "
                               f"{self.pending[0][0] if self.pending else 'none'} was awaited")
            if problem is not None:
                if gen != self._gen:
                    return
                lost = WorkerLost("crash", problem or self.death_note(self._during()))
                self._lost = lost
                seq, _, payload, _ = self.pending[0] if self.pending else (0, "", None, 0)
                try:
                    if not self._killed:
                        self.cpu_s += process_cpu_s(self.proc.pid)
                        os.killpg(self.proc.pid, signal.SIGKILL)
                        self._killed = True
                        self.proc.wait(timeout=10)  # dead when the loss is reported
                except (ProcessLookupError, PermissionError, AttributeError, subprocess.TimeoutExpired):
                    pass
                self.inbox.put((self, seq, payload, lost))
                return
            seq, kind, payload, sent = self.pending.popleft()
            self._reply_caps.pop(seq, None)
            self.last_heard = now
            kind_got = header.get("kind") if isinstance(header.get("kind"), str) else ""
            self.inbox.put((self, seq, payload, Reply(header, arrays, now - sent, seq, kind_got)))

    def _reply_cap(self) -> int:
        """The most array bytes the message now arriving may carry: the awaited request's cap
        (a call's answer is bounded by what it was sent), never above ``max_bytes``."""
        if not self.pending:
            return 0   # nothing is awaited: any message is a violation (reported after the header)
        return min(self.max_bytes, self._reply_caps.get(self.pending[0][0], self.max_bytes))

    def _during(self) -> str:
        if not self.pending:
            return "while idle"
        kind = self.pending[0][1]
        return ("while loading the backend" if kind == "init" else
                "while running this case" if kind == "call" else f"during {kind}")

    def _drain_log(self, fd: int) -> None:
        """Copy the worker's stdout/stderr into the log file (up to the cap) and a memory tail."""
        fh = open(self.log_path, "ab") if self.log_path else None
        written = 0
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self._tail.append(chunk)
                self._tail_len += len(chunk)
                while self._tail_len > LOG_TAIL_BYTES and len(self._tail) > 1:
                    self._tail_len -= len(self._tail.popleft())
                if fh is not None and written < self.log_cap:
                    part = chunk[: self.log_cap - written]
                    fh.write(part)
                    written += len(part)
                    if written >= self.log_cap:
                        fh.write(b"\n[softmaxbench: log cut at %d bytes]\n" % self.log_cap)
                    fh.flush()
        finally:
            os.close(fd)
            if fh is not None:
                fh.close()

    def output_tail(self) -> str:
        return b"".join(self._tail).decode("utf-8", "replace")

    def death_note(self, during: str = "") -> str:
        """Why the worker ended: 'the worker was killed by SIGSEGV while ... (Fatal Python error:
        Segmentation fault; in softmax (mykernel.py:12))', in one escaped line."""
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        if code is None:
            what = "the worker stopped answering"
        elif code < 0:
            try:
                what = f"the worker was killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"the worker was killed by signal {-code}"
            if code == -signal.SIGKILL:
                what += " (out of memory?)"
        else:
            what = f"the worker exited with code {code}"
        for t in self._log_threads:
            t.join(timeout=0.5)
        tail = log_tail(self.output_tail())
        return clean_text(what + (f" {during}" if during else "") + (f" ({tail})" if tail else ""), 600)


# -- processes that escaped a worker's group ---------------------------------------------------------
#: Live worker processes (children of this process that are workers, not strays).
_WORKER_PIDS: set[int] = set()
_PROCS_LOCK = threading.Lock()
_SUBREAPER = []


def _become_subreaper() -> None:
    """Linux: orphans of a worker's descendants are re-parented to this process (not to init), so
    a grandchild that left the worker's process group (double fork + setsid) is still found."""
    if _SUBREAPER or not sys.platform.startswith("linux"):
        return
    _SUBREAPER.append(True)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def kill_strays() -> list[int]:
    """SIGKILL (and reap) every child of this process that is not a live worker and is not in
    this process's session: a worker's descendant that escaped its process group and was
    re-parented here. Returns their pids."""
    if not _SUBREAPER:
        return []
    me, my_sid, killed = os.getpid(), os.getsid(0), []
    for _ in range(8):  # a stray's own children come to us when it dies: sweep until none is left
        found = []
        with _PROCS_LOCK:
            try:
                entries = [e for e in os.listdir("/proc") if e.isdigit()]
            except OSError:
                return killed
            for e in entries:
                pid = int(e)
                if pid in _WORKER_PIDS:
                    continue
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                if int(fields[1]) != me or int(fields[3]) == my_sid:  # ppid, session
                    continue
                try:
                    os.kill(pid, signal.SIGKILL)
                    found.append(pid)
                except (ProcessLookupError, PermissionError):
                    pass
        for pid in found:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        killed += found
        if not found:
            break
    return killed


def _send_loop(conn: Connection, outbox: queue.Queue) -> None:
    while True:
        frames = outbox.get()
        if frames is None:
            return
        head, flat = frames
        try:
            conn.send_bytes(head)
            for buf in flat:
                conn.send_bytes(buf)
        except (OSError, ValueError, EOFError):
            return


def call_header(op: str, args: list, kwargs: dict, names: Sequence[str] | None = None
                ) -> tuple[dict, list[np.ndarray]]:
    """The header and arrays of a "call" request: arrays by index, everything else as JSON.

    A non-contiguous view (a transposed or strided case input) travels as the contiguous array
    it views plus its byte offset and strides, so the backend receives the same layout the case
    built. ``names`` names the array arguments in order (x, cotangent, target, weight), for the
    mutation check; by default the positional arrays are x, then cotangent or target."""
    import numpy as np

    arrays: list[np.ndarray] = []
    array_names: list[str] = []

    def enc(v, default_name: str):
        if isinstance(v, np.ndarray):
            array_names.append(default_name)
            item: dict = {"a": len(arrays)}
            view = _view_of(v)
            if view is None:
                arrays.append(v)
            else:
                root, item["view"] = view
                arrays.append(root)
            return item
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or isinstance(v, bool | int | float | str):
            return {"v": v}
        raise ProtocolError(f"argument of type {type(v).__name__} cannot travel on the channel")

    pos_names = ["x", "target" if op.startswith("cross_entropy") else "cotangent"]
    enc_args = [enc(a, pos_names[i] if i < 2 else f"arg{i}") for i, a in enumerate(args)]
    enc_kwargs = {k: enc(v, k) for k, v in kwargs.items()}
    if names is not None:
        array_names = list(names)
    return {"op": op, "args": enc_args, "kwargs": enc_kwargs, "names": array_names}, arrays


def _view_of(a: np.ndarray):
    """(root, {"offset", "shape", "strides"}) for a non-contiguous view of a contiguous array of
    the same dtype; None when ``a`` travels as it is (or its layout cannot be kept)."""
    import numpy as np

    if a.flags.c_contiguous or a.size == 0:
        return None
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    if root is a or root.dtype != a.dtype or not root.flags.c_contiguous:
        return None
    offset = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    if not 0 <= offset < root.nbytes:
        return None
    return root, {"offset": int(offset), "shape": [int(n) for n in a.shape],
                  "strides": [int(n) for n in a.strides]}


def view_from(buf: np.ndarray, view: dict) -> np.ndarray:
    """Rebuild a view described by :func:`_view_of` on ``buf`` (bounds checked by NumPy)."""
    import numpy as np

    return np.ndarray(tuple(view["shape"]), buf.dtype, buffer=buf, offset=int(view["offset"]),
                      strides=tuple(view["strides"]))


def log_tail(text: str, lines: int = 3, width: int = 300) -> str:
    """What a worker's output says about its death, on one line: the fatal error and the
    backend's frames of faulthandler's stack, else its last lines."""
    all_lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fatal = [i for i, ln in enumerate(all_lines) if ln.startswith("Fatal Python error")]
    if fatal:
        i = fatal[-1]
        frames = []
        for ln in all_lines[i + 1:]:
            m = _FRAME.match(ln)
            if not m:
                if frames:
                    break
                continue
            if "/softmaxbench/suite/" in m["file"] or "/suite/isolation/" in m["file"]:
                break  # the suite's own frames: the backend's part of the stack is above them
            frames.append(f"{m['func']} ({'/'.join(Path(m['file']).parts[-2:])}:{m['line']})")
        return (all_lines[i] + ("; in " + " <- ".join(frames[:4]) if frames else ""))[:width]
    return " / ".join(all_lines[-lines:])[-width:]


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')
