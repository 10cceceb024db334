"""The report's plots, drawn with matplotlib's Agg backend and returned as PNG bytes.

PNG (not SVG) keeps every string out of the HTML: backend names are pixels in the image, so an
untrusted name cannot inject markup, and the page needs no fonts. Each plot also says how many
data points it drew and whether any two tick labels overlap (``Plot.points``, ``Plot.overlaps``),
so that tests (and summary.json) catch an empty plot or an unreadable axis.

- throughput: per machine and dtype, one horizontal bar group per workload (op · workload · shape),
  a bar per backend with its 95% interval, hatched when the backend does not conform on that op
  and dtype, and the device's copy bandwidth *of that workload* as a black mark across the group;
- accuracy: per machine, one panel per dtype, the cumulative distribution of the error ratio that
  decided each check's verdict, on a log axis with fixed decades; exact results sit at the left
  edge, non-finite and huge ratios (NaN garbage, 1e78) at the right edge, both labelled.

>>> import pandas as pd
>>> bench = pd.DataFrame({"machine": "m", "backend": "numpy", "device": "cpu", "op": "softmax",
...     "dtype": "float32", "workload": ["a", "b"], "shape_text": ["1x256", "1x4096"],
...     "row_length": [256, 4096], "gbps": [5.0, 9.0], "copy_gbps": [20.0, 18.0]})
>>> [(p.title, p.png[:4], p.points, p.overlaps) for p in throughput_plots(bench)]
[('Throughput, float32', b'\\x89PNG', 2, [])]
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from softmaxbench.reports.tables import DTYPE_ORDER, OP_ORDER, _order, effective_ratio, with_intervals

#: The accuracy plot's axis: error ratios from RATIO_MIN to RATIO_MAX, clipped at both ends.
RATIO_MIN, RATIO_MAX = 1e-3, 1e4


@dataclass
class Plot:
    """A titled PNG image and a one-line caption (plain text), with what was drawn."""

    key: str
    title: str
    png: bytes
    caption: str = ""
    points: int = 0                                     # data points drawn (bars, steps)
    overlaps: list[str] = field(default_factory=list)   # pairs of tick labels that overlap


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)     # never a display, never a GUI toolkit
    import matplotlib.pyplot as plt

    return plt


def tick_overlaps(fig) -> list[str]:
    """Pairs of visible, non-empty tick labels of one axis whose drawn boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for n, ax in enumerate(fig.axes):
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text().strip()]
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    (ta, a), (tb, b) = boxes[i], boxes[j]
                    if a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1:
                        found.append(f"axes {n} {name}: {ta!r} overlaps {tb!r}")
    return found


def _png(fig) -> tuple[bytes, list[str]]:
    plt = _plt()
    overlaps = tick_overlaps(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue(), overlaps


def _colours(names) -> dict[str, tuple]:
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {n: cmap(i % cmap.N) for i, n in enumerate(sorted(names, key=str))}


def _label(text: str, n: int = 38) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def throughput_plots(bench: pd.DataFrame, conf: pd.DataFrame | None = None) -> list[Plot]:
    """Per machine and dtype: GB/s per workload and backend, with intervals and the copy mark."""
    if bench.empty:
        return []
    if "gbps_lo" not in bench:
        bench = with_intervals(bench)
    gbps = pd.to_numeric(bench["gbps"], errors="coerce")
    # A bar needs a finite, positive figure below 1e15 GB/s (a petabyte a second: a broken timer).
    sel = bench[~bench["op"].eq("copy") & np.isfinite(gbps) & (gbps > 0) & (gbps < 1e15)]
    if sel.empty:
        return []
    verdict = {} if conf is None or conf.empty else {
        (r["machine"], r["backend"], r["op"], r["dtype"]): r["conforms"] for _, r in conf.iterrows()}
    multi = sel["machine"].nunique() > 1
    colours = _colours(set(sel["series"]))
    plots = []
    for machine in sel["machine"].unique():
        for dtype in _order(sel.loc[sel["machine"] == machine, "dtype"], DTYPE_ORDER):
            g = sel[(sel["machine"] == machine) & (sel["dtype"] == dtype)].copy()
            plots.append(_throughput_plot(g, machine, dtype, multi, colours, verdict))
    return plots


def _throughput_plot(g, machine, dtype, multi, colours, verdict) -> Plot:
    plt = _plt()
    from matplotlib.patches import Patch

    g["_elements"] = [math.prod(s) if isinstance(s, list | tuple) else 0 for s in g["shape"]]
    op_rank = {o: i for i, o in enumerate(OP_ORDER)}
    groups = sorted(g.groupby(["op", "workload", "shape_text"], dropna=False),
                    key=lambda kv: (op_rank.get(kv[0][0], 99), int(kv[1]["_elements"].max()), str(kv[0][1])))
    series = sorted(set(g["series"]), key=str)
    nbar = sum(len(v) for _, v in groups)
    height = min(40.0, max(2.6, 0.24 * nbar + 0.42 * len(groups) + 1.0))
    fig, ax = plt.subplots(figsize=(11.5, height))
    fig.subplots_adjust(left=0.30, right=0.78, top=1 - 0.15 / height, bottom=0.5 / height)
    y, last, ticks, labels, points, xmax = 0.0, 0.0, [], [], 0, 0.0
    labels_at: list[tuple[float, float, str]] = []
    copy_drawn = set()
    for (op, workload, shape), gg in groups:
        gg = gg.sort_values("series", key=lambda c: c.astype(str))
        n = len(gg)
        ys = y + np.arange(n) * 0.8
        for yi, (_, r) in zip(ys, gg.iterrows()):
            ok = verdict.get((r["machine"], r["backend"], r["op"], r["dtype"]))
            err, hi_ok = None, _sane(r["gbps_lo"]) and _sane(r["gbps_hi"])
            if hi_ok:
                err = [[max(0.0, r["gbps"] - r["gbps_lo"])], [max(0.0, r["gbps_hi"] - r["gbps"])]]
            ax.barh(yi, r["gbps"], height=0.7, color=colours[r["series"]],
                    alpha=0.9 if ok is not False else 0.45,
                    hatch="//" if ok is False else None, edgecolor="0.25", linewidth=0.4,
                    xerr=err, error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "0.1"})
            points += 1
            end = float(r["gbps_hi"]) if hi_ok else float(r["gbps"])
            frac = r.get("frac")
            value = f"{r['gbps']:.3g}" + (f" ({100 * frac:.0f}%)" if _sane(frac) or frac == 0 else "")
            labels_at.append((end, yi, value))
            xmax = max(xmax, end)
        for device, gd in gg.groupby("device", dropna=False):
            copy = gd["copy"].dropna()
            copy = copy[[_sane(c) for c in copy]]
            if copy.empty:
                continue
            c = float(copy.median())
            ax.plot([c, c], [ys[0] - 0.45, ys[-1] + 0.45], color="black", lw=2.2, ls=(0, (3, 1.5)),
                    label=None if device in copy_drawn else f"copy ({device}), this workload",
                    zorder=5)
            copy_drawn.add(device)
            xmax = max(xmax, c)
        ticks.append(float(ys.mean()))
        labels.append(_label(f"{op} · {workload} ({shape})", 44))
        last = float(ys[-1])
        y = last + 1.4
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_ylim(last + 0.7, -0.7)          # first workload on top
    ax.set_xlim(0, xmax * 1.15 if xmax > 0 else 1.0)
    for end, yi, value in labels_at:      # the figure itself, so that short bars still read
        ax.text(end + 0.01 * (xmax or 1.0), yi, value, va="center", ha="left", fontsize=6.5, color="0.15",
                zorder=6, bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.4, "alpha": 0.85})
    ax.set_xlabel("GB/s (median; bars: 95% interval of the median)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(facecolor=colours[s], edgecolor="0.25", label=_label(s, 30)) for s in series]
    handles.append(Patch(facecolor="white", edgecolor="0.25", hatch="//", label="hatched: not conforming"))
    line_handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + line_handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    title = f"Throughput, {dtype}" + (f", {machine}" if multi else "")
    png, overlaps = _png(fig)
    return Plot(f"throughput-{machine}-{dtype}", title, png,
                "GB/s per workload and backend (longer is faster); whiskers: 95% interval of the median "
                "time; the black dashed mark in each group: the copy bandwidth the same harness measured "
                "on that device for that workload; hatched: the backend fails checks of that op and dtype.",
                points=points, overlaps=overlaps)


def _sane(x) -> bool:
    """A GB/s figure a bar can be drawn to: finite, positive, below 1e15."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return False
    return math.isfinite(x) and 0 < x < 1e15


def _threshold(messages) -> float | None:
    """The pass threshold a fail message states ('error ratio 5.2 > 4 (float16)')."""
    import re

    for m in messages:
        hit = re.search(r"error ratio \S+ > ([0-9.]+(?:e[-+]?\d+)?)", str(m or ""))
        if hit:
            try:
                return float(hit.group(1))
            except ValueError:
                pass
    return None


def error_plots(checks: pd.DataFrame) -> list[Plot]:
    """Per machine: one panel per dtype, the cumulative distribution of the error ratio (the figure
    that decided the verdict) over each backend's checks, on a clipped log axis."""
    if checks.empty:
        return []
    sel = checks[checks["verdict"].isin(["pass", "fail"])].copy()
    sel["_ratio"] = effective_ratio(sel) if not sel.empty else []
    sel = sel[sel["_ratio"].notna() | sel["verdict"].eq("fail")] if not sel.empty else sel
    if sel.empty:
        return []
    plt = _plt()
    from matplotlib.ticker import FixedLocator, NullLocator

    multi = sel["machine"].nunique() > 1
    colours = _colours(set(sel["backend"]))
    plots = []
    decades = [10.0 ** k for k in range(int(math.log10(RATIO_MIN)), int(math.log10(RATIO_MAX)) + 1)]
    tick_text = {1e-3: "≤0.001", 1e-2: "0.01", 1e-1: "0.1", 1.0: "1", 10.0: "10", 100.0: "100",
                 1e3: "1000", 1e4: "≥1e4\nor inf"}
    for machine in sel["machine"].unique():
        g = sel[sel["machine"] == machine]
        dtypes = _order(g["dtype"], DTYPE_ORDER)
        ncols = len(dtypes)
        width = min(3.3 * ncols + 1.6, 15.0)
        fig, axes = plt.subplots(1, ncols, figsize=(width, 3.2), squeeze=False)
        axes = list(axes[0])
        fig.subplots_adjust(left=0.6 / width, right=1 - 1.5 / width, bottom=0.22, top=0.88, wspace=0.12)
        points = 0
        for ax, dtype in zip(axes, dtypes):
            gd = g[g["dtype"] == dtype]
            for backend, gb in gd.groupby("backend", sort=True):
                r = gb["_ratio"].to_numpy(float)
                r = np.where(np.isnan(r), np.inf, r)            # a fail without numbers: garbage
                r = np.clip(r, RATIO_MIN, RATIO_MAX)
                xs = np.sort(r)
                frac = np.arange(1, len(xs) + 1) / len(xs)
                ax.step(np.concatenate([[RATIO_MIN], xs]), np.concatenate([[0.0], frac]), where="post",
                        label=_label(backend, 24) or "(unnamed)", color=colours[backend], lw=1.4)
                points += len(xs)
            thr = _threshold(gd["message"])
            if thr is not None and RATIO_MIN < thr < RATIO_MAX:
                ax.axvline(thr, color="#b3261e", ls=":", lw=1.2)
                ax.text(thr, 0.03, f" pass ≤ {thr:g}", color="#b3261e", fontsize=7, rotation=90,
                        va="bottom", ha="right")
            ax.set_xscale("log")
            ax.set_xlim(RATIO_MIN / 1.5, RATIO_MAX * 1.5)
            ax.xaxis.set_major_locator(FixedLocator(decades))
            ax.xaxis.set_minor_locator(NullLocator())
            shown = [tick_text.get(d, f"{d:g}") if i % 2 == 0 or d in (RATIO_MAX,) else ""
                     for i, d in enumerate(decades)]
            ax.set_xticks(decades, shown, fontsize=7)
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{dtype} ({len(gd)} checks)", fontsize=9)
            ax.set_xlabel("error ratio (error / backward-stable bound)", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.grid(alpha=0.3)
            if ax is not axes[0]:
                ax.tick_params(axis="y", labelleft=False)
        axes[0].set_ylabel("fraction of checks ≤ x", fontsize=8)
        seen: dict[str, object] = {}        # every backend once, whichever panel drew it
        for ax in axes:
            for h, name in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(name, h)
        if seen:
            axes[-1].legend(list(seen.values()), list(seen), fontsize=7, loc="upper left",
                            bbox_to_anchor=(1.02, 1.0), frameon=False)
        title = "Accuracy distribution" + (f", {machine}" if multi else "")
        png, overlaps = _png(fig)
        plots.append(Plot(f"errors-{machine}", title, png,
                          "Cumulative fraction of checks whose error ratio is at most x (further left and "
                          "higher is better); the ratio is what decides pass or fail (dotted: the threshold "
                          "the failures name). Exact results sit at the left edge; NaN garbage, infinite "
                          "and huge ratios at the right edge.", points=points, overlaps=overlaps))
    return plots
