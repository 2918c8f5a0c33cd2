"""Column sets of the coadd catalogs, per schema generation: which fields, in which order, which type.

Two kinds of field. "Core" fields are the ones readers use (the GCRCatalogs object reader's native
columns, slot targets, the detect/merge flags); the generator computes them from its object model.
"Filler" fields stand in for the hundreds of other plugin outputs of a real table so that files have
the real width and row size; their names follow the plugins of a DM coadd table (types as in the
real afw files: values float64, errors of centroids and shapes float32, counts int32) and their
values are cheap noise. A table of a given width keeps every core field and the first fillers of
each list, then numbered generic fields if the plausible names run out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dc2tasks.products.pixel_flags import OBJECT_PIXEL_FLAGS, pixel_flag_columns
from dc2tasks.products.schema import SchemaGeneration

APERTURES = ("3_0", "4_5", "6_0", "9_0", "12_0", "17_0", "25_0", "35_0", "50_0", "70_0")
CONVOLVED = ("3_3", "4_5", "6_0", "kron")
CMODEL_STAGES = ("initial", "exp", "dev")
REF_FLAG_SHARE = 0.33  # about a third of a real ref table's columns are flag bits
FORCED_FLAG_SHARE = 0.25
MAX_NAME = 68  # a name in a one-line FITS string card; longer ones need the CONTINUE convention


@dataclass(frozen=True)
class Field:
    name: str
    dtype: str  # numpy dtype string: f8 f4 i4 i8
    kind: str  # "core", or the filler family: flux err moment position count value


@dataclass(frozen=True)
class TableSchema:
    """Numeric fields in file order, flag bits in bit order, slot aliases, afw version card."""

    fields: tuple[Field, ...]
    flags: tuple[str, ...]
    core_flags: frozenset[str]
    aliases: dict[str, str]
    afw_version: int

    @property
    def width(self) -> int:
        return len(self.fields) + len(self.flags)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields] + list(self.flags)

    @property
    def filler_fields(self) -> list[Field]:
        return [f for f in self.fields if f.kind != "core"]

    @property
    def filler_flags(self) -> list[str]:
        return [f for f in self.flags if f not in self.core_flags]


def afw_version(gen: SchemaGeneration) -> int:
    """AFW_TABLE_VERSION: 1 for `_flux/_fluxSigma`, 2 for `_fluxErr`, 3 for `_instFlux`."""
    return min(gen.version, 3)


def _kind(name: str, dtype: str, gen: SchemaGeneration) -> str:
    if dtype.startswith("i"):
        return "count"
    if name.endswith((gen.flux_err, gen.err, "_Cov", "Sigma", "Err")):
        return "err"
    if name.endswith(("_xx", "_yy", "_xy")):
        return "moment"
    if name.endswith(("_x", "_y")):
        return "position"
    if name.endswith((gen.flux, "_inner")):
        return "flux"
    return "value"


class _Catalogue:
    """Builds an ordered list of candidate fields, remembering which ones are core."""

    def __init__(self, gen: SchemaGeneration) -> None:
        self.gen = gen
        self.items: list[Field] = []
        self.flags: list[tuple[str, bool]] = []

    def num(self, names: Iterable[str], dtype: str = "f8", core: bool = False) -> None:
        for n in names:
            if core or len(n) <= MAX_NAME:
                self.items.append(Field(n, dtype, "core" if core else _kind(n, dtype, self.gen)))

    def flag(self, names: Iterable[str], core: bool = False) -> None:
        self.flags.extend((n, core) for n in names if core or len(n) <= MAX_NAME)

    def flux(self, prefix: str, core: bool = False) -> None:
        g = self.gen
        self.num([f"{prefix}_{g.flux}", f"{prefix}_{g.flux_err}"], core=core)


def _measurement_plugins(c: _Catalogue, ref: bool) -> None:
    """The plugin outputs shared by ref and forced tables, in the order DM registers them."""
    g = c.gen
    f, e = g.flux, g.err
    c.num(["base_SdssCentroid_x", "base_SdssCentroid_y"], core=ref)
    c.num([f"base_SdssCentroid_x{e}", f"base_SdssCentroid_y{e}"], "f4", core=ref)
    if not ref:
        c.num(["base_TransformedCentroid_x", "base_TransformedCentroid_y"], core=True)
        c.num(["base_TransformedShape_xx", "base_TransformedShape_yy", "base_TransformedShape_xy"], core=True)
    c.flag(["base_SdssCentroid_flag"], core=ref)
    c.flag(
        f"base_SdssCentroid_flag_{s}"
        for s in ("edge", "noSecondDerivative", "almostNoSecondDerivative", "notAtMaximum", "resetToPeak")
    )
    if ref:
        c.num(["base_Blendedness_old"])
        if g.version <= 3:
            c.num([f"base_Blendedness_raw_{f}", f"base_Blendedness_raw_{f}_child"])
            c.num([f"base_Blendedness_raw_{f}_parent"])
            c.num([f"base_Blendedness_abs_{f}"], core=True)
            c.num([f"base_Blendedness_abs_{f}_child", f"base_Blendedness_abs_{f}_parent"])
        else:
            c.num(
                [
                    "base_Blendedness_raw",
                    f"base_Blendedness_raw_child_{f}",
                    f"base_Blendedness_raw_parent_{f}",
                ]
            )
            c.num(["base_Blendedness_abs"], core=True)
            c.num([f"base_Blendedness_abs_child_{f}", f"base_Blendedness_abs_parent_{f}"])
        c.num(
            f"base_Blendedness_{a}_{w}_{m}"
            for a in ("raw", "abs")
            for w in ("child", "parent")
            for m in ("xx", "yy", "xy")
        )
        c.flag(["base_Blendedness_flag", "base_Blendedness_flag_noCentroid", "base_Blendedness_flag_noShape"])
    c.num(["base_SdssShape_xx", "base_SdssShape_yy", "base_SdssShape_xy"], core=True)
    c.num([f"base_SdssShape_xx{e}", f"base_SdssShape_yy{e}", f"base_SdssShape_xy{e}"], "f4")
    c.num(["base_SdssShape_x", "base_SdssShape_y"])
    c.flux("base_SdssShape")
    c.num(["base_SdssShape_psf_xx", "base_SdssShape_psf_yy", "base_SdssShape_psf_xy"], core=True)
    c.num([f"base_SdssShape_{f}_xx_Cov", f"base_SdssShape_{f}_yy_Cov", f"base_SdssShape_{f}_xy_Cov"], "f4")
    c.flag(["base_SdssShape_flag"], core=True)
    c.flag(f"base_SdssShape_flag_{s}" for s in ("unweightedBad", "unweighted", "shift", "maxIter", "psf"))
    if ref:
        _hsm(c)
    c.num(f"modelfit_DoubleShapeletPsfApprox_0_{m}" for m in ("xx", "yy", "xy", "x", "y", "0", "1", "2", "3"))
    c.num(f"modelfit_DoubleShapeletPsfApprox_1_{m}" for m in ("xx", "yy", "xy", "x", "y", "0", "1", "2"))
    c.flag(
        f"modelfit_DoubleShapeletPsfApprox_flag{s}"
        for s in ("", "_invalidPointForPsf", "_invalidMoments", "_maxIterations")
    )
    for r in APERTURES:
        c.flux(f"base_CircularApertureFlux_{r}", core=r == "12_0")  # slot_ApFlux / slot_CalibFlux
        c.flag(
            [f"base_CircularApertureFlux_{r}_flag", f"base_CircularApertureFlux_{r}_flag_apertureTruncated"]
        )
        if r in APERTURES[:5]:
            c.flag([f"base_CircularApertureFlux_{r}_flag_sincCoeffsTruncated"])
    c.flux("base_GaussianFlux", core=True)  # slot_InstFlux
    c.flag(["base_GaussianFlux_flag"])
    c.flux("base_LocalBackground", core=not ref)
    c.flag(["base_LocalBackground_flag"], core=not ref)
    c.flag(["base_LocalBackground_flag_noGoodPixels", "base_LocalBackground_flag_noPsf"])
    c.flag(["base_PixelFlags_flag", "base_PixelFlags_flag_offimage"])
    c.flag(pixel_flag_columns(OBJECT_PIXEL_FLAGS), core=True)
    c.flag(
        f"base_PixelFlags_flag_{p}"
        for p in (
            "interpolated",
            "saturated",
            "cr",
            "suspect",
            "clippedCenter",
            "sensor_edgeCenter",
            "inexact_psfCenter",
            "bright_objectCenter",
            "sensor_edge",
            "inexact_psf",
            "bright_object",
        )
    )
    c.flux("base_PsfFlux", core=True)
    c.num(["base_PsfFlux_area"], "f4", core=ref)
    c.flag(["base_PsfFlux_flag"], core=True)
    c.flag(["base_PsfFlux_flag_noGoodPixels", "base_PsfFlux_flag_edge"])
    c.num(["base_Variance_value"])
    c.flag(["base_Variance_flag", "base_Variance_flag_emptyFootprint"])
    c.flux("ext_photometryKron_KronFlux")
    c.num([f"ext_photometryKron_KronFlux_{m}" for m in ("radius", "radius_for_radius", "psf_radius")], "f4")
    c.flag(
        f"ext_photometryKron_KronFlux_flag{s}"
        for s in (
            "",
            "_edge",
            "_bad_shape_no_psf",
            "_no_minimum_radius",
            "_no_fallback_radius",
            "_bad_radius",
            "_used_minimum_radius",
            "_used_psf_radius",
            "_small_radius",
            "_bad_shape",
        )
    )
    c.num(["ext_convolved_ConvolvedFlux_seeing"], "f4")
    for k in range(4):
        c.flag([f"ext_convolved_ConvolvedFlux_{k}_deconv"])
        for r in CONVOLVED:
            c.flux(f"ext_convolved_ConvolvedFlux_{k}_{r}")
            c.flag([f"ext_convolved_ConvolvedFlux_{k}_{r}_flag"])
            if r != "kron":
                c.flag(
                    f"ext_convolved_ConvolvedFlux_{k}_{r}_flag_{s}"
                    for s in ("apertureTruncated", "sincCoeffsTruncated")
                )
    c.flag(["ext_convolved_ConvolvedFlux_flag"])
    for stage in CMODEL_STAGES:
        p = f"modelfit_CModel_{stage}"
        c.flux(p)
        c.num([f"{p}_{f}_inner", f"{p}_ellipse_xx", f"{p}_ellipse_yy", f"{p}_ellipse_xy", f"{p}_objective"])
        c.num([f"{p}_nonlinear_0", f"{p}_nonlinear_1", f"{p}_nonlinear_2", f"{p}_fixed_0", f"{p}_fixed_1"])
        c.num([f"{p}_nIter"], "i4")
        c.num([f"{p}_time"])
        c.flag([f"{p}_flag", f"{p}_flag_trSmall", f"{p}_flag_maxIter", f"{p}_flag_numericError"])
    c.flux("modelfit_CModel", core=True)
    c.num([f"modelfit_CModel_{f}_inner", "modelfit_CModel_fracDev", "modelfit_CModel_objective"])
    c.num(f"modelfit_CModel_ellipse_{m}" for m in ("xx", "yy", "xy"))
    c.num(f"modelfit_CModel_region_{s}_ellipse_{m}" for s in ("initial", "final") for m in ("xx", "yy", "xy"))
    c.flag(["modelfit_CModel_flag"], core=True)
    c.flag(
        f"modelfit_CModel_{s}"
        for s in (
            "flag_region_maxArea",
            "flag_region_maxBadPixelFraction",
            "flags_region_usedFootprintArea",
            "flags_region_usedPsfArea",
            "flags_region_usedInitialEllipseMin",
            "flags_region_usedInitialEllipseMax",
            "flag_noShape",
            "flags_smallShape",
            "flag_noShapeletPsf",
            "flag_badCentroid",
        )
    )
    for corr in _apcorr_targets():
        c.num([f"{corr}_apCorr", f"{corr}_apCorr{e}"])
        c.flag([f"{corr}_flag_apCorr"])
    if ref:
        c.num(["base_ClassificationExtendedness_value"], core=True)
        c.flag(["base_ClassificationExtendedness_flag"], core=True)
    c.num(["base_FootprintArea_value", "base_InputCount_value"], "i4")
    c.flag(["base_InputCount_flag", "base_InputCount_flag_noInputs"])
    c.num(["base_Jacobian_value", "base_FPPosition_x", "base_FPPosition_y", "base_LocalPhotoCalib"])
    c.num(["base_LocalPhotoCalibErr"])
    c.num(f"base_LocalWcs_CDMatrix_{i}_{j}" for i in (1, 2) for j in (1, 2))
    for approx in ("SingleGaussian", "DoubleGaussian", "Full"):
        ncomp = {"SingleGaussian": 1, "DoubleGaussian": 2, "Full": 3}[approx]
        for k in range(ncomp):
            c.num(
                f"modelfit_GeneralShapeletPsfApprox_{approx}_{k}_{m}"
                for m in ("xx", "yy", "xy", "x", "y", "alpha", "beta", "0", "1", "2")
            )
        c.flag(f"modelfit_GeneralShapeletPsfApprox_{approx}_flag{s}" for s in ("", "_max_inner_iterations"))


def _hsm(c: _Catalogue) -> None:
    """HSM moments are measured on the coadd only (not a forced plugin); the object shape comes from here."""
    hsm = "ext_shapeHSM_HsmSourceMoments"
    c.num([f"ext_shapeHSM_HsmPsfMoments_{m}" for m in ("x", "y", "xx", "yy", "xy")])
    c.num([f"ext_shapeHSM_HsmShapeRegauss_{m}" for m in ("e1", "e2", "sigma", "resolution")])
    c.num([f"{hsm}_x", f"{hsm}_y"])
    c.num([f"{hsm}_xx", f"{hsm}_yy", f"{hsm}_xy"], core=True)
    c.num([f"{hsm}Round_{m}" for m in ("x", "y", "xx", "yy", "xy")])
    c.num([f"{hsm}Round_Flux"], "f4")
    for what in ("HsmPsfMoments", "HsmShapeRegauss", "HsmSourceMoments", "HsmSourceMomentsRound"):
        c.flag([f"ext_shapeHSM_{what}_flag"], core=what == "HsmSourceMoments")
        c.flag(f"ext_shapeHSM_{what}_flag_{s}" for s in ("no_pixels", "not_contained", "parent_source"))


def _apcorr_targets() -> Iterator[str]:
    yield "base_PsfFlux"
    yield "base_GaussianFlux"
    yield "ext_photometryKron_KronFlux"
    yield "modelfit_CModel"
    for stage in CMODEL_STAGES:
        yield f"modelfit_CModel_{stage}"
    for k in range(4):
        for r in CONVOLVED:
            yield f"ext_convolved_ConvolvedFlux_{k}_{r}"


def _ref_catalogue(gen: SchemaGeneration, bands: tuple[str, ...]) -> _Catalogue:
    c = _Catalogue(gen)
    c.num(["id"], "i8", core=True)
    c.num(["coord_ra", "coord_dec"], core=True)
    c.num(["parent"], "i8", core=True)
    for b in bands:
        c.flag([f"merge_footprint_{b}"], core=True)
    c.flag(["merge_footprint_sky"])
    for b in bands:
        c.flag([f"merge_peak_{b}"], core=True)
    c.flag(["merge_peak_sky"])
    c.num(["deblend_nChild"], "i4", core=True)
    c.num(["deblend_psfCenter_x", "deblend_psfCenter_y"])
    c.num(["deblend_psfFlux" if gen.version <= 2 else f"deblend_psf_{gen.flux}"])
    c.flag(["deblend_deblendedAsPsf", "deblend_tooManyPeaks", "deblend_parentTooBig", "deblend_masked"])
    c.flag(["deblend_skipped"], core=True)
    c.flag(["deblend_rampedTemplate", "deblend_patchedTemplate", "deblend_hasStrayFlux"])
    c.num(["base_NaiveCentroid_x", "base_NaiveCentroid_y"])
    c.flag(f"base_NaiveCentroid_flag{s}" for s in ("", "_noCounts", "_edge", "_resetToPeak"))
    _measurement_plugins(c, ref=True)
    c.flag(["detect_isPatchInner", "detect_isTractInner", "detect_isPrimary"], core=True)
    c.flag(["calib_psfCandidate", "calib_psfUsed", "calib_psf_reserved"])
    for b in bands:
        c.flag([f"merge_measurement_{b}"], core=True)
    return c


def _forced_catalogue(gen: SchemaGeneration, bands: tuple[str, ...]) -> _Catalogue:
    c = _Catalogue(gen)
    c.num(["id"], "i8", core=True)
    c.num(["coord_ra", "coord_dec"], core=True)
    c.num(["parent"], "i8", core=True)
    c.num(["deblend_nChild"], "i4", core=True)
    _measurement_plugins(c, ref=False)
    return c


REF_ALIASES = {
    "slot_Centroid": "base_SdssCentroid",
    "slot_Shape": "ext_shapeHSM_HsmSourceMoments",
    "slot_PsfShape": "base_SdssShape_psf",
    "slot_PsfFlux": "base_PsfFlux",
    "slot_ApFlux": "base_CircularApertureFlux_12_0",
    "slot_CalibFlux": "base_CircularApertureFlux_12_0",
    "slot_ModelFlux": "modelfit_CModel",
    "slot_InstFlux": "base_GaussianFlux",
}
FORCED_ALIASES = {
    "slot_Centroid": "base_TransformedCentroid",
    "slot_Shape": "base_TransformedShape",
    "slot_ApFlux": "base_CircularApertureFlux_12_0",
    "slot_CalibFlux": "base_CircularApertureFlux_12_0",
    "slot_ModelFlux": "modelfit_CModel",
    "slot_InstFlux": "base_GaussianFlux",
}


def _fit(c: _Catalogue, width: int, flag_share: float, what: str, aliases: dict[str, str]) -> TableSchema:
    core = [f for f in c.items if f.kind == "core"]
    core_flags = [n for n, is_core in c.flags if is_core]
    minimum = len(core) + len(core_flags)
    if width < minimum:
        raise ValueError(f"{what} width {width} is below the {minimum} columns every {what} table needs")
    spare_flags = [n for n, is_core in c.flags if not is_core]
    spare_fields = [f for f in c.items if f.kind != "core"]
    n_flags = min(max(round(width * flag_share), len(core_flags)), len(core_flags) + len(spare_flags))
    n_flags = min(n_flags, width - len(core))
    keep_flags = set(spare_flags[: n_flags - len(core_flags)])
    n_fields = width - n_flags
    keep_fields = {f.name for f in spare_fields[: n_fields - len(core)]}
    fields = [f for f in c.items if f.kind == "core" or f.name in keep_fields]
    extra = n_fields - len(fields)
    fields += [Field(f"sample_filler_{k:04d}", "f4" if k % 3 else "f8", "value") for k in range(extra)]
    flags = tuple(n for n, is_core in c.flags if is_core or n in keep_flags)
    names = [f.name for f in fields] + list(flags)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise AssertionError(f"{what} schema names repeat: {dup}")
    return TableSchema(tuple(fields), flags, frozenset(core_flags), dict(aliases), afw_version(c.gen))


@dataclass(frozen=True)
class CoaddSchemas:
    ref: TableSchema
    forced: TableSchema
    gen: SchemaGeneration
    bands: tuple[str, ...] = field(default=())


def coadd_schemas(
    gen: SchemaGeneration, bands: tuple[str, ...], ref_width: int, forced_width: int
) -> CoaddSchemas:
    ref = _fit(_ref_catalogue(gen, bands), ref_width, REF_FLAG_SHARE, "deepCoadd_ref", REF_ALIASES)
    forced = _fit(
        _forced_catalogue(gen, bands), forced_width, FORCED_FLAG_SHARE, "deepCoadd_forced_src", FORCED_ALIASES
    )
    return CoaddSchemas(ref, forced, gen, bands)
