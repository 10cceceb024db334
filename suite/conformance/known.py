"""Known failures: the failures a project has already seen and accepted, so CI gates on new ones only.

A real framework has real, known defects (float16 overflow of long rows, errors on empty axes,
...). A gate that is red forever gets switched off, so ``softmaxbench check`` takes what is known
from two places, and exits 1 only on a failure that neither explains:

* ``--known-failures FILE``: a TOML file the project keeps in its repository, one
  ``[[known_failure]]`` table per finding, with glob patterns and a reason::

      [[known_failure]]
      backend = "my-kernel"                  # fnmatch patterns: a string or a list; omitted = any
      op = ["softmax", "log_softmax"]
      case = "shape_empty*"
      dtype = "*"
      verdict = ["error"]                    # optional: only these verdicts are known
      reason = "our kernel raises on an empty axis (issue #12)"

  The plural keys of ``backends/conventions.toml`` (``backends``, ``ops``, ``cases``,
  ``dtypes``) work too, so ``--known-failures builtin`` reads the built-in backends' documented
  findings (their ``[[known_failure]]`` entries) as such a file.
* ``--baseline DIR``: a previous results directory; every check that failed there is known.

Each check record is then *new* (failing, unexplained: the gate fails), *known* (failing, matched:
the gate passes; the record gets ``known: reason``), *fixed* (matched, but passes now: the record
gets ``fixed: reason``; the gate fails under ``--strict``, like pytest's strict xfail), or neither.

>>> kf = parse_known_failures('''
... [[known_failure]]
... backend = "my-kernel"
... case = "shape_empty*"
... reason = "raises on an empty axis"
... ''', origin="known.toml")
>>> rec = {"kind": "check", "backend": "my-kernel", "op": "softmax", "case": "shape_empty_rows",
...        "dtype": "float32", "verdict": "error"}
>>> kf.match(rec).reason
'raises on an empty axis'
>>> classify(rec, kf)
'known'
>>> classify(dict(rec, verdict="pass"), kf), classify(dict(rec, case="dist_normal_scale_1"), kf)
('fixed', 'new')

``python -m softmaxbench.suite.conformance.known DIR`` prints a known-failures file listing every
failure of the results directory DIR, to edit (each reason says what was seen) and commit.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from softmaxbench.vocabulary import DTYPES, FAILING, OPS, VERDICTS

#: The name that stands for the built-in backends' documented known failures.
BUILTIN = "builtin"
#: The array of tables a known-failures file holds.
TABLE = "known_failure"
#: Keys of one entry: the singular spelling and the plural one of conventions.toml.
PATTERN_KEYS = {"backend": "backends", "op": "ops", "case": "cases", "dtype": "dtypes", "verdict": "verdicts"}
OTHER_KEYS = {"reason", "observed", "link"}
#: Top-level tables a known-failures file may hold besides [[known_failure]]: conventions.toml's
#: [[deviation]] entries are read by the deviation verdict, not here.
IGNORED_TABLES = {"deviation"}

#: Classes of a check record against the known failures.
NEW, KNOWN, FIXED = "new", "known", "fixed"


def _input_error(message: str):
    from softmaxbench.errors import InputError

    return InputError(message)


def failing_verdicts(strict: bool = False) -> tuple[str, ...]:
    """The verdicts that make a backend non-conforming (deviation too with ``strict``)."""
    return FAILING + (("deviation",) if strict else ())


@dataclass(frozen=True)
class KnownFailure:
    """One known finding: fnmatch patterns per field (empty: any) and why it is accepted."""

    reason: str
    backends: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    cases: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    #: verdicts it covers (empty: any failing verdict)
    verdicts: tuple[str, ...] = ()
    origin: str = ""

    def covers(self, rec: dict) -> bool:
        """Does the entry name this record's backend, op, case and dtype (whatever its verdict)?"""
        return all(not pats or any(fnmatch.fnmatchcase(str(rec.get(key)), p) for p in pats)
                   for key, pats in (("backend", self.backends), ("op", self.ops),
                                     ("case", self.cases), ("dtype", self.dtypes)))

    def explains(self, rec: dict) -> bool:
        """Does it cover the record and its verdict?"""
        return self.covers(rec) and (not self.verdicts or rec.get("verdict") in self.verdicts)


@dataclass
class KnownFailures:
    """Known failures from files and baselines; :meth:`match` finds the one explaining a record."""

    entries: list[KnownFailure] = field(default_factory=list)
    #: (backend, op, case, dtype) -> entry, for baselines (one entry per failed record)
    exact: dict[tuple, KnownFailure] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.entries or self.exact)

    def __len__(self) -> int:
        return len(self.entries) + len(self.exact)

    def extend(self, other: KnownFailures) -> KnownFailures:
        self.entries.extend(other.entries)
        for key, entry in other.exact.items():
            self.exact.setdefault(key, entry)
        self.sources.extend(other.sources)
        return self

    def _candidates(self, rec: dict) -> Iterable[KnownFailure]:
        # Written entries first: their reasons say why; a baseline's only that it failed before.
        yield from self.entries
        hit = self.exact.get(record_key(rec))
        if hit is not None:
            yield hit

    def match(self, rec: dict) -> KnownFailure | None:
        """The first entry that explains ``rec`` (its backend, op, case, dtype and verdict)."""
        return next((e for e in self._candidates(rec) if e.explains(rec)), None)

    def covering(self, rec: dict) -> KnownFailure | None:
        """The first entry that names ``rec`` whatever its verdict (to tell a fixed one)."""
        return next((e for e in self._candidates(rec) if e.covers(rec)), None)


def record_key(rec: dict) -> tuple:
    return (rec.get("backend"), rec.get("op"), rec.get("case"), rec.get("dtype"))


# -- loading ---------------------------------------------------------------------------------------
def _patterns(value, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _input_error(f"{where}: {key} must be a pattern or a list of patterns (strings)")
    return tuple(v.strip() for v in value)


def _check_names(pats: tuple[str, ...], known: Sequence[str], where: str, key: str) -> None:
    """A pattern that matches none of the names there are is a typo: say so now, not never."""
    import difflib

    for p in pats:
        if not any(fnmatch.fnmatchcase(name, p) for name in known):
            close = difflib.get_close_matches(p, known, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise _input_error(f"{where}: {key} {p!r} matches no {key}; {hint}choose from {', '.join(known)}")


def entry_from_table(table, where: str, *, origin: str = "") -> KnownFailure:
    """One validated entry from a ``[[known_failure]]`` table (InputError, exit 2, if malformed)."""
    if not isinstance(table, dict):
        raise _input_error(f"{where}: each [[{TABLE}]] must be a table")
    plural_of = dict(PATTERN_KEYS)
    singular_of = {v: k for k, v in plural_of.items()}
    fields: dict[str, tuple[str, ...]] = {}
    for key, value in table.items():
        if key in OTHER_KEYS:
            if not isinstance(value, str):
                raise _input_error(f"{where}: {key} must be a string")
            continue
        name = singular_of.get(key, key)
        if name not in plural_of:
            allowed = sorted([*plural_of, *OTHER_KEYS])
            raise _input_error(f"{where}: unknown key {key!r}; an entry has {', '.join(allowed)}")
        if name in fields:
            raise _input_error(f"{where}: both {name!r} and {plural_of[name]!r} given")
        pats = _patterns(value, where, key)
        fields[name] = () if pats == ("*",) else pats
    reason = table.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise _input_error(f"{where}: every known failure needs a reason (why it is accepted)")
    _check_names(fields.get("op", ()), OPS, where, "op")
    _check_names(fields.get("dtype", ()), DTYPES, where, "dtype")
    _check_names(fields.get("verdict", ()), [v for v in VERDICTS if v not in ("pass", "unsupported")],
                 where, "verdict")
    return KnownFailure(reason=" ".join(reason.split()), backends=fields.get("backend", ()),
                        ops=fields.get("op", ()), cases=fields.get("case", ()),
                        dtypes=fields.get("dtype", ()), verdicts=fields.get("verdict", ()),
                        origin=origin or where)


def parse_known_failures(text: str, origin: str = "<string>") -> KnownFailures:
    """Parse and validate the TOML text of a known-failures file (InputError on anything wrong)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _input_error(f"--known-failures {origin}: not valid TOML: {exc}") from None
    unknown = [k for k in doc if k != TABLE and k not in IGNORED_TABLES]
    if unknown:
        raise _input_error(f"--known-failures {origin}: unknown top-level key {unknown[0]!r}; the file "
                           f"holds [[{TABLE}]] tables")
    tables = doc.get(TABLE, [])
    if not isinstance(tables, list):
        raise _input_error(f"--known-failures {origin}: write each entry as [[{TABLE}]]")
    entries = [entry_from_table(t, f"--known-failures {origin}: entry {i}", origin=f"{origin} entry {i}")
               for i, t in enumerate(tables, 1)]
    return KnownFailures(entries=entries, sources=[origin])


def builtin_known_failures() -> KnownFailures:
    """The built-in backends' documented known failures: the ``[[known_failure]]`` entries of
    ``backends/conventions.toml``, and the regression cases ``softmaxbench hunt`` saved with the
    package (``reference/found/``) that failed on the backend they were found on."""
    from softmaxbench.backends import conventions
    from softmaxbench.suite.hunt import store

    entries = [entry_from_table({k: v for k, v in e.items() if v != []}, f"conventions.toml entry {i}",
                                origin=f"builtin: conventions.toml entry {i}")
               for i, e in enumerate(conventions.known_failures(), 1)]
    exact: dict[tuple, KnownFailure] = {}
    for case in store.load_found_cases([store.package_dir()]):
        verdict = case.entry.get("verdict")
        if verdict not in FAILING:
            continue
        key = (case.backend, case.ops[0], case.name, case.dtypes[0])
        exact[key] = KnownFailure(reason=f"{verdict} where {case.description}", backends=(key[0],),
                                  ops=(key[1],), cases=(key[2],), dtypes=(key[3],),
                                  origin=f"builtin: {Path(case.path).name}")
    return KnownFailures(entries=entries, exact=exact, sources=[BUILTIN])


def load_known_failures(spec: str | os.PathLike) -> KnownFailures:
    """``builtin``, or the path of a known-failures TOML file (InputError, exit 2, when bad)."""
    if str(spec) == BUILTIN:
        return builtin_known_failures()
    p = Path(spec)
    if not p.is_file():
        raise _input_error(f"--known-failures {spec}: no such file (or use '{BUILTIN}' for the "
                           f"built-in backends' documented findings)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _input_error(f"--known-failures {spec}: cannot read it: {exc}") from None
    return parse_known_failures(text, origin=str(spec))


def baseline_known_failures(path: str | os.PathLike) -> KnownFailures:
    """Every check that did not conform in the results directory ``path`` (a previous run).

    A record that failed (fail, error, timeout, crash) there is known as any failing verdict; a
    deviation only as a deviation (a deviation that became a fail is new).
    """
    from softmaxbench.suite.records import RecordError, read_results

    p = Path(path)
    if not p.exists():
        raise _input_error(f"--baseline {path}: no such results directory")
    try:
        records = read_results(p)
    except RecordError as exc:
        raise _input_error(f"--baseline {path}: {exc}") from None
    checks = [r for r in records if r.get("kind") == "check"]
    if not checks:
        raise _input_error(f"--baseline {path}: holds no check records (is it a 'softmaxbench check' "
                           f"results directory?)")
    exact: dict[tuple, KnownFailure] = {}
    for r in checks:
        key = record_key(r)
        verdict = r.get("verdict")
        if verdict in FAILING:
            covers = FAILING
        elif verdict == "deviation":
            covers = ("deviation",)
        else:
            exact.pop(key, None)  # a later record of the same check (a resumed run) has the last word
            continue
        first = _first_line(r.get("known") if isinstance(r.get("known"), str) else r.get("message"))
        exact[key] = KnownFailure(reason=f"{verdict} in the baseline {path} too: {first}".rstrip(": "),
                                  backends=(str(key[0]),), ops=(str(key[1]),), cases=(str(key[2]),),
                                  dtypes=(str(key[3]),), verdicts=covers, origin=f"baseline {path}")
    return KnownFailures(exact=exact, sources=[f"baseline {path}"])


def load(known_failures: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
         baseline: str | os.PathLike | None = None) -> KnownFailures | None:
    """Everything known from ``--known-failures`` (one or several) and ``--baseline``; None if neither."""
    specs = [known_failures] if isinstance(known_failures, (str, os.PathLike)) else list(known_failures or ())
    if not specs and not baseline:
        return None
    known = KnownFailures()
    for spec in specs:
        known.extend(load_known_failures(spec))
    if baseline:
        known.extend(baseline_known_failures(baseline))
    return known


def _first_line(text, width: int = 200) -> str:
    line = str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""
    return line if len(line) <= width else line[: width - 3] + "..."


# -- classification ------------------------------------------------------------------------------
def classify(rec: dict, known: KnownFailures | None, *, strict: bool = False) -> str | None:
    """'new' or 'known' for a failing record, 'fixed' for one a known failure names that conforms
    now, None otherwise. One record alone: :func:`annotate` judges an entry by all it covers.
    """
    verdict = rec.get("verdict")
    if verdict in failing_verdicts(strict):
        return KNOWN if known is not None and known.match(rec) else NEW
    if verdict == "unsupported" or known is None:
        return None
    return FIXED if known.covering(rec) is not None else None


def annotate(records: list[dict], known: KnownFailures | None, *, strict: bool = False) -> list[dict]:
    """Set ``known: reason`` on each known failure and ``fixed: reason`` on the checks of each
    *fixed* known failure (clearing what an earlier annotation left); returns ``records``.

    A known failure is fixed when it names at least one checked record and none of those fails
    any more (like an xfail that passes). A pattern entry is judged by everything it names, so
    a broad entry ("empty axes raise", dtypes: any) is not fixed while one of its checks still
    fails; a baseline's entry names one check.
    """
    checks = [r for r in records if r.get("kind") == "check"]
    for rec in checks:
        rec.pop("known", None)
        rec.pop("fixed", None)
    if known is None:
        return records
    failing = failing_verdicts(strict)
    still_fails: set[int] = set()  # ids of entries that name a failing record
    conforming: dict[int, list[dict]] = {}
    entries: dict[int, KnownFailure] = {}
    for rec in checks:
        verdict = rec.get("verdict")
        if verdict in failing:
            hit = known.match(rec)
            if hit is not None:
                rec["known"] = hit.reason
        if verdict == "unsupported":
            continue
        for entry in known._candidates(rec):
            if entry.covers(rec):
                entries[id(entry)] = entry
                if verdict in failing:
                    still_fails.add(id(entry))
                else:
                    conforming.setdefault(id(entry), []).append(rec)
    for key, recs in conforming.items():
        if key not in still_fails:
            for rec in recs:
                rec.setdefault("fixed", entries[key].reason)
    return records


def known_reason(rec: dict) -> str | None:
    """The ``known`` reason of an annotated record (None when absent; a report's NaN is absent)."""
    value = rec.get("known")
    return value if isinstance(value, str) and value else None


def fixed_reason(rec: dict) -> str | None:
    value = rec.get("fixed")
    return value if isinstance(value, str) and value else None


# -- writing a file from a run -------------------------------------------------------------------
def _toml_str(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_toml_str(s) for s in items) + "]"


def known_failures_toml(records: Iterable[dict], *, source: str = "", strict: bool = False) -> str:
    """A known-failures file listing the failures among ``records``: one entry per backend, case
    and verdict (its ops and dtypes listed), the first message as the reason to edit."""
    groups: dict[tuple, dict] = {}
    for r in records:
        if r.get("kind") != "check" or r.get("verdict") not in failing_verdicts(strict):
            continue
        g = groups.setdefault((r.get("backend"), r.get("case"), r.get("verdict")),
                              {"ops": [], "dtypes": [], "message": r.get("message")})
        for key, value in (("ops", r.get("op")), ("dtypes", r.get("dtype"))):
            if value not in g[key]:
                g[key].append(value)
    lines = ["# softmaxbench known failures: `softmaxbench check --known-failures THIS_FILE` exits 1 only",
             "# on a failure no entry explains. Patterns are fnmatch globs; replace each reason by why",
             "# the failure is accepted (an issue link is best)."]
    if source:
        lines.append(f"# Written from the failures in {source}.")
    for (backend, case, verdict), g in groups.items():
        lines += ["", f"[[{TABLE}]]", f"backend = {_toml_str(str(backend))}",
                  f"op = {_toml_list([str(o) for o in g['ops']])}", f"case = {_toml_str(str(case))}",
                  f"dtype = {_toml_list([str(d) for d in g['dtypes']])}",
                  f"verdict = [{_toml_str(str(verdict))}]",
                  f"reason = {_toml_str('seen: ' + _first_line(g['message'], 300))}"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m softmaxbench.suite.conformance.known DIR``: print a known-failures file of DIR."""
    from softmaxbench.suite.records import RecordError, read_results

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m softmaxbench.suite.conformance.known RESULTS_DIR > known-failures.toml",
              file=sys.stderr)
        return 2
    try:
        records = read_results(args[0])
    except RecordError as exc:
        print(f"softmaxbench: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(known_failures_toml(records, source=args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
