"""The plots of the visit products' and DIAObject's reports, drawn from the scan's binned arrays.

matplotlib's object API with the Agg canvas: no pyplot, so no global figure state and no display.
Each plot is one PNG under the report's `plots/` directory, written under a temporary name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.qa.core import PLOTS_DIR, Plot
from dc2tasks.products.qa.visit_scan import LOG_ERR_BINS, MAG_BINS, RESIDUAL_BINS, Bins

Draw = Callable[[Figure], None]
LABELLED_VISITS = 20  # beyond this many visits on an axis, their numbers would overlap


def save_plot(out: Path, name: str, caption: str, draw: Draw, size: tuple[float, float] = (6.4, 4.8)) -> Plot:
    """Draw a figure, write `out/plots/<name>.png`, and the report's entry for it."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    draw(fig)
    path = out / PLOTS_DIR / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Plot(name, f"{PLOTS_DIR}/{name}.png", caption)


def _inner(bins: Bins, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges and the counts inside the range (the under- and overflow bins left out)."""
    return bins.edges, counts[1:-1]


def _bands_axes(fig: Figure, bands: list[str]) -> list[Axes]:
    cols = min(3, max(1, len(bands)))
    rows = -(-len(bands) // cols) if bands else 1
    return list(np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel())


def matched_fraction(fractions: Mapping[int, float], low: float, warn: float) -> Draw:
    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        visits = list(fractions)
        ax.plot(range(len(visits)), [fractions[v] for v in visits], "o")
        ax.axhline(low, color="tab:red", ls="--", label=f"fail below {low:g}")
        ax.axhline(warn, color="tab:orange", ls=":", label=f"warn below {warn:g}")
        if len(visits) <= LABELLED_VISITS:
            ax.set_xticks(range(len(visits)), [str(v) for v in visits], rotation=45 if len(visits) > 5 else 0)
            ax.set_xlabel("visit")
        else:
            ax.set_xlabel(f"visit, in number order ({len(visits)} visits)")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("matched fraction")
        ax.legend(loc="lower right")

    return draw


def match_distance(bins: Bins, counts: np.ndarray, radius: float) -> Draw:
    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        edges, inner = _inner(bins, counts)
        ax.stairs(inner, edges, fill=True)
        ax.set_yscale("log")
        ax.axvline(radius, color="tab:red", ls="--", label=f"match radius {radius:g} arcsec")
        ax.set_xlabel("match distance (arcsec)")
        ax.set_ylabel("matched rows")
        ax.legend()

    return draw


def _occupied(bins: Bins, counts: np.ndarray) -> tuple[float, float]:
    """The range of the bins holding counts (the whole range when none does)."""
    inner = np.flatnonzero(counts[1:-1])
    if not inner.size:
        return bins.lo, bins.hi
    edges = bins.edges
    return float(edges[max(inner[0] - 1, 0)]), float(edges[min(inner[-1] + 2, bins.n)])


def mag_err_vs_mag(grids: Mapping[str, np.ndarray], what: str) -> Draw:
    """Per band (in the order given) the binned magnitude against log10 of its error."""
    bands = list(grids)

    def draw(fig: Figure) -> None:
        for ax, band in zip(_bands_axes(fig, bands), bands, strict=False):
            counts = grids[band]
            grid = counts[1:-1, 1:-1].T.astype(float)
            grid[grid == 0] = np.nan
            if np.isfinite(grid).any():
                ax.pcolormesh(MAG_BINS.edges, LOG_ERR_BINS.edges, grid, norm=LogNorm(), shading="flat")
            ax.set_xlim(*_occupied(MAG_BINS, counts.sum(axis=1)))
            ax.set_title(band)
            ax.set_xlabel(f"{what} (AB mag)")
            ax.set_ylabel("log10 magnitude error")

    return draw


def residuals(hists: Mapping[str, np.ndarray], limit: float) -> Draw:
    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        for band, counts in hists.items():
            edges, inner = _inner(RESIDUAL_BINS, counts)
            ax.stairs(inner, edges, label=band)
        for x in (-limit, limit):
            ax.axvline(x, color="tab:red", ls="--")
        ax.set_xlim(-5 * limit, 5 * limit)
        ax.set_xlabel("psFlux magnitude - truth (mag)")
        ax.set_ylabel("rows")
        ax.legend(title=f"median within +-{limit:g} mag")

    return draw


def histograms(hists: Mapping[str, np.ndarray], bins: Bins, xlabel: str, ylabel: str) -> Draw:
    """One step histogram per key (a band, or one key for all) on shared axes, in the order given."""

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        for label, counts in hists.items():
            edges, inner = _inner(bins, counts)
            ax.stairs(inner, edges, label=f"{label} ({int(counts.sum())})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if not any(c.sum() for c in hists.values()):
            ax.text(0.5, 0.5, "nothing to show", transform=ax.transAxes, ha="center")
        ax.legend()

    return draw
