"""Options shared by several verbs: the selection flags and comma-separated lists."""

from __future__ import annotations

import click


def split_csv(value: str | None) -> list[str] | None:
    """'a,b, c' -> ['a', 'b', 'c']; None or '' -> None (meaning: all)."""
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


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
