"""The one place that decides "conforms": per-backend summaries, the gate, and the end of a check run.

A backend conforms when at least one of its records was checked (not ``unsupported``), no record
is a *new* failure (fail, error, crash or timeout, and deviation under ``strict``, that no known
failure explains: :mod:`softmaxbench.suite.conformance.known`), and, under ``strict``, no known
failure was *fixed* (a check a known failure names conforms now, like pytest's strict xfail).
Nothing checked never conforms: a selection where no record was checked is an input error
(exit 2), and a backend with no checked record is reported as such and fails the gate.

``check`` (:func:`conclude`), ``report --gate`` (:func:`gate`, re-exported by
``suite.records``) and the pytest entry point judge alike. Known and fixed records carry
``known: reason`` / ``fixed: reason`` in ``results.jsonl``, so a later ``report --gate`` over the
same records reaches the same verdict without the known-failures file.

>>> recs = [{"kind": "check", "backend": "b", "op": "softmax", "case": "c", "dtype": "float32",
...          "verdict": "error", "message": "raised", "known": "raises on empty axes"},
...         {"kind": "check", "backend": "b", "op": "softmax", "case": "d", "dtype": "float32",
...          "verdict": "pass"}]
>>> gate(recs)
(0, [])
>>> summarize(recs, ["b"])["b"]["conforms"], summarize(recs, ["b"])["b"]["known"]
(True, 1)
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from softmaxbench.suite.conformance.known import (
    FIXED,
    KNOWN,
    NEW,
    KnownFailures,
    annotate,
    failing_verdicts,
    fixed_reason,
    known_reason,
)
from softmaxbench.vocabulary import VERDICTS

#: Verdict columns of the summary table, in order.
SUMMARY_COLUMNS = ("pass", "deviation", "fail", "error", "unsupported", "timeout", "crash")
#: New failures printed in full (with their repro) at the end of a check run.
MAX_NEW_SHOWN = 10


def _input_error(message: str):
    from softmaxbench.errors import InputError

    return InputError(message)


def record_class(rec: dict, *, strict: bool = False) -> str | None:
    """'new', 'known' or 'fixed' for an annotated check record (None: conforms, or unsupported)."""
    if rec.get("verdict") in failing_verdicts(strict):
        return KNOWN if known_reason(rec) else NEW
    if fixed_reason(rec) and rec.get("verdict") != "unsupported":
        return FIXED
    return None


def summarize(records: list[dict], backends: Sequence[str], strict: bool = False) -> dict[str, dict]:
    """Per backend: verdict counts, deviations by name, checks, checked, known / new / fixed, conforms.

    ``records`` are annotated ones (:func:`known.annotate`) or plain ones (then every failure is new).

    >>> s = summarize([{"kind": "check", "backend": "b", "verdict": "pass"},
    ...                {"kind": "check", "backend": "b", "verdict": "deviation", "deviation": "x"},
    ...                {"kind": "check", "backend": "u", "verdict": "unsupported"}], ["b", "u"])
    >>> s["b"]["counts"], s["b"]["deviations"], s["b"]["conforms"]
    ({'pass': 1, 'deviation': 1}, {'x': 1}, True)
    >>> s["u"]["checked"], s["u"]["conforms"]
    (0, False)
    """
    out = {}
    for name in backends:
        recs = [r for r in records if r.get("kind") == "check" and r.get("backend") == name]
        counts = Counter(r.get("verdict") for r in recs)
        deviations = Counter(r.get("deviation") or "?" for r in recs if r.get("verdict") == "deviation")
        classes = Counter(record_class(r, strict=strict) for r in recs)
        checked = len(recs) - counts["unsupported"]
        conforms = checked > 0 and not classes[NEW] and not (strict and classes[FIXED])
        out[name] = {"counts": {v: counts[v] for v in VERDICTS if counts[v]}, "deviations": dict(deviations),
                     "checks": len(recs), "checked": checked, "known": classes[KNOWN], "new": classes[NEW],
                     "fixed": classes[FIXED], "conforms": conforms}
    return out


def summary_table(summary: dict[str, dict]) -> str:
    """The per-backend summary as a plain-text table (known / new / fixed columns when any is set)."""
    from tabulate import tabulate

    with_known = any(s.get("known") or s.get("fixed") for s in summary.values())
    extra = ["known", "new", "fixed"] if with_known else []
    rows = []
    for name, s in summary.items():
        c = s["counts"]
        verdict = "yes" if s["conforms"] else ("nothing checked" if not s.get("checked", s["checks"])
                                               else "NO")
        rows.append([name, s["checks"], *[c.get(v, 0) for v in SUMMARY_COLUMNS],
                     *[s.get(k, 0) for k in extra], verdict])
    return tabulate(rows, headers=["backend", "checks", *SUMMARY_COLUMNS, *extra, "conforms"])


def _line(r: dict) -> str:
    msg = r.get("message") or ""
    first = msg.splitlines()[0] if msg.strip() else ""
    what = f"{r.get('backend')} {r.get('op')} {r.get('case')} {r.get('dtype')}"
    return f"{what}: {r.get('verdict')}: {first}".rstrip(": ")


def gate(records: list[dict], *, strict: bool = False) -> tuple[int, list[str]]:
    """The conformance gate over check records: (exit code, one line per offending record).

    Exit 1 when any record is a new failure (fail, error, crash or timeout; deviation too with
    ``strict``) or, with ``strict``, a fixed known failure, or when a backend has check records
    but none was checked (all unsupported); else 0. Records marked ``known`` pass the gate. Used
    by ``check`` and by ``report --gate`` so both judge alike.

    >>> gate([{"kind": "check", "backend": "b", "op": "softmax", "case": "c", "dtype": "float32",
    ...        "verdict": "fail", "message": "3 ULP"}])
    (1, ['b softmax c float32: fail: 3 ULP'])
    """
    checks = [r for r in records if r.get("kind") == "check"]
    lines = []
    for r in checks:
        kind = record_class(r, strict=strict)
        if kind == NEW:
            lines.append(_line(r))
        elif kind == FIXED and strict:
            lines.append(f"{_line(r)} (a known failure, fixed: update the known failures; "
                         f"was: {fixed_reason(r)})")
    per_backend = Counter(r.get("backend") for r in checks)
    unsupported = Counter(r.get("backend") for r in checks if r.get("verdict") == "unsupported")
    for backend, n in per_backend.items():
        if unsupported[backend] == n:
            lines.append(f"{backend}: nothing checked: all {n} of its records are unsupported")
    return (1 if lines else 0), lines


# -- the end of a check run ----------------------------------------------------------------------
@dataclass
class Conclusion:
    """What a check run concluded: the summary, the exit code, and the lines that explain it."""

    summary: dict[str, dict]
    exit_code: int
    new: list[dict] = field(default_factory=list)
    known: list[dict] = field(default_factory=list)
    fixed: list[dict] = field(default_factory=list)
    strict: bool = False
    known_sources: list[str] = field(default_factory=list)

    def run_summary(self) -> dict:
        """What run.json keeps per backend."""
        keys = ("counts", "checked", "known", "new", "fixed", "conforms")
        return {n: {k: s[k] for k in keys} for n, s in self.summary.items()}

    def text(self, *, max_new: int = MAX_NEW_SHOWN) -> str:
        """The end-of-run text: the table, then the new failures (first, with repro), the fixed
        ones, the known ones counted by reason, the deviations, and backends that checked nothing."""
        out = [summary_table(self.summary)]
        if self.new:
            unknown = " (no known failure explains them)" if self.known_sources else ""
            out.append(f"\n{len(self.new)} NEW failure(s){unknown}:")
            for r in self.new[:max_new]:
                out.append(f"  NEW {_line(r)}")
                if r.get("repro"):
                    indented = "\n".join("      " + ln for ln in str(r["repro"]).splitlines())
                    out.append("    repro:\n" + indented)
            if len(self.new) > max_new:
                out.append(f"  ... and {len(self.new) - max_new} more new failures in results.jsonl")
            hint = _empty_axis_hint(self.new)
            if hint:
                out.append(hint)
        if self.fixed:
            how = "fails the run under --strict" if self.strict else "passes now; add --strict to fail on it"
            out.append(f"\n{len(self.fixed)} known failure(s) FIXED ({how}); update the known failures:")
            for r in self.fixed[:max_new]:
                what = f"{r.get('backend')} {r.get('op')} {r.get('case')} {r.get('dtype')}"
                out.append(f"  FIXED {what}: {r.get('verdict')} now (was known: {_short(fixed_reason(r))})")
            if len(self.fixed) > max_new:
                out.append(f"  ... and {len(self.fixed) - max_new} more")
        if self.known:
            by_reason = Counter((r.get("backend"), known_reason(r)) for r in self.known)
            out.append(f"\n{len(self.known)} known failure(s) (from {', '.join(self.known_sources)}), "
                       f"not failing the run:")
            for (backend, reason), n in by_reason.most_common():
                out.append(f"  {backend}: {n} x {_short(reason)}")
        for name, s in self.summary.items():
            if s["deviations"]:
                devs = ", ".join(f"{k} x{v}" for k, v in sorted(s["deviations"].items()))
                how = "counted as failures, --strict" if self.strict else "accepted"
                out.append(f"{name}: deviations ({how}): {devs}")
            if not s["checked"]:
                out.append(f"{name}: nothing checked: all {s['checks']} of its records are unsupported "
                           f"(it overrides none of the selected ops, or raised NotImplementedError); "
                           f"not conforming")
        return "\n".join(out)


def _short(text: str | None, width: int = 160) -> str:
    line = " ".join(str(text or "").split())
    return line if len(line) <= width else line[: width - 3] + "..."


EMPTY_AXIS_NOTE = ("the input has an empty axis (a 0 in its shape), where the reference returns an empty "
                   "result; x.max(axis) has no identity there and raises. Handle it (e.g. x.max(axis, "
                   "keepdims=True, initial=-np.inf)) or list it with a reason in a known-failures file.")


def raised_on_empty(rec: dict) -> bool:
    """Did the backend raise on an input with an empty axis (the commonest first surprise)?"""
    return rec.get("verdict") == "error" and 0 in (rec.get("shape") or [])


def _empty_axis_hint(new: list[dict]) -> str | None:
    empty = [r for r in new if raised_on_empty(r)]
    if not empty:
        return None
    return f"  note: {len(empty)} of them raise because {EMPTY_AXIS_NOTE}"


def conclude(records: list[dict], backends: Sequence[str], *, strict: bool = False,
             known: KnownFailures | None = None, out_dir: str | os.PathLike | None = None,
             interrupted: bool = False) -> Conclusion:
    """The end of a check run: classify, annotate (and rewrite ``out_dir/results.jsonl`` when
    ``known`` is given), summarize, decide the exit code.

    Raises InputError (exit 2) when no record of the selected backends was checked at all
    (unless the run was ``interrupted``: then it simply had not got there).
    """
    mine = [r for r in records if r.get("kind") == "check" and r.get("backend") in set(backends)]
    if known is not None or any(known_reason(r) or fixed_reason(r) for r in mine):
        annotate(mine, known, strict=strict)
        if out_dir is not None:
            rewrite_results(out_dir, records)
    summary = summarize(mine, backends, strict)
    if mine and not interrupted and not any(s["checked"] for s in summary.values()):
        raise _input_error(f"nothing was checked: all {len(mine)} records of the selection are "
                           f"'unsupported' ({', '.join(backends)} provide none of the selected ops and "
                           f"dtypes); see 'softmaxbench list' for what each backend declares")
    classes: dict[str, list[dict]] = {NEW: [], KNOWN: [], FIXED: []}
    for r in mine:
        kind = record_class(r, strict=strict)
        if kind:
            classes[kind].append(r)
    conforms = all(s["conforms"] for s in summary.values())
    return Conclusion(summary=summary, exit_code=0 if conforms else 1, new=classes[NEW], known=classes[KNOWN],
                      fixed=classes[FIXED], strict=strict, known_sources=list(known.sources) if known else [])


def rewrite_results(out_dir: str | os.PathLike, records: list[dict]) -> None:
    """Write ``records`` as ``out_dir/results.jsonl`` again, atomically (write, then rename)."""
    from softmaxbench.suite.records import RESULTS_FILE, ResultsWriter

    d = Path(out_dir)
    tmp = d / ".annotated"
    tmp.mkdir(exist_ok=True)
    (tmp / RESULTS_FILE).unlink(missing_ok=True)
    with ResultsWriter(tmp) as w:
        for r in records:
            w.write(r)
    (tmp / RESULTS_FILE).replace(d / RESULTS_FILE)
    tmp.rmdir()


def require_checks(backends: list, tasks: list, *, explicit: bool) -> tuple[list, dict[str, str]]:
    """Before a run: the backends to check and {name: why} of those left out.

    A selection where no backend declares any selected (op, dtype) is an input error (exit 2).
    Otherwise a backend that declares none of them is left out (with why) when the backends were
    not named, and kept when they were, so that its summary says "nothing checked" (not conforming).
    """
    from softmaxbench.suite.conformance.api import supports

    keep, left_out = [], {}
    for b in backends:
        if any(supports(b, t) for t in tasks):
            keep.append(b)
            continue
        ops = sorted({t.op for t in tasks})
        dtypes = sorted({t.dtype for t in tasks})
        left_out[b.name] = (f"declares none of the selected checks (ops {', '.join(ops)}; dtypes "
                            f"{', '.join(dtypes)}); it has ops {', '.join(b.supported_ops()) or 'none'} "
                            f"and dtypes {', '.join(b.dtypes) or 'none'}")
    if not keep:
        raise _input_error("nothing to check: "
                           + "; ".join(f"{k} {v}" for k, v in left_out.items()))
    if explicit:
        return list(backends), {}
    return keep, left_out


def print_conclusion(c: Conclusion, stream=None) -> None:
    print(c.text(), file=stream or sys.stdout)
