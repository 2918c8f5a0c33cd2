"""The LSST "rings" sky map and its tracts, reimplemented from the published geometry.

Downstream code and tests need tract pixel positions that are consistent with the sky positions in
the same way as the DM pipelines made them, including which tract "owns" a position (the tract-inner
flag) and how many patches a tract has at a given pixel scale. Facts used (lsst.skymap RingsSkyMap,
version 1 numbering, ExplicitTractInfo with the legacy patch builder; obs_lsst DC2 config):

- ringSize = pi / (numRings + 1); tract 0 is the south polar cap, the last tract the north cap.
- ring i spans dec [ringSize*(i+0.5) - pi/2, +ringSize]; it holds int(2 pi cos(d) / ringSize) + 1
  tracts, d the ring edge closest to the equator; tract j of ring i is centred at
  ra = raStart + 2 pi j / n_i, dec = ringSize*(i+1) - pi/2.
- a tract's WCS is TAN about its centre with CD = [[-scale, 0], [0, scale]]; its minimum box holds
  the points at radius ringSize/2 + tractOverlap east, north, west and south of the centre; the box is
  grown to a whole number of patches (keeping it centred) and shifted so that its corner is pixel 0,0.
- patch inner boxes tile the tract; outer boxes add `patchBorder` pixels, clipped to the tract.

Checked against the spec's worked example: tract 4850 at 0.185"/px puts RA 55.67530876, Dec
-29.62466051 at x, y = 13270.49, 4001.90 (the fixture's values). At 0.2"/px a tract has 7x7 patches
(as in DC2 Run 2.x), at 0.185"/px 8x8 (Run 1.x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dc2tasks.sample.fits_writer import tan_wcs_cards

NUM_RINGS = 120
TRACT_OVERLAP_DEG = 1.0 / 60.0
PATCH_INNER = 4000
PATCH_BORDER = 100


@dataclass(frozen=True)
class Box:
    """Integer pixel box [x0, x1] x [y0, y1], inclusive, as afw Box2I."""

    x0: int
    y0: int
    x1: int
    y1: int

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether positions fall in the box, pixel centres at integers (afw Box2D of the Box2I)."""
        x = np.asarray(x)
        y = np.asarray(y)
        return (x >= self.x0 - 0.5) & (x < self.x1 + 0.5) & (y >= self.y0 - 0.5) & (y < self.y1 + 0.5)


@dataclass(frozen=True)
class RingsSkyMap:
    num_rings: int = NUM_RINGS
    ra_start_deg: float = 0.0
    tract_overlap_deg: float = TRACT_OVERLAP_DEG

    @cached_property
    def ring_size(self) -> float:
        return math.pi / (self.num_rings + 1)

    @cached_property
    def ring_counts(self) -> tuple[int, ...]:
        counts = []
        for i in range(self.num_rings):
            start = self.ring_size * (i + 0.5) - 0.5 * math.pi
            stop = start + self.ring_size
            dec = min(abs(start), abs(stop))
            counts.append(int(2 * math.pi * math.cos(dec) / self.ring_size) + 1)
        return tuple(counts)

    @property
    def num_tracts(self) -> int:
        return sum(self.ring_counts) + 2

    def tract_center(self, tract: int) -> tuple[float, float]:
        """(ra, dec) of a tract's centre, radians."""
        if not 0 <= tract < self.num_tracts:
            raise ValueError(f"tract {tract} is not in this sky map (0..{self.num_tracts - 1})")
        if tract == 0:
            return 0.0, -0.5 * math.pi
        if tract == self.num_tracts - 1:
            return 0.0, 0.5 * math.pi
        index = tract - 1
        ring = 0
        while index >= self.ring_counts[ring]:
            index -= self.ring_counts[ring]
            ring += 1
        dec = self.ring_size * (ring + 1) - 0.5 * math.pi
        ra = (2 * math.pi * index / self.ring_counts[ring] + math.radians(self.ra_start_deg)) % (2 * math.pi)
        return ra, dec

    def find_tracts(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """The tract whose inner region holds each (ra, dec) in radians (DM's findTract)."""
        ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
        dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
        first = self.ring_size * 0.5 - 0.5 * math.pi
        counts = np.array(self.ring_counts)
        cumulative = np.concatenate([[0], np.cumsum(counts)])
        ring = np.floor((dec - first) / self.ring_size).astype(np.int64)
        south = dec < first
        north = dec > -first
        ring = np.clip(ring, 0, self.num_rings - 1)
        n = counts[ring]
        delta = (ra - math.radians(self.ra_start_deg)) % (2 * math.pi)
        num = (delta / (2 * math.pi / n) + 0.5).astype(np.int64)
        num[num == n] = 0
        out = cumulative[ring] + num + 1
        out[south] = 0
        out[north] = self.num_tracts - 1
        return out

    def tract(self, tract: int, pixel_scale_arcsec: float) -> TractGeometry:
        ra0, dec0 = self.tract_center(tract)
        scale_deg = pixel_scale_arcsec / 3600.0
        radius = 0.5 * self.ring_size + math.radians(self.tract_overlap_deg)
        # E/W/N/S points at `radius` from the centre land at +-tan(radius) on the TAN plane
        half = math.degrees(math.tan(radius)) / scale_deg
        lo = math.floor(-half + 0.5)  # Box2I(Box2D) keeps every pixel the box touches
        hi = math.ceil(half - 0.5)
        dim = hi - lo + 1
        num = -(-dim // PATCH_INNER)
        lo -= (num * PATCH_INNER - dim) // 2
        return TractGeometry(tract, ra0, dec0, pixel_scale_arcsec, crpix0=float(-lo), num_patches=num)


@dataclass(frozen=True)
class TractGeometry:
    """One tract: TAN WCS (0-based pixel of the centre = crpix0 on both axes) and its patches."""

    tract: int
    ra0: float
    dec0: float
    pixel_scale_arcsec: float
    crpix0: float
    num_patches: int
    patch_inner: int = PATCH_INNER
    patch_border: int = PATCH_BORDER

    @property
    def size(self) -> int:
        return self.num_patches * self.patch_inner

    @property
    def bbox(self) -> Box:
        return Box(0, 0, self.size - 1, self.size - 1)

    @property
    def _scale_rad(self) -> float:
        return math.radians(self.pixel_scale_arcsec / 3600.0)

    def sky_to_pixel(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gnomonic projection about the tract centre, then CD^-1 (x grows to the west)."""
        ra = np.asarray(ra, dtype=np.float64)
        dec = np.asarray(dec, dtype=np.float64)
        dra = ra - self.ra0
        sd0, cd0 = math.sin(self.dec0), math.cos(self.dec0)
        cosc = sd0 * np.sin(dec) + cd0 * np.cos(dec) * np.cos(dra)
        xi = np.cos(dec) * np.sin(dra) / cosc
        eta = (cd0 * np.sin(dec) - sd0 * np.cos(dec) * np.cos(dra)) / cosc
        return self.crpix0 - xi / self._scale_rad, self.crpix0 + eta / self._scale_rad

    def pixel_to_sky(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ra in [0, 2pi), dec), radians, of 0-based tract pixel positions."""
        xi = -(np.asarray(x, dtype=np.float64) - self.crpix0) * self._scale_rad
        eta = (np.asarray(y, dtype=np.float64) - self.crpix0) * self._scale_rad
        sd0, cd0 = math.sin(self.dec0), math.cos(self.dec0)
        denom = cd0 - eta * sd0
        ra = (self.ra0 + np.arctan2(xi, denom)) % (2 * math.pi)
        dec = np.arctan2(sd0 + eta * cd0, np.hypot(xi, denom))
        return ra, dec

    def patch_index(self, patch: str) -> tuple[int, int]:
        px, py = (int(v) for v in patch.split(","))
        if not (0 <= px < self.num_patches and 0 <= py < self.num_patches):
            n = self.num_patches - 1
            raise ValueError(
                f'patch {patch!r} is not in tract {self.tract} at {self.pixel_scale_arcsec}"/px '
                f"(patches 0,0 .. {n},{n})"
            )
        return px, py

    def inner_box(self, px: int, py: int) -> Box:
        n = self.patch_inner
        return Box(px * n, py * n, (px + 1) * n - 1, (py + 1) * n - 1)

    def outer_box(self, px: int, py: int) -> Box:
        inner = self.inner_box(px, py)
        b = self.patch_border
        return Box(
            max(inner.x0 - b, 0),
            max(inner.y0 - b, 0),
            min(inner.x1 + b, self.size - 1),
            min(inner.y1 + b, self.size - 1),
        )

    def neighbours(self, px: int, py: int) -> list[tuple[int, int]]:
        """Patches whose outer box can reach into this one, this one included."""
        return [
            (px + dx, py + dy)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if 0 <= px + dx < self.num_patches and 0 <= py + dy < self.num_patches
        ]

    def wcs_cards(self, x0: int = 0, y0: int = 0) -> list[tuple[str, object]]:
        """FITS WCS of an image whose pixel (0, 0) is tract pixel (x0, y0), as afw writes it.

        The "A" WCS records the image origin (xy0) the way afw persists it.
        """
        scale = self.pixel_scale_arcsec / 3600.0
        return tan_wcs_cards(
            (self.crpix0 + 1.0 - x0, self.crpix0 + 1.0 - y0),
            (math.degrees(self.ra0), math.degrees(self.dec0)),
            (-scale, 0.0, 0.0, scale),
            (x0, y0),
        )
