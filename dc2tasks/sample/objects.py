"""The simulated sky: objects, their deblend families, fluxes in nJy, shapes and flags.

Objects belong to the patch whose inner box holds their top-level position (the "owner") and are
drawn from the owner's own random stream. A patch catalog is then every owned object, of this patch
and its eight neighbours, that lies in the patch's outer box: objects in the 100-pixel overlap appear
in both catalogs with the same id and the same measurements in nJy (each patch applies its own zero
point), and the inner boxes tile the tract, so exactly one catalog calls an object patch-inner.
Fluxes are kept in nJy here; the coadd writer turns them into instrumental fluxes per patch-band.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dc2tasks.products.calib import AB_NJY_ZP
from dc2tasks.sample.conditions import DEPTH_5SIGMA, FWHM_PER_SIGMA, SEEING_FWHM
from dc2tasks.sample.config import SampleConfig
from dc2tasks.sample.skymap import RingsSkyMap, TractGeometry
from dc2tasks.sample.streams import Purpose, stream

SERIAL_BITS = 24
# the order in which the multiband merge picks the reference band (DC2 obs_lsst config)
REF_PRIORITY = ("i", "r", "z", "y", "g", "u")
COLOR_GALAXY = {
    "u": (1.5, 0.6),
    "g": (0.6, 0.3),
    "r": (0.0, 0.0),
    "i": (-0.35, 0.2),
    "z": (-0.55, 0.25),
    "y": (-0.65, 0.3),
}
COLOR_STAR = {
    "u": (1.2, 0.8),
    "g": (0.5, 0.4),
    "r": (0.0, 0.0),
    "i": (-0.2, 0.2),
    "z": (-0.3, 0.25),
    "y": (-0.35, 0.3),
}
# fractions of records with a failed measurement (flag set; a share of those with NaN values)
PSF_FAIL, CMODEL_FAIL, SHAPE_FAIL, HSM_FAIL, CENTROID_FAIL, SKIPPED = 0.01, 0.03, 0.02, 0.03, 0.01, 0.01
PIXEL_FLAG_RATES = (0.012, 0.02, 0.005, 0.005, 0.003, 0.005, 0.004)  # edge ... clipped (OBJECT_PIXEL_FLAGS)


def object_id(tract: int, px: int, py: int, serial: np.ndarray) -> np.ndarray:
    """64-bit ids, unique over tracts and patches: (tract, patch) in the high bits, a serial below."""
    if not (0 <= px < 32 and 0 <= py < 32):
        raise ValueError(f"patch {px},{py}: ids hold patch indices below 32")
    owner = (tract * 1024 + px * 32 + py) << SERIAL_BITS
    return np.int64(owner) + serial.astype(np.int64)


@dataclass
class Objects:
    """Column arrays of a set of records; per-band arrays are (band, record)."""

    id: np.ndarray
    parent: np.ndarray
    n_child: np.ndarray
    x: np.ndarray
    y: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    tract_inner: np.ndarray
    is_star: np.ndarray
    extendedness: np.ndarray
    extendedness_flag: np.ndarray
    deblend_skipped: np.ndarray
    blendedness: np.ndarray
    centroid_err: np.ndarray
    centroid_flag: np.ndarray
    hsm_flag: np.ndarray
    shape: np.ndarray  # (3, n): intrinsic xx, yy, xy in px^2 (0 for stars)
    ref_band: np.ndarray  # index into the config's bands
    psf_flux: np.ndarray  # (nb, n) nJy, measured (noisy, may be negative or NaN)
    psf_err: np.ndarray
    psf_flag: np.ndarray
    cmodel_flux: np.ndarray
    cmodel_err: np.ndarray
    cmodel_flag: np.ndarray
    shape_flag: np.ndarray  # (nb, n) forced SdssShape failed
    background: np.ndarray  # (nb, n) local background, nJy
    background_err: np.ndarray
    footprint: np.ndarray  # (nb, n) merge_footprint_<b>
    peak: np.ndarray  # (nb, n) merge_peak_<b>
    pixel_flags: np.ndarray  # (nb, 7, n)

    def __len__(self) -> int:
        return len(self.id)

    def take(self, index: np.ndarray) -> Objects:
        return Objects(**{f.name: getattr(self, f.name)[..., index] for f in dataclasses.fields(self)})

    @classmethod
    def concat(cls, parts: list[Objects]) -> Objects:
        return cls(
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts], axis=-1)
                for f in dataclasses.fields(cls)
            }
        )


def _power_law_mags(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float) -> np.ndarray:
    """Magnitudes with counts rising as 10**(slope*m) between lo and hi (inverse CDF)."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + rng.random(n) * (b - a)) / slope


def _families(rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
    """(number of top-level records, children count per deblend parent)."""
    n_parents = n // 40 if n >= 10 else 0
    kids = rng.integers(2, 4, size=n_parents)
    while n_parents and n - kids.sum() < n_parents:
        n_parents -= 1
        kids = kids[:n_parents]
    return n - int(kids.sum()), kids


@dataclass(frozen=True)
class _Layout:
    """Where an owner patch's records are and their deblend families (children after top-level)."""

    n_top: int
    child_of: np.ndarray  # the top-level record each child belongs to
    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    parent: np.ndarray
    n_child: np.ndarray


def _layout(rng: np.random.Generator, config: SampleConfig, geom: TractGeometry, px: int, py: int) -> _Layout:
    n_top, kids = _families(rng, config.objects_per_patch)
    n_par = len(kids)
    n = n_top + int(kids.sum())
    box = geom.inner_box(px, py)

    # positions: top-level uniform in the inner box, children a few pixels from their parent
    top_x = rng.uniform(box.x0 - 0.5, box.x1 + 0.5, n_top)
    top_y = rng.uniform(box.y0 - 0.5, box.y1 + 0.5, n_top)
    order = np.argsort(top_y, kind="stable")  # detection order: by row, as a footprint scan finds them
    top_x, top_y = top_x[order], top_y[order]
    parent_slot = rng.choice(n_top, size=n_par, replace=False) if n_par else np.zeros(0, dtype=np.int64)
    parent_slot.sort()
    child_of = np.repeat(parent_slot, kids)
    top_limit = geom.size - 0.5 - 1e-6
    x = np.concatenate([top_x, np.clip(top_x[child_of] + rng.normal(0, 3.0, len(child_of)), -0.5, top_limit)])
    y = np.concatenate([top_y, np.clip(top_y[child_of] + rng.normal(0, 3.0, len(child_of)), -0.5, top_limit)])
    serial = np.arange(1, n + 1)
    ids = object_id(geom.tract, px, py, serial)
    parent = np.zeros(n, dtype=np.int64)
    parent[n_top:] = ids[child_of]
    n_child = np.zeros(n, dtype=np.int32)
    n_child[parent_slot] = kids
    return _Layout(n_top, child_of, x, y, ids, parent, n_child)


@dataclass(frozen=True)
class _Light:
    """Class, shape and measured PSF and CModel fluxes (nJy, per band) of an owner patch's records."""

    is_star: np.ndarray
    shape: np.ndarray
    psf_sigma2: dict[str, float]
    psf_flux: np.ndarray
    psf_err: np.ndarray
    psf_flag: np.ndarray
    cm_flux: np.ndarray
    cm_err: np.ndarray
    cm_flag: np.ndarray


def _light(rng: np.random.Generator, config: SampleConfig, layout: _Layout) -> _Light:
    bands = config.bands
    nb = len(bands)
    n, n_top, child_of = len(layout.ids), layout.n_top, layout.child_of
    # brightness and class; children share their parent's light
    is_star = rng.random(n) < 0.15
    m_r = np.where(
        is_star, _power_law_mags(rng, n, 16.0, 26.5, 0.15), _power_law_mags(rng, n, 18.0, 28.5, 0.35)
    )
    share = rng.uniform(0.2, 0.8, n)
    m_r[n_top:] = m_r[child_of] - 2.5 * np.log10(share[n_top:])
    size2 = np.where(is_star, 0.0, rng.lognormal(np.log(1.5), 0.7, n))  # intrinsic moment, px^2
    e = rng.uniform(-0.4, 0.4, (2, n))
    shape = np.stack([size2 * (1 + e[0]), size2 * (1 - e[0]), size2 * e[1]])
    psf_sigma2 = {b: (SEEING_FWHM[b] / FWHM_PER_SIGMA / config.pixel_scale) ** 2 for b in bands}

    psf_flux = np.empty((nb, n))
    psf_err = np.empty((nb, n))
    cm_flux = np.empty((nb, n))
    cm_err = np.empty((nb, n))
    for k, b in enumerate(bands):
        mean_g, sd_g = COLOR_GALAXY[b]
        mean_s, sd_s = COLOR_STAR[b]
        color = np.where(is_star, rng.normal(mean_s, sd_s or 1e-9, n), rng.normal(mean_g, sd_g or 1e-9, n))
        true_total = 10 ** ((AB_NJY_ZP - (m_r + color)) / 2.5)
        frac = psf_sigma2[b] / (psf_sigma2[b] + size2)
        noise = 10 ** ((AB_NJY_ZP - DEPTH_5SIGMA[b]) / 2.5) / 5.0
        psf_err[k] = noise * rng.uniform(0.9, 1.15, n)
        cm_err[k] = psf_err[k] * np.sqrt(1.0 + size2 / psf_sigma2[b]) * rng.uniform(0.95, 1.05, n)
        psf_flux[k] = true_total * frac + rng.normal(0.0, 1.0, n) * psf_err[k]
        cm_flux[k] = true_total + rng.normal(0.0, 1.0, n) * cm_err[k]

    psf_flag = rng.random((nb, n)) < PSF_FAIL
    cm_flag = rng.random((nb, n)) < CMODEL_FAIL
    psf_nan = psf_flag & (rng.random((nb, n)) < 0.5)
    cm_nan = cm_flag & (rng.random((nb, n)) < 0.67)
    psf_flux[psf_nan] = np.nan
    psf_err[psf_nan] = np.nan
    cm_flux[cm_nan] = np.nan
    cm_err[cm_nan] = np.nan
    return _Light(is_star, shape, psf_sigma2, psf_flux, psf_err, psf_flag, cm_flux, cm_err, cm_flag)


def simulate_owner(
    config: SampleConfig, skymap: RingsSkyMap, geom: TractGeometry, px: int, py: int, excluded_bands: set[str]
) -> Objects:
    """Every record owned by patch (px, py) of a tract, sorted by id.

    `excluded_bands` cannot be the reference band (the pipelines never measured them here).
    """
    rng = stream(config.seed, geom.tract, px, py, Purpose.OBJECTS)
    bands = config.bands
    nb = len(bands)
    layout = _layout(rng, config, geom, px, py)
    n = len(layout.ids)
    is_parent = layout.n_child > 0
    is_child = layout.parent != 0
    ra, dec = geom.pixel_to_sky(layout.x, layout.y)
    tract_inner = skymap.find_tracts(ra, dec) == geom.tract
    light = _light(rng, config, layout)
    is_star = light.is_star

    snr = np.abs(light.psf_flux / light.psf_err)
    footprint = np.nan_to_num(snr) > 3.0
    allowed = np.array([b not in excluded_bands for b in bands])
    footprint &= allowed[:, None]
    ref_band = _reference_band(bands, snr, footprint, allowed)
    footprint[ref_band, np.arange(n)] = True
    peak = footprint & (rng.random((nb, n)) < 0.93)
    peak[ref_band, np.arange(n)] = True

    cols = np.arange(n)
    ref_psf_flag = light.psf_flag[ref_band, cols]
    ref_cm_flag = light.cm_flag[ref_band, cols]
    extendedness = np.where(is_star, 0.0, 1.0)
    faint = snr[ref_band, cols] < 10
    flip = faint & (rng.random(n) < 0.1)
    extendedness[flip] = 1.0 - extendedness[flip]
    extendedness_flag = ref_psf_flag | ref_cm_flag
    extendedness[extendedness_flag] = np.nan

    ref_snr = np.nan_to_num(snr[ref_band, cols], nan=1.0)
    centroid_err = np.clip(np.sqrt(light.psf_sigma2[bands[0]]) / np.maximum(ref_snr, 0.5), 1e-3, 5.0).astype(
        np.float32
    )
    blendedness = np.where(is_child, rng.uniform(0.05, 0.8, n), np.minimum(rng.exponential(0.005, n), 1.0))
    blendedness[is_parent] = 0.0
    skipped = ~is_child & ~is_parent & (rng.random(n) < SKIPPED)
    pixel_flags = rng.random((nb, len(PIXEL_FLAG_RATES), n)) < np.array(PIXEL_FLAG_RATES)[None, :, None]

    return Objects(
        id=layout.ids,
        parent=layout.parent,
        n_child=layout.n_child,
        x=layout.x,
        y=layout.y,
        ra=ra,
        dec=dec,
        tract_inner=tract_inner,
        is_star=is_star,
        extendedness=extendedness,
        extendedness_flag=extendedness_flag,
        deblend_skipped=skipped,
        blendedness=blendedness,
        centroid_err=centroid_err,
        centroid_flag=rng.random(n) < CENTROID_FAIL,
        hsm_flag=rng.random(n) < HSM_FAIL,
        shape=light.shape,
        ref_band=ref_band,
        psf_flux=light.psf_flux,
        psf_err=light.psf_err,
        psf_flag=light.psf_flag,
        cmodel_flux=light.cm_flux,
        cmodel_err=light.cm_err,
        cmodel_flag=light.cm_flag,
        shape_flag=rng.random((nb, n)) < SHAPE_FAIL,
        background=rng.normal(0.0, 2.0, (nb, n)),
        background_err=rng.uniform(0.5, 1.5, (nb, n)),
        footprint=footprint,
        peak=peak,
        pixel_flags=pixel_flags,
    )


def _reference_band(
    bands: tuple[str, ...], snr: np.ndarray, detected: np.ndarray, allowed: np.ndarray
) -> np.ndarray:
    """First band of the merge priority list with a detection at S/N >= 5; else the best allowed S/N."""
    n = snr.shape[1]
    good = detected & (np.nan_to_num(snr) >= 5.0)
    choice = np.full(n, -1, dtype=np.int64)
    for b in reversed([b for b in REF_PRIORITY if b in bands]):
        k = bands.index(b)
        choice = np.where(good[k], k, choice)
    fallback = np.argmax(np.where(allowed[:, None], np.nan_to_num(snr, nan=-1.0), -np.inf), axis=0)
    return np.where(choice >= 0, choice, fallback).astype(np.int8)


def patch_objects(owners: dict[tuple[int, int], Objects], geom: TractGeometry, px: int, py: int) -> Objects:
    """The records of patch (px, py): owned ones of it and its neighbours inside its outer box, by id."""
    outer = geom.outer_box(px, py)
    parts = []
    for key in sorted(geom.neighbours(px, py)):
        objs = owners[key]
        parts.append(objs.take(np.flatnonzero(outer.contains(objs.x, objs.y))))
    merged = Objects.concat(parts)
    return merged.take(np.argsort(merged.id, kind="stable"))
