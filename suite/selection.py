"""One backend selection for every verb (list, check, bench, hunt, run): names -> backend descriptions.

Backends are known here only as data (:class:`~softmaxbench.suite.isolation.channel.BackendInfo`,
from :func:`softmaxbench.suite.isolation.discovery.discover`); nothing of a backend is imported.
The rules, the same for every verb:

- no names: every available backend, except those that declare ``default_check_skip`` (when the
  verb honours it) and those refused (a name taken by a built-in or an earlier plugin); each one
  left out comes back in ``skipped`` with why;
- a name nobody provides: InputError (exit 2) with the close names and the reasons of plugins
  that failed to load;
- a name whose backend is unavailable here: InputError saying why;
- a name provided twice: the first owner (the built-in first of all) is taken, the other is
  refused with one line in ``skipped``;
- no names with ``--plugin``: the plugins' backends are what the user came to check, so their
  ``default_check_skip`` is not honoured, and when not one of them can run here (unavailable,
  refused, not loaded) that is an InputError (exit 2) saying why: a run that judged only the
  built-ins never looks like a plugin's green check.

>>> chosen, skipped = select_backends(["numpy"], ())
>>> [b.name for b in chosen]
['numpy']
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from softmaxbench.errors import InputError
from softmaxbench.suite.isolation.channel import BackendInfo, clean_text


def plugin_path(p) -> str:
    """One ``--plugin`` value: a .py file that must exist (else InputError), made absolute (workers
    run in private working directories), or a module name, unchanged."""
    import os
    from pathlib import Path

    p = str(p)
    shown = clean_text(p, 200)
    if not p.strip():
        raise InputError("--plugin must name a module or a .py file, got an empty string")
    if Path(p).is_dir():
        raise InputError(f"--plugin {shown}: is a directory, not a module name or a .py file")
    if p.endswith(".py") and not Path(p).is_file():
        raise InputError(f"--plugin {shown}: no such file")
    if not Path(p).is_file() and (os.sep in p or (os.altsep and os.altsep in p)):
        raise InputError(f"--plugin {shown}: no such file (a module name has no '{os.sep}')")
    return str(Path(p).resolve()) if Path(p).is_file() else p


def plugin_paths(plugins: Sequence[str]) -> tuple[str, ...]:
    """Every ``--plugin`` value through :func:`plugin_path`."""
    return tuple(plugin_path(p) for p in plugins)


def _label(info: BackendInfo) -> str:
    return info.name if info.origin == "builtin" else f"{info.name} [{info.origin}]"


def select_backends(names: Sequence[str] | None, plugins: Sequence[str] = (), *,
                    honour_default_skip: bool = True, infos: Sequence[BackendInfo] | None = None
                    ) -> tuple[list[BackendInfo], dict[str, str]]:
    """The backends to run and ``{label: why}`` of those left out (see the module's rules).

    A named backend that the (cached) discovery calls unknown or unavailable is asked about once
    more without the cache before that is an error: the cache is a file anything running as the
    user could have written, so it may speed a run up but never refuse one."""
    if infos is None:
        from softmaxbench.suite.isolation.discovery import discover

        try:
            return _select(names, discover(tuple(plugins)), honour_default_skip)
        except InputError:
            if not names:
                raise
            return _select(names, discover(tuple(plugins), refresh=True), honour_default_skip)
    return _select(names, infos, honour_default_skip)


def _from_plugin(info: BackendInfo) -> bool:
    return info.origin.startswith("plugin:")


def _select(names, infos, honour_default_skip):
    usable = {}
    for i in infos:
        if i.loaded and i.name not in usable:
            usable[i.name] = i
    refused = {_label(i): i.unavailable for i in infos if not i.loaded and i.unavailable
               and i.unavailable.startswith("refused")}
    if not names:
        chosen, skipped = [], dict(refused)
        for i in infos:
            if not i.loaded:
                if _label(i) not in skipped:
                    skipped[_label(i)] = i.unavailable or "could not be loaded"
                continue
            skip = i.default_check_skip if honour_default_skip and not _from_plugin(i) else None
            reason = i.unavailable or skip
            if reason:
                skipped[_label(i)] = reason
            else:
                chosen.append(i)
        if not chosen:
            raise InputError("no backend is available here; see 'softmaxbench list'")
        plugged = [i for i in infos if _from_plugin(i)]
        if plugged and not any(_from_plugin(i) for i in chosen):
            why = "; ".join(f"{clean_text(i.name, 64)}: "
                            f"{skipped.get(_label(i)) or i.unavailable or 'not usable'}" for i in plugged[:4])
            raise InputError(f"no backend of --plugin can run here ({clean_text(why, 500)}); "
                             f"see 'softmaxbench list --plugin ...'")
        return chosen, skipped
    chosen = []
    for raw in names:
        name = clean_text(raw, 80)
        info = usable.get(raw)
        if info is None:
            known = list(usable)
            close = difflib.get_close_matches(raw, known, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            broken = [f"{_label(i)}: {i.unavailable}" for i in infos
                      if not i.loaded and i.origin.startswith(("plugin", "entry-point"))]
            why = f" ({'; '.join(broken)[:600]})" if broken else ""
            raise InputError(f"unknown backend {name!r}{why}; {hint}see 'softmaxbench list'")
        if info.unavailable:
            raise InputError(f"backend {name!r} is unavailable here: {info.unavailable}")
        if info not in chosen:
            chosen.append(info)
    return chosen, refused


def validate_names(ops: Sequence[str] | None, dtypes: Sequence[str] | None,
                   cases: Sequence[str] | None, quick: bool) -> list:
    """Check op, dtype and case names (InputError, exit 2, on an unknown one); return the cases."""
    from softmaxbench.suite.conformance.api import select_cases
    from softmaxbench.vocabulary import DTYPES, OPS

    for kind, given, known in (("op", ops, OPS), ("dtype", dtypes, DTYPES)):
        for name in given or ():
            if name not in known:
                close = difflib.get_close_matches(name, known, n=3)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise InputError(f"unknown {kind} {clean_text(name, 80)!r}; {hint}"
                                 f"choose from {', '.join(known)}")
    try:
        return select_cases(cases, quick)
    except KeyError as exc:
        raise InputError(clean_text(str(exc.args[0]) if exc.args else str(exc), 600)) from None
