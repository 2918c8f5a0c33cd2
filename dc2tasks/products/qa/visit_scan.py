"""One streaming pass over the files of a visit product (or DIAObject): what its checks keep.

Each file is read one Parquet row group at a time and folded into the accumulators of
dc2tasks.products.qa.stats and .columns, and these, the visit products' own: per band the
magnitudes; per visit the rows, matched rows and duplicated keys; match distances and residuals
against truth. Nothing of a row group is kept once it is folded in, so memory is one row group plus
the bins (and one visit's keys, for duplicates).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dc2tasks.products.qa import stats


@dataclass
class MagTally:
    """Per band: how many magnitudes fall outside the plausible range, and the binned magnitude
    error against magnitude."""

    range: stats.RangeTally
    errors: dict[str, stats.Histogram2D] = field(default_factory=dict)

    def add(self, band: str, mag: np.ndarray, mag_err: np.ndarray) -> None:
        self.range.add(band, mag)
        self.errors.setdefault(band, stats.mag_err_histogram()).add(mag, mag_err)


FOOTPRINT_CELL_ARCSEC = 30.0
"""Sky cells of the footprint: a few Objects each at DC2 depths, small beside a patch (~13 arcmin)."""


def sky_cells(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """The cell of each position: rings of constant declination, each cut into cells of about
    FOOTPRINT_CELL_ARCSEC along the ring."""
    size = FOOTPRINT_CELL_ARCSEC / 3600.0
    ring = np.floor((np.asarray(dec_deg, dtype=np.float64) + 90.0) / size)
    centre = np.radians(ring * size + size / 2 - 90.0)
    along = np.floor(np.mod(ra_deg, 360.0) * np.maximum(np.cos(centre), 1e-6) / size)
    return (ring.astype(np.int64) << 32) + along.astype(np.int64)


@dataclass(frozen=True)
class Footprint:
    """Where a catalog has entries: the sorted sky cells holding at least one."""

    cells: np.ndarray

    @classmethod
    def of(cls, positions: Iterator[tuple[np.ndarray, np.ndarray]]) -> Footprint:
        """From (ra, dec) arrays in degrees, e.g. one per row group; one cell set kept, not the rows."""
        cells = np.zeros(0, dtype=np.int64)
        for ra, dec in positions:
            cells = np.union1d(cells, sky_cells(ra, dec))
        return cls(cells)

    def covers(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
        return stats.lookup(self.cells, sky_cells(ra_deg, dec_deg))[1]


@dataclass
class MatchTally:
    """Per visit the rows (inside the footprint of what they were matched to, when it is known) and
    their matched rows; the binned distances of every match and the worst one."""

    radius: float
    rows: dict[int, int] = field(default_factory=dict)
    matched: dict[int, int] = field(default_factory=dict)
    beyond: int = 0
    worst: float = 0.0
    distances: stats.Histogram | None = None  # binned to 1.5 radius, once the radius is read

    def add(
        self, visit: int, object_id: np.ndarray, distance: np.ndarray, inside: np.ndarray | slice
    ) -> None:
        hit = object_id >= 0
        d = distance[hit]
        self.rows[visit] = self.rows.get(visit, 0) + len(object_id[inside])
        self.matched[visit] = self.matched.get(visit, 0) + int(hit[inside].sum())
        bad = ~(d <= self.radius)  # NaN distance on a matched row counts as beyond
        self.beyond += int(bad.sum())
        if d.size:
            self.worst = max(self.worst, float(np.nanmax(np.where(np.isfinite(d), d, np.inf))))
        if self.distances is None:
            self.distances = stats.Histogram.linear(0.0, 1.5 * self.radius, 60)
        self.distances.add(d)

    def fractions(self) -> dict[int, float]:
        return {v: self.matched[v] / n for v, n in sorted(self.rows.items()) if n}


@dataclass
class TruthTally:
    """Per band the binned magnitude residuals against truth, and the binned position offsets."""

    residual: dict[str, stats.Histogram] = field(default_factory=dict)
    offset: stats.Histogram = field(default_factory=lambda: stats.Histogram.linear(*stats.RESIDUAL_ARCSEC))
    rows: int = 0
    unmatched: int = 0  # product rows whose id the truth does not have

    def add_residuals(self, band: str, ours: np.ndarray, truth: np.ndarray) -> None:
        self.residual.setdefault(band, stats.Histogram.linear(*stats.RESIDUAL_MAG)).add(ours - truth)

    def medians(self) -> dict[str, float]:
        return {b: h.quantile(0.5) for b, h in self.residual.items() if h.finite}


def band_masks(batch: pa.Table) -> list[tuple[str, slice | np.ndarray]]:
    """The bands of a row group's `filter` column, each with the rows in it (a visit has one band:
    then every row, without a per-row comparison)."""
    column = batch.column("filter")
    bands = [str(b) for b in pc.unique(column).to_pylist()]
    if len(bands) == 1:
        return [(bands[0], slice(None))]
    return [(b, pc.equal(column, b).to_numpy(zero_copy_only=False)) for b in sorted(bands)]


def key_values(batch: pa.Table, keys: Sequence[str]) -> np.ndarray:
    """A row group's keys, for stats.duplicated_ids: one column's values, or rows of several."""
    if len(keys) == 1:
        return batch.column(keys[0]).to_numpy()
    return np.column_stack([batch.column(k).to_numpy() for k in keys])
