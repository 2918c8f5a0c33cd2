"""The report's plots, drawn with matplotlib's Agg backend from binned arrays (dc2tasks.products.qa.stats).

Each function draws one figure into `<report dir>/plots/<name>.png` and returns its `Plot`. They take
bins, never rows, so a plot costs the same for a patch or a whole run. Used by every product's
report: none knows a product.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.qa.core import PLOTS_DIR, Plot
from dc2tasks.products.qa.stats import Histogram, Histogram2D, SkyGrid

DPI = 100
SIZE = (6.4, 4.8)  # inches: 640 x 480 pixels


def save(fig: Figure, out: Path, name: str, caption: str) -> Plot:
    """Write the figure as `out/plots/<name>.png` (temporary name, then renamed). A bare Figure (no
    pyplot): nothing registers it, so nothing has to close it, and pyplot's import is saved."""
    rel = f"{PLOTS_DIR}/{name}.png"
    with atomic_path(out / rel) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Plot(name, rel, caption)


def _figure() -> tuple[Figure, Axes]:
    # fixed margins: a layout engine measures every tick label of every draw, and costs more than
    # the plot
    fig = Figure(figsize=SIZE, dpi=DPI)
    fig.subplots_adjust(left=0.15, right=0.9, bottom=0.11, top=0.92)
    return fig, fig.add_subplot()


def _log_counts(ax: Axes) -> None:
    """A log count axis labelled 1, 10, 100, ..., 1e+06 in plain numbers: the default labels are TeX
    (10^n), whose first layout costs more than the rest of the plot."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())  # unlabelled minor ticks: a third of its drawing


MAX_DRAWN_BINS = 200
"""A histogram finer than this (a residual's, binned for its median) is drawn with merged bins."""


def _drawn(h: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) with at most MAX_DRAWN_BINS bins, merging neighbours."""
    step = -(-len(h.counts) // MAX_DRAWN_BINS)
    if step == 1:
        return h.counts, h.edges
    n = len(h.counts) // step * step
    return h.counts[:n].reshape(-1, step).sum(axis=1), h.edges[: n + 1 : step]


def step_histograms(
    out: Path,
    name: str,
    hists: Mapping[str, Histogram],
    xlabel: str,
    caption: str,
    log: bool = True,
    marks: tuple[float, ...] = (),
) -> Plot:
    """One step line per labelled histogram (e.g. number counts per band); `marks`: vertical lines
    (the thresholds)."""
    fig, ax = _figure()
    for label, h in hists.items():
        ax.stairs(*_drawn(h), label=f"{label} ({h.finite})")
    for x in marks:
        ax.axvline(x, color="grey", linestyle=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count per bin")
    if log and any(h.counts.any() for h in hists.values()):
        _log_counts(ax)
    if hists:
        ax.legend(fontsize="small")
    return save(fig, out, name, caption)


def density_panels(
    out: Path, name: str, hists: Mapping[str, Histogram2D], xlabel: str, ylabel: str, caption: str
) -> Plot:
    """One 2-d histogram panel per label (e.g. magnitude error against magnitude per band)."""
    n = max(1, len(hists))
    cols = min(3, n)
    rows = -(-n // cols)
    size = (max(3.2 * cols, SIZE[0]), max(2.8 * rows, SIZE[1]))  # one band: not smaller than the rest
    fig = Figure(figsize=size, dpi=DPI)
    # shared axes, labelled on the outer panels only: tick labels are most of a panel's drawing time
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.1, top=0.93, wspace=0.15, hspace=0.3)
    for ax, (label, h) in zip(axes.flat, hists.items(), strict=False):
        _mesh(ax, h)
        ax.set_title(label, fontsize="small")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize="small")
    for ax in list(axes.flat)[len(hists) :]:
        ax.set_axis_off()
    for col in range(cols):  # the lowest drawn panel of each column shows the x axis
        bottom = axes[(n - 1 - col) // cols, col]
        bottom.tick_params(labelbottom=True)
        bottom.set_xlabel(xlabel, fontsize="small")
    return save(fig, out, name, caption)


def _mesh(ax: Axes, h: Histogram2D) -> None:
    counts = np.where(h.counts > 0, h.counts, np.nan).T
    ax.pcolormesh(
        h.xedges, h.yedges, counts, norm="log" if np.nanmax(counts, initial=0) > 1 else None, cmap="viridis"
    )


def density(out: Path, name: str, h: Histogram2D, xlabel: str, ylabel: str, caption: str) -> Plot:
    """One 2-d histogram (e.g. g-r against r-i)."""
    fig, ax = _figure()
    _mesh(ax, h)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return save(fig, out, name, caption)


LABELLED_UNITS = 20
"""Beyond this many units (visits) on an axis their numbers would overlap: then only counted."""


def unit_values(
    out: Path,
    name: str,
    values: Mapping[int, float],
    unit: str,
    ylabel: str,
    caption: str,
    lines: Mapping[str, float] = MappingProxyType({}),
) -> Plot:
    """One point per unit (e.g. each visit's matched fraction), in the order given; `lines`:
    labelled horizontal lines (the thresholds)."""
    fig, ax = _figure()
    units = list(values)
    ax.plot(range(len(units)), [values[u] for u in units], "o")
    for (label, y), style in zip(lines.items(), (":", "--", "-."), strict=False):
        ax.axhline(y, color="grey", linestyle=style, label=label)
    if len(units) <= LABELLED_UNITS:
        ax.set_xticks(range(len(units)), [str(u) for u in units], rotation=45 if len(units) > 5 else 0)
        ax.set_xlabel(unit)
    else:
        ax.set_xlabel(f"{unit}, in number order ({len(units)} {unit}s)")
    ax.set_ylabel(ylabel)
    if lines:
        ax.legend(fontsize="small", loc="lower right")
    return save(fig, out, name, caption)


def sky_map(out: Path, name: str, grid: SkyGrid, title: str, caption: str) -> Plot:
    """Objects per arcmin² over the footprint (ra to the left)."""
    image, extent = grid.image()
    fig, ax = _figure()
    shown = ax.imshow(
        image, origin="lower", extent=extent, aspect="auto", cmap="magma", interpolation="nearest"
    )
    fig.colorbar(shown, ax=ax, label="per arcmin²")
    ax.set_xlabel("ra [deg]")
    ax.set_ylabel("dec [deg]")
    ax.set_title(title)
    return save(fig, out, name, caption)
