"""Progress displays of a check run: a rich bar per backend on a terminal, plain lines in CI.

Everything shown comes from records, whose backend-supplied strings were escaped on arrival
(:func:`softmaxbench.suite.isolation.channel.clean_text`); :func:`_short` escapes again, so no
escape code from a backend reaches the terminal.

>>> d = make_display("plain")
>>> d.start("numpy", 3)
numpy: 3 checks
"""

from __future__ import annotations

import os
import sys
from collections import Counter

from softmaxbench.suite.isolation.channel import clean_text
from softmaxbench.suite.records import RESULTS_FILE
from softmaxbench.vocabulary import FAILING, VERDICTS

#: Verdict columns of the summary table, in order.
SUMMARY_COLUMNS = VERDICTS


class PlainDisplay:
    """Line output for CI logs and pipes: each problem as it happens, each backend when done."""

    MAX_PROBLEM_LINES = 25

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.problems: Counter = Counter()

    def note(self, text: str) -> None:
        print(clean_text(text, 2000), file=self.stream, flush=True)

    def start(self, backend: str, total: int) -> None:
        self.note(f"{backend}: {total} checks")

    def advance(self, backend: str, rec: dict) -> None:
        if rec["verdict"] in FAILING:
            self.problems[backend] += 1
            if self.problems[backend] <= self.MAX_PROBLEM_LINES:
                self.note(f"  {rec['verdict'].upper():8} {backend} {rec['op']} {rec.get('case')} "
                          f"{rec['dtype']}: {_short(rec.get('message'))}")
            elif self.problems[backend] == self.MAX_PROBLEM_LINES + 1:
                self.note(f"  ... more problems of {backend} in {RESULTS_FILE}")

    def finish(self, backend: str, counts: Counter, seconds: float) -> None:
        parts = ", ".join(f"{counts[v]} {v}" for v in SUMMARY_COLUMNS if counts[v])
        self.note(f"{backend}: done in {seconds:.1f} s ({parts or 'nothing to do'})")

    def close(self) -> None:
        pass


class RichDisplay(PlainDisplay):
    """A live progress bar per backend on a terminal (rich), problems printed above the bars."""

    def __init__(self):
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=False)
        self.progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                 console=self.console, transient=False)
        self.tasks: dict[str, int] = {}
        self.counts: dict[str, Counter] = {}
        self.progress.start()

    def note(self, text: str) -> None:
        self.progress.console.print(clean_text(text, 2000), markup=False, highlight=False)

    def start(self, backend: str, total: int) -> None:
        self.counts[backend] = Counter()
        self.tasks[backend] = self.progress.add_task(backend, total=total, status="")

    def advance(self, backend: str, rec: dict) -> None:
        super().advance(backend, rec)
        c = self.counts.setdefault(backend, Counter())
        c[rec["verdict"]] += 1
        status = " ".join(f"{v}:{c[v]}" for v in ("fail", "error", "crash", "timeout", "deviation") if c[v])
        if backend in self.tasks:
            self.progress.update(self.tasks[backend], advance=1, status=status)

    def finish(self, backend: str, counts: Counter, seconds: float) -> None:
        if backend in self.tasks:
            task = self.progress.tasks[self.tasks[backend]]
            self.progress.update(self.tasks[backend], completed=task.total)

    def close(self) -> None:
        self.progress.stop()


class SilentDisplay(PlainDisplay):
    def note(self, text: str) -> None:
        pass


def make_display(kind: str = "auto") -> PlainDisplay:
    """'auto': a rich progress bar on a terminal, plain lines otherwise (CI); 'plain'; 'none'."""
    if kind == "none":
        return SilentDisplay()
    if kind == "rich" or (kind == "auto" and sys.stdout.isatty() and not os.environ.get("CI")):
        return RichDisplay()
    return PlainDisplay()


def _short(text: str | None, width: int = 160) -> str:
    return clean_text((text or "").replace("\n", " "), width)


