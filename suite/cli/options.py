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


def positive_seconds(value, flag: str) -> float:
    """A positive, finite number of seconds (InputError, exit 2, otherwise: 0, -3, nan, inf)."""
    import math

    from softmaxbench.errors import InputError

    if value is None or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{flag} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def bounded_int(value, flag: str, low: int, high: int):
    """``value`` (None passes) within [low, high] (InputError, exit 2, otherwise)."""
    from softmaxbench.errors import InputError

    if value is not None and not low <= value <= high:
        raise InputError(f"{flag} must be between {low} and {high}, got {value}")
    return value


def usable_out_dir(value, flag: str = "--out"):
    """A results directory that exists or can be made: '' or a file (or a path under one), or a
    place where no directory can be made, is bad input (exit 2). Whatever this check made is
    removed again (bad input leaves nothing behind); the verb makes the directory itself."""
    import os
    from pathlib import Path

    from softmaxbench.errors import InputError
    from softmaxbench.suite.isolation.channel import clean_text

    if value is None or not str(value).strip():
        raise InputError(f"{flag} must name a directory, got an empty string")
    p = Path(value)
    shown = clean_text(str(value), 200)
    if p.exists():
        if not p.is_dir():
            raise InputError(f"{flag} {shown}: exists and is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise InputError(f"{flag} {shown}: the directory is not writable")
        return p
    made = []
    try:
        missing = [p]
        while not missing[-1].parent.exists() and missing[-1].parent != missing[-1]:
            missing.append(missing[-1].parent)
        if not missing[-1].parent.is_dir():
            raise InputError(f"{flag} {shown}: {clean_text(str(missing[-1].parent), 200)} is not a directory")
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
    except OSError as exc:
        raise InputError(f"{flag} {shown}: cannot make this directory ({exc.strerror or exc})") from None
    finally:
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass
    return p


def usable_out_file(value, flag: str):
    """A file the verb will write: not a directory, and in a directory that exists or can be made."""
    from pathlib import Path

    from softmaxbench.errors import InputError
    from softmaxbench.suite.isolation.channel import clean_text

    if value is None:
        return None
    if not str(value).strip():
        raise InputError(f"{flag} must name a file, got an empty string")
    p = Path(value)
    if p.is_dir():
        raise InputError(f"{flag} {clean_text(str(value), 200)}: is a directory")
    usable_out_dir(p.parent if str(p.parent) else ".", f"{flag} {clean_text(str(value), 200)}: its folder")
    return p
