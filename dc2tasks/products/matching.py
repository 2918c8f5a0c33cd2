"""Nearest-object association on the sphere, built once per process and reused for every visit.

The old scripts pre-selected objects in an RA/Dec box without cos(dec) and without RA wrap-around,
then matched each patch separately and let the last patch win (spec §4). Here every position is a
3-D unit vector, so the geometry has no special places (RA = 0/360, the poles), and one index holds
all objects of a run, so there is no per-patch merging to get wrong.

Exactness: the k-d tree finds candidates by chord length with a bound a hair larger than the radius;
every candidate's great-circle angle is then computed from the chord (angle = 2 asin(chord / 2),
accurate to ~1e-11 arcsec at 1 arcsec) and the radius is applied to that angle. So "within the
radius", the candidate count and the nearest object all follow from the same exact angles.

Rules a caller can rely on:
- A source matches the object at the smallest angle <= radius; ties (equal angles) go to the
  smallest object id, so the answer does not depend on the order the objects were given in.
- Objects with a non-finite RA or Dec are left out of the index (they have no position to match);
  `SkyMatcher.dropped` counts them and `len()` counts the indexed objects.
- A source with a non-finite RA or Dec matches nothing (-1, NaN, 0 candidates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ARCSEC_PER_RAD = 180.0 * 3600.0 / math.pi
MAX_RADIUS_ARCSEC = 180.0 * 3600.0  # beyond half a great circle the chord no longer grows with angle
NO_MATCH = -1
# The tree's bound is widened by this factor so that rounding in chord lengths can never hide an object
# whose exact angle is within the radius; the exact angle test removes anything the widening lets in.
_BOUND_SLACK = 1.0 + 1e-9
_FIRST_K = 4  # candidates asked for per source; sources that fill all k are asked again with 4k


@dataclass(frozen=True)
class Matches:
    object_id: np.ndarray  # int64, -1 where no object lies within the radius
    distance_arcsec: np.ndarray  # float64 great-circle distance to that object, NaN where none
    candidates: np.ndarray  # int32, number of objects within the radius (0 where none)


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors; RA needs no range check because cos/sin wrap it for us."""
    ra = np.deg2rad(ra_deg)
    dec = np.deg2rad(dec_deg)
    cos_dec = np.cos(dec)
    return np.column_stack((cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)))


def chord_to_arcsec(chord: np.ndarray) -> np.ndarray:
    """Great-circle angle of a chord between unit vectors; asin form keeps small angles exact."""
    return 2.0 * np.arcsin(np.minimum(chord, 2.0) / 2.0) * ARCSEC_PER_RAD


def arcsec_to_chord(radius_arcsec: float) -> float:
    return 2.0 * math.sin(radius_arcsec / ARCSEC_PER_RAD / 2.0)


def _positions(ra_deg: object, dec_deg: object, what: str) -> tuple[np.ndarray, np.ndarray]:
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.ndim != 1 or dec.ndim != 1:
        raise ValueError(
            f"{what}: ra_deg and dec_deg must be 1-D arrays (got shapes {ra.shape}, {dec.shape})"
        )
    if ra.shape != dec.shape:
        raise ValueError(f"{what}: ra_deg has {ra.size} values but dec_deg has {dec.size}")
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(dec) & (np.abs(dec) > 90.0)
    if outside.any():
        first = float(dec[np.argmax(outside)])
        raise ValueError(
            f"{what}: dec_deg must lie in [-90, 90] degrees; {int(outside.sum())} values do not "
            f"(first: {first!r})"
        )
    return ra, dec


def _object_ids(ids: object, n: int) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.size != n:
        raise ValueError(f"objects: ids has shape {arr.shape} but there are {n} positions")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"objects: ids must be integers (got dtype {arr.dtype})")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError("objects: ids do not fit in int64")
    arr = arr.astype(np.int64)
    if (arr == NO_MATCH).any():
        raise ValueError(f"objects: ids contain {NO_MATCH}, the no-match sentinel; it would be ambiguous")
    return arr


def _radius(radius_arcsec: object) -> float:
    if isinstance(radius_arcsec, (str, bytes, bool)):  # the old CLI passed the radius as a string
        raise ValueError(f"radius_arcsec must be a number of arcseconds, got {radius_arcsec!r}")
    try:
        radius = float(radius_arcsec)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"radius_arcsec must be a number of arcseconds, got {radius_arcsec!r}") from None
    if not (0.0 < radius <= MAX_RADIUS_ARCSEC):
        raise ValueError(f"radius_arcsec must be > 0 and <= {MAX_RADIUS_ARCSEC:g} arcsec, got {radius!r}")
    return radius


class SkyMatcher:
    """Objects indexed once per process (e.g. all isPrimary Objects of a run), matched to many visits."""

    def __init__(self, ids: np.ndarray, ra_deg: np.ndarray, dec_deg: np.ndarray) -> None:
        ra, dec = _positions(ra_deg, dec_deg, "objects")
        all_ids = _object_ids(ids, ra.size)
        finite = np.isfinite(ra) & np.isfinite(dec)
        self.dropped = int(ra.size - finite.sum())
        self._ids = all_ids[finite]
        # scipy.spatial (half a second) imported here: the angle helpers below serve readers (QA)
        # that never build a tree
        from scipy.spatial import cKDTree

        # balanced_tree=False halves the build time for 2M objects; compact nodes make queries faster
        self._tree = (
            cKDTree(unit_vectors(ra[finite], dec[finite]), balanced_tree=False, compact_nodes=True)
            if self._ids.size
            else None
        )

    def __len__(self) -> int:
        return int(self._ids.size)

    def match(self, ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float = 1.0) -> Matches:
        radius = _radius(radius_arcsec)
        ra, dec = _positions(ra_deg, dec_deg, "sources")
        n = ra.size
        object_id = np.full(n, NO_MATCH, dtype=np.int64)
        distance = np.full(n, np.nan, dtype=np.float64)
        candidates = np.zeros(n, dtype=np.int32)
        rows = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
        if self._tree is None or rows.size == 0:
            return Matches(object_id, distance, candidates)

        vectors = unit_vectors(ra[rows], dec[rows])
        bound = min(arcsec_to_chord(radius) * _BOUND_SLACK, 2.0)
        k = min(_FIRST_K, len(self))
        todo = np.arange(rows.size)
        while todo.size:
            chord, index = self._tree.query(vectors[todo], k=k, distance_upper_bound=bound)
            chord = chord.reshape(todo.size, k)
            index = index.reshape(todo.size, k)
            full = np.isfinite(chord[:, -1])  # every one of the k slots is taken: there may be more
            if k < len(self) and full.any():
                done = ~full
                self._settle(
                    rows[todo[done]], chord[done], index[done], radius, object_id, distance, candidates
                )
                todo = todo[full]
                k = min(4 * k, len(self))
                continue
            self._settle(rows[todo], chord, index, radius, object_id, distance, candidates)
            break
        return Matches(object_id, distance, candidates)

    def _settle(
        self,
        rows: np.ndarray,
        chord: np.ndarray,
        index: np.ndarray,
        radius: float,
        object_id: np.ndarray,
        distance: np.ndarray,
        candidates: np.ndarray,
    ) -> None:
        """Apply the radius to exact angles, count, and pick the nearest (smallest id on a tie)."""
        found = np.isfinite(chord)
        angle = np.full(chord.shape, np.inf)
        angle[found] = chord_to_arcsec(chord[found])
        inside = angle <= radius
        angle[~inside] = np.inf
        ids = np.full(chord.shape, np.iinfo(np.int64).max, dtype=np.int64)
        ids[inside] = self._ids[index[inside]]
        best = np.lexsort((ids, angle), axis=-1)[:, 0]
        picked = np.arange(rows.size)
        count = inside.sum(axis=1)
        hit = count > 0
        object_id[rows[hit]] = ids[picked, best][hit]
        distance[rows[hit]] = angle[picked, best][hit]
        candidates[rows] = count
