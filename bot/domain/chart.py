"""The daily digest's chart: cases per day over the last two weeks, stacked by category (pure:
data in, PNG bytes out; matplotlib's Agg backend, no display needed).

Labels are given by the caller in Latin script: a fresh machine has no CJK font, and a
chart of empty boxes helps nobody.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

PALETTE = (
    "#d62728",
    "#ff7f0e",
    "#2ca02c",
    "#1f77b4",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
)


def cases_chart(
    days: Sequence[str],
    series: Mapping[str, Sequence[int]],
    labels: Mapping[str, str],
    title: str,
) -> bytes:
    """A small stacked bar chart (about 800×360 px) as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 3.6), dpi=100)
    axes = figure.subplots()
    bottom = [0] * len(days)
    for index, category in enumerate(sorted(series, key=lambda c: -sum(series[c]))):
        values = list(series[category])
        axes.bar(
            days,
            values,
            bottom=bottom,
            label=labels.get(category, category),
            color=PALETTE[index % len(PALETTE)],
            width=0.8,
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.set_ylim(0, max([*bottom, 1]) * 1.3)  # room for the legend
    axes.set_title(title, fontsize=11)
    axes.tick_params(axis="x", labelrotation=45, labelsize=8)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if series:
        axes.legend(fontsize=7, ncols=2, loc="upper left", frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
