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
