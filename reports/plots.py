"""The report's plots, drawn with matplotlib's Agg backend and returned as PNG bytes.

PNG (not SVG) keeps every string out of the HTML: backend names are pixels in the image, so an
untrusted name cannot inject markup, and the page needs no fonts. Plots are small (~100 dpi) so the
self-contained page stays light.

>>> import pandas as pd
>>> bench = pd.DataFrame({"machine": "m", "backend": "numpy", "device": "cpu", "op": "softmax",
...     "dtype": "float32", "row_length": [256, 4096], "gbps": [5.0, 9.0], "copy_gbps": [20.0, 18.0]})
>>> [(p.title, p.png[:4]) for p in throughput_plots(bench)]
[('Throughput, float32', b'\\x89PNG')]
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from softmaxbench.reports.tables import DTYPE_ORDER, OP_ORDER, _order


@dataclass
class Plot:
    """A titled PNG image and a one-line caption (plain text)."""

    key: str
    title: str
    png: bytes
    caption: str = ""


def _figure(ncols: int, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg", force=True)     # never a display, never a GUI toolkit
    import matplotlib.pyplot as plt

    # Fixed margins rather than a layout engine: constrained layout measures every tick label and
    # costs seconds per report; these plots have one row and short labels.
    width = min(4.2 * ncols, 13)
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.55 / width, right=1 - 0.15 / width, bottom=0.17, top=0.88, wspace=0.22)
    return fig, list(axes[0])


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def throughput_plots(bench: pd.DataFrame) -> list[Plot]:
    """Per machine and dtype: GB/s against row length, one line per backend, one panel per op,
    with the copy bandwidth of each device as a dashed line."""
    sel = bench[bench["gbps"].notna() & bench["row_length"].notna() & ~bench["op"].eq("copy")] \
        if not bench.empty else bench
    if sel.empty:
        return []
    multi = sel["machine"].nunique() > 1
    plots = []
    for machine in sel["machine"].unique():
        for dtype in _order(sel.loc[sel["machine"] == machine, "dtype"], DTYPE_ORDER):
            g = sel[(sel["machine"] == machine) & (sel["dtype"] == dtype)]
            ops = _order(g["op"], OP_ORDER)
            fig, axes = _figure(len(ops))
            for ax, op in zip(axes, ops):
                go = g[g["op"] == op]
                for backend, gb in go.groupby("backend", sort=True):
                    pts = gb.groupby("row_length")["gbps"].median().sort_index()
                    ax.plot(pts.index.astype(float), pts.to_numpy(), marker="o", ms=3, label=str(backend))
                copy = _copy_lines(bench, go, machine, dtype)
                for device, pts in copy.items():
                    ax.plot(pts.index.astype(float), pts.to_numpy(), ls="--", color="0.4", lw=1,
                            label=f"copy ({device})")
                ax.set_xscale("log", base=2)
                ax.set_ylim(bottom=0)          # bars of bandwidth start at zero; no zoomed-in drama
                ax.set_title(str(op), fontsize=9)
                ax.set_xlabel("row length (elements)", fontsize=8)
                ax.tick_params(labelsize=7)
                ax.grid(alpha=0.3)
            axes[0].set_ylabel("GB/s", fontsize=8)
            axes[-1].legend(fontsize=7, loc="best")
            title = f"Throughput, {dtype}" + (f", {machine}" if multi else "")
            plots.append(Plot(f"throughput-{machine}-{dtype}", title, _png(fig),
                              "GB/s (median) against the length of the softmax axis; dashed: the copy "
                              "bandwidth measured by the same harness on the same device."))
    return plots


def _copy_lines(bench: pd.DataFrame, g: pd.DataFrame, machine: str, dtype: str) -> dict[str, pd.Series]:
    """Copy bandwidth against row length per device: explicit 'copy' records where the bench
    wrote them, else the copy_gbps each record carries."""
    out = {}
    explicit = bench[(bench["op"] == "copy") & (bench["machine"] == machine) & (bench["dtype"] == dtype)
                     & bench["gbps"].notna() & bench["row_length"].notna()] if not bench.empty else bench
    for device in sorted(g["device"].dropna().unique(), key=str):
        e = explicit[explicit["device"] == device] if not explicit.empty else explicit
        # Several copy kernels (one per framework): the fastest is the device's attainable bandwidth.
        src = e.assign(copy_gbps=e["gbps"]) if not e.empty else g[g["device"] == device]
        src = src[src["copy_gbps"].notna()]
        if not src.empty:
            out[str(device)] = src.groupby("row_length")["copy_gbps"].max().sort_index()
    return out


def error_plots(checks: pd.DataFrame) -> list[Plot]:
    """Per machine: one panel per dtype, the distribution (ECDF) of each backend's max ULP error
    over its checks; the x axis is symmetric-log so exact results (0 ULP) show."""
    sel = checks[checks["max_ulp"].notna() & checks["verdict"].isin(["pass", "fail"])] \
        if not checks.empty else checks
    if sel.empty:
        return []
    multi = sel["machine"].nunique() > 1
    plots = []
    for machine in sel["machine"].unique():
        g = sel[sel["machine"] == machine]
        dtypes = _order(g["dtype"], DTYPE_ORDER)
        fig, axes = _figure(len(dtypes), height=3.0)
        top = 1.0
        for ax, dtype in zip(axes, dtypes):
            gd = g[g["dtype"] == dtype]
            for backend, gb in gd.groupby("backend", sort=True):
                ulps = np.sort(gb["max_ulp"].to_numpy(float))
                frac = np.arange(1, len(ulps) + 1) / len(ulps)
                ax.step(ulps, frac, where="post", label=str(backend))
                top = max(top, float(ulps[-1]) if len(ulps) else 1.0)
            ax.set_xscale("symlog", linthresh=1)
            ax.set_title(str(dtype), fontsize=9)
            ax.set_xlabel("max ULP error per check", fontsize=8)
            ax.set_ylim(0, 1.02)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for ax in axes:
            ax.set_xlim(0, max(2.0, 2 ** math.ceil(math.log2(top + 1))))
        axes[0].set_ylabel("fraction of checks", fontsize=8)
        axes[-1].legend(fontsize=7, loc="lower right")
        title = "Error distribution" + (f", {machine}" if multi else "")
        plots.append(Plot(f"errors-{machine}", title, _png(fig),
                          "Cumulative fraction of checks whose max ULP error is at most x (higher and "
                          "further left is better); checks without a finite error are left out."))
    return plots
