"""Known findings: which failing check records are already known, and why.

Two sources, both data (no backend code is imported):

- the record's own ``known`` field (a string: the reason), written by ``check --baseline`` /
  ``--known-failures``;
- the built-in backends' documented known failures, ``[[known_failure]]`` in
  ``backends/conventions.toml`` (backends, ops, fnmatch case patterns, dtypes, reason), read as a
  file from the installed package.

>>> import pandas as pd
>>> checks = pd.DataFrame([{"backend": "numpy", "op": "softmax", "case": "shape_empty_rows",
...     "dtype": "float32", "verdict": "error", "known": None}])
>>> mark_known(checks)["known"].item()[:26]
'conventions.toml: The text'
"""

from __future__ import annotations

import fnmatch
import importlib.util
import tomllib
from functools import cache
from pathlib import Path

import pandas as pd

FAILING = ("fail", "error", "timeout", "crash")


@cache
def builtin_known_failures() -> tuple[dict, ...]:
    """The ``[[known_failure]]`` entries of the installed conventions.toml (empty when absent)."""
    try:
        spec = importlib.util.find_spec("softmaxbench.backends")   # imports softmaxbench only
    except (ImportError, ValueError):
        return ()
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base) / "conventions.toml"
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError):
                return ()
            return tuple(e for e in data.get("known_failure", []) if isinstance(e, dict))
    return ()


def _matches(entry: dict, rec: dict) -> bool:
    def listed(field: str, value) -> bool:
        want = entry.get(field) or []
        return not want or any(fnmatch.fnmatchcase(str(value), str(p)) for p in want)

    return (str(rec.get("backend")) in [str(b) for b in entry.get("backends") or []]
            and listed("ops", rec.get("op")) and listed("cases", rec.get("case"))
            and listed("dtypes", rec.get("dtype")))


def _reason(entry: dict) -> str:
    return "conventions.toml: " + " ".join(str(entry.get("reason") or "documented known failure").split())


def mark_known(checks: pd.DataFrame) -> pd.DataFrame:
    """``checks`` with ``known`` set (the reason, a string) on every failing record that is known."""
    if checks.empty:
        return checks
    entries = builtin_known_failures()
    out = checks.copy()
    known = []
    for rec in out.to_dict("records"):
        own = rec.get("known")
        if isinstance(own, str) and own.strip():
            known.append(own.strip())
        elif own is True:
            known.append("known (no reason given)")
        elif rec.get("verdict") in FAILING:
            hit = next((e for e in entries if _matches(e, rec)), None)
            known.append(_reason(hit) if hit else None)
        else:
            known.append(None)
    out["known"] = known
    return out
