"""One streaming pass over the files of a visit product (or DIAObject): counters and binned arrays.

Each file is read one Parquet row group at a time and folded into a `Scan`: per column and band the
rows, NaNs and extremes; per visit the rows, matched rows and duplicated keys; binned magnitudes and
errors, match distances and residuals against truth. Nothing of a row group is kept once it is
folded in, so memory is one row group plus the bins (and one visit's keys, for duplicates).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dc2tasks.products.calib import AB_NJY_ZP, NJY_AT_MAG0
from dc2tasks.products.errors import InputError
from dc2tasks.products.matching import chord_to_arcsec, unit_vectors


@dataclass(frozen=True)
class Bins:
    """Fixed bin edges with an underflow and an overflow bin, so counts are never dropped."""

    lo: float
    hi: float
    n: int

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.n + 1)

    def empty(self) -> np.ndarray:
        return np.zeros(self.n + 2, dtype=np.int64)

    def index(self, values: np.ndarray) -> np.ndarray:
        """Bin of each value: 0 below lo, n + 1 at or above hi, else 1..n."""
        scaled = np.floor((values - self.lo) / (self.hi - self.lo) * self.n)
        return (np.clip(scaled, -1, self.n) + 1).astype(np.int64)

    def add(self, counts: np.ndarray, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]
        counts += np.bincount(self.index(values), minlength=self.n + 2)

    def median(self, counts: np.ndarray) -> float:
        """The centre of the bin holding the median (an end of the range when it is outside)."""
        total = int(counts.sum())
        if total == 0:
            return float("nan")
        k = int(np.searchsorted(np.cumsum(counts), (total + 1) / 2))
        if k == 0 or k == self.n + 1:
            return self.lo if k == 0 else self.hi
        edges = self.edges
        return float((edges[k - 1] + edges[k]) / 2)


MAG_BINS = Bins(5.0, 40.0, 140)
LOG_ERR_BINS = Bins(-4.0, 1.0, 100)  # log10 of the magnitude error
RESIDUAL_BINS = Bins(-0.5, 0.5, 2001)  # magnitudes, against truth (an odd count: 0 is a bin centre)
OFFSET_BINS = Bins(0.0, 0.5, 1000)  # arcsec, against truth


def ab_magnitude(flux_njy: np.ndarray) -> np.ndarray:
    """AB magnitude of fluxes in nJy (NaN where not positive), with the one zero point of calib."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            flux_njy > 0, AB_NJY_ZP - 2.5 * np.log10(np.where(flux_njy > 0, flux_njy, 1.0)), np.nan
        )


def to_njy(counts: np.ndarray, fluxmag0: np.ndarray) -> np.ndarray:
    """Instrumental counts in nJy with the row's F0 (as the GCRCatalogs readers compute psFlux)."""
    return np.asarray(counts, dtype=np.float64) * (NJY_AT_MAG0 / np.asarray(fluxmag0, dtype=np.float64))


def row_groups(path: Path, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
    """A Parquet file one row group at a time; InputError naming the file when it is not Parquet."""
    try:
        pf = pq.ParquetFile(path)
        for i in range(pf.num_row_groups):
            yield pf.read_row_group(i, columns=list(columns) if columns is not None else None)
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise InputError(f"{path}: cannot read it as Parquet: {exc}") from None


def read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: cannot read it as Parquet: {exc}") from None


@dataclass
class ColumnTally:
    """Per (column, band): rows, NaNs, finite extremes of the float columns."""

    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    nan: dict[tuple[str, str], int] = field(default_factory=dict)
    lo: dict[tuple[str, str], float] = field(default_factory=dict)
    hi: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, column: str, band: str, values: np.ndarray) -> None:
        key = (column, band)
        finite = values[np.isfinite(values)]
        self.rows[key] = self.rows.get(key, 0) + len(values)
        self.nan[key] = self.nan.get(key, 0) + int(np.isnan(values).sum())
        if finite.size:
            self.lo[key] = min(self.lo.get(key, np.inf), float(finite.min()))
            self.hi[key] = max(self.hi.get(key, -np.inf), float(finite.max()))

    def all_nan(self) -> list[tuple[str, str]]:
        return [k for k, n in self.rows.items() if n and self.nan[k] == n]

    def constant(self, skip: Sequence[str] = ()) -> list[tuple[str, str]]:
        """Columns whose finite values (two or more rows of them) are all one value."""
        return [
            k
            for k, n in self.rows.items()
            if k[0] not in skip and n - self.nan[k] >= 2 and self.lo.get(k) == self.hi.get(k)
        ]


@dataclass
class MagTally:
    """Per band: finite magnitudes, how many fall outside the plausible range, and the binned
    magnitude against log10 of its error."""

    mag_min: float
    mag_max: float
    finite: dict[str, int] = field(default_factory=dict)
    outside: dict[str, int] = field(default_factory=dict)
    grid: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, band: str, mag: np.ndarray, mag_err: np.ndarray) -> None:
        ok = np.isfinite(mag)
        m, e = mag[ok], mag_err[ok]
        self.finite[band] = self.finite.get(band, 0) + len(m)
        self.outside[band] = self.outside.get(band, 0) + int(((m < self.mag_min) | (m > self.mag_max)).sum())
        grid = self.grid.setdefault(band, np.zeros((MAG_BINS.n + 2, LOG_ERR_BINS.n + 2), dtype=np.int64))
        with np.errstate(divide="ignore", invalid="ignore"):
            log_err = np.log10(e)
        good = np.isfinite(log_err)
        flat = MAG_BINS.index(m[good]) * grid.shape[1] + LOG_ERR_BINS.index(log_err[good])
        grid += np.bincount(flat, minlength=grid.size).reshape(grid.shape)


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
        return lookup(self.cells, sky_cells(ra_deg, dec_deg))[1]


@dataclass
class MatchTally:
    """Per visit the rows (inside the footprint of what they were matched to, when it is known) and
    their matched rows; the binned distances of every match and the worst one."""

    radius: float
    rows: dict[int, int] = field(default_factory=dict)
    matched: dict[int, int] = field(default_factory=dict)
    beyond: int = 0
    worst: float = 0.0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def bins(self) -> Bins:
        return Bins(0.0, 1.5 * self.radius, 60)

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
        if not self.counts.size:
            self.counts = self.bins.empty()
        self.bins.add(self.counts, d)

    def fractions(self) -> dict[int, float]:
        return {v: self.matched[v] / n for v, n in sorted(self.rows.items()) if n}


@dataclass
class TruthTally:
    """Per band the binned magnitude residuals against truth, and the binned position offsets."""

    residual: dict[str, np.ndarray] = field(default_factory=dict)
    offset: np.ndarray = field(default_factory=OFFSET_BINS.empty)
    rows: int = 0
    unmatched: int = 0  # product rows whose id the truth does not have

    def add_residuals(self, band: str, ours: np.ndarray, truth: np.ndarray) -> None:
        RESIDUAL_BINS.add(self.residual.setdefault(band, RESIDUAL_BINS.empty()), ours - truth)

    def medians(self) -> dict[str, float]:
        return {b: RESIDUAL_BINS.median(c) for b, c in self.residual.items()}


def lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of `ids`, its index in `sorted_ids` and whether it is there at all."""
    if not len(sorted_ids):
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return at, sorted_ids[at] == ids


def band_masks(batch: pa.Table) -> list[tuple[str, slice | np.ndarray]]:
    """The bands of a row group's `filter` column, each with the rows in it (a visit has one band:
    then every row, without a per-row comparison)."""
    column = batch.column("filter")
    bands = [str(b) for b in pc.unique(column).to_pylist()]
    if len(bands) == 1:
        return [(bands[0], slice(None))]
    return [(b, pc.equal(column, b).to_numpy(zero_copy_only=False)) for b in sorted(bands)]


def duplicated(keys: Sequence[np.ndarray]) -> tuple[int, list[tuple]]:
    """Rows beyond the first of each key (a key being one value from each array), and a few keys."""
    n = len(keys[0])
    if n < 2:
        return 0, []
    order = np.lexsort(keys[::-1])
    same = np.ones(n - 1, dtype=bool)
    for k in keys:
        s = k[order]
        same &= s[1:] == s[:-1]
    rows = order[1:][same]
    examples = list(dict.fromkeys(tuple(int(k[r]) for k in keys) for r in rows[:20]))[:5]
    return int(same.sum()), examples


def angular_offset_arcsec(ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    """Great-circle separation of positions in degrees, in arcsec, as the matcher measures it."""
    chord = np.linalg.norm(unit_vectors(ra1, dec1) - unit_vectors(ra2, dec2), axis=1)
    return chord_to_arcsec(chord)
