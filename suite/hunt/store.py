"""Saved regression cases: the inputs ``softmaxbench hunt`` found, loaded like catalogue cases.

Every new worst case a hunt finds is kept in a small JSON file per backend, op and dtype
(``<backend>__<op>__<dtype>.json``) in a directory of the user's choosing, or by default in the
user's cache (:func:`user_dir`: ``$XDG_CACHE_HOME/softmaxbench/found``), never in the installed
package. The cases shipped with the package are in ``reference/found/`` (:func:`package_dir`).
:func:`load_found_cases` turns those files back into objects with the interface of
:class:`softmaxbench.reference.cases.Case` (``name``, ``category``, ``shape``, ``axis``, ``ops``,
``dtypes``, ``description``, ``quick``, ``expect_error``, ``build(dtype)``, ``summary()``), plus
``found_by = "hunt"`` so that ``check`` can run them like the catalogue and say in each record
where the case came from. ``check`` reads :func:`default_dirs`: the shipped cases, the
directories in ``$SOFTMAXBENCH_FOUND_DIRS`` and the user's cache.

A found case holds one row (shape ``(1, n)``, class axis last) in the dtype it was found in, and
runs for that op and dtype only: rounding it to another dtype would lose what made it hard.

>>> import numpy as np, tempfile
>>> d = tempfile.mkdtemp()
>>> entry = make_entry("softmax", "float32", np.array([[1.0, 1.0000001]], np.float32),
...                    backend="numpy", objective="error_ratio", max_error_ratio=0.5, max_ulp=0.4)
>>> save_found_case(d, "numpy", "softmax", "float32", entry)
('found-numpy-softmax-float32-...', True)
>>> [c.name for c in load_found_cases([d])] == [entry["name"]]
True
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from softmaxbench.reference.dtypes import np_dtype
from softmaxbench.vocabulary import DEFAULT_CE_OPTIONS

#: Extra directories of found cases that ``load_found_cases()`` reads by default
#: (``os.pathsep``-separated), e.g. where CI keeps the cases its nightly hunts saved.
ENV_DIRS = "SOFTMAXBENCH_FOUND_DIRS"
#: The user's cache directory (XDG base directory spec; ``~/.cache`` when unset or relative).
ENV_CACHE = "XDG_CACHE_HOME"
FORMAT = "softmaxbench-found-cases"
FORMAT_VERSION = 1
#: A file keeps at most this many cases (the worst ones), so files stay small.
MAX_CASES_PER_FILE = 8
#: Arrays up to this many elements are stored as readable numbers; longer ones as zlib+base64.
READABLE_MAX = 512
CATEGORY = "found"
#: Every found case's name starts with this (catalogue names never do).
PREFIX = "found-"


class FoundCaseError(ValueError):
    """A found-cases file that cannot be read (not JSON, unknown format version, bad array)."""


def package_dir() -> Path:
    """``reference/found/`` of the installed package: the cases shipped with it (read-only to hunt)."""
    return Path(str(resources.files("softmaxbench.reference"))) / "found"


def user_dir() -> Path:
    """Where ``hunt`` saves cases when the user names no directory, and ``check`` reads them:
    ``$XDG_CACHE_HOME/softmaxbench/found`` (``~/.cache/softmaxbench/found`` by default).

    >>> user_dir().parts[-2:]
    ('softmaxbench', 'found')
    """
    base = os.environ.get(ENV_CACHE, "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "softmaxbench" / "found"


def default_dirs() -> list[Path]:
    """The package's found cases, any directories named in ``$SOFTMAXBENCH_FOUND_DIRS``, then the
    user's cache (:func:`user_dir`): what ``check`` runs besides the catalogue."""
    extra = [Path(p) for p in os.environ.get(ENV_DIRS, "").split(os.pathsep) if p.strip()]
    return [package_dir(), *extra, user_dir()]


def file_name(backend: str, op: str, dtype: str) -> str:
    """``numpy__softmax__float32.json``; characters unsafe in file names become ``_``."""
    return "__".join(re.sub(r"[^A-Za-z0-9._-]", "_", s) for s in (backend, op, dtype)) + ".json"


# -- arrays <-> JSON (exact) -----------------------------------------------------------------
def encode_array(a: np.ndarray | None) -> dict | None:
    """Exact JSON form of an array: readable numbers when short, zlib+base64 bytes when long.

    Floats of every target dtype are exactly representable as Python floats, so the readable
    form round-trips bit for bit (signed zeros included).
    """
    if a is None:
        return None
    a = np.asarray(a)
    from softmaxbench.reference.dtypes import dtype_name

    name = "int64" if a.dtype.kind in "iu" else dtype_name(a.dtype)
    out: dict[str, Any] = {"dtype": name, "shape": list(a.shape)}
    if a.size <= READABLE_MAX:
        out["values"] = (a.astype(np.int64) if name == "int64" else a.astype(np.float64)).ravel().tolist()
    else:
        raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        out["zlib_base64"] = base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
    return out


def decode_array(d: dict | None) -> np.ndarray | None:
    """Inverse of :func:`encode_array`."""
    if d is None:
        return None
    dt = np.dtype(np.int64) if d["dtype"] == "int64" else np_dtype(d["dtype"])
    shape = tuple(int(s) for s in d["shape"])
    if "values" in d:
        a = np.array(d["values"], dtype=np.int64 if d["dtype"] == "int64" else np.float64).astype(dt)
    else:
        raw = zlib.decompress(base64.b64decode(d["zlib_base64"]))
        a = np.frombuffer(raw, dtype=dt.newbyteorder("<")).astype(dt)
    if a.size != int(np.prod(shape)):
        raise ValueError(f"{a.size} values for shape {shape}")
    return a.reshape(shape)


def content_hash(op: str, dtype: str, x, cotangent=None, target=None, ce_options=None) -> str:
    """Short hash of an input: the same input always gets the same case name."""
    h = hashlib.sha1(f"{op}|{dtype}|{json.dumps(ce_options or {}, sort_keys=True, default=str)}".encode())
    for a in (x, cotangent, target):
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:10]


def case_name(backend: str, op: str, dtype: str, x, cotangent=None, target=None, ce_options=None) -> str:
    """The regression case's name: ``found-<backend>-<op>-<dtype>-<content hash>``."""
    return f"{PREFIX}{backend}-{op}-{dtype}-{content_hash(op, dtype, x, cotangent, target, ce_options)}"


def make_entry(op: str, dtype: str, x: np.ndarray, cotangent: np.ndarray | None = None,
               target: np.ndarray | None = None, ce_options: dict | None = None, *, backend: str,
               objective: str, max_error_ratio: float | None, max_ulp: float | None, how: str = "",
               seed: int | None = None, evals: int | None = None, verdict: str | None = None) -> dict:
    """One saved case as a JSON-able dict (what :func:`save_found_case` stores).

    ``x`` is one row of logits with the class axis last (shape ``(1, n)``); ``objective`` says
    what the search maximised ("error_ratio" or "ulp"); the metrics are those measured on
    ``backend`` when the case was found.
    """
    from softmaxbench import __version__
    from softmaxbench.suite.records import now_iso

    x = np.asarray(x)
    name = case_name(backend, op, dtype, x, cotangent, target, ce_options)
    return {
        "name": name, "op": op, "dtype": dtype, "shape": list(x.shape), "axis": -1,
        "backend": backend, "objective": objective,
        "max_error_ratio": _num(max_error_ratio), "max_ulp": _num(max_ulp), "verdict": verdict,
        "how": how, "seed": seed, "evals": evals, "found": now_iso(), "softmaxbench_version": __version__,
        "x": encode_array(x), "cotangent": encode_array(cotangent), "target": encode_array(target),
        "ce_options": _ce_options_json(ce_options),
    }


def _num(v: float | None) -> float | str | None:
    """JSON has no inf/NaN: keep them as strings so the file stays standard JSON."""
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else repr(v)


def _ce_options_json(opts: dict | None) -> dict | None:
    if opts is None:
        return None
    out = dict(opts)
    if out.get("weight") is not None:
        out["weight"] = encode_array(out["weight"])
    return out


# -- the case objects ------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FoundCase:
    """A saved hunt finding, with the interface of ``reference.cases.Case``.

    ``build(dtype)`` returns a ``reference.cases.CaseInput``; only the dtype it was found in
    (``dtypes[0]``) is valid.
    """

    name: str
    shape: tuple[int, ...]
    axis: int
    ops: tuple[str, ...]
    dtypes: tuple[str, ...]
    description: str
    backend: str
    objective: str
    max_error_ratio: float | None
    max_ulp: float | None
    path: str
    entry: dict = field(repr=False)
    category: str = CATEGORY
    quick: bool = False           # in the --quick subset: when it failed or deviated where found
    expect_error: bool = False
    found_by: str = "hunt"

    def build(self, dtype: str):
        """The saved input as a ``CaseInput`` (bit-exact)."""
        from softmaxbench.reference.cases import CaseInput

        if dtype not in self.dtypes:
            raise ValueError(f"found case {self.name} holds {self.dtypes[0]} data; it cannot run in {dtype}")
        e = self.entry
        opts = dict(DEFAULT_CE_OPTIONS)
        if e.get("ce_options"):
            opts.update(e["ce_options"])
            if isinstance(opts.get("weight"), dict):
                opts["weight"] = decode_array(opts["weight"])
        return CaseInput(case=self.name, dtype=dtype, axis=self.axis, x=decode_array(e["x"]),
                         cotangent=decode_array(e.get("cotangent")), target=decode_array(e.get("target")),
                         ce_options=opts)

    def summary(self) -> dict:
        """JSON-able description, with the keys of ``Case.summary()`` and where it was found."""
        return {"name": self.name, "category": self.category, "shape": list(self.shape), "axis": self.axis,
                "ops": list(self.ops), "dtypes": list(self.dtypes), "description": self.description,
                "quick": self.quick, "expect_error": self.expect_error, "found_by": self.found_by,
                "backend": self.backend, "objective": self.objective,
                "max_error_ratio": self.max_error_ratio, "max_ulp": self.max_ulp, "path": self.path}


def _float(v) -> float | None:
    return None if v is None else float(v)


def case_from_entry(entry: dict, path: str = "") -> FoundCase:
    """A :class:`FoundCase` from one stored entry (see :func:`make_entry`)."""
    how = f"; {entry['how']}" if entry.get("how") else ""
    ratio, ulp = _float(entry.get("max_error_ratio")), _float(entry.get("max_ulp"))
    desc = (f"found by `softmaxbench hunt` on {entry['backend']} maximising {entry['objective']} "
            f"(error ratio {ratio if ratio is None else f'{ratio:.3g}'}, "
            f"ULP {ulp if ulp is None else f'{ulp:.3g}'}{how})")
    return FoundCase(name=entry["name"], shape=tuple(entry["shape"]), axis=int(entry.get("axis", -1)),
                     ops=(entry["op"],), dtypes=(entry["dtype"],), description=desc, backend=entry["backend"],
                     objective=entry["objective"], max_error_ratio=ratio, max_ulp=ulp, path=path, entry=entry,
                     quick=entry.get("verdict") in ("fail", "error", "deviation"))


def read_file(path: str | os.PathLike) -> dict:
    """One found-cases file, checked for format and version."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FoundCaseError(f"{p}: not a readable found-cases file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise FoundCaseError(f"{p}: not a softmaxbench found-cases file")
    if doc.get("version") != FORMAT_VERSION:
        raise FoundCaseError(f"{p}: found-cases format version {doc.get('version')!r} is not supported "
                             f"(this softmaxbench reads version {FORMAT_VERSION})")
    return doc


def load_found_cases(dirs: list[str | os.PathLike] | None = None) -> list[FoundCase]:
    """Every saved case in ``dirs`` (default: :func:`default_dirs`), in a stable order.

    A directory that does not exist holds no cases. A name found twice is kept once (the first).

    >>> isinstance(load_found_cases(), list)
    True
    """
    seen: set[str] = set()
    cases: list[FoundCase] = []
    for d in (default_dirs() if dirs is None else [Path(x) for x in dirs]):
        if not Path(d).is_dir():
            continue
        for p in sorted(Path(d).glob("*.json")):
            for entry in read_file(p).get("cases", []):
                try:
                    case = case_from_entry(entry, str(p))
                except (KeyError, TypeError, ValueError) as exc:
                    raise FoundCaseError(f"{p}: a case entry is malformed ({exc})") from None
                if case.name not in seen:
                    seen.add(case.name)
                    cases.append(case)
    return cases


def _signature(dirs: list[str | os.PathLike] | None) -> tuple:
    """The directories' files and modification times: the cache key of :func:`_index`."""
    ds = default_dirs() if dirs is None else [Path(x) for x in dirs]
    return tuple((str(d), tuple((p.name, p.stat().st_mtime_ns) for p in sorted(Path(d).glob("*.json"))))
                 for d in ds if Path(d).is_dir())


@lru_cache(maxsize=8)
def _index(signature: tuple) -> dict[str, FoundCase]:
    return {c.name: c for c in load_found_cases([d for d, _ in signature])}


def found_case(name: str, dirs: list[str | os.PathLike] | None = None) -> FoundCase:
    """The saved case called ``name`` (KeyError with a one-line message when absent).

    Cached until a file in ``dirs`` changes, so a check worker may look cases up per task.
    """
    case = _index(_signature(dirs)).get(name)
    if case is None:
        raise KeyError(f"no found case named {name!r}")
    return case


def get_case(name: str, dirs: list[str | os.PathLike] | None = None):
    """A case by name: a found case (``found-...``) or a catalogue case (``reference.cases.get``).

    What ``check`` looks names up with, so that saved regression cases run like the catalogue.

    >>> get_case("found-no-such-case", dirs=[])
    Traceback (most recent call last):
    ...
    KeyError: "no found case named 'found-no-such-case'"
    """
    if name.startswith(PREFIX):
        return found_case(name, dirs)
    from softmaxbench.reference.cases import get

    return get(name)


def all_cases(quick: bool = False, dirs: list[str | os.PathLike] | None = None) -> list:
    """The catalogue followed by the found cases (the ``--quick`` subset of both when ``quick``)."""
    from softmaxbench.reference.cases import catalogue

    return [c for c in [*catalogue(), *_index(_signature(dirs)).values()] if c.quick or not quick]


def cases_for(dirs: list[str | os.PathLike], backend: str, op: str, dtype: str) -> list[FoundCase]:
    """The saved cases of one backend, op and dtype in ``dirs`` (a hunt's starting points)."""
    out: list[FoundCase] = []
    for d in dirs:
        p = Path(d) / file_name(backend, op, dtype)
        if p.is_file():
            out.extend(case_from_entry(e, str(p)) for e in read_file(p).get("cases", []))
    return out


def _rank(entry: dict) -> tuple[float, float]:
    """Sort key: worst error ratio first, then worst ULP (inf/NaN strings count as worst)."""
    def val(v):
        if v is None:
            return -1.0
        v = float(v)
        return np.inf if np.isnan(v) else v
    return (val(entry.get("max_error_ratio")), val(entry.get("max_ulp")))


def dumps(doc: dict) -> str:
    """The file's text: header fields one per line, each case on one line (diffs stay readable)."""
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    cases = ",\n".join("  " + json.dumps(e, separators=(", ", ": ")) for e in doc["cases"])
    return "{\n" + "\n".join(lines) + '\n "cases": [\n' + cases + "\n ]\n}\n"


def refusal(op: str, inputs, exact=None) -> str | None:
    """Why ``inputs`` must not become a regression case of ``op``, or None when it may.

    A case the model algorithm itself cannot compute (its intermediates overflow the output
    dtype where the exact value is finite: ``reference.model.attainable``) would judge a backend
    against a standard the suite's own algorithm does not meet; ``hunt`` refuses to save it and
    :func:`prune` drops such cases from a directory.
    """
    from softmaxbench.reference.model import attainable

    return attainable(op, inputs, exact)


def prune(directory: str | os.PathLike) -> list[tuple[str, str]]:
    """Drop from the found-cases files in ``directory`` every case :func:`refusal` refuses.

    Returns (name, reason) of each dropped case; files rewritten atomically, removed when empty.
    Run on the shipped cases: ``python -c "from softmaxbench.suite.hunt import store;
    print(store.prune(store.package_dir()))"``.
    """
    dropped: list[tuple[str, str]] = []
    for p in sorted(Path(directory).glob("*.json")):
        doc = read_file(p)
        keep = []
        for entry in doc.get("cases", []):
            case = case_from_entry(entry, str(p))
            why = refusal(case.ops[0], case.build(case.dtypes[0]))
            if why:
                dropped.append((case.name, why))
            else:
                keep.append(entry)
        if len(keep) == len(doc.get("cases", [])):
            continue
        if not keep:
            p.unlink()
            continue
        doc["cases"] = keep
        _write(p, doc)
    return dropped


def _write(p: Path, doc: dict) -> None:
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(dumps(doc), encoding="utf-8")
    tmp.replace(p)


def save_found_case(out_dir: str | os.PathLike, backend: str, op: str, dtype: str,
                    entry: dict) -> tuple[str, bool]:
    """Add ``entry`` to ``out_dir/<backend>__<op>__<dtype>.json``; returns (name, added).

    An input already in the file (same name) is not added twice. The file keeps the
    :data:`MAX_CASES_PER_FILE` worst cases, so a case with lower errors than all of those is
    dropped again. Written atomically (write then rename).
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    p = d / file_name(backend, op, dtype)
    doc = read_file(p) if p.is_file() else {"format": FORMAT, "version": FORMAT_VERSION, "backend": backend,
                                            "op": op, "dtype": dtype, "cases": []}
    if any(e.get("name") == entry["name"] for e in doc["cases"]):
        return entry["name"], False
    cases = sorted([*doc["cases"], entry], key=_rank, reverse=True)[:MAX_CASES_PER_FILE]
    doc["cases"] = cases
    _write(p, doc)
    return entry["name"], any(e["name"] == entry["name"] for e in cases)
