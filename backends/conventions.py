"""Backends' documented conventions that differ from the reference, as data with reasons and links.

The built-ins' conventions live in ``conventions.toml`` beside this file, each found by running
the framework (the ``observed`` field says how). The deviation verdict reads them through
:func:`for_backend`; checks never test a backend's name.

A third-party backend declares its own through its ``conventions`` attribute, either a tuple of
deviation names or a dict ``{name: {"reason": ..., "link": ...}}``:

>>> from softmaxbench.backends import Backend
>>> class MyKernel(Backend):
...     name = "my-kernel"
...     conventions = {"nan_row_for_posinf": {"reason": "no special-casing of +inf", "link": ""}}
>>> for_backend(MyKernel())["nan_row_for_posinf"]["reason"]
'no special-casing of +inf'
>>> sorted(for_backend(_builtin("torch-cpu")))[:1]
['nan_for_zero_mass_neginf']
"""

from __future__ import annotations

import logging
import tomllib
from functools import cache
from importlib import resources
from typing import Any

log = logging.getLogger("softmaxbench.backends")

DATA_FILE = "conventions.toml"


@cache
def _table() -> dict[str, list[dict[str, Any]]]:
    text = resources.files("softmaxbench.backends").joinpath(DATA_FILE).read_text(encoding="utf-8")
    table = tomllib.loads(text)
    for entries in table.values():  # multi-line TOML strings -> one line each, for messages
        for e in entries:
            for key in ("reason", "observed", "expected", "accepted"):
                if isinstance(e.get(key), str):
                    e[key] = " ".join(e[key].split())
    return table


def accepted() -> dict[str, dict[str, Any]]:
    """Every ``[[convention]]`` entry by name: the accepted conventions themselves (ops, expected,
    accepted, reason), whichever backend follows them.

    >>> sorted(accepted()["zero_for_all_ignored"]["ops"])
    ['cross_entropy', 'cross_entropy_grad']
    """
    return {e["name"]: e for e in _table().get("convention", [])}


def entries() -> list[dict[str, Any]]:
    """Every ``[[deviation]]`` entry of the data file (name, backends, ops, reason, link, observed)."""
    return list(_table().get("deviation", []))


def known_failures() -> list[dict[str, Any]]:
    """Every ``[[known_failure]]`` entry: behaviours that stay a fail/error, with their reasons
    (backends, ops, cases as fnmatch patterns, dtypes (empty: all), reason, observed)."""
    return list(_table().get("known_failure", []))


def declared(backend_name: str) -> tuple[str, ...]:
    """Deviation names the data file records for built-in ``backend_name`` (its ``conventions``)."""
    return tuple(dict.fromkeys(e["name"] for e in entries() if backend_name in e["backends"]))


def _known_names() -> set[str] | None:
    """The deviation names the reference accepts, or None while reference.special is missing."""
    try:
        from softmaxbench.reference.special import DEVIATIONS
    except ImportError:
        return None
    return set(DEVIATIONS)


def _is_builtin(backend: Any) -> bool:
    from softmaxbench.backends.registry import BUILTINS

    target = BUILTINS.get(getattr(backend, "name", ""))
    return target is not None and target == f"{type(backend).__module__}:{type(backend).__qualname__}"


def _builtin(name: str):
    """The built-in backend ``name`` (for examples and tests)."""
    from softmaxbench.backends.registry import builtin

    return builtin(name)


def for_backend(backend: Any) -> dict[str, dict[str, Any]]:
    """``{deviation name: {"reason", "link", "ops"}}`` for ``backend``.

    Built-ins read the data file; any backend may add to it through its ``conventions``
    attribute (names, or a dict of name -> {"reason", "link"}). Names the reference does not
    know are dropped with a warning: they could never match an accepted alternative.
    """
    result: dict[str, dict[str, Any]] = {}
    if _is_builtin(backend):
        for e in entries():
            if backend.name in e["backends"]:
                result[e["name"]] = {"reason": e["reason"], "link": e.get("link", ""),
                                     "ops": tuple(e.get("ops", ()))}
    declared_attr = getattr(backend, "conventions", ()) or ()
    if isinstance(declared_attr, dict):
        for name, info in declared_attr.items():
            info = info if isinstance(info, dict) else {"reason": str(info)}
            result.setdefault(name, {"reason": str(info.get("reason", "")), "link": str(info.get("link", "")),
                                     "ops": tuple(info.get("ops", ()))})
    else:
        for name in declared_attr:
            result.setdefault(name, {"reason": "declared by the backend", "link": "", "ops": ()})
    known = _known_names()
    if known is not None:
        for name in [n for n in result if n not in known]:
            log.warning("backend %r declares unknown deviation %r (known: %s); ignored",
                        getattr(backend, "name", "?"), name, ", ".join(sorted(known)))
            del result[name]
    return result
