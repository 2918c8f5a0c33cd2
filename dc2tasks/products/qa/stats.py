"""Streaming accumulators: what a check or a plot keeps of a product while its rows go past.

A product is read one row group (Parquet) or patch group (HDF5) at a time; each accumulator takes a
batch of values with `add` and keeps only fixed-size binned arrays (or, for a sky map, one count per
occupied cell), so a report's memory is one batch plus its bins, whatever the catalog's size.
Used by every product's checks (Object and visit products alike): nothing here knows a column name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from dc2tasks.products.matching import chord_to_arcsec, unit_vectors

MAG_BINS = (14.0, 32.0, 72)
MAGERR_BINS = (0.0, 0.5, 50)
# 0.0005 mag / arcsec bins centred on 0.0, 0.0005, ...: a median to a quarter of a thousandth, and
# exactly 0 where the values are
RESIDUAL_MAG = (-0.50025, 0.50025, 2001)
RESIDUAL_ARCSEC = (-0.00025, 1.99975, 4000)
"""Bins (low, high, count) every product's magnitude plots and truth residuals share."""


def edges(spec: tuple[float, float, int]) -> np.ndarray:
    return np.linspace(spec[0], spec[1], spec[2] + 1)


@dataclass
class Histogram:
    """Counts of values in fixed bins; values below or above the edges (and NaN) are counted apart,
    so a fraction or a quantile is of every finite value seen."""

    edges: np.ndarray
    counts: np.ndarray = field(init=False)
    below: int = 0
    above: int = 0
    nonfinite: int = 0

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.float64)
        self.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self._uniform = bool(np.allclose(np.diff(self.edges), self.edges[1] - self.edges[0]))

    @classmethod
    def linear(cls, low: float, high: float, bins: int) -> Histogram:
        return cls(edges((low, high, bins)))

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        self.nonfinite += int(values.size - finite.sum())
        values = values[finite]
        low, high = self.edges[0], self.edges[-1]
        self.below += int((values < low).sum())
        self.above += int((values > high).sum())
        # equal bins (as `linear` makes) take numpy's arithmetic path, not a sort of the values
        bins = len(self.counts) if self._uniform else self.edges
        self.counts += np.histogram(values, bins, range=(low, high))[0]

    @property
    def finite(self) -> int:
        return int(self.counts.sum()) + self.below + self.above

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def quantile(self, q: float) -> float:
        """The q-quantile of the finite values, to a bin's width (the bin's centre); NaN when none,
        -inf / +inf when it lies below / above the edges."""
        total = self.finite
        if total == 0:
            return float("nan")
        rank = q * total
        if rank < self.below:
            return float("-inf")
        cumulative = self.below + np.cumsum(self.counts)
        k = int(np.searchsorted(cumulative, rank, side="left"))
        return float("inf") if k >= len(self.counts) else float(self.centres[k])


@dataclass
class RangeTally:
    """Per label (a column, a band): values not NaN, and how many of them lie outside [low, high]
    (an infinite value is outside: a wrong value, where NaN is one not measured)."""

    low: float
    high: float
    outside: dict[str, int] = field(default_factory=dict)
    measured: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        outside = int(((values < self.low) | (values > self.high)).sum())
        self.outside[label] = self.outside.get(label, 0) + outside
        self.measured[label] = self.measured.get(label, 0) + int(values.size)

    def worst(self) -> float:
        """The largest fraction outside of one label; NaN when no value was measured at all."""
        fractions = [self.outside[k] / n for k, n in self.measured.items() if n]
        return max(fractions) if fractions else float("nan")


@dataclass
class Histogram2D:
    """Counts of (x, y) pairs in fixed bins; pairs outside the edges or not finite are dropped."""

    xedges: np.ndarray
    yedges: np.ndarray
    counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.xedges = np.asarray(self.xedges, dtype=np.float64)
        self.yedges = np.asarray(self.yedges, dtype=np.float64)
        self.counts = np.zeros((len(self.xedges) - 1, len(self.yedges) - 1), dtype=np.int64)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        self.counts += np.histogram2d(x[keep], y[keep], (self.xedges, self.yedges))[0].astype(np.int64)


_IY_OFFSET = 1 << 30  # cell keys: ix * 2**31 + iy + 2**30 (|iy| < 2**30 even for 1" cells)


@dataclass
class SkyGrid:
    """Counts per cell of a grid of `cell_deg` on (ra cos(dec0), dec), dec0 the first batch's mean
    declination: cells are kept only where rows fall (sorted keys and their counts), and the cells
    grow (`_coarsen`) so that the map spans at most `max_cells`, whatever the footprint."""

    cell_deg: float = 1.0 / 3600
    max_cells: int = 10_000
    dec0: float | None = None
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def _cells(self) -> tuple[np.ndarray, np.ndarray]:
        return self.keys // (1 << 31), self.keys % (1 << 31) - _IY_OFFSET

    def _merge(self, ix: np.ndarray, iy: np.ndarray, counts: np.ndarray) -> None:
        keys, inverse = np.unique(ix * (1 << 31) + iy + _IY_OFFSET, return_inverse=True)
        self.keys, self.counts = (
            keys,
            np.bincount(inverse, weights=counts, minlength=len(keys)).astype(np.int64),
        )

    def _coarsen(self) -> None:
        """Double the cell size (each new cell is four old ones) until the map's bounding box has
        at most max_cells: its resolution follows the footprint, its memory and image size do not."""
        while self.keys.size:
            ix, iy = self._cells()
            if (ix.max() - ix.min() + 1) * (iy.max() - iy.min() + 1) <= self.max_cells:
                return
            self._merge(ix // 2, iy // 2, self.counts)
            self.cell_deg *= 2

    def add(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> None:
        ra, dec = np.asarray(ra_deg, np.float64), np.asarray(dec_deg, np.float64)
        keep = np.isfinite(ra) & np.isfinite(dec)
        ra, dec = ra[keep], dec[keep]
        if ra.size == 0:
            return
        if self.dec0 is None:
            self.dec0 = float(dec.mean())
        ix = np.floor(ra * np.cos(np.radians(self.dec0)) / self.cell_deg).astype(np.int64)
        iy = np.floor(dec / self.cell_deg).astype(np.int64)
        old_ix, old_iy = self._cells()
        self._merge(
            np.concatenate([old_ix, ix]),
            np.concatenate([old_iy, iy]),
            np.concatenate([self.counts, np.ones(ix.size, np.int64)]),
        )
        self._coarsen()

    def image(self) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """(counts per arcmin² as a 2-d array [dec, ra], extent (ra0, ra1, dec0, dec1) in degrees);
        ra grows to the left, as on the sky."""
        if not self.keys.size:
            return np.zeros((1, 1)), (0.0, 1.0, 0.0, 1.0)
        ix, iy = self._cells()
        i0, j0, i1, j1 = ix.min(), iy.min(), ix.max(), iy.max()
        image = np.zeros((j1 - j0 + 1, i1 - i0 + 1))
        image[iy - j0, ix - i0] = self.counts / (self.cell_deg * 60) ** 2
        scale = np.cos(np.radians(self.dec0 or 0.0))
        ra = (i0 * self.cell_deg / scale, (i1 + 1) * self.cell_deg / scale)
        return image[:, ::-1], (ra[1], ra[0], j0 * self.cell_deg, (j1 + 1) * self.cell_deg)


def mag_err_histogram() -> Histogram2D:
    """Magnitude error against magnitude (MAG_BINS x MAGERR_BINS), as every report plots it."""
    return Histogram2D(edges(MAG_BINS), edges(MAGERR_BINS))


def duplicated_ids(
    batches: Callable[[], Iterable[np.ndarray]], rows: int, max_ids: int = 4_000_000, examples: int = 5
) -> tuple[int, list[tuple[object, int]]]:
    """(rows whose id another row has too, up to `examples` (id, times) pairs) over every id that
    `batches()` yields. An id is one value, or a row of a 2-d array (a key of several columns, e.g.
    objectId and detector: then a tuple). Ids are split by (their first column's) value into enough
    partitions that one holds at most about `max_ids` of them, one pass over `batches()` per
    partition, so memory stays bounded whatever the product's rows (one pass, and no split, for up
    to `max_ids` rows)."""
    parts = max(1, -(-rows // max_ids))
    extra = 0
    found: list[tuple[object, int]] = []
    for part in range(parts):
        kept = [ids[_first(ids) % parts == part] if parts > 1 else ids for ids in map(np.asarray, batches())]
        if not kept:
            continue
        ids = np.concatenate(kept)
        # axis=0 (a row as the id) only where needed: it sorts a void view, slower than numbers
        values, counts = np.unique(ids, return_counts=True, **({"axis": 0} if ids.ndim > 1 else {}))
        many = counts > 1
        keys = [tuple(v) if isinstance(v, list) else v for v in values[many].tolist()]
        extra += int(counts[many].sum())
        found += list(zip(keys, counts[many].tolist(), strict=True))[: examples - len(found)]
    return extra, found


def _first(ids: np.ndarray) -> np.ndarray:
    return ids if ids.ndim == 1 else ids[:, 0]


def lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of `ids`, its index in `sorted_ids` and whether it is there at all."""
    if not len(sorted_ids):
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return at, sorted_ids[at] == ids


def separation_arcsec(ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    """Great-circle separation of positions in degrees, in arcsec, as the matcher measures it."""
    chord = np.linalg.norm(unit_vectors(ra1, dec1) - unit_vectors(ra2, dec2), axis=1)
    return chord_to_arcsec(chord)
