"""Tables and plots -> one self-contained HTML page: inline CSS, base64 PNG plots, no scripts.

Every string that reaches the page goes through :func:`esc` (result records are untrusted: a
third-party backend may be named anything). A Content-Security-Policy forbids scripts and every
network fetch, so even a missed escape could not run code or call home; the page needs neither.

>>> import pandas as pd
>>> from softmaxbench.reports.tables import Table
>>> df = pd.DataFrame({"backend": ["<script>x</script>"]})
>>> "<script>x" in render_table(Table("t", "T", df, df))
False
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from importlib import resources

from softmaxbench.reports.plots import Plot
from softmaxbench.reports.tables import Table

MAX_ROWS = 5000
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_NUMERIC = re.compile(r"^[-+]?(\d[\d,]*\.?\d*(e[-+]?\d+)?|inf|nan)( \(\d+%\))?( ⚠)?$", re.I)


def esc(text: object) -> str:
    """HTML-escape any value (quotes included: the text may land in an attribute)."""
    return html.escape("" if text is None else str(text), quote=True)


def _css() -> str:
    return resources.files("softmaxbench.reports").joinpath("report.css").read_text(encoding="utf-8")


def render_table(table: Table, max_rows: int = MAX_ROWS, details: dict[int, str] | None = None) -> str:
    """A <table> of ``table.view``; ``details`` maps a row number to text shown in a <details>."""
    view = table.view
    shown = view.head(max_rows)
    out = ['<div class="scroll"><table>', "<thead><tr>"]
    out += [f"<th>{esc(c)}</th>" for c in shown.columns]
    if details:
        out.append("<th>repro</th>")
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(shown.itertuples(index=False)):
        out.append("<tr>")
        for col, val in zip(shown.columns, row):
            text = "" if val is None else str(val)
            classes = []
            cls = table.cell_class(str(col), text) if table.cell_class else None
            if cls:
                classes.append(cls)
            if text and _NUMERIC.match(text):
                classes.append("num")
            attr = f' class="{esc(" ".join(classes))}"' if classes else ""
            out.append(f"<td{attr}>{esc(text)}</td>")
        if details:
            d = details.get(i)
            out.append(f"<td><details><summary>show</summary><pre>{esc(d)}</pre></details></td>" if d
                       else "<td></td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    if len(shown) < len(view):
        out.append(f'<p class="cap">Showing the first {len(shown)} of {len(view)} rows; all rows are in '
                   f"<code>{esc(table.key)}.csv</code>.</p>")
    return "".join(out)


def render(title: str, meta: str, summary: list[tuple[str, str, str]], sections: list[Table],
           plots: list[Plot], *, warnings: Sequence[str] = (),
           details: dict[str, dict[int, str]] | None = None, lead: Sequence[str] = ()) -> str:
    """The page. ``summary``: (label, value, css class) cards; ``details``: per table key, per row;
    ``lead``: lines under the title (machine, load, threads)."""
    details = details or {}
    sections = [t for t in sections if not getattr(t, "csv_only", False)]
    nav = [f'<a href="#{esc(t.key)}">{esc(t.title)}</a>' for t in sections]
    if plots:
        nav.append('<a href="#plots">Plots</a>')
    body = [f"<header><h1>{esc(title)}</h1><p class=\"meta\">{esc(meta)}</p>"]
    body += [f'<p class="lead{" busy" if "BUSY" in line else ""}">{esc(line)}</p>' for line in lead]
    body.append(f"<nav>{' · '.join(nav)}</nav></header>")
    if warnings:
        body.append('<div class="warnings">' + "".join(f"<p>⚠ {esc(w)}</p>" for w in warnings) + "</div>")
    body.append('<section class="cards">' + "".join(
        f'<div class="card {esc(cls)}"><div class="v">{esc(v)}</div><div class="l">{esc(label)}</div></div>'
        for label, v, cls in summary) + "</section>")
    for t in sections:
        body.append(f'<section id="{esc(t.key)}"><h2>{esc(t.title)}</h2>')
        if t.note:
            body.append(f'<p class="note">{esc(t.note)}</p>')
        if len(t.view) == 0:
            body.append('<p class="empty">No records.</p>')
        else:
            body.append(render_table(t, details=details.get(t.key)))
        body += [f'<p class="foot">{esc(line)}</p>' for line in t.footer]
        body.append("</section>")
    if plots:
        body.append('<section id="plots"><h2>Plots</h2>')
        for p in plots:
            data = base64.b64encode(p.png).decode("ascii")
            body.append(f'<figure id="{esc(p.key)}"><img alt="{esc(p.title)}" '
                        f'src="data:image/png;base64,{data}"><figcaption><b>{esc(p.title)}.</b> '
                        f"{esc(p.caption)}</figcaption></figure>")
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_css()}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
