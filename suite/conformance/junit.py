"""JUnit XML from check records, for CI systems that display test reports (``--junit-xml PATH``).

One ``<testcase>`` per record, one ``<testsuite>`` per backend. ``fail`` becomes a
``<failure>``; ``error``, ``crash`` and ``timeout`` an ``<error>``; ``unsupported`` and
``deviation`` are ``<skipped>`` with the record's message (a deviation is a ``<failure>``
under ``strict``, as the exit code then counts it). The repro snippet goes in the body.
A known failure (a record with ``known: reason``, see :mod:`.known`) is ``<skipped>`` with
``known failure: <reason>``, so the CI's test report stays green on what is already known; a
fixed known failure (``fixed: reason``) passes, or is a ``<failure>`` under ``strict``.

>>> import tempfile, os, xml.etree.ElementTree as ET
>>> recs = [{"kind": "check", "backend": "b", "op": "softmax", "case": "c", "dtype": "float32",
...          "verdict": "fail", "message": "wrong", "repro": "print(1)"}]
>>> path = os.path.join(tempfile.mkdtemp(), "junit.xml")
>>> write_junit(recs, path)
>>> ET.parse(path).getroot().get("failures")
'1'
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

FAILURE_VERDICTS = ("fail",)
ERROR_VERDICTS = ("error", "crash", "timeout")
SKIPPED_VERDICTS = ("unsupported", "deviation")


def junit_name(rec: dict) -> str:
    """'<op>[<case>-<dtype>]', the way pytest names a parametrized test."""
    return f"{rec.get('op')}[{rec.get('case')}-{rec.get('dtype')}]"


def build_junit(records: Iterable[dict], *, strict: bool = False) -> ET.Element:
    """The ``<testsuites>`` element for ``records`` (check records only; others are ignored)."""
    root = ET.Element("testsuites", name="softmaxbench check")
    suites: dict[str, ET.Element] = {}
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for rec in records:
        if rec.get("kind", "check") != "check":
            continue
        backend = str(rec.get("backend"))
        suite = suites.get(backend)
        if suite is None:
            suite = suites[backend] = ET.SubElement(root, "testsuite", name=f"softmaxbench.{backend}")
            suite.attrib.update({k: "0" for k in totals})
        case = ET.SubElement(suite, "testcase", classname=f"softmaxbench.{backend}.{rec.get('op')}",
                             name=junit_name(rec))
        if rec.get("duration_s") is not None:
            case.set("time", f"{rec['duration_s']:.6f}")
        verdict = rec.get("verdict")
        message = _clean(rec.get("message") or verdict or "")
        body = _clean(f"{message}\n\nrepro:\n{rec['repro']}" if rec.get("repro") else message)
        key = None
        known, fixed = rec.get("known"), rec.get("fixed")
        if isinstance(known, str) and known and (verdict in FAILURE_VERDICTS + ERROR_VERDICTS
                                                 or (strict and verdict == "deviation")):
            el = ET.SubElement(case, "skipped", message=_clean(f"known failure: {known}"), type="known")
            el.text, key = _clean(f"{verdict}: {body}"), "skipped"
        elif isinstance(fixed, str) and fixed and strict and verdict not in ("unsupported",):
            note = _clean(f"a known failure passes now ({verdict}): update the known failures; was: {fixed}")
            el = ET.SubElement(case, "failure", message=note, type="fixed")
            el.text, key = note, "failures"
        elif verdict in FAILURE_VERDICTS or (strict and verdict == "deviation"):
            el = ET.SubElement(case, "failure", message=message, type=str(verdict))
            el.text, key = body, "failures"
        elif verdict in ERROR_VERDICTS:
            el = ET.SubElement(case, "error", message=message, type=str(verdict))
            el.text, key = body, "errors"
        elif verdict in SKIPPED_VERDICTS:
            ET.SubElement(case, "skipped", message=f"{verdict}: {message}", type=str(verdict))
            key = "skipped"
        for k in ("tests", key):
            if k:
                suite.set(k, str(int(suite.get(k)) + 1))
                totals[k] += 1
    root.attrib.update({k: str(v) for k, v in totals.items()})
    return root


def write_junit(records: Iterable[dict], path: str | os.PathLike, *, strict: bool = False) -> None:
    """Write JUnit XML for ``records`` to ``path`` (parent folders are created)."""
    root = build_junit(records, strict=strict)
    ET.indent(root)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(p, encoding="utf-8", xml_declaration=True)


def _clean(text: str) -> str:
    """Drop the control characters XML 1.0 cannot hold (a backend's message may contain any)."""
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)
