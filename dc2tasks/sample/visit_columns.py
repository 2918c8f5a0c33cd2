"""Column sets of the per-detector catalogs (src, forced_src, deepDiff_diaSrc) and of deepDiff_diaObject.

As for the coadd tables (columns.py), "core" fields are the ones readers use, here the native columns
of the GCRCatalogs Source, ForcedSource and DIASource readers (spec §2.8, with the slot aliases they
go through); the rest of a table's width is filled with the names of the measurement plugins of a DM
catalog, then generic fillers. Visit tables have no `clipped` pixel flag (it is set by coaddition).

DIA catalogs always carry the instFlux-era names (`_instFlux`, `_instFluxErr`, centroid `xErr`): no
DIA products were made before that era (the GCRCatalogs DIA readers hard-code those names and the
DIAObject reader refuses older schema versions), so a v1 repository's deepDiff tables are v3 tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dc2tasks.products.pixel_flags import VISIT_PIXEL_FLAGS, pixel_flag_columns
from dc2tasks.products.schema import SchemaGeneration
from dc2tasks.sample.columns import (
    Field,
    TableSchema,
    _Catalogue,
    _fit,
    _kind,
    _measurement_plugins,
)

SRC_FLAG_SHARE = 0.3
FORCED_FLAG_SHARE = 0.25
DIA_GENERATION = SchemaGeneration(3)

SRC_ALIASES = {
    "slot_Centroid": "base_SdssCentroid",
    "slot_Shape": "base_SdssShape",
    "slot_PsfShape": "base_SdssShape_psf",
    "slot_PsfFlux": "base_PsfFlux",
    "slot_ApFlux": "base_CircularApertureFlux_12_0",
    "slot_CalibFlux": "base_CircularApertureFlux_12_0",
    "slot_InstFlux": "base_GaussianFlux",
    "slot_ModelFlux": "base_GaussianFlux",
}
# forcedPhotCcd defines no PSF-flux slot: readers use base_PsfFlux (spec §2.5)
FORCED_ALIASES = {
    "slot_Centroid": "base_TransformedCentroid",
    "slot_Shape": "base_TransformedShape",
    "slot_ApFlux": "base_CircularApertureFlux_12_0",
    "slot_CalibFlux": "base_CircularApertureFlux_12_0",
    "slot_InstFlux": "base_GaussianFlux",
}
DIA_ALIASES = {
    "slot_Centroid": "base_SdssCentroid",
    "slot_Shape": "base_SdssShape",
    "slot_PsfShape": "base_SdssShape_psf",
    "slot_PsfFlux": "base_PsfFlux",
    "slot_ApFlux": "base_CircularApertureFlux_12_0",
    "slot_CalibFlux": "base_CircularApertureFlux_12_0",
}

DIA_OBJECT_SCHEMA = TableSchema(
    fields=(
        Field("id", "i8", "core"),
        Field("coord_ra", "f8", "core"),
        Field("coord_dec", "f8", "core"),
        Field("parent", "i8", "core"),
        Field("nobs", "i4", "core"),
        Field("base_PsfFlux_instFlux", "f8", "core"),
        Field("base_PsfFlux_instFluxErr", "f8", "core"),
    ),
    flags=(),
    core_flags=frozenset(),
    aliases={},
    afw_version=3,
)


def _plugin_fillers(
    c: _Catalogue,
    extra_numbers: Sequence[tuple[str, str]] = (),
    extra_flags: Sequence[str] = (),
    skip: tuple[str, ...] = (),
) -> None:
    """Append, as fillers, the given names and then the plugin outputs of a DM measurement table that
    `c` does not already hold (none starting with a `skip` prefix)."""
    plugins = _Catalogue(c.gen)
    _measurement_plugins(plugins, ref=True)
    skip = ("ext_shapeHSM", *skip)
    taken = {f.name for f in c.items} | {n for n, _ in c.flags}
    for name, dtype in [*extra_numbers, *((f.name, f.dtype) for f in plugins.items)]:
        if name not in taken and not name.startswith(skip):
            c.items.append(Field(name, dtype, _kind(name, dtype, c.gen)))
            taken.add(name)
    for name in [*extra_flags, *(n for n, _ in plugins.flags)]:
        if name not in taken and "clipped" not in name and not name.startswith(skip):
            c.flags.append((name, False))
            taken.add(name)


def _identity(c: _Catalogue) -> None:
    c.num(["id"], "i8", core=True)
    c.num(["coord_ra", "coord_dec"], core=True)
    c.num(["parent"], "i8", core=True)


def _measured(c: _Catalogue, with_extras: bool) -> None:
    """Centroid, shapes, PSF and aperture fluxes: the measurements src and diaSrc share."""
    g = c.gen
    c.num(["base_SdssCentroid_x", "base_SdssCentroid_y"], core=True)
    c.num([f"base_SdssCentroid_x{g.err}", f"base_SdssCentroid_y{g.err}"], "f4", core=True)
    c.flag(["base_SdssCentroid_flag"], core=True)
    c.num(["base_SdssShape_xx", "base_SdssShape_yy", "base_SdssShape_xy"], core=True)
    c.num(["base_SdssShape_psf_xx", "base_SdssShape_psf_yy", "base_SdssShape_psf_xy"], core=True)
    c.flag(["base_SdssShape_flag"], core=True)
    c.flux("base_PsfFlux", core=True)
    c.num(["base_PsfFlux_area"], "f4", core=True)
    c.flag(["base_PsfFlux_flag"], core=True)
    c.flux("base_CircularApertureFlux_12_0", core=True)
    c.flag(["base_CircularApertureFlux_12_0_flag"], core=True)
    if with_extras:
        c.flux("base_GaussianFlux", core=True)
        c.flag(["base_GaussianFlux_flag"], core=True)
        c.flux("base_LocalBackground", core=True)
        c.flag(["base_LocalBackground_flag"], core=True)
    c.flag(pixel_flag_columns(VISIT_PIXEL_FLAGS), core=True)


def _aliases_present(aliases: dict[str, str], schema: TableSchema) -> dict[str, str]:
    """Only the aliases whose target a field of the fitted table starts with."""
    names = schema.names
    return {a: t for a, t in aliases.items() if any(n == t or n.startswith(t + "_") for n in names)}


def _fitted(c: _Catalogue, width: int, share: float, what: str, aliases: dict[str, str]) -> TableSchema:
    schema = _fit(c, width, share, what, aliases)
    return TableSchema(
        schema.fields, schema.flags, schema.core_flags, _aliases_present(aliases, schema), schema.afw_version
    )


def src_schema(gen: SchemaGeneration, width: int) -> TableSchema:
    c = _Catalogue(gen)
    _identity(c)
    c.num(["deblend_nChild"], "i4")
    c.flag(["deblend_skipped"], core=True)
    _measured(c, with_extras=True)
    c.num(["base_ClassificationExtendedness_value"], core=True)
    c.num([gen.blendedness], core=True)
    _plugin_fillers(
        c, [], ["calib_detected", "calib_psf_candidate", "calib_psf_used", "calib_photometry_used"]
    )
    return _fitted(c, width, SRC_FLAG_SHARE, "src", SRC_ALIASES)


def forced_src_schema(gen: SchemaGeneration, width: int) -> TableSchema:
    c = _Catalogue(gen)
    _identity(c)
    c.num(["objectId"], "i8", core=True)
    c.num(["base_TransformedCentroid_x", "base_TransformedCentroid_y"], core=True)
    c.flux("base_PsfFlux", core=True)
    c.flag(["base_PsfFlux_flag"], core=True)
    c.flag(pixel_flag_columns(VISIT_PIXEL_FLAGS), core=True)
    c.num(["base_TransformedShape_xx", "base_TransformedShape_yy", "base_TransformedShape_xy"])
    _plugin_fillers(c, skip=("base_Blendedness", "base_ClassificationExtendedness"))
    return _fitted(c, width, FORCED_FLAG_SHARE, "forced_src", FORCED_ALIASES)


def dia_src_schema(width: int) -> TableSchema:
    c = _Catalogue(DIA_GENERATION)
    _identity(c)
    _measured(c, with_extras=False)
    c.num(["ip_diffim_DipoleFit_orientation", "ip_diffim_DipoleFit_chi2dof"], core=True)
    c.flag(["ip_diffim_DipoleFit_flag_classification"], core=True)
    c.flux("ip_diffim_forced_PsfFlux", core=True)
    dipole = [
        *(f"ip_diffim_NaiveDipoleCentroid_{a}" for a in ("x", "y")),
        *(f"ip_diffim_NaiveDipoleFlux_{s}_instFlux" for s in ("pos", "neg")),
        *(f"ip_diffim_PsfDipoleFlux_{s}_instFlux" for s in ("pos", "neg")),
        *(f"ip_diffim_DipoleFit_{s}_instFlux" for s in ("pos", "neg")),
        "ip_diffim_DipoleFit_separation",
        "ip_diffim_DipoleFit_signalToNoise",
        "ip_diffim_ClassificationDipole_value",
    ]
    flags = [
        "ip_diffim_forced_PsfFlux_flag",
        "ip_diffim_DipoleFit_flag",
        "ip_diffim_NaiveDipoleFlux_flag",
        "ip_diffim_ClassificationDipole_flag",
    ]
    _plugin_fillers(c, [(n, "f8") for n in dipole], flags, skip=("base_Blendedness",))
    return _fitted(c, width, SRC_FLAG_SHARE, "deepDiff_diaSrc", DIA_ALIASES)


@dataclass(frozen=True)
class VisitSchemas:
    src: TableSchema
    forced_src: TableSchema
    dia_src: TableSchema
    dia_object: TableSchema = DIA_OBJECT_SCHEMA


def visit_schemas(gen: SchemaGeneration, src_width: int, forced_width: int, dia_width: int) -> VisitSchemas:
    """Every visit table's schema; a width below a table's core columns is refused here, up front."""
    return VisitSchemas(
        src_schema(gen, src_width), forced_src_schema(gen, forced_width), dia_src_schema(dia_width)
    )
