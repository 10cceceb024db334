"""``softmaxbench list``: every backend with its device, framework version, dtypes, ops, and why it
is unavailable where it is.

Framework versions come from the installed distributions' metadata; availability from each
backend's ``unavailable()``, whose built-in GPU checks ask the driver before importing anything.
So listing imports no framework on a machine without a GPU.

>>> rows = backend_rows()
>>> rows[0]["name"], rows[0]["available"]
('numpy', True)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import click

from softmaxbench.backends.base import OPS
from softmaxbench.backends.registry import discover

COLUMNS = ("backend", "device", "framework", "dtypes", "ops", "status")


def backend_rows(plugins: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One JSON-able dict per discovered backend (the ``--json`` output)."""
    rows = []
    for e in discover(tuple(plugins), check=True):
        b = e.backend
        framework = getattr(b, "framework", "") if b is not None else ""
        try:
            version = b.framework_version() if b is not None else ""
        except Exception:  # a plugin's version lookup must not break the listing
            version = ""
        rows.append({
            "name": e.name,
            "origin": e.origin,
            "device": getattr(b, "device", None),
            "framework": framework,
            "framework_version": version,
            "dtypes": list(getattr(b, "dtypes", ())),
            "ops": list(b.supported_ops()) if b is not None else [],
            "available": e.unavailable is None,
            "unavailable": e.unavailable,
            "conventions": _conventions(b),
        })
    return rows


def _conventions(backend) -> list[str]:
    if backend is None:
        return []
    from softmaxbench.backends.conventions import for_backend

    try:
        return sorted(for_backend(backend))
    except Exception:  # a malformed declaration is the check's business, not the listing's
        return []


def _ops_cell(ops: list[str]) -> str:
    if list(ops) == list(OPS):
        return f"all {len(OPS)}"
    if not ops:
        return "none"
    return ",".join(ops)


def _table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    body = []
    for r in rows:
        framework = f"{r['framework']} {r['framework_version']}".strip() if r["framework"] else ""
        if r["framework"] and not r["framework_version"]:
            framework += " (not installed)"
        status = "available" if r["available"] else f"unavailable: {r['unavailable']}"
        name = r["name"] if r["origin"] == "builtin" else f"{r['name']} [{r['origin']}]"
        body.append((name, r["device"] or "", framework, ",".join(r["dtypes"]), _ops_cell(r["ops"]), status))
    return tabulate(body, headers=list(COLUMNS))


def list_main(plugins: Iterable[str] = (), as_json: bool = False) -> int:
    """The ``list`` verb: print the table (or JSON) and return exit code 0."""
    rows = backend_rows(plugins)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return 0
    click.echo(_table(rows))
    n_ok = sum(r["available"] for r in rows)
    click.echo(f"{len(rows)} backends, {n_ok} available here")
    return 0


@click.command("list")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE_OR_FILE.py")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(plugins: tuple[str, ...], as_json: bool) -> None:
    """List every backend: device, framework version, dtypes, ops, and why it is unavailable."""
    return list_main(plugins=plugins, as_json=as_json)
