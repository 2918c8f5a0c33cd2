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

from dc2tasks.products.calib import NJY_AT_MAG0, Calibration
from dc2tasks.products.pixel_flags import VISIT_PIXEL_FLAGS, pixel_flag_columns
from dc2tasks.products.schema import SchemaGeneration
from dc2tasks.sample.focal_plane import FocalPlane
from dc2tasks.sample.objects import PIXEL_FLAG_RATES
from dc2tasks.sample.tract_objects import TractObjects, Variables
from dc2tasks.sample.visit_columns import DIA_GENERATION
from dc2tasks.sample.visit_plan import VisitPlan, psf_area

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
    plan: VisitPlan
    detector: int
    plane: FocalPlane
    calexp: Calibration
    diffexp: Calibration
    gen: SchemaGeneration
    spurious_fraction: float

    @property
    def pixels_per_arcsec(self) -> float:
        return 1.0 / self.plan.pointing.pixel_scale_arcsec

    def sky(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.plan.pointing.focal_to_sky(*self.plane.to_focal(self.detector, x, y))


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
    psf = np.array(ctx.plan.psf_moments()) * scale
    psf_cols = [np.full(n, v) for v in psf]
    return (*psf_cols, *(psf_cols[k] + intrinsic[k] for k in range(3)))


def src_catalog(
    ctx: DetectorContext,
    rng: np.random.Generator,
    objs: TractObjects,
    index: np.ndarray,
    x_true: np.ndarray,
    y_true: np.ndarray,
    clear: ClearOfObjects,
) -> Catalog:
    plan, g = ctx.plan, ctx.gen
    n_real = len(index)
    sigma = POSITION_SCATTER_ARCSEC * ctx.pixels_per_arcsec
    x, y = _inside(ctx, x_true + rng.normal(0, sigma, n_real), y_true + rng.normal(0, sigma, n_real))
    n_spur = round(ctx.spurious_fraction * n_real)
    sx, sy = place_spurious(ctx, rng, n_spur, clear)
    n_spur = len(sx)
    spur_level = plan.noise_njy * rng.uniform(*SPURIOUS_SNR, n_spur)

    order = np.argsort(np.concatenate([y, sy]), kind="stable")
    x, y = np.concatenate([x, sx])[order], np.concatenate([y, sy])[order]
    xt, yt = np.concatenate([x_true, sx])[order], np.concatenate([y_true, sy])[order]
    real = np.concatenate([np.ones(n_real, dtype=bool), np.zeros(n_spur, dtype=bool)])[order]
    obj = np.concatenate([index, np.full(n_spur, -1)])[order]
    safe = np.where(real, obj, 0)
    level = np.where(
        real, objs.flux[plan.band_index][safe], np.concatenate([np.zeros(n_real), spur_level])[order]
    )
    n = len(x)
    ids = source_ids(plan.visit, ctx.detector, KIND_SRC, n)
    object_id = np.where(real, objs.id[safe], -1)

    # a source's deblend parent: the source of its object's parent, when that is on the detector
    parent = np.zeros(n, dtype=np.int64)
    parent_object = np.where(real, objs.parent[safe], 0)
    if n_real:
        by_object = np.argsort(object_id)
        pos = np.clip(np.searchsorted(object_id, parent_object, sorter=by_object), 0, n - 1)
        hit = (parent_object != 0) & (object_id[by_object[pos]] == parent_object)
        parent[hit] = ids[by_object[pos[hit]]]

    err = plan.noise_njy * rng.uniform(0.9, 1.1, n)
    psf, psf_err, psf_flag = _flux_with_failures(rng, level, err, PSF_FAIL)
    ap, ap_err, ap_flag = _flux_with_failures(rng, 1.05 * level, 1.3 * err, AP_FAIL)
    gauss, gauss_err, gauss_flag = _flux_with_failures(rng, 0.98 * level, 1.1 * err, GAUSS_FAIL)
    bkg, bkg_err, bkg_flag = _flux_with_failures(rng, np.zeros(n), 0.25 * err, BACKGROUND_FAIL)
    intrinsic = np.where(real, objs.shape[:, safe], 0.0)
    pxx, pyy, pxy, oxx, oyy, oxy = _moments(ctx, rng, intrinsic)
    shape_flag = rng.random(n) < SHAPE_FAIL
    snr = np.abs(np.nan_to_num(psf / psf_err, nan=1.0))
    centroid_err = np.clip(np.sqrt(plan.psf_sigma2) / np.maximum(snr, 1.0), sigma, 5.0).astype(np.float32)
    to_inst = ctx.calexp.fluxmag0 / NJY_AT_MAG0
    ra, dec = ctx.sky(x, y)
    true_ra, true_dec = ctx.sky(xt, yt)

    columns: Columns = {
        "id": ids,
        "coord_ra": ra,
        "coord_dec": dec,
        "parent": parent,
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
        "base_PsfFlux_area": np.full(n, psf_area(float(pxx[0]) if n else plan.psf_sigma2)),
        "base_ClassificationExtendedness_value": np.where(real, objs.extendedness[safe], 0.0),
        g.blendedness: np.where(real, objs.blendedness[safe], 0.0),
    }
    for prefix, flux, flux_err in (
        ("base_PsfFlux", psf, psf_err),
        ("base_CircularApertureFlux_12_0", ap, ap_err),
        ("base_GaussianFlux", gauss, gauss_err),
        ("base_LocalBackground", bkg, bkg_err),
    ):
        columns[f"{prefix}_{g.flux}"] = flux * to_inst
        columns[f"{prefix}_{g.flux_err}"] = flux_err * to_inst
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
    inst = columns[f"base_PsfFlux_{g.flux}"]
    truth: Columns = {
        "id": ids,
        "visit": np.full(n, plan.visit, dtype=np.int64),
        "detector": np.full(n, ctx.detector, dtype=np.int64),
        "filter": np.full(n, plan.band, dtype=object),
        "objectId": object_id,
        "ra": np.degrees(ra),
        "dec": np.degrees(dec),
        "true_ra": np.degrees(true_ra),
        "true_dec": np.degrees(true_dec),
        "psf_flux_nJy": ctx.calexp.nanojansky(inst),
        "psf_flux_err_nJy": ctx.calexp.nanojansky(columns[f"base_PsfFlux_{g.flux_err}"]),
        "true_flux_nJy": level,
        "fluxmag0": np.full(n, ctx.calexp.fluxmag0),
        "mjd": np.full(n, plan.mjd),
        "is_primary": np.where(real, objs.primary[safe], False),
    }
    return Catalog(columns, flags, truth, x, y)


def forced_catalog(
    ctx: DetectorContext,
    rng: np.random.Generator,
    objs: TractObjects,
    index: np.ndarray,
    x_true: np.ndarray,
    y_true: np.ndarray,
) -> Catalog:
    plan, g = ctx.plan, ctx.gen
    keep = objs.primary[index]
    index, x, y = index[keep], x_true[keep], y_true[keep]
    n = len(index)
    ids = source_ids(plan.visit, ctx.detector, KIND_FORCED, n)
    err = plan.noise_njy * rng.uniform(0.9, 1.1, n)
    psf, psf_err, psf_flag = _flux_with_failures(rng, objs.flux[plan.band_index][index], err, PSF_FAIL)
    _, _, _, oxx, oyy, oxy = _moments(ctx, rng, objs.shape[:, index])
    to_inst = ctx.calexp.fluxmag0 / NJY_AT_MAG0
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
        "id": ids,
        "visit": np.full(n, plan.visit, dtype=np.int64),
        "detector": np.full(n, ctx.detector, dtype=np.int64),
        "filter": np.full(n, plan.band, dtype=object),
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
    plan, g = ctx.plan, DIA_GENERATION
    which = variable_of[index]
    on = which >= 0
    which, index, x_true, y_true = which[on], index[on], x_true[on], y_true[on]
    n_real = len(which)
    sigma = DIA_POSITION_SCATTER_ARCSEC * ctx.pixels_per_arcsec
    x, y = _inside(ctx, x_true + rng.normal(0, sigma, n_real), y_true + rng.normal(0, sigma, n_real))
    sx, sy = place_spurious(ctx, rng, round(ctx.spurious_fraction * n_real), clear)
    n_spur = len(sx)
    noise = plan.noise_njy * math.sqrt(2.0)  # template noise adds to the science image's
    spur_level = noise * rng.uniform(*SPURIOUS_SNR, n_spur) * rng.choice([-1.0, 1.0], n_spur)

    diff_level = np.concatenate([variables.difference_flux(plan.band_index, plan.mjd, which), spur_level])
    direct_level = np.concatenate([objs.flux[plan.band_index][index], np.zeros(n_spur)]) + diff_level
    order = np.argsort(np.concatenate([y, sy]), kind="stable")
    x, y = np.concatenate([x, sx])[order], np.concatenate([y, sy])[order]
    diff_level, direct_level = diff_level[order], direct_level[order]
    variable = np.concatenate([which, np.full(n_spur, -1)])[order]
    obj = np.concatenate([index, np.full(n_spur, -1)])[order]
    real = variable >= 0
    n = len(x)
    ids = source_ids(plan.visit, ctx.detector, KIND_DIA, n)

    err = noise * rng.uniform(0.9, 1.1, n)
    psf, psf_err, psf_flag = _flux_with_failures(rng, diff_level, err, PSF_FAIL)
    ap, ap_err, ap_flag = _flux_with_failures(rng, 1.05 * diff_level, 1.3 * err, AP_FAIL)
    direct, direct_err, _ = _flux_with_failures(rng, direct_level, plan.noise_njy * np.ones(n), 0.0)
    pxx, pyy, pxy, oxx, oyy, oxy = _moments(ctx, rng, np.zeros((3, n)))
    shape_flag = rng.random(n) < SHAPE_FAIL
    snr = np.abs(np.nan_to_num(psf / psf_err, nan=1.0))
    centroid_err = np.clip(np.sqrt(plan.psf_sigma2) / np.maximum(snr, 1.0), sigma, 5.0).astype(np.float32)
    diff_inst = ctx.diffexp.fluxmag0 / NJY_AT_MAG0
    direct_inst = ctx.calexp.fluxmag0 / NJY_AT_MAG0
    ra, dec = ctx.sky(x, y)
    columns: Columns = {
        "id": ids,
        "coord_ra": ra,
        "coord_dec": dec,
        "parent": np.zeros(n, dtype=np.int64),
        "base_SdssCentroid_x": x,
        "base_SdssCentroid_y": y,
        "base_SdssCentroid_xErr": centroid_err,
        "base_SdssCentroid_yErr": centroid_err * np.float32(1.02),
        "base_SdssShape_xx": np.where(shape_flag, np.nan, oxx),
        "base_SdssShape_yy": np.where(shape_flag, np.nan, oyy),
        "base_SdssShape_xy": np.where(shape_flag, np.nan, oxy),
        "base_SdssShape_psf_xx": pxx,
        "base_SdssShape_psf_yy": pyy,
        "base_SdssShape_psf_xy": pxy,
        f"base_PsfFlux_{g.flux}": psf * diff_inst,
        f"base_PsfFlux_{g.flux_err}": psf_err * diff_inst,
        "base_PsfFlux_area": np.full(n, psf_area(float(pxx[0]) if n else plan.psf_sigma2)),
        f"base_CircularApertureFlux_12_0_{g.flux}": ap * diff_inst,
        f"base_CircularApertureFlux_12_0_{g.flux_err}": ap_err * diff_inst,
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
    safe = np.where(real, variable, 0)
    truth: Columns = {
        "id": ids,
        "visit": np.full(n, plan.visit, dtype=np.int64),
        "detector": np.full(n, ctx.detector, dtype=np.int64),
        "filter": np.full(n, plan.band, dtype=object),
        "diaObjectId": np.where(real, variables.dia_object_id[safe], -1),
        "objectId": np.where(real, objs.id[np.where(real, obj, 0)], -1),
        "ra": np.degrees(ra),
        "dec": np.degrees(dec),
        "psf_flux_nJy": ctx.diffexp.nanojansky(inst),
        "psf_flux_err_nJy": ctx.diffexp.nanojansky(inst_err),
        "fluxmag0": np.full(n, ctx.diffexp.fluxmag0),
        "mjd": np.full(n, plan.mjd),
    }
    return DiaCatalog(columns, flags, truth, x, y, variable, inst, inst_err)
