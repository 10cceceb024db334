"""Tables -> one GitHub-flavoured Markdown page that also serves as a CI step summary.

GitHub rejects a step summary over 1 MiB, so the page is rendered with a row cap per table and
re-rendered with a smaller cap until it fits; every capped table says how many rows it shows and
which CSV has them all. Cell text is escaped so that a name with ``|`` or ``<`` cannot break a
table or become markup.

>>> import pandas as pd
>>> from softmaxbench.reports.tables import Table
>>> df = pd.DataFrame({"backend": ["a|b"], "GB/s": ["1.5"]})
>>> print(render_table(Table("t", "T", df, df)))
| backend   | GB/s   |
|-----------|--------|
| a\\|b      | 1.5    |
"""

from __future__ import annotations

import html
import re

from tabulate import tabulate

from softmaxbench.reports.tables import Table

#: GitHub's limit for a step summary is 1 MiB; keep a margin for what CI appends.
MAX_BYTES = 1_000_000
ROW_CAPS = (200, 100, 50, 20, 10, 5)
MAX_CELL = 200


#: Characters with a meaning in (GitHub-flavoured) Markdown: each is backslash-escaped in text taken
#: from records, so a record cannot make an image, a link, emphasis, code, a heading or a table cell
#: (an underscore inside a word cannot open emphasis in GFM: log_softmax stays as written).
_MD_SPECIAL = re.compile(r"([\\`*\[\]#!|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
#: Autolinks (GFM links bare URLs and www. names): a zero-width space after the scheme breaks them.
_AUTOLINK = re.compile(r"(?i)(https?|ftp|mailto|file|data|javascript)(:)|\b(www)(\.)")


def md_text(text: object, max_len: int | None = None) -> str:
    """Escape text for a Markdown paragraph or cell: no HTML, no links or images, no table breaks,
    one line.

    >>> print(md_text("![x](http://e.vil/a.png) <b>|</b>").replace("\u200b", "<ZWSP>"))
    \\!\\[x\\](http<ZWSP>://e.vil/a.png) &lt;b&gt;\\|&lt;/b&gt;
    """
    s = " ".join(str(text).split())
    if max_len is not None and len(s) > max_len:
        s = s[: max_len - 1] + "…"
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _AUTOLINK.sub(lambda m: (m.group(1) or m.group(3)) + "\u200b" + (m.group(2) or m.group(4)), s)
    return html.escape(s, quote=False)


def render_table(table: Table, max_rows: int | None = None) -> str:
    """One table as a GFM pipe table, capped at ``max_rows`` with a note saying so."""
    view = table.view
    shown = view if max_rows is None or len(view) <= max_rows else view.head(max_rows)
    headers = [md_text(c) for c in shown.columns]
    rows = [[md_text(v, MAX_CELL) for v in r] for r in shown.itertuples(index=False)]
    # disable_numparse: tabulate would otherwise re-format the already formatted numbers.
    out = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    if len(shown) < len(view):
        out += f"\n\n*Showing the first {len(shown)} of {len(view)} rows; all rows are in `{table.key}.csv`.*"
    return out


def render(title: str, intro: list[str], sections: list[Table], *, plots_note: str = "",
           max_bytes: int | None = None) -> tuple[str, int | None]:
    """The whole page; returns (text, row cap used or None). Shrinks the cap until it fits
    in ``max_bytes`` (default :data:`MAX_BYTES`)."""
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    for cap in (None, *ROW_CAPS):
        text = _render(title, intro, sections, cap, plots_note)
        if len(text.encode("utf-8")) <= max_bytes:
            return text, cap
    # Still too big with 5 rows a table (thousands of tables?): cut the text itself.
    cut = text.encode("utf-8")[: max_bytes - 200].decode("utf-8", "ignore")
    return cut + "\n\n*Report cut at the 1 MiB step-summary limit; see report.html and the CSVs.*\n", 0


def _render(title: str, intro: list[str], sections: list[Table], cap: int | None, plots_note: str) -> str:
    parts = [f"# {md_text(title)}", ""]
    parts += [line for line in intro] + [""]
    for t in sections:
        parts += [f"## {md_text(t.title)}", ""]
        if t.note:
            parts += [md_text(t.note), ""]
        if len(t.view) == 0:
            parts += ["*No records.*", ""]
            continue
        parts += [render_table(t, cap), ""]
        parts += [md_text(line) + "  " for line in t.footer]
        if t.footer:
            parts.append("")
    if plots_note:
        parts += [plots_note, ""]
    return "\n".join(parts)
