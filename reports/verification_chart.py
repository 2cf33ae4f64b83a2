"""The chart of a verification: per metric, the baseline minutes and the bake minutes
on one time axis (the deploy at 0). Agg canvas on a bare Figure, like ``reports.chart``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.figure import Figure

from reports.chart import png


def verification_png(
    names: Sequence[str],
    baseline: Sequence[Sequence[float | None]],
    bake: Sequence[Sequence[float | None]],
    title: str,
) -> bytes:
    """PNG bytes: one panel per metric, baseline in grey, bake in red."""
    count = max(1, len(names))
    fig = Figure(figsize=(7, 1.9 * count + 0.6), dpi=80)
    fig.suptitle(title[:120], fontsize=10)
    for i, name in enumerate(names):
        ax = fig.add_subplot(count, 1, i + 1)
        base, new = list(baseline[i]), list(bake[i])
        xs_base = range(-len(base), 0)
        ax.plot(list(xs_base), [_y(v) for v in base], color="0.55", label="baseline")
        ax.plot(list(range(len(new))), [_y(v) for v in new], color="tab:red", label="bake")
        ax.axvline(0, color="0.2", linewidth=0.8)
        ax.set_ylabel(name[:24], fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7, loc="upper left")
    if fig.axes:
        fig.axes[-1].set_xlabel("minutes from the deploy", fontsize=8)
    return png(fig)


def _y(value: float | None) -> float:
    return math.nan if value is None else float(value)
