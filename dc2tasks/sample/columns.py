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

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

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


REF, FORCED = "ref", "forced"
BOTH = (REF, FORCED)
ALL_VERSIONS = (1, 2, 3, 4)


class Columns(NamedTuple):
    """Fields (or flag bits) of one plugin output, in file order.

    Names are templates: `<f>` is the generation's flux word (`flux`, `instFlux`), `<fe>` its flux
    error (`fluxSigma`, `fluxErr`, `instFluxErr`), `<e>` its error suffix (`Sigma`, `Err`). The tables
    in `tables` have them, in `core_in` they are core, and only generations in `versions` have them.
    """

    flags: bool
    names: tuple[str, ...]
    dtype: str = "f8"
    core_in: tuple[str, ...] = ()
    tables: tuple[str, ...] = BOTH
    versions: tuple[int, ...] = ALL_VERSIONS


def _num(
    *names: str,
    dtype: str = "f8",
    core: tuple[str, ...] = (),
    tables: tuple[str, ...] = BOTH,
    versions: tuple[int, ...] = ALL_VERSIONS,
) -> Columns:
    return Columns(False, names, dtype, core, tables, versions)


def _flag(*names: str, core: tuple[str, ...] = (), tables: tuple[str, ...] = BOTH) -> Columns:
    return Columns(True, names, "", core, tables)


def _flux(prefix: str, core: tuple[str, ...] = ()) -> Columns:
    return _num(f"{prefix}_<f>", f"{prefix}_<fe>", core=core)


def _each(template: str, values: Iterable[object]) -> tuple[str, ...]:
    """The template with `*` replaced by each value, in order."""
    return tuple(template.replace("*", str(v)) for v in values)


_MOMENTS = ("xx", "yy", "xy")
_HSM = "ext_shapeHSM_HsmSourceMoments"
_OLD_BLENDEDNESS = (1, 2, 3)  # `_abs_instFlux`; GCRCatalogs' v4 is the same names without it

_HSM_COLUMNS = (
    _num(*_each("ext_shapeHSM_HsmPsfMoments_*", ("x", "y", *_MOMENTS)), tables=(REF,)),
    _num(*_each("ext_shapeHSM_HsmShapeRegauss_*", ("e1", "e2", "sigma", "resolution")), tables=(REF,)),
    _num(f"{_HSM}_x", f"{_HSM}_y", tables=(REF,)),
    _num(*_each(f"{_HSM}_*", _MOMENTS), core=BOTH, tables=(REF,)),
    _num(*_each(f"{_HSM}Round_*", ("x", "y", *_MOMENTS)), tables=(REF,)),
    _num(f"{_HSM}Round_Flux", dtype="f4", tables=(REF,)),
    *(
        columns
        for what in ("HsmPsfMoments", "HsmShapeRegauss", "HsmSourceMoments", "HsmSourceMomentsRound")
        for columns in (
            _flag(
                f"ext_shapeHSM_{what}_flag", core=BOTH if what == "HsmSourceMoments" else (), tables=(REF,)
            ),
            _flag(
                *_each(f"ext_shapeHSM_{what}_flag_*", ("no_pixels", "not_contained", "parent_source")),
                tables=(REF,),
            ),
        )
    ),
)
"""HSM moments are measured on the coadd only (not a forced plugin); the object shape comes from here."""

_BLENDEDNESS_COLUMNS = (
    _num("base_Blendedness_old", tables=(REF,)),
    _num(
        "base_Blendedness_raw_<f>",
        "base_Blendedness_raw_<f>_child",
        "base_Blendedness_raw_<f>_parent",
        tables=(REF,),
        versions=_OLD_BLENDEDNESS,
    ),
    _num("base_Blendedness_abs_<f>", core=BOTH, tables=(REF,), versions=_OLD_BLENDEDNESS),
    _num(
        "base_Blendedness_abs_<f>_child",
        "base_Blendedness_abs_<f>_parent",
        tables=(REF,),
        versions=_OLD_BLENDEDNESS,
    ),
    _num(
        "base_Blendedness_raw",
        "base_Blendedness_raw_child_<f>",
        "base_Blendedness_raw_parent_<f>",
        tables=(REF,),
        versions=(4,),
    ),
    _num("base_Blendedness_abs", core=BOTH, tables=(REF,), versions=(4,)),
    _num("base_Blendedness_abs_child_<f>", "base_Blendedness_abs_parent_<f>", tables=(REF,), versions=(4,)),
    _num(
        *(
            f"base_Blendedness_{a}_{w}_{m}"
            for a in ("raw", "abs")
            for w in ("child", "parent")
            for m in _MOMENTS
        ),
        tables=(REF,),
    ),
    _flag(
        "base_Blendedness_flag",
        "base_Blendedness_flag_noCentroid",
        "base_Blendedness_flag_noShape",
        tables=(REF,),
    ),
)

_APERTURE_COLUMNS = tuple(
    columns
    for r in APERTURES
    for columns in (
        _flux(f"base_CircularApertureFlux_{r}", core=BOTH if r == "12_0" else ()),  # slot_ApFlux, CalibFlux
        _flag(
            f"base_CircularApertureFlux_{r}_flag",
            f"base_CircularApertureFlux_{r}_flag_apertureTruncated",
            *((f"base_CircularApertureFlux_{r}_flag_sincCoeffsTruncated",) if r in APERTURES[:5] else ()),
        ),
    )
)

_CONVOLVED_COLUMNS = tuple(
    columns
    for k in range(4)
    for columns in (
        _flag(f"ext_convolved_ConvolvedFlux_{k}_deconv"),
        *(
            columns
            for r in CONVOLVED
            for columns in (
                _flux(f"ext_convolved_ConvolvedFlux_{k}_{r}"),
                _flag(
                    f"ext_convolved_ConvolvedFlux_{k}_{r}_flag",
                    *_each(
                        f"ext_convolved_ConvolvedFlux_{k}_{r}_flag_*",
                        () if r == "kron" else ("apertureTruncated", "sincCoeffsTruncated"),
                    ),
                ),
            )
        ),
    )
)

_CMODEL_STAGE_COLUMNS = tuple(
    columns
    for p in (f"modelfit_CModel_{stage}" for stage in CMODEL_STAGES)
    for columns in (
        _flux(p),
        _num(f"{p}_<f>_inner", *_each(f"{p}_ellipse_*", _MOMENTS), f"{p}_objective"),
        _num(*_each(f"{p}_nonlinear_*", range(3)), *_each(f"{p}_fixed_*", range(2))),
        _num(f"{p}_nIter", dtype="i4"),
        _num(f"{p}_time"),
        _flag(f"{p}_flag", f"{p}_flag_trSmall", f"{p}_flag_maxIter", f"{p}_flag_numericError"),
    )
)

_APCORR_TARGETS = (
    "base_PsfFlux",
    "base_GaussianFlux",
    "ext_photometryKron_KronFlux",
    "modelfit_CModel",
    *(f"modelfit_CModel_{stage}" for stage in CMODEL_STAGES),
    *(f"ext_convolved_ConvolvedFlux_{k}_{r}" for k in range(4) for r in CONVOLVED),
)

_SHAPELET_COMPONENTS = {"SingleGaussian": 1, "DoubleGaussian": 2, "Full": 3}

MEASUREMENT_PLUGINS: tuple[Columns, ...] = (
    _num("base_SdssCentroid_x", "base_SdssCentroid_y", core=(REF,)),
    _num("base_SdssCentroid_x<e>", "base_SdssCentroid_y<e>", dtype="f4", core=(REF,)),
    _num("base_TransformedCentroid_x", "base_TransformedCentroid_y", core=BOTH, tables=(FORCED,)),
    _num(*_each("base_TransformedShape_*", _MOMENTS), core=BOTH, tables=(FORCED,)),
    _flag("base_SdssCentroid_flag", core=(REF,)),
    _flag(
        *_each(
            "base_SdssCentroid_flag_*",
            ("edge", "noSecondDerivative", "almostNoSecondDerivative", "notAtMaximum", "resetToPeak"),
        )
    ),
    *_BLENDEDNESS_COLUMNS,
    _num(*_each("base_SdssShape_*", _MOMENTS), core=BOTH),
    _num(*_each("base_SdssShape_*<e>", _MOMENTS), dtype="f4"),
    _num("base_SdssShape_x", "base_SdssShape_y"),
    _flux("base_SdssShape"),
    _num(*_each("base_SdssShape_psf_*", _MOMENTS), core=BOTH),
    _num(*_each("base_SdssShape_<f>_*_Cov", _MOMENTS), dtype="f4"),
    _flag("base_SdssShape_flag", core=BOTH),
    _flag(*_each("base_SdssShape_flag_*", ("unweightedBad", "unweighted", "shift", "maxIter", "psf"))),
    *_HSM_COLUMNS,
    _num(*_each("modelfit_DoubleShapeletPsfApprox_0_*", (*_MOMENTS, "x", "y", "0", "1", "2", "3"))),
    _num(*_each("modelfit_DoubleShapeletPsfApprox_1_*", (*_MOMENTS, "x", "y", "0", "1", "2"))),
    _flag(
        *_each(
            "modelfit_DoubleShapeletPsfApprox_flag*",
            ("", "_invalidPointForPsf", "_invalidMoments", "_maxIterations"),
        )
    ),
    *_APERTURE_COLUMNS,
    _flux("base_GaussianFlux", core=BOTH),  # slot_InstFlux
    _flag("base_GaussianFlux_flag"),
    _flux("base_LocalBackground", core=(FORCED,)),
    _flag("base_LocalBackground_flag", core=(FORCED,)),
    _flag("base_LocalBackground_flag_noGoodPixels", "base_LocalBackground_flag_noPsf"),
    _flag("base_PixelFlags_flag", "base_PixelFlags_flag_offimage"),
    _flag(*pixel_flag_columns(OBJECT_PIXEL_FLAGS), core=BOTH),
    _flag(
        *_each(
            "base_PixelFlags_flag_*",
            (
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
            ),
        )
    ),
    _flux("base_PsfFlux", core=BOTH),
    _num("base_PsfFlux_area", dtype="f4", core=(REF,)),
    _flag("base_PsfFlux_flag", core=BOTH),
    _flag("base_PsfFlux_flag_noGoodPixels", "base_PsfFlux_flag_edge"),
    _num("base_Variance_value"),
    _flag("base_Variance_flag", "base_Variance_flag_emptyFootprint"),
    _flux("ext_photometryKron_KronFlux"),
    _num(*_each("ext_photometryKron_KronFlux_*", ("radius", "radius_for_radius", "psf_radius")), dtype="f4"),
    _flag(
        *_each(
            "ext_photometryKron_KronFlux_flag*",
            (
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
            ),
        )
    ),
    _num("ext_convolved_ConvolvedFlux_seeing", dtype="f4"),
    *_CONVOLVED_COLUMNS,
    _flag("ext_convolved_ConvolvedFlux_flag"),
    *_CMODEL_STAGE_COLUMNS,
    _flux("modelfit_CModel", core=BOTH),
    _num("modelfit_CModel_<f>_inner", "modelfit_CModel_fracDev", "modelfit_CModel_objective"),
    _num(*_each("modelfit_CModel_ellipse_*", _MOMENTS)),
    _num(*(f"modelfit_CModel_region_{s}_ellipse_{m}" for s in ("initial", "final") for m in _MOMENTS)),
    _flag("modelfit_CModel_flag", core=BOTH),
    _flag(
        *_each(
            "modelfit_CModel_*",
            (
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
            ),
        )
    ),
    *(
        columns
        for corr in _APCORR_TARGETS
        for columns in (_num(f"{corr}_apCorr", f"{corr}_apCorr<e>"), _flag(f"{corr}_flag_apCorr"))
    ),
    _num("base_ClassificationExtendedness_value", core=BOTH, tables=(REF,)),
    _flag("base_ClassificationExtendedness_flag", core=BOTH, tables=(REF,)),
    _num("base_FootprintArea_value", "base_InputCount_value", dtype="i4"),
    _flag("base_InputCount_flag", "base_InputCount_flag_noInputs"),
    _num("base_Jacobian_value", "base_FPPosition_x", "base_FPPosition_y", "base_LocalPhotoCalib"),
    _num("base_LocalPhotoCalibErr"),
    _num(*(f"base_LocalWcs_CDMatrix_{i}_{j}" for i in (1, 2) for j in (1, 2))),
    *(
        columns
        for approx, ncomp in _SHAPELET_COMPONENTS.items()
        for columns in (
            *(
                _num(
                    *_each(
                        f"modelfit_GeneralShapeletPsfApprox_{approx}_{k}_*",
                        (*_MOMENTS, "x", "y", "alpha", "beta", "0", "1", "2"),
                    )
                )
                for k in range(ncomp)
            ),
            _flag(*_each(f"modelfit_GeneralShapeletPsfApprox_{approx}_flag*", ("", "_max_inner_iterations"))),
        )
    ),
)
"""The plugin outputs of ref and forced tables, in the order DM registers them."""


def _template_name(template: str, gen: SchemaGeneration) -> str:
    return template.replace("<fe>", gen.flux_err).replace("<f>", gen.flux).replace("<e>", gen.err)


def _measurement_plugins(c: _Catalogue, ref: bool) -> None:
    """Add the plugin outputs a ref (or forced) table of `c`'s generation has."""
    table = REF if ref else FORCED
    for columns in MEASUREMENT_PLUGINS:
        if table not in columns.tables or c.gen.version not in columns.versions:
            continue
        names = [_template_name(n, c.gen) for n in columns.names]
        core = table in columns.core_in
        if columns.flags:
            c.flag(names, core=core)
        else:
            c.num(names, columns.dtype, core=core)


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
