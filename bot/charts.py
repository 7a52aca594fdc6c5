"""The customer view's chart: monthly API usage against the limit, rendered off-screen to a PNG."""

from __future__ import annotations

import io
import threading

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from bot.customers import CustomerOverview

WIDTH_INCHES, HEIGHT_INCHES, DPI = 10, 5, 100  # always 1000 × 500 pixels
WITHIN_COLOUR = "#4C78A8"
OVER_COLOUR = "#E45756"
LIMIT_COLOUR = "#333333"
NO_DATA_COLOUR = "#888888"

# Figures are independent, but matplotlib's text and font caches are shared by every thread.
_render_lock = threading.Lock()


def chart_title(overview: CustomerOverview) -> str:
    months = overview.months
    return f"{overview.customer.name}: API usage, {months[0].period.label} – {months[-1].period.label}"


def usage_chart_figure(overview: CustomerOverview) -> Figure:
    """Bars of monthly usage (over-limit months highlighted) and the monthly limit as a dashed line."""
    months = overview.months
    limit = overview.customer.monthly_api_limit
    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    positions = range(len(months))
    heights = [month.api_usage or 0 for month in months]
    colours = [OVER_COLOUR if month.over_limit else WITHIN_COLOUR for month in months]
    axes.bar(positions, heights, color=colours, width=0.7, zorder=2)
    limit_line = axes.axhline(limit, color=LIMIT_COLOUR, linestyle="--", linewidth=1.5, zorder=3)
    peak = max([limit, *heights]) or 1
    axes.set_ylim(0, peak * 1.1)
    for position, month in zip(positions, months):
        if month.api_usage is None:
            axes.text(position, peak * 0.02, "no data", ha="center", va="bottom", fontsize=8,
                      rotation=90, color=NO_DATA_COLOUR)
    axes.set_xticks(list(positions), [f"{month.period.label[:3]}\n{month.period.year}" for month in months])
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.grid(axis="y", color="#DDDDDD", zorder=0)
    axes.set_xlabel("Month")
    axes.set_ylabel("API calls")
    axes.set_title(chart_title(overview), pad=26)
    axes.legend(
        handles=[
            Patch(color=WITHIN_COLOUR),
            Patch(color=OVER_COLOUR),
            limit_line,
        ],
        labels=["Within limit", "Over limit", f"Monthly limit ({limit:,} calls)"],
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=3,
        frameon=False,
        fontsize=9,
    )
    return figure


def usage_chart_png(overview: CustomerOverview) -> bytes:
    """The chart as PNG bytes, 1000 × 500 pixels, with the title in the file's metadata too."""
    with _render_lock:
        figure = usage_chart_figure(overview)
        buffer = io.BytesIO()
        FigureCanvasAgg(figure).print_png(buffer, metadata={"Title": chart_title(overview), "Software": None})
    return buffer.getvalue()
