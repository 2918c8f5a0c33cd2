"""The core columns of one detector's src, forced_src and deepDiff_diaSrc, with their truth.

src: every object whose true position falls on the detector (a few hundredths of an arcsec of
positional scatter; fluxes drawn around the object's level through the detector's calibration),
plus `spurious_fraction` sources per real one, placed at least `SPURIOUS_CLEARANCE_ARCSEC` from any
object. A source whose object's deblend parent is also on the detector has that parent's source id
as `parent`. Rows are in detection order (by y). forced_src: one row per primary object on the
detector, at its reference position. diaSrc: one row per variable object on the detector (the
difference of its light curve from the template level, through the difference image's calibration)
plus spurious ones.

Source ids: visit << 32 | detector << 24 | kind << 22 | serial (kind 0 src, 1 forced, 2 DIA), so
ids are unique over a repository's visits, detectors and catalogs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dc2tasks.products.calib import Calibration
from dc2tasks.products.pixel_flags import VISIT_PIXEL_FLAGS, pixel_flag_columns
from dc2tasks.products.schema import SchemaGeneration
from dc2tasks.sample.focal_plane import FocalPlane
from dc2tasks.sample.objects import PIXEL_FLAG_RATES
from dc2tasks.sample.observations import Observation, psf_area
from dc2tasks.sample.tract_objects import TractObjects, Variables
from dc2tasks.sample.visit_columns import DIA_GENERATION

Columns = dict[str, np.ndarray]
POSITION_SCATTER_ARCSEC = 0.02  # per axis, src
DIA_POSITION_SCATTER_ARCSEC = 0.03
SPURIOUS_CLEARANCE_ARCSEC = 2.0
SPURIOUS_SNR = (5.0, 8.0)
SERIAL_BITS = 22
KIND_SRC, KIND_FORCED, KIND_DIA = 0, 1, 2
# failure rates: PSF flux (half of those NaN), aperture, Gaussian, local background, centroid,
# shape, deblend skipped; pixel flags as the coadd objects' (without `clipped`)
PSF_FAIL, AP_FAIL, GAUSS_FAIL, BACKGROUND_FAIL, CENTROID_FAIL, SHAPE_FAIL, SKIPPED = (
    0.01,
    0.02,
    0.01,
    0.01,
    0.01,
    0.02,
    0.01,
)
VISIT_PIXEL_FLAG_RATES = PIXEL_FLAG_RATES[: len(VISIT_PIXEL_FLAGS)]
DIPOLE_RATE = 0.02

# accepts focal-plane positions (u, v) and says which are far enough from every object
ClearOfObjects = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DetectorContext:
    observation: Observation
    detector: int
    plane: FocalPlane
    calexp: Calibration
    diffexp: Calibration
    gen: SchemaGeneration
    spurious_fraction: float

    @property
    def pixels_per_arcsec(self) -> float:
        return 1.0 / self.observation.pointing.pixel_scale_arcsec

    def sky(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.observation.pointing.focal_to_sky(*self.plane.to_focal(self.detector, x, y))


@dataclass
class Catalog:
    """Core columns and flags of one detector catalog, and its truth columns."""

    columns: Columns
    flags: Columns
    truth: Columns
    x: np.ndarray  # detector pixels, for the filler columns
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


def source_ids(visit: int, detector: int, kind: int, n: int) -> np.ndarray:
    if n >= 1 << SERIAL_BITS:
        raise ValueError(
            f"visit {visit} detector {detector}: {n} rows exceed the {1 << SERIAL_BITS} id serials"
        )
    base = (visit << 32) | (detector << 24) | (kind << SERIAL_BITS)
    return np.int64(base) + np.arange(1, n + 1, dtype=np.int64)


def _inside(ctx: DetectorContext, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions kept on the detector's pixels ([-0.5, size - 0.5))."""
    w, h = ctx.plane.width, ctx.plane.height
    return np.clip(x, -0.5, w - 0.5 - 1e-6), np.clip(y, -0.5, h - 0.5 - 1e-6)


def place_spurious(
    ctx: DetectorContext, rng: np.random.Generator, n: int, clear: ClearOfObjects
) -> tuple[np.ndarray, np.ndarray]:
    """Up to n uniformly placed positions, each clear of every object (fewer only in a crowded field)."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    have = 0
    for _ in range(50):
        if have >= n:
            break
        m = 2 * (n - have) + 8
        x = rng.uniform(-0.5, ctx.plane.width - 0.5, m)
        y = rng.uniform(-0.5, ctx.plane.height - 0.5, m)
        ok = clear(*ctx.plane.to_focal(ctx.detector, x, y))
        xs.append(x[ok])
        ys.append(y[ok])
        have += int(ok.sum())
    x = np.concatenate(xs) if xs else np.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0)
    return x[:n], y[:n]


def _pixel_flags(rng: np.random.Generator, n: int) -> Columns:
    return {
        name: rng.random(n) < rate
        for name, rate in zip(pixel_flag_columns(VISIT_PIXEL_FLAGS), VISIT_PIXEL_FLAG_RATES, strict=True)
    }


def _flux_with_failures(
    rng: np.random.Generator, level: np.ndarray, err: np.ndarray, fail_rate: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flux, err, flag): level + noise; a failed measurement is flagged, half of them NaN."""
    n = len(level)
    flux = level + rng.normal(0.0, 1.0, n) * err
    flag = rng.random(n) < fail_rate
    nan = flag & (rng.random(n) < 0.5)
    flux = np.where(nan, np.nan, flux)
    return flux, np.where(nan, np.nan, err), flag


def _moments(ctx: DetectorContext, rng: np.random.Generator, intrinsic: np.ndarray) -> tuple[np.ndarray, ...]:
    """(psf xx, yy, xy, object xx, yy, xy) per row: the visit PSF, a little different per detector."""
    n = intrinsic.shape[1]
    scale = rng.uniform(0.97, 1.03)
    psf = np.array(ctx.observation.psf_moments()) * scale
    psf_cols = [np.full(n, v) for v in psf]
    return (*psf_cols, *(psf_cols[k] + intrinsic[k] for k in range(3)))


def _truth_head(ctx: DetectorContext, ids: np.ndarray) -> Columns:
    """The truth columns every detector catalog starts with."""
    n = len(ids)
    return {
        "id": ids,
        "visit": np.full(n, ctx.observation.visit, dtype=np.int64),
        "detector": np.full(n, ctx.detector, dtype=np.int64),
        "filter": np.full(n, ctx.observation.band, dtype=object),
    }


def _instrumental(g: SchemaGeneration, to_inst: float, fluxes: dict[str, tuple[np.ndarray, ...]]) -> Columns:
    """Flux and error columns in counts of each plugin prefix, from nJy."""
    columns: Columns = {}
    for prefix, (flux, flux_err) in fluxes.items():
        columns[f"{prefix}_{g.flux}"] = flux * to_inst
        columns[f"{prefix}_{g.flux_err}"] = flux_err * to_inst
    return columns


def _centroid_and_shape(
    ctx: DetectorContext,
    g: SchemaGeneration,
    x: np.ndarray,
    y: np.ndarray,
    psf: tuple[np.ndarray, np.ndarray],
    sigma: float,
    moments: tuple[np.ndarray, ...],
    shape_flag: np.ndarray,
) -> Columns:
    """Centroid (its error from the PSF flux's S/N, at least the positional scatter `sigma`), shape and
    PSF moments (a failed shape is NaN) and the PSF area: the columns src and diaSrc share."""
    pxx, pyy, pxy, oxx, oyy, oxy = moments
    snr = np.abs(np.nan_to_num(psf[0] / psf[1], nan=1.0))
    psf_sigma2 = ctx.observation.psf_sigma2
    centroid_err = np.clip(np.sqrt(psf_sigma2) / np.maximum(snr, 1.0), sigma, 5.0).astype(np.float32)
    return {
        "base_SdssCentroid_x": x,
        "base_SdssCentroid_y": y,
        f"base_SdssCentroid_x{g.err}": centroid_err,
        f"base_SdssCentroid_y{g.err}": centroid_err * np.float32(1.02),
        "base_SdssShape_xx": np.where(shape_flag, np.nan, oxx),
        "base_SdssShape_yy": np.where(shape_flag, np.nan, oyy),
        "base_SdssShape_xy": np.where(shape_flag, np.nan, oxy),
        "base_SdssShape_psf_xx": pxx,
        "base_SdssShape_psf_yy": pyy,
        "base_SdssShape_psf_xy": pxy,
        "base_PsfFlux_area": np.full(len(x), psf_area(float(pxx[0]) if len(x) else psf_sigma2)),
    }


@dataclass(frozen=True)
class _Detections:
    """A src's rows in detection order (by y): measured and true positions, which rows are objects
    (`obj`: the object's index, 0 for a spurious row) and the true flux of each row, nJy."""

    x: np.ndarray
    y: np.ndarray
    x_true: np.ndarray
    y_true: np.ndarray
    real: np.ndarray
    obj: np.ndarray
    level: np.ndarray


def _detect(
    ctx: DetectorContext,
    rng: np.random.Generator,
    objs: TractObjects,
    on_detector: tuple[np.ndarray, np.ndarray, np.ndarray],
    clear: ClearOfObjects,
    sigma: float,
) -> _Detections:
    observation = ctx.observation
    index, x_true, y_true = on_detector
    n_real = len(index)
    x, y = _inside(ctx, x_true + rng.normal(0, sigma, n_real), y_true + rng.normal(0, sigma, n_real))
    n_spur = round(ctx.spurious_fraction * n_real)
    sx, sy = place_spurious(ctx, rng, n_spur, clear)
    n_spur = len(sx)
    spur_level = observation.noise_njy * rng.uniform(*SPURIOUS_SNR, n_spur)

    order = np.argsort(np.concatenate([y, sy]), kind="stable")
    real = np.concatenate([np.ones(n_real, dtype=bool), np.zeros(n_spur, dtype=bool)])[order]
    obj = np.where(real, np.concatenate([index, np.full(n_spur, -1)])[order], 0)
    level = np.where(
        real, objs.flux[observation.band_index][obj], np.concatenate([np.zeros(n_real), spur_level])[order]
    )
    return _Detections(
        np.concatenate([x, sx])[order],
        np.concatenate([y, sy])[order],
        np.concatenate([x_true, sx])[order],
        np.concatenate([y_true, sy])[order],
        real,
        obj,
        level,
    )


def _deblend_parents(ids: np.ndarray, object_id: np.ndarray, parent_object: np.ndarray) -> np.ndarray:
    """A source's deblend parent: the source of its object's parent, when that is on the detector."""
    n = len(ids)
    parent = np.zeros(n, dtype=np.int64)
    by_object = np.argsort(object_id)
    pos = np.clip(np.searchsorted(object_id, parent_object, sorter=by_object), 0, n - 1)
    hit = (parent_object != 0) & (object_id[by_object[pos]] == parent_object)
    parent[hit] = ids[by_object[pos[hit]]]
    return parent


def src_catalog(
    ctx: DetectorContext,
    rng: np.random.Generator,
    objs: TractObjects,
    index: np.ndarray,
    x_true: np.ndarray,
    y_true: np.ndarray,
    clear: ClearOfObjects,
) -> Catalog:
    observation, g = ctx.observation, ctx.gen
    sigma = POSITION_SCATTER_ARCSEC * ctx.pixels_per_arcsec
    d = _detect(ctx, rng, objs, (index, x_true, y_true), clear, sigma)
    n = len(d.x)
    ids = source_ids(observation.visit, ctx.detector, KIND_SRC, n)
    object_id = np.where(d.real, objs.id[d.obj], -1)
    parent = np.zeros(n, dtype=np.int64)
    if len(index):
        parent = _deblend_parents(ids, object_id, np.where(d.real, objs.parent[d.obj], 0))

    err = observation.noise_njy * rng.uniform(0.9, 1.1, n)
    psf, psf_err, psf_flag = _flux_with_failures(rng, d.level, err, PSF_FAIL)
    ap, ap_err, ap_flag = _flux_with_failures(rng, 1.05 * d.level, 1.3 * err, AP_FAIL)
    gauss, gauss_err, gauss_flag = _flux_with_failures(rng, 0.98 * d.level, 1.1 * err, GAUSS_FAIL)
    bkg, bkg_err, bkg_flag = _flux_with_failures(rng, np.zeros(n), 0.25 * err, BACKGROUND_FAIL)
    moments = _moments(ctx, rng, np.where(d.real, objs.shape[:, d.obj], 0.0))
    shape_flag = rng.random(n) < SHAPE_FAIL
    ra, dec = ctx.sky(d.x, d.y)
    true_ra, true_dec = ctx.sky(d.x_true, d.y_true)

    columns: Columns = {
        "id": ids,
        "coord_ra": ra,
        "coord_dec": dec,
        "parent": parent,
        **_centroid_and_shape(ctx, g, d.x, d.y, (psf, psf_err), sigma, moments, shape_flag),
        "base_ClassificationExtendedness_value": np.where(d.real, objs.extendedness[d.obj], 0.0),
        g.blendedness: np.where(d.real, objs.blendedness[d.obj], 0.0),
        **_instrumental(
            g,
            ctx.calexp.counts_per_njy,
            {
                "base_PsfFlux": (psf, psf_err),
                "base_CircularApertureFlux_12_0": (ap, ap_err),
                "base_GaussianFlux": (gauss, gauss_err),
                "base_LocalBackground": (bkg, bkg_err),
            },
        ),
    }
    flags: Columns = {
        "deblend_skipped": rng.random(n) < SKIPPED,
        "base_SdssCentroid_flag": rng.random(n) < CENTROID_FAIL,
        "base_SdssShape_flag": shape_flag,
        "base_PsfFlux_flag": psf_flag,
        "base_CircularApertureFlux_12_0_flag": ap_flag,
        "base_GaussianFlux_flag": gauss_flag,
        "base_LocalBackground_flag": bkg_flag,
        **_pixel_flags(rng, n),
    }
    truth: Columns = {
        **_truth_head(ctx, ids),
        "objectId": object_id,
        "ra": np.degrees(ra),
        "dec": np.degrees(dec),
        "true_ra": np.degrees(true_ra),
        "true_dec": np.degrees(true_dec),
        "psf_flux_nJy": ctx.calexp.nanojansky(columns[f"base_PsfFlux_{g.flux}"]),
        "psf_flux_err_nJy": ctx.calexp.nanojansky(columns[f"base_PsfFlux_{g.flux_err}"]),
        "true_flux_nJy": d.level,
        "fluxmag0": np.full(n, ctx.calexp.fluxmag0),
        "mjd": np.full(n, observation.mjd),
        "is_primary": np.where(d.real, objs.primary[d.obj], False),
    }
    return Catalog(columns, flags, truth, d.x, d.y)


def forced_catalog(
    ctx: DetectorContext,
    rng: np.random.Generator,
    objs: TractObjects,
    index: np.ndarray,
    x_true: np.ndarray,
    y_true: np.ndarray,
) -> Catalog:
    observation, g = ctx.observation, ctx.gen
    keep = objs.primary[index]
    index, x, y = index[keep], x_true[keep], y_true[keep]
    n = len(index)
    ids = source_ids(observation.visit, ctx.detector, KIND_FORCED, n)
    err = observation.noise_njy * rng.uniform(0.9, 1.1, n)
    psf, psf_err, psf_flag = _flux_with_failures(rng, objs.flux[observation.band_index][index], err, PSF_FAIL)
    _, _, _, oxx, oyy, oxy = _moments(ctx, rng, objs.shape[:, index])
    to_inst = ctx.calexp.counts_per_njy
    columns: Columns = {
        "id": ids,
        "coord_ra": objs.ra[index],
        "coord_dec": objs.dec[index],
        "parent": np.zeros(n, dtype=np.int64),
        "objectId": objs.id[index],
        "base_TransformedCentroid_x": x,
        "base_TransformedCentroid_y": y,
        f"base_PsfFlux_{g.flux}": psf * to_inst,
        f"base_PsfFlux_{g.flux_err}": psf_err * to_inst,
        "base_TransformedShape_xx": oxx,
        "base_TransformedShape_yy": oyy,
        "base_TransformedShape_xy": oxy,
    }
    flags: Columns = {"base_PsfFlux_flag": psf_flag, **_pixel_flags(rng, n)}
    truth: Columns = {
        **_truth_head(ctx, ids),
        "objectId": objs.id[index],
        "psf_flux_nJy": ctx.calexp.nanojansky(columns[f"base_PsfFlux_{g.flux}"]),
        "psf_flux_err_nJy": ctx.calexp.nanojansky(columns[f"base_PsfFlux_{g.flux_err}"]),
        "fluxmag0": np.full(n, ctx.calexp.fluxmag0),
    }
    return Catalog(columns, flags, truth, x, y)


@dataclass
class DiaCatalog(Catalog):
    variable: np.ndarray  # index into Variables of each real row (-1 spurious)
    inst_flux: np.ndarray  # the written difference-image counts and errors
    inst_err: np.ndarray


@dataclass(frozen=True)
class _DiaDetections:
    """A diaSrc's rows in detection order (by y): positions, the difference and direct-image flux of
    each row, nJy, and its variable (-1 for a spurious row) and object (-1) index."""

    x: np.ndarray
    y: np.ndarray
    diff_level: np.ndarray
    direct_level: np.ndarray
    variable: np.ndarray
    obj: np.ndarray


def _dia_detect(
    ctx: DetectorContext,
    rng: np.random.Generator,
    objs: TractObjects,
    variables: Variables,
    which: np.ndarray,
    index: np.ndarray,
    xy_true: tuple[np.ndarray, np.ndarray],
    clear: ClearOfObjects,
    sigma: float,
    noise: float,
) -> _DiaDetections:
    observation = ctx.observation
    n_real = len(which)
    x_true, y_true = xy_true
    x, y = _inside(ctx, x_true + rng.normal(0, sigma, n_real), y_true + rng.normal(0, sigma, n_real))
    sx, sy = place_spurious(ctx, rng, round(ctx.spurious_fraction * n_real), clear)
    n_spur = len(sx)
    spur_level = noise * rng.uniform(*SPURIOUS_SNR, n_spur) * rng.choice([-1.0, 1.0], n_spur)

    diff_now = variables.difference_flux(observation.band_index, observation.mjd, which)
    diff_level = np.concatenate([diff_now, spur_level])
    direct_level = np.concatenate([objs.flux[observation.band_index][index], np.zeros(n_spur)]) + diff_level
    order = np.argsort(np.concatenate([y, sy]), kind="stable")
    return _DiaDetections(
        np.concatenate([x, sx])[order],
        np.concatenate([y, sy])[order],
        diff_level[order],
        direct_level[order],
        np.concatenate([which, np.full(n_spur, -1)])[order],
        np.concatenate([index, np.full(n_spur, -1)])[order],
    )


def dia_catalog(
    ctx: DetectorContext,
    rng: np.random.Generator,
    objs: TractObjects,
    variables: Variables,
    variable_of: np.ndarray,
    index: np.ndarray,
    x_true: np.ndarray,
    y_true: np.ndarray,
    clear: ClearOfObjects,
) -> DiaCatalog:
    observation, g = ctx.observation, DIA_GENERATION
    which = variable_of[index]
    on = which >= 0
    sigma = DIA_POSITION_SCATTER_ARCSEC * ctx.pixels_per_arcsec
    noise = observation.noise_njy * math.sqrt(2.0)  # template noise adds to the science image's
    xy_true = (x_true[on], y_true[on])
    d = _dia_detect(ctx, rng, objs, variables, which[on], index[on], xy_true, clear, sigma, noise)
    real = d.variable >= 0
    n = len(d.x)
    ids = source_ids(observation.visit, ctx.detector, KIND_DIA, n)

    err = noise * rng.uniform(0.9, 1.1, n)
    psf, psf_err, psf_flag = _flux_with_failures(rng, d.diff_level, err, PSF_FAIL)
    ap, ap_err, ap_flag = _flux_with_failures(rng, 1.05 * d.diff_level, 1.3 * err, AP_FAIL)
    direct, direct_err, _ = _flux_with_failures(rng, d.direct_level, observation.noise_njy * np.ones(n), 0.0)
    moments = _moments(ctx, rng, np.zeros((3, n)))
    shape_flag = rng.random(n) < SHAPE_FAIL
    direct_inst = ctx.calexp.counts_per_njy
    ra, dec = ctx.sky(d.x, d.y)
    columns: Columns = {
        "id": ids,
        "coord_ra": ra,
        "coord_dec": dec,
        "parent": np.zeros(n, dtype=np.int64),
        **_centroid_and_shape(ctx, g, d.x, d.y, (psf, psf_err), sigma, moments, shape_flag),
        **_instrumental(
            g,
            ctx.diffexp.counts_per_njy,
            {"base_PsfFlux": (psf, psf_err), "base_CircularApertureFlux_12_0": (ap, ap_err)},
        ),
        "ip_diffim_DipoleFit_orientation": rng.uniform(-180.0, 180.0, n),
        "ip_diffim_DipoleFit_chi2dof": rng.chisquare(3.0, n) / 3.0,
        "ip_diffim_forced_PsfFlux_instFlux": direct * direct_inst,
        "ip_diffim_forced_PsfFlux_instFluxErr": direct_err * direct_inst,
    }
    flags: Columns = {
        "base_SdssCentroid_flag": rng.random(n) < CENTROID_FAIL,
        "base_SdssShape_flag": shape_flag,
        "base_PsfFlux_flag": psf_flag,
        "base_CircularApertureFlux_12_0_flag": ap_flag,
        **_pixel_flags(rng, n),
        "ip_diffim_DipoleFit_flag_classification": rng.random(n) < DIPOLE_RATE,
    }
    inst, inst_err = columns[f"base_PsfFlux_{g.flux}"], columns[f"base_PsfFlux_{g.flux_err}"]
    safe = np.where(real, d.variable, 0)
    truth: Columns = {
        **_truth_head(ctx, ids),
        "diaObjectId": np.where(real, variables.dia_object_id[safe], -1),
        "objectId": np.where(real, objs.id[np.where(real, d.obj, 0)], -1),
        "ra": np.degrees(ra),
        "dec": np.degrees(dec),
        "psf_flux_nJy": ctx.diffexp.nanojansky(inst),
        "psf_flux_err_nJy": ctx.diffexp.nanojansky(inst_err),
        "fluxmag0": np.full(n, ctx.diffexp.fluxmag0),
        "mjd": np.full(n, observation.mjd),
    }
    return DiaCatalog(columns, flags, truth, d.x, d.y, d.variable, inst, inst_err)
