"""The objects a tract's visits observe: every object of the coadd truth, once, and which of them vary.

Visits see the sky the coadds were made from, so their sources come from the same objects: every
record of every written patch catalog (primary or not), de-duplicated by id. An object is primary
when some written catalog calls it primary, which is exactly the set of rows of the Object table.

The "true" flux of an object in a band is the nJy PSF flux the coadd model gave it (its CModel flux
where that measurement failed, 0 when both failed): the model keeps no noiseless flux, and visits only
need a level to scatter around.

Variable objects are chosen by a hash of their id (streams.hash_uniform), so the choice does not
depend on which patches or visits were generated: isolated unblended objects (no other candidate
within `ISOLATION_ARCSEC`, so that a difference-image source has one DIA object to belong to), in the
inner region of a generated patch. Each varies as a sinusoid in every band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from dc2tasks.sample.coadd import PatchContext, placement_flags
from dc2tasks.sample.objects import Objects
from dc2tasks.sample.skymap import TractGeometry
from dc2tasks.sample.streams import Purpose, hash_uniform

ISOLATION_ARCSEC = 2.0
DIA_OBJECT_OFFSET_ARCSEC = 0.08  # DIA object positions sit within this of the object's
DIA_ID_FLAG = 1 << 60  # DIA object ids: (1 << 60) | tract << 32 | patch << 20 | serial


@dataclass
class TractObjects:
    """Column arrays, one entry per object, sorted by id; per-band arrays are (band, object)."""

    tract: int
    bands: tuple[str, ...]
    id: np.ndarray
    parent: np.ndarray
    n_child: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    x: np.ndarray  # tract pixels
    y: np.ndarray
    primary: np.ndarray
    flux: np.ndarray  # (band, n) nJy, the level visits scatter around
    shape: np.ndarray  # (3, n) intrinsic moments, px^2
    extendedness: np.ndarray
    blendedness: np.ndarray

    def __len__(self) -> int:
        return len(self.id)


@dataclass
class TractObjectCollector:
    """Gathers the records of each patch catalog as it is written, for the visits made afterwards."""

    tract: int
    bands: tuple[str, ...]
    parts: list[dict[str, np.ndarray]] = field(default_factory=list)

    def add(self, objs: Objects, ctx: PatchContext) -> None:
        _, primary = placement_flags(objs, ctx)
        flux = np.where(np.isfinite(objs.psf_flux), objs.psf_flux, objs.cmodel_flux)
        self.parts.append(
            {
                "id": objs.id,
                "parent": objs.parent,
                "n_child": objs.n_child,
                "ra": objs.ra,
                "dec": objs.dec,
                "x": objs.x,
                "y": objs.y,
                "primary": primary,
                "flux": np.nan_to_num(flux, nan=0.0),
                "shape": objs.shape,
                "extendedness": objs.extendedness,
                "blendedness": objs.blendedness,
            }
        )

    def finish(self) -> TractObjects:
        if not self.parts:
            empty = {k: np.zeros(0) for k in ("ra", "dec", "x", "y", "extendedness", "blendedness")}
            return TractObjects(
                self.tract,
                self.bands,
                id=np.zeros(0, dtype=np.int64),
                parent=np.zeros(0, dtype=np.int64),
                n_child=np.zeros(0, dtype=np.int32),
                primary=np.zeros(0, dtype=bool),
                flux=np.zeros((len(self.bands), 0)),
                shape=np.zeros((3, 0)),
                **empty,
            )
        merged = {k: np.concatenate([p[k] for p in self.parts], axis=-1) for k in self.parts[0]}
        self.parts = []
        ids, first, inverse = np.unique(merged["id"], return_index=True, return_inverse=True)
        primary = np.zeros(len(ids), dtype=bool)
        np.logical_or.at(primary, inverse, merged["primary"])
        cols = {k: v[..., first] for k, v in merged.items() if k != "primary"}
        return TractObjects(self.tract, self.bands, primary=primary, **cols)


@dataclass
class Variables:
    """The variable objects of a tract and their light curves (nJy around the object's level)."""

    index: np.ndarray  # into TractObjects
    object_id: np.ndarray
    dia_object_id: np.ndarray
    patch: np.ndarray  # "x,y" of the patch whose inner region holds the object
    amplitude: np.ndarray  # (band, m) nJy
    period: np.ndarray  # days
    phase: np.ndarray  # radians
    dia_ra: np.ndarray  # radians, the DIA object's catalogued position
    dia_dec: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def difference_flux(self, band_index: int, mjd: float, which: np.ndarray) -> np.ndarray:
        """lc(mjd) - template level, nJy, of the variables at positions `which`."""
        angle = 2 * math.pi * mjd / self.period[which] + self.phase[which]
        return self.amplitude[band_index, which] * np.sin(angle)


def choose_variables(
    seed: int,
    objs: TractObjects,
    geom: TractGeometry,
    patches: tuple[str, ...],
    fraction: float,
    noise_njy: dict[str, float],
) -> Variables:
    """The deterministic variable subset, with amplitudes of 5-25 single-visit sigmas per band."""
    inner = geom.patch_inner
    px = np.floor((objs.x + 0.5) / inner).astype(np.int64)
    py = np.floor((objs.y + 0.5) / inner).astype(np.int64)
    in_patch = np.zeros(len(objs), dtype=bool)
    for p in patches:
        qx, qy = (int(v) for v in p.split(","))
        in_patch |= (px == qx) & (py == qy)
    u = hash_uniform(seed, objs.id, Purpose.VARIABILITY, 0)
    candidate = np.flatnonzero(in_patch & (objs.n_child == 0) & (u < fraction))
    radius_px = ISOLATION_ARCSEC / geom.pixel_scale_arcsec
    if len(candidate) > 1:
        pairs = cKDTree(np.column_stack([objs.x[candidate], objs.y[candidate]])).query_pairs(
            radius_px, output_type="ndarray"
        )
        crowded = np.zeros(len(candidate), dtype=bool)
        crowded[pairs.ravel()] = True
        candidate = candidate[~crowded]
    ids = objs.id[candidate]
    draws = [hash_uniform(seed, ids, Purpose.VARIABILITY, k) for k in range(1, 6)]
    sigma = np.array([noise_njy[b] for b in objs.bands])[:, None]
    amplitude = sigma * (5.0 + 20.0 * draws[0][None, :]) * (0.7 + 0.6 * draws[1][None, :])
    period = 1.0 + 59.0 * draws[2]
    phase = 2 * math.pi * draws[3]
    # DIA object position: the object's, moved by less than DIA_OBJECT_OFFSET_ARCSEC
    # (moved on the tract's pixel grid, whose scale is uniform to 1e-3 over a tract, also at a pole)
    offset = 0.95 * DIA_OBJECT_OFFSET_ARCSEC / geom.pixel_scale_arcsec * draws[4]
    direction = 2 * math.pi * hash_uniform(seed, ids, Purpose.DIA_OBJECTS, 0)
    ra, dec = geom.pixel_to_sky(
        objs.x[candidate] + offset * np.cos(direction), objs.y[candidate] + offset * np.sin(direction)
    )
    patch_x, patch_y = px[candidate], py[candidate]
    return Variables(
        index=candidate,
        object_id=ids,
        dia_object_id=_dia_object_ids(geom.tract, patch_x, patch_y),
        patch=np.array([f"{a},{b}" for a, b in zip(patch_x, patch_y, strict=True)], dtype=object),
        amplitude=amplitude,
        period=period,
        phase=phase,
        dia_ra=ra,
        dia_dec=dec,
    )


def _dia_object_ids(tract: int, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Ids in a space of their own (bit 60 set; Object ids stay below 2**50), serial by id per patch."""
    patch = px * 32 + py
    serial = np.zeros(len(patch), dtype=np.int64)
    for p in np.unique(patch):
        where = np.flatnonzero(patch == p)
        serial[where] = np.arange(1, len(where) + 1)
    return DIA_ID_FLAG | (np.int64(tract) << 32) | (patch.astype(np.int64) << 20) | serial
