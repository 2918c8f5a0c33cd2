"""The coadd datasets of one patch: deepCoadd_ref, deepCoadd_forced_src per band, deepCoadd_calexp.

Core columns come from the object model (objects.py) converted to each patch-band's instrumental
units; filler columns from filler.py. Files are written whole, one at a time, with the afw writer of
dc2tasks.products (flags packed first, TFLAG names, ALIAS cards) and an empty archive HDU after the
records, the HDU shape of real catalogs (which carry footprints there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.calib import NJY_AT_MAG0
from dc2tasks.products.pixel_flags import OBJECT_PIXEL_FLAGS, pixel_flag_columns
from dc2tasks.products.schema import SchemaGeneration
from dc2tasks.sample import afw_writer
from dc2tasks.sample.columns import TableSchema
from dc2tasks.sample.conditions import BandConditions
from dc2tasks.sample.exposure import write_exposure
from dc2tasks.sample.filler import FillerSource
from dc2tasks.sample.objects import Objects
from dc2tasks.sample.skymap import TractGeometry

Columns = dict[str, np.ndarray]


@dataclass
class PatchContext:
    """Everything about one patch that the writers need besides the objects."""

    geom: TractGeometry
    px: int
    py: int
    bands: tuple[str, ...]
    conditions: dict[str, BandConditions]

    @property
    def patch(self) -> str:
        return f"{self.px},{self.py}"



def _identity(objs: Objects) -> Columns:
    """The columns every coadd catalog of an object starts with (ref and forced alike)."""
    return {
        "id": objs.id,
        "coord_ra": objs.ra,
        "coord_dec": objs.dec,
        "parent": objs.parent,
        "deblend_nChild": objs.n_child,
    }

def placement_flags(objs: Objects, ctx: PatchContext) -> tuple[np.ndarray, np.ndarray]:
    """(detect_isPatchInner, detect_isPrimary) of these records in this patch."""
    inner = ctx.geom.inner_box(ctx.px, ctx.py).contains(objs.x, objs.y)
    primary = inner & objs.tract_inner & (objs.n_child == 0)
    return inner, primary


def psf_moments(objs: Objects, ctx: PatchContext) -> np.ndarray:
    """(band, 3, record) PSF moments of each record in each band of this patch."""
    return np.stack([np.stack(ctx.conditions[b].psf_moments(objs.x, objs.y)) for b in ctx.bands])


def _per_record(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[band, ..., record] picked at each record's band."""
    cols = np.arange(values.shape[-1])
    return values[index, ..., cols].T if values.ndim > 2 else values[index, cols]


def _flux_names(gen_flux: str, gen_err: str, prefix: str) -> tuple[str, str]:
    return f"{prefix}_{gen_flux}", f"{prefix}_{gen_err}"


def _with_nan(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[..., mask] = np.nan
    return out


def ref_core(
    objs: Objects, ctx: PatchContext, schema: TableSchema, gen: SchemaGeneration
) -> tuple[Columns, Columns]:
    g = gen
    n = len(objs)
    ref = objs.ref_band.astype(np.int64)
    f0 = np.array([ctx.conditions[b].fluxmag0 for b in ctx.bands])[ref]
    psf = psf_moments(objs, ctx)
    ref_psf = _per_record(psf, ref)  # (3, n)
    obj_moments = ref_psf + objs.shape
    inner, primary = placement_flags(objs, ctx)

    def inst(njy: np.ndarray) -> np.ndarray:
        return _per_record(njy, ref) * f0 / NJY_AT_MAG0

    cols: Columns = {
        **_identity(objs),
        "base_SdssCentroid_x": objs.x,
        "base_SdssCentroid_y": objs.y,
        f"base_SdssCentroid_x{g.err}": objs.centroid_err,
        f"base_SdssCentroid_y{g.err}": objs.centroid_err * np.float32(1.02),
        g.blendedness: objs.blendedness,
        "base_SdssShape_psf_xx": ref_psf[0],
        "base_SdssShape_psf_yy": ref_psf[1],
        "base_SdssShape_psf_xy": ref_psf[2],
        "base_PsfFlux_area": (4 * np.pi * 0.5 * (ref_psf[0] + ref_psf[1])).astype(np.float32),
        "base_ClassificationExtendedness_value": objs.extendedness,
    }
    shape_flag = _per_record(objs.shape_flag, ref)
    sdss = _with_nan(obj_moments, shape_flag)
    hsm = _with_nan(obj_moments, objs.hsm_flag)
    for k, m in enumerate(("xx", "yy", "xy")):
        cols[f"base_SdssShape_{m}"] = sdss[k]
        cols[f"ext_shapeHSM_HsmSourceMoments_{m}"] = hsm[k]
    for prefix, flux, err in (
        ("base_PsfFlux", objs.psf_flux, objs.psf_err),
        ("modelfit_CModel", objs.cmodel_flux, objs.cmodel_err),
        ("base_GaussianFlux", objs.cmodel_flux * 0.95, objs.cmodel_err * 0.9),
        ("base_CircularApertureFlux_12_0", objs.cmodel_flux * 0.9, objs.cmodel_err * 1.1),
    ):
        name, name_err = _flux_names(g.flux, g.flux_err, prefix)
        cols[name] = inst(flux)
        cols[name_err] = inst(err)
    flags: Columns = {
        "base_SdssCentroid_flag": objs.centroid_flag,
        "base_SdssShape_flag": shape_flag,
        "ext_shapeHSM_HsmSourceMoments_flag": objs.hsm_flag,
        "base_PsfFlux_flag": _per_record(objs.psf_flag, ref),
        "modelfit_CModel_flag": _per_record(objs.cmodel_flag, ref),
        "base_ClassificationExtendedness_flag": objs.extendedness_flag,
        "deblend_skipped": objs.deblend_skipped,
        "detect_isPatchInner": inner,
        "detect_isTractInner": objs.tract_inner,
        "detect_isPrimary": primary,
    }
    ref_pixel = _per_record(objs.pixel_flags, ref)  # (7, n)
    for k, name in enumerate(pixel_flag_columns(OBJECT_PIXEL_FLAGS)):
        flags[name] = ref_pixel[k]
    for k, b in enumerate(ctx.bands):
        flags[f"merge_footprint_{b}"] = objs.footprint[k]
        flags[f"merge_peak_{b}"] = objs.peak[k]
        flags[f"merge_measurement_{b}"] = ref == k
    assert all(len(v) == n for v in (*cols.values(), *flags.values()))
    return cols, flags


def forced_core(
    objs: Objects, ctx: PatchContext, band: str, gen: SchemaGeneration
) -> tuple[Columns, Columns]:
    g = gen
    k = ctx.bands.index(band)
    cond = ctx.conditions[band]
    ref = objs.ref_band.astype(np.int64)
    psf_b = np.stack(cond.psf_moments(objs.x, objs.y))
    ref_shape = _per_record(psf_moments(objs, ctx), ref) + objs.shape
    sdss = _with_nan(psf_b + objs.shape, objs.shape_flag[k])
    cols: Columns = {
        **_identity(objs),
        "base_TransformedCentroid_x": objs.x,
        "base_TransformedCentroid_y": objs.y,
    }
    for j, m in enumerate(("xx", "yy", "xy")):
        cols[f"base_TransformedShape_{m}"] = ref_shape[j]
        cols[f"base_SdssShape_{m}"] = sdss[j]
        cols[f"base_SdssShape_psf_{m}"] = psf_b[j]
    for prefix, flux, err in (
        ("base_PsfFlux", objs.psf_flux[k], objs.psf_err[k]),
        ("modelfit_CModel", objs.cmodel_flux[k], objs.cmodel_err[k]),
        ("base_GaussianFlux", objs.cmodel_flux[k] * 0.95, objs.cmodel_err[k] * 0.9),
        ("base_CircularApertureFlux_12_0", objs.cmodel_flux[k] * 0.9, objs.cmodel_err[k] * 1.1),
        ("base_LocalBackground", objs.background[k], objs.background_err[k]),
    ):
        name, name_err = _flux_names(g.flux, g.flux_err, prefix)
        cols[name] = cond.to_inst(flux)
        cols[name_err] = cond.to_inst(err)
    flags: Columns = {
        "base_PsfFlux_flag": objs.psf_flag[k],
        "modelfit_CModel_flag": objs.cmodel_flag[k],
        "base_SdssShape_flag": objs.shape_flag[k],
        "base_LocalBackground_flag": objs.pixel_flags[k, 0],
    }
    for j, name in enumerate(pixel_flag_columns(OBJECT_PIXEL_FLAGS)):
        flags[name] = objs.pixel_flags[k, j]
    return cols, flags


def assemble(
    schema: TableSchema, core: Columns, core_flags: Columns, filler: FillerSource
) -> tuple[Columns, Columns]:
    """Columns and flags in schema order, core values where computed, filler elsewhere."""
    columns: Columns = {}
    for i, f in enumerate(schema.fields):
        if f.kind == "core":
            columns[f.name] = np.asarray(core[f.name], dtype=f.dtype)
        else:
            columns[f.name] = filler.column(i, f)
    flags: Columns = {}
    for i, name in enumerate(schema.flags):
        flags[name] = core_flags[name] if name in schema.core_flags else filler.flag(i)
    return columns, flags


_EMPTY_ARCHIVE = afw_writer.table_hdu_bytes(
    {
        "id": np.zeros(0, dtype=np.int32),
        "cat.archive": np.zeros(0, dtype=np.int32),
        "cat.persistable": np.zeros(0, dtype=np.int32),
        "row0": np.zeros(0, dtype=np.int32),
        "nrows": np.zeros(0, dtype=np.int32),
        "name": np.zeros(0, dtype="S64"),
        "module": np.zeros(0, dtype="S64"),
    },
    extra_cards=[("EXTTYPE", "ARCHIVE_INDEX"), ("AR_CATN", 0), ("AR_NCAT", 1), ("AFW_TABLE_VERSION", 1)],
)


def write_catalog(path: Path, schema: TableSchema, columns: Columns, flags: Columns) -> int:
    """Primary HDU, the records, an (empty) archive index; returns the bytes written."""
    cards: list[tuple[str, object]] = [
        ("AR_HDU", 3),
        ("AFW_TABLE_VERSION", schema.afw_version),
        ("AFW_TYPE", "SOURCE"),
    ]
    table = afw_writer.table_hdu_bytes(columns, flags, schema.aliases, cards)
    head = afw_writer.primary_hdu_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(head)
            fh.write(table)
            fh.write(_EMPTY_ARCHIVE)
    return len(head) + len(table) + len(_EMPTY_ARCHIVE)


def write_calexp(path: Path, ctx: PatchContext, band: str) -> int:
    """The coadd exposure of a patch-band: its calibration and the tract WCS at the patch origin."""
    outer = ctx.geom.outer_box(ctx.px, ctx.py)
    metadata: list[tuple[str, object]] = [
        ("FILTER", band),
        ("TRACT", ctx.geom.tract),
        ("PATCH", ctx.patch),
    ]
    write_exposure(path, ctx.conditions[band].calibration, ctx.geom.wcs_cards(outer.x0, outer.y0), metadata)
    return os.path.getsize(path)
