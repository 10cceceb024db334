"""Result records: the versioned JSON-lines format every other part reads and writes.

``DIR/results.jsonl`` holds one JSON object per line, appended and flushed as each check or
benchmark finishes (so a killed run loses nothing it completed). ``DIR/run.json`` holds the run
metadata. Both are validated against the JSON Schemas shipped in ``suite/schema/``.

>>> rec = new_record("check", backend="numpy", device="cpu", op="softmax", dtype="float32",
...                  shape=[2, 3], verdict="pass")
>>> validate_record(rec)
>>> rec["schema_version"]
1
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
from softmaxbench.vocabulary import FAILING, VERDICTS  # noqa: E402,F401 - part of the records' contract


class RecordError(ValueError):
    """A file that is not a softmaxbench results file, or of an unknown schema version."""


@cache
def schema(kind: str = "results") -> dict:
    """The shipped JSON Schema: kind 'results' (a record) or 'run' (run.json)."""
    text = resources.files("softmaxbench.suite").joinpath(f"schema/{kind}-v{SCHEMA_VERSION}.json")
    return json.loads(text.read_text())


def new_record(kind: str, **fields: Any) -> dict:
    """A record with the schema version and kind set; ``fields`` fill the rest."""
    rec: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "kind": kind}
    rec.update(fields)
    return rec


def validate_record(rec: dict) -> None:
    """Raise RecordError when ``rec`` does not follow the results schema."""
    import jsonschema

    try:
        jsonschema.validate(rec, schema("results"))
    except jsonschema.ValidationError as exc:
        raise RecordError(f"invalid result record: {exc.message}") from None


class OutLock:
    """An exclusive lock on ``DIR/.lock`` (``fcntl.flock``) for the length of a run.

    A second run on the same ``--out`` is refused at once (InputError, exit 2) rather than
    interleaving or erasing the first one's records. The lock dies with the process, so a killed
    run never leaves a stale lock behind.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> OutLock:
        import fcntl

        from softmaxbench.errors import InputError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InputError(f"--out {self.path.parent}: another softmaxbench run is writing there "
                             "(choose another --out, or wait for it to finish)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ResultsWriter:
    """Appends records to ``DIR/results.jsonl``, one line each.

    Records reach the operating system (a killed run keeps every record the kernel holds) at
    most ``flush_every_s`` after they are written: at the next write after that interval, or by
    a background flusher when no write follows; always at :meth:`flush` and :meth:`close` (the
    runner closes on Ctrl-C, SIGTERM and errors). A SIGKILL of the writing process loses at most
    the records of the last ``flush_every_s`` (a flush per record cost a quick check 0.25 ms a
    record). ``flush_every_s=0`` flushes every record. ``fsync`` (durability against a machine
    crash) runs at most every ``sync_every_s`` and at close, since one per record cost a check
    run 9 ms a record on a busy disk (13 of 45 s, measured with cProfile).
    """

    def __init__(self, out_dir: str | os.PathLike, sync_every_s: float = 1.0, flush_every_s: float = 0.1):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / RESULTS_FILE
        self._fh = open(self.path, "a", encoding="utf-8")
        self.sync_every_s = sync_every_s
        self.flush_every_s = flush_every_s
        self._synced = self._flushed = time.monotonic()
        self._dirty = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None

    def write(self, rec: dict) -> None:
        line = json.dumps(rec, allow_nan=True, default=_jsonable) + "\n"
        with self._lock:
            self._fh.write(line)
            self._dirty = True
            now = time.monotonic()
            if now - self._flushed >= self.flush_every_s:
                self._flush_locked(now)
            elif self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_in_background, daemon=True,
                                                 name="softmaxbench-results-flush")
                self._flusher.start()

    def flush(self) -> None:
        """Hand every record written so far to the operating system now."""
        with self._lock:
            if not self._fh.closed:
                self._flush_locked(time.monotonic())

    def _flush_locked(self, now: float) -> None:
        self._fh.flush()
        self._dirty = False
        self._flushed = now
        if now - self._synced >= self.sync_every_s:
            os.fsync(self._fh.fileno())
            self._synced = now

    def _flush_in_background(self) -> None:
        while not self._wake.wait(self.flush_every_s):
            with self._lock:
                if self._fh.closed:
                    return
                now = time.monotonic()
                if self._dirty and now - self._flushed >= self.flush_every_s / 2:
                    self._flush_locked(now)

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
        self._wake.set()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _jsonable(obj: Any):
    """Fallback encoder: numpy scalars and arrays, paths."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_results(path: str | os.PathLike, *, warn=None) -> list[dict]:
    """Read ``results.jsonl`` (or a directory holding it).

    A last line cut off mid-record by a killed run is dropped with a warning (``warn(msg)``).
    A file that is not a results file, or of an unknown schema version, raises RecordError.
    """
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.is_file():
        raise RecordError(f"{p}: no such results file")
    records: list[dict] = []
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) and records:
                if warn:
                    warn(f"{p}: line {i} is cut off (killed run?); read the {len(records)} whole records")
                break
            raise RecordError(f"{p}: line {i} is not JSON; not a softmaxbench results file") from None
        if not isinstance(rec, dict) or "schema_version" not in rec or "kind" not in rec:
            raise RecordError(f"{p}: line {i} is not a softmaxbench result record")
        if rec["schema_version"] != SCHEMA_VERSION:
            raise RecordError(f"{p}: schema version {rec['schema_version']!r} is not supported "
                              f"(this softmaxbench reads version {SCHEMA_VERSION})")
        records.append(rec)
    return records


def read_run(path: str | os.PathLike) -> dict:
    """Read ``run.json`` from a results directory; {} when absent."""
    p = Path(path)
    if p.is_dir():
        p = p / RUN_FILE
    if not p.is_file():
        return {}
    try:
        run = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise RecordError(f"{p}: not JSON; not a softmaxbench run.json") from None
    if not isinstance(run, dict) or run.get("schema_version") != SCHEMA_VERSION:
        raise RecordError(f"{p}: unknown run.json schema version {run.get('schema_version')!r}"
                          if isinstance(run, dict) else f"{p}: not a softmaxbench run.json")
    return run


def machine_info(label: str | None = None) -> dict:
    """Host facts for run.json: name, label, platform, processor, cores, memory."""
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = None
    host = socket.gethostname()
    return {"hostname": host, "label": label or os.environ.get("SOFTMAXBENCH_MACHINE", host),
            "platform": platform.platform(), "processor": platform.machine(),
            "cpu_count": os.cpu_count() or 0, "memory_gib": round(mem, 1) if mem else None,
            "devices": []}


def package_versions(names=("numpy", "scipy", "ml_dtypes", "torch", "jax", "jaxlib", "cupy-cuda12x",
                            "mpmath", "pandas", "pytest-benchmark")) -> dict[str, str]:
    """Installed versions of the packages that shape results (absent ones omitted)."""
    out = {"python": sys.version.split()[0]}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def new_run(kind: str, command: str, *, seed: int | None = None, threads: int | None = None,
            label: str | None = None) -> dict:
    """Run metadata for ``run.json``."""
    from softmaxbench import __version__

    return {"schema_version": SCHEMA_VERSION, "softmaxbench_version": __version__, "kind": kind,
            "machine": machine_info(label), "versions": package_versions(), "threads": threads,
            "seed": seed, "command": command, "started": now_iso(), "finished": None}


def write_run(out_dir: str | os.PathLike, run: dict) -> None:
    """Write ``run.json`` atomically (write then rename)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(run, indent=1, default=_jsonable), encoding="utf-8")
    tmp.replace(d / RUN_FILE)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def gate(records: list[dict], *, strict: bool = False) -> tuple[int, list[str]]:
    """The conformance gate (moved to :func:`softmaxbench.suite.conformance.summary.gate`, the
    one place that decides "conforms"; kept here so that reports, which import only records,
    judge as ``check`` does).

    >>> gate([new_record("check", backend="b", op="softmax", case="c", dtype="float32", verdict="fail",
    ...                  message="3 ULP")])
    (1, ['b softmax c float32: fail: 3 ULP'])
    """
    from softmaxbench.suite.conformance.summary import gate as conformance_gate

    return conformance_gate(records, strict=strict)
