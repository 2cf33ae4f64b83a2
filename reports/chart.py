"""The PNG chart: deploys per day stacked by outcome, with rollbacks marked.

Drawn on a bare ``Figure`` with the Agg canvas: no pyplot, no global backend state, safe
in worker threads.
"""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

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
    if len(daily):
        # Weekly trend: the mean deploys per day of the 7 days ending on each day.
        weekly = bottom.rolling(7, min_periods=1).mean()
        ax.plot(days, weekly, color="#1565c0", linewidth=1.5, label="7-day mean per day")
        first, last = daily.index[0], daily.index[-1]
        title = f"{title}, {first:%Y-%m-%d} to {last:%Y-%m-%d} (UTC days)"
    ax.set_title(title)
    ax.set_ylabel("deploys")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.25 deploys
    ax.set_ylim(0, max(1, float(bottom.max())) * 1.25)  # room above bars for the markers
    # The legend sits outside the axes: it never hides a bar or a marker.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
