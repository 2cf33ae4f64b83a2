"""The PNG chart: deploys per day stacked by outcome, with rollbacks marked.

Drawn on a bare ``Figure`` with the Agg canvas: no pyplot, no global backend state, safe
in worker threads.
"""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

OUTCOMES = (("succeeded", "#2e7d32"), ("rolledBack", "#f9a825"), ("failed", "#c62828"))


def deploys_figure(daily: pd.DataFrame, title: str) -> Figure:
    """Stacked bars per day (succeeded / rolled back / failed); a marker above each day
    with rollbacks, labelled with their count."""
    fig = Figure(figsize=(10, 4), dpi=100)
    ax = fig.add_subplot()
    days = list(daily.index)
    bottom = pd.Series(0, index=daily.index)
    for outcome, colour in OUTCOMES:
        label = {"rolledBack": "rolled back"}.get(outcome, outcome)
        ax.bar(days, daily[outcome], bottom=bottom, color=colour, label=label, width=0.8)
        bottom = bottom + daily[outcome]
    marked = daily.index[daily["rollbacks"] > 0]
    if len(marked):
        tops = bottom[marked] + max(1, bottom.max()) * 0.05
        ax.scatter(marked, tops, marker="v", color="black", label="rollbacks", zorder=3)
        for day, top in zip(marked, tops, strict=True):
            ax.annotate(
                str(int(daily.at[day, "rollbacks"])),
                (day, top),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
    ax.set_title(title)
    ax.set_ylabel("deploys")
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    return fig


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
