"""``softmaxbench list``: every backend with its device, framework version, dtypes, ops, and why it
is unavailable where it is.

The listing is data from discovery workers (:mod:`softmaxbench.suite.isolation.discovery`):
this process imports no adapter, framework or plugin, so a plugin that prints, raises, hangs or
exits at import becomes one ``unavailable`` row and ``--json`` stays valid JSON. Discovery is
cached per environment, so a warm ``list`` starts no worker at all.

>>> rows = backend_rows()
>>> rows[0]["name"], rows[0]["available"]
('numpy', True)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import click

from softmaxbench.vocabulary import OPS

COLUMNS = ("backend", "device", "framework", "dtypes", "ops", "status")


def backend_rows(plugins: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One JSON-able dict per discovered backend (the ``--json`` output)."""
    from softmaxbench.suite.isolation.discovery import discover
    from softmaxbench.suite.selection import plugin_paths

    rows = []
    for i in discover(plugin_paths(plugins)):
        rows.append({
            "name": i.name,
            "origin": i.origin,
            "device": i.device if i.loaded else None,
            "framework": i.framework,
            "framework_version": i.framework_version,
            "dtypes": list(i.dtypes),
            "ops": list(i.ops),
            "available": i.loaded and i.unavailable is None,
            "unavailable": i.unavailable if i.unavailable or not i.loaded else None,
            "conventions": sorted(i.conventions),
        })
    return rows


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
