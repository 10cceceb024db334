"""``softmaxbench cases``: the case catalogue as a table or JSON."""

from __future__ import annotations

import click

from softmaxbench.errors import InputError


@click.command("cases")
@click.option("--category", default=None, help="Only cases of this category.")
@click.option("--quick", is_flag=True, help="Only the cases of the quick subset.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cases_cmd(category: str | None, quick: bool, as_json: bool) -> None:
    """List the case catalogue: name, category, shape, axis, ops and dtypes."""
    import json

    from softmaxbench.reference.cases import CATEGORIES, CE_OPS, NON_CE_OPS, catalogue

    if category is not None and category not in CATEGORIES:
        raise InputError(f"no case has category {category!r}; choose from {', '.join(CATEGORIES)}")
    cases = [c for c in catalogue() if (category is None or c.category == category)
             and (not quick or c.quick)]
    if as_json:
        click.echo(json.dumps([c.summary() for c in cases], indent=1))
        return
    from tabulate import tabulate

    op_names = {CE_OPS: "cross-entropy", NON_CE_OPS: "all but cross-entropy"}
    rows = [(c.name, c.category, "x".join(map(str, c.shape)) or "()", c.axis,
             op_names.get(c.ops, ",".join(c.ops) if len(c.ops) < 7 else "all"),
             ",".join(c.dtypes) if len(c.dtypes) < 4 else "all",
             "yes" if c.quick else "", "raises" if c.expect_error else "") for c in cases]
    click.echo(tabulate(rows, headers=["case", "category", "shape", "axis", "ops", "dtypes", "quick",
                                       "expect"]))
    click.echo(f"{len(cases)} cases")


# ---------------------------------------------------------------------------------------------
# Verbs. Each body only translates options and delegates to the module that owns the work.
# Shared selection options:
def selection_options(f):
    """--backends/--ops/--dtypes/--cases/--plugin/--quick, shared by check, bench, run, hunt."""
    f = click.option("--quick", is_flag=True, help="Small representative subset.")(f)
    f = click.option("--plugin", "plugins", multiple=True, metavar="MODULE_OR_FILE.py",
                     help="Load third-party backends from a module or .py file (repeatable).")(f)
    f = click.option("--cases", default=None, metavar="A,B", help="Case names (default: all).")(f)
    f = click.option("--dtypes", default=None, metavar="A,B",
                     help="float16,bfloat16,float32,float64 (default: all the backend supports).")(f)
    f = click.option("--ops", default=None, metavar="A,B", help="Ops (default: all).")(f)
    f = click.option("--backends", default=None, metavar="A,B",
                     help="Backend names (default: every available backend).")(f)
    return f
