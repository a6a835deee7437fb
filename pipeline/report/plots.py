"""The report's charts, drawn with matplotlib (Agg backend) and returned as PNG bytes.

Each function returns None when there is nothing to draw, so the report can say so instead.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 110
COLOR = "#4c72b0"
SPLIT_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _label_bars(ax, bars, texts: list[str]) -> None:
    for bar, text in zip(bars, texts, strict=True):
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")


def bar_chart(counts: dict[str, int], title: str, ylabel: str) -> bytes | None:
    """Vertical bars with their counts written on top."""
    if not counts or not sum(counts.values()):
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 0.7 * len(counts) + 1.5), 3.4))
    bars = ax.bar(list(counts), list(counts.values()), color=COLOR)
    _label_bars(ax, bars, [str(v) for v in counts.values()])
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(y=0.15)
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return _png(fig)


def share_chart(shares: dict[str, float], title: str, ylabel: str) -> bytes | None:
    """Bars of shares in [0, 1], shown as percentages."""
    if not shares or not any(shares.values()):
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 0.42 * len(shares) + 1.5), 3.4))
    values = [100 * v for v in shares.values()]
    bars = ax.bar(list(shares), values, color=COLOR)
    _label_bars(ax, bars, [f"{v:.0f}" if v else "" for v in values])
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 112)
    ax.tick_params(axis="x", labelrotation=90, labelsize=8)
    return _png(fig)


def heatmap(rows: list[str], cols: list[str], values: list[list[float]], title: str) -> bytes | None:
    """Shares in [0, 1] as a rows x cols heatmap, each cell annotated in percent."""
    if not rows or not cols:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * len(cols) + 2.5), max(2.4, 0.45 * len(rows) + 1.4)))
    image = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=9)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if v > 0:
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=7,
                        color="black" if v > 0.6 else "white")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="share of faces")
    return _png(fig)


def box_chart(groups: dict[str, list[float]], title: str, ylabel: str) -> bytes | None:
    """A box per group with every value drawn as a point (groups are often small), n under each label."""
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(groups) + 1.5), 3.4))
    names = list(groups)
    ax.boxplot([groups[n] for n in names], widths=0.5, showmeans=True, medianprops={"color": COLOR},
               meanprops={"marker": "^", "markerfacecolor": "#c44e52", "markeredgecolor": "#c44e52"})
    for i, name in enumerate(names, 1):
        ys = groups[name]
        xs = [i + (0.3 * (k / (len(ys) - 1) - 0.5) if len(ys) > 1 else 0.0) for k in range(len(ys))]
        ax.scatter(xs, ys, s=12, color="black", alpha=0.6, zorder=3)
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n(n={len(groups[n])})" for n in names], fontsize=8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    return _png(fig)


def stacked_bar_chart(groups: dict[str, dict[str, int]], title: str, ylabel: str) -> bytes | None:
    """Bars per category (inner keys), stacked by group (outer keys, e.g. splits), total on top."""
    categories = sorted({c for counts in groups.values() for c in counts})
    if not categories:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(categories) + 2.0), 3.6))
    bottom = [0] * len(categories)
    for k, (group, counts) in enumerate(groups.items()):
        values = [counts.get(c, 0) for c in categories]
        ax.bar(categories, values, bottom=bottom, label=group, color=SPLIT_COLORS[k % len(SPLIT_COLORS)])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for x, total in enumerate(bottom):
        ax.annotate(str(total), (x, total), ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                    textcoords="offset points")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(y=0.15)
    ax.legend(fontsize=8, title="split", title_fontsize=8)
    ax.tick_params(axis="x", labelrotation=20)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return _png(fig)
