"""Matplotlib figures for the reports, embedded as PNG data URIs: one file, no network.

The object API (``Figure`` + the Agg canvas, never ``pyplot``) touches no global state, so
rendering works in threads and on headless machines.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#06b6d4", "#84cc16", "#ec4899", "#64748b"]
GOOD, BAD, MUTED, INK = "#16a34a", "#dc2626", "#94a3b8", "#0f172a"
EVENT_COLORS = {
    "ec.view_item": "#2563eb",
    "ec.add_to_cart": "#f59e0b",
    "ec.purchase": "#10b981",
    "user_engagement": "#8b5cf6",
    "pageview": "#94a3b8",
}


@dataclass
class Embedded:
    """A drawn figure as the templates place it."""

    src: str  # data:image/png;base64,...
    width: int  # CSS pixels it was drawn for: never stretched wider, so fonts keep their size
    caption: str
    alt: str


def figure(width: float = 6.4, height: float = 3.4) -> Figure:
    """A new figure (inches at 100 dpi) with a layout that keeps labels inside."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def style(ax: Axes, grid_axis: str = "y") -> None:
    """The reports' quiet look: no top/right spines, a light grid behind the data."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#cbd5e1")
    ax.tick_params(colors="#334155", labelsize=9)
    ax.grid(axis=grid_axis, color="#e2e8f0", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.title.set_fontsize(10.5)
    for axis_label in (ax.xaxis.label, ax.yaxis.label):
        axis_label.set_fontsize(9.5)
        axis_label.set_color("#334155")


def embed(fig: Figure, caption: str, alt: str = "") -> Embedded:
    """The figure as PNG at twice its pixel size (sharp on high-density screens)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=160, facecolor="white")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Embedded(
        src=f"data:image/png;base64,{data}",
        width=round(fig.get_figwidth() * fig.dpi * 1.1),
        caption=caption,
        alt=alt or caption,
    )
