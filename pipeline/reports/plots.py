"""Plots for report.html, drawn by matplotlib and inlined as SVG text.

Why matplotlib: it is on every GPU image already, renders without a display (the Agg
family; SVG here), and writes SVG a browser shows with no script, so the report stays one
self-contained file that reads without JavaScript. Plots take data DuckDB has already
aggregated (bin counts, a rate per bucket): a plot never sees one point per item, so an
SVG stays a few tens of KB at a million rows.

matplotlib is imported on first use (not at `audiobatch --help`). Each figure is its own
`Figure` object (no pyplot global state), text is kept as SVG text (`svg.fonttype: none`,
smaller and selectable) and ids are salted with a fixed string so the same data gives the
same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "audiobatch",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_SIZE = (5.6, 2.6)
_COLOURS = ("#3367d6", "#e8710a", "#1e8e3e", "#d93025", "#9334e6")


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=_SIZE, layout="constrained")
    return fig


def _svg(fig, title: str) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_STYLE):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Title": title})
    text = buf.getvalue()
    # Inline SVG needs neither the XML declaration nor the DOCTYPE.
    start = text.index("<svg")
    return text[start:].replace("<svg ", f'<svg role="img" aria-label="{_attr(title)}" ', 1)


def _attr(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def bars(
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    title: str,
    ylabel: str,
    percent: bool = False,
) -> str:
    """Grouped bars: one group per label, one bar per series (None draws nothing)."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        width = 0.8 / max(len(series), 1)
        for k, (name, values) in enumerate(series.items()):
            xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))]
            ys = [float("nan") if v is None else (100 * v if percent else v) for v in values]
            ax.bar(xs, ys, width=width, label=name, color=_COLOURS[k % len(_COLOURS)])
        ax.set_xticks(range(len(labels)), [str(x) for x in labels], rotation=30, ha="right")
        _finish(ax, title, ylabel + (" (%)" if percent else ""), legend=len(series) > 1)
        return _svg(fig, title)


def histogram(edges: Sequence[float], counts: Sequence[int], title: str, xlabel: str) -> str:
    """A histogram from bin edges (len(counts) + 1) and counts computed elsewhere."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color=_COLOURS[0], linewidth=0)
        ax.set_xlabel(xlabel)
        _finish(ax, title, "items")
        return _svg(fig, title)


def lines(
    xs: Sequence[float],
    series: dict[str, Sequence[float | None]],
    title: str,
    xlabel: str,
    ylabel: str,
    percent: bool = False,
) -> str:
    """Lines with markers over shared x values (e.g. WER per confidence bin, per run)."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        for k, (name, values) in enumerate(series.items()):
            ys = [float("nan") if v is None else (100 * v if percent else v) for v in values]
            ax.plot(xs, ys, marker="o", markersize=3, label=name, color=_COLOURS[k % 5])
        ax.set_xlabel(xlabel)
        _finish(ax, title, ylabel + (" (%)" if percent else ""), legend=len(series) > 1)
        return _svg(fig, title)


def _finish(ax, title: str, ylabel: str, legend: bool = False) -> None:
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if legend:
        ax.legend(frameon=False, fontsize=8)
