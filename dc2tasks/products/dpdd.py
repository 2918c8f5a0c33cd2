"""The DPDD Object table, declared once: name -> native columns -> function, with unit and description.

This table drives three things that used to be three hand-kept lists: which native columns the
trimmed files keep (`native_columns`), how DPDD values are computed (`compute`), and the docs
(`markdown`). It reproduces the GCRCatalogs `dc2_object.DC2ObjectCatalog` quantity modifiers for
dm_schema_version 1-4 with today's names (`Ixx_pixel`, `psf_fwhm_<b>`, ...), so the Parquet we write
equals what that reader derives from our trimmed HDF5 (a test holds us to it, column by column).

Native-name templates use `{b}` (band), `{flux}` (`flux`|`instFlux`), `{err}` (`Sigma`|`Err`) and
`{blend}` (the blendedness field of the generation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from dc2tasks.products.calib import AB_NJY_ZP
from dc2tasks.products.pixel_flags import OBJECT_PIXEL_FLAGS, pixel_flag_columns
from dc2tasks.products.schema import SchemaGeneration

DM_REF_ZP = 27.0  # 2018-19 DM coadds were scaled to zero point 27 (spec §8 "Calibration gotchas")

NOT_GOOD_FLAGS = pixel_flag_columns(OBJECT_PIXEL_FLAGS)


@dataclass(frozen=True)
class Context:
    """What a computation depends on besides the columns."""

    generation: SchemaGeneration
    bands: tuple[str, ...]
    pixel_scale: float = 0.2


def _zp27_njy(ctx: Context, flux: np.ndarray) -> np.ndarray:
    return 10 ** ((AB_NJY_ZP - DM_REF_ZP) / 2.5) * flux


def _rad2deg(ctx: Context, x: np.ndarray) -> np.ndarray:
    return np.rad2deg(x)


def _good(ctx: Context, *flags: np.ndarray) -> np.ndarray:
    out = np.ones(len(flags[0]), bool)
    for flag in flags:
        out &= ~flag
    return out


def _fwhm_arcsec(ctx: Context, xx: np.ndarray, yy: np.ndarray, xy: np.ndarray) -> np.ndarray:
    # a non-positive-definite moment matrix has no size: NaN, as GCRCatalogs gives, without a
    # RuntimeWarning in every job log
    with np.errstate(invalid="ignore"):
        return ctx.pixel_scale * 2.355 * (xx * yy - xy * xy) ** 0.25


Func = Callable[..., np.ndarray]


@dataclass(frozen=True)
class DpddColumn:
    name: str
    natives: tuple[str, ...]
    unit: str
    description: str
    func: Func | None = None  # None: the value of the single native column

    @property
    def per_band(self) -> bool:
        return "{b}" in self.name

    def expand(self, ctx: Context) -> list[tuple[str, tuple[str, ...]]]:
        """(DPDD name, native names) for each band (or once)."""
        g = ctx.generation
        fmt = {"flux": g.flux, "err": g.err, "blend": g.blendedness}
        bands = ctx.bands if self.per_band else ("",)
        return [(self.name.format(b=b), tuple(n.format(b=b, **fmt) for n in self.natives)) for b in bands]


def _c(name: str, natives: str | Iterable[str], unit: str, description: str, func: Func | None = None):
    nat = (natives,) if isinstance(natives, str) else tuple(natives)
    return DpddColumn(name, nat, unit, description, func)


OBJECT_COLUMNS: tuple[DpddColumn, ...] = (
    _c("objectId", "id", "", "Unique object id (deepCoadd_ref id)"),
    _c("parentObjectId", "parent", "", "Id of the deblend parent, 0 if none"),
    _c("ra", "coord_ra", "deg", "Right ascension (ref table)", _rad2deg),
    _c("dec", "coord_dec", "deg", "Declination (ref table)", _rad2deg),
    _c("x", "base_SdssCentroid_x", "pixel", "Centroid x in the tract pixel frame"),
    _c("y", "base_SdssCentroid_y", "pixel", "Centroid y in the tract pixel frame"),
    _c("xErr", "base_SdssCentroid_x{err}", "pixel", "Error on x"),
    _c("yErr", "base_SdssCentroid_y{err}", "pixel", "Error on y"),
    _c("xy_flag", "base_SdssCentroid_flag", "", "Centroid measurement failed"),
    _c("psNdata", "base_PsfFlux_area", "pixel", "Effective area of the PSF (not a count)"),
    _c("extendedness", "base_ClassificationExtendedness_value", "", "0 for point sources, 1 for extended"),
    _c("blendedness", "{blend}", "", "Blendedness of the object (reference band)"),
    _c(
        "good",
        NOT_GOOD_FLAGS,
        "",
        "True if no pixel flag (edge, interpolated, saturated, CR, bad, suspect, clipped) is set",
        _good,
    ),
    _c("clean", ("deblend_skipped", *NOT_GOOD_FLAGS), "", "good and not deblend_skipped", _good),
    _c("I_flag", "ext_shapeHSM_HsmSourceMoments_flag", "", "HSM source moments failed (reference band)"),
    _c("Ixx_pixel", "ext_shapeHSM_HsmSourceMoments_xx", "pixel**2", "HSM second moment xx (reference band)"),
    _c("Iyy_pixel", "ext_shapeHSM_HsmSourceMoments_yy", "pixel**2", "HSM second moment yy (reference band)"),
    _c("Ixy_pixel", "ext_shapeHSM_HsmSourceMoments_xy", "pixel**2", "HSM second moment xy (reference band)"),
    _c("IxxPSF_pixel", "base_SdssShape_psf_xx", "pixel**2", "PSF second moment xx (reference band)"),
    _c("IyyPSF_pixel", "base_SdssShape_psf_yy", "pixel**2", "PSF second moment yy (reference band)"),
    _c("IxyPSF_pixel", "base_SdssShape_psf_xy", "pixel**2", "PSF second moment xy (reference band)"),
    _c("mag_{b}", "{b}_mag", "mag(AB)", "PSF magnitude in {b}, calibrated with the coadd's own calibration"),
    _c("magerr_{b}", "{b}_mag_err", "mag", "Error on mag_{b}"),
    _c(
        "psFlux_{b}",
        "{b}_base_PsfFlux_{flux}",
        "nJy",
        "PSF flux in {b} (coadd zero point 27 assumed)",
        _zp27_njy,
    ),
    _c("psFlux_flag_{b}", "{b}_base_PsfFlux_flag", "", "PSF flux measurement failed in {b}"),
    _c("psFluxErr_{b}", "{b}_base_PsfFlux_{flux}{err}", "nJy", "Error on psFlux_{b}", _zp27_njy),
    _c("I_flag_{b}", "{b}_base_SdssShape_flag", "", "SDSS shape measurement failed in {b}"),
    _c("Ixx_pixel_{b}", "{b}_base_SdssShape_xx", "pixel**2", "Second moment xx in {b} (forced)"),
    _c("Iyy_pixel_{b}", "{b}_base_SdssShape_yy", "pixel**2", "Second moment yy in {b} (forced)"),
    _c("Ixy_pixel_{b}", "{b}_base_SdssShape_xy", "pixel**2", "Second moment xy in {b} (forced)"),
    _c("IxxPSF_pixel_{b}", "{b}_base_SdssShape_psf_xx", "pixel**2", "PSF second moment xx in {b}"),
    _c("IyyPSF_pixel_{b}", "{b}_base_SdssShape_psf_yy", "pixel**2", "PSF second moment yy in {b}"),
    _c("IxyPSF_pixel_{b}", "{b}_base_SdssShape_psf_xy", "pixel**2", "PSF second moment xy in {b}"),
    _c(
        "psf_fwhm_{b}",
        ("{b}_base_SdssShape_psf_xx", "{b}_base_SdssShape_psf_yy", "{b}_base_SdssShape_psf_xy"),
        "arcsec",
        "PSF FWHM in {b}: pixel_scale * 2.355 * (xx*yy - xy^2)^(1/4)",
        _fwhm_arcsec,
    ),
    _c(
        "cModelFlux_{b}",
        "{b}_modelfit_CModel_{flux}",
        "nJy",
        "CModel flux in {b} (zero point 27 assumed)",
        _zp27_njy,
    ),
    _c("cModelFluxErr_{b}", "{b}_modelfit_CModel_{flux}{err}", "nJy", "Error on cModelFlux_{b}", _zp27_njy),
    _c("cModelFlux_flag_{b}", "{b}_modelfit_CModel_flag", "", "CModel fit failed in {b}"),
    _c("mag_{b}_cModel", "{b}_modelfit_mag", "mag(AB)", "CModel magnitude in {b}, coadd calibration"),
    _c("magerr_{b}_cModel", "{b}_modelfit_mag_err", "mag", "Error on mag_{b}_cModel"),
    _c("snr_{b}_cModel", "{b}_modelfit_SNR", "", "CModel signal to noise |flux/error| in {b}"),
)

# Columns the DPDD Parquet adds beside the table's: where each row came from.
LOCATION_COLUMNS = ("tract", "patch")


def expanded(ctx: Context, columns: Iterable[DpddColumn] = OBJECT_COLUMNS):
    for col in columns:
        for name, natives in col.expand(ctx):
            yield col, name, natives


def native_columns(ctx: Context, columns: Iterable[DpddColumn] = OBJECT_COLUMNS) -> list[str]:
    """Native columns a trimmed file must hold for these DPDD columns, in first-use order."""
    seen: dict[str, None] = {}
    for _, _, natives in expanded(ctx, columns):
        for n in natives:
            seen.setdefault(n, None)
    return list(seen)


def dpdd_names(ctx: Context, columns: Iterable[DpddColumn] = OBJECT_COLUMNS) -> list[str]:
    return [name for _, name, _ in expanded(ctx, columns)]


def compute(
    native: Mapping[str, np.ndarray], ctx: Context, columns: Iterable[DpddColumn] = OBJECT_COLUMNS
) -> dict[str, np.ndarray]:
    """DPDD columns from native ones (a dict of arrays or a DataFrame)."""
    out: dict[str, np.ndarray] = {}
    for col, name, natives in expanded(ctx, columns):
        arrays = [np.asarray(native[n]) for n in natives]
        out[name] = arrays[0] if col.func is None else col.func(ctx, *arrays)
    return out


def markdown(columns: Iterable[DpddColumn] = OBJECT_COLUMNS, generation: int = 3) -> str:
    """The DPDD Object table as Markdown, for docs/ (names shown with `<b>` for the band)."""
    ctx = Context(SchemaGeneration(generation), ("<b>",))
    lines = [
        f"| DPDD column | native columns (dm_schema_version {generation}) | function | unit | description |",
        "|---|---|---|---|---|",
    ]
    for col, name, natives in expanded(ctx, columns):
        func = "" if col.func is None else col.func.__name__.lstrip("_")
        nat = ", ".join(f"`{n}`" for n in natives)
        desc = col.description.replace("{b}", "<b>")
        lines.append(f"| `{name}` | {nat} | {func} | {col.unit} | {desc} |")
    return "\n".join(lines) + "\n"
