"""The per-visit products, declared once: which dataset, which calibration, which columns, which reader.

One table drives the extraction (columns copied from each detector's afw catalog), the columns we add,
the GCRCatalogs product (reader class and file pattern) and the tests that compare our native set with
the reader's own `_generate_modifiers` (spec §2.4-2.6, §2.8).

Beyond the old tables, every product keeps `mjd` (the old Source and ForcedSource tables dropped it
although the script read it), and the matched products keep `match_distance` (arcsec) and
`match_candidates` (objects within the radius), which the old tables could not tell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products.pixel_flags import VISIT_PIXEL_FLAGS, pixel_flag_columns
from dc2tasks.products.schema import SchemaGeneration

_PIXEL_FLAG_COLUMNS = pixel_flag_columns(VISIT_PIXEL_FLAGS)

# columns every visit product adds to the catalog's own: identity of the row's detector, the
# calibration applied, the magnitudes computed with it, and when the exposure was taken
ADDED_COLUMNS = ("visit", "detector", "filter", "mjd", "fluxmag0", "mag", "mag_err")
MATCH_COLUMNS = ("objectId", "match_distance", "match_candidates")


def _measurements(gen: SchemaGeneration, centroid_err: str) -> list[str]:
    """The slot measurements every single-visit catalog (src, diaSrc) is read for."""
    f, fe = gen.flux, gen.flux_err
    return [
        "id",
        "parent",
        "coord_ra",
        "coord_dec",
        "slot_Centroid_x",
        "slot_Centroid_y",
        f"slot_Centroid_x{centroid_err}",
        f"slot_Centroid_y{centroid_err}",
        "slot_Centroid_flag",
        "slot_Shape_xx",
        "slot_Shape_yy",
        "slot_Shape_xy",
        "slot_Shape_flag",
        "slot_PsfShape_xx",
        "slot_PsfShape_yy",
        "slot_PsfShape_xy",
        f"slot_PsfFlux_{f}",
        f"slot_PsfFlux_{fe}",
        "slot_PsfFlux_flag",
        "slot_PsfFlux_area",
        f"slot_ApFlux_{f}",
        f"slot_ApFlux_{fe}",
        "slot_ApFlux_flag",
    ]


def _source_native(gen: SchemaGeneration) -> list[str]:
    f, fe = gen.flux, gen.flux_err
    return [
        *_measurements(gen, gen.centroid_err),
        f"base_LocalBackground_{f}",
        f"base_LocalBackground_{fe}",
        "base_LocalBackground_flag",
        "base_ClassificationExtendedness_value",
        gen.blendedness,
        "deblend_skipped",
        *_PIXEL_FLAG_COLUMNS,
    ]


def _forced_native(gen: SchemaGeneration) -> list[str]:
    return [
        "id",
        "objectId",
        f"base_PsfFlux_{gen.flux}",
        f"base_PsfFlux_{gen.flux_err}",
        "base_PsfFlux_flag",
        *_PIXEL_FLAG_COLUMNS,
    ]


def _dia_native(gen: SchemaGeneration) -> list[str]:
    return [
        *_measurements(gen, "Err"),  # the DIA reader hard-codes `Err` (spec §2.6); DIA data are v3+
        "ip_diffim_DipoleFit_orientation",
        "ip_diffim_DipoleFit_chi2dof",
        "ip_diffim_DipoleFit_flag_classification",
        "ip_diffim_forced_PsfFlux_instFlux",
        "ip_diffim_forced_PsfFlux_instFluxErr",
        *_PIXEL_FLAG_COLUMNS,
    ]


@dataclass(frozen=True)
class VisitTable:
    """One per-visit product."""

    key: str  # our name: source, forced_source, dia_source
    dataset: str  # the per-detector catalog
    calib_dataset: str  # the exposure whose calibration turns its counts into magnitudes
    native: Callable[[SchemaGeneration], list[str]]
    mag_flux: str  # the field whose counts give `mag`, `mag_err` (`base_PsfFlux`, spec §2.4 note)
    match: str | None  # "object", "dia_object", or None when the catalog carries objectId

    def file_name(self, visit: int) -> str:
        return CATALOGUE[self.key].file_name(visit=visit)

    @property
    def file_pattern(self) -> str:
        return CATALOGUE[self.key].file_pattern

    def columns(self, gen: SchemaGeneration) -> list[str]:
        """Every column of the written table, in order."""
        native = [c for c in self.native(gen) if c != "objectId"]
        added = list(ADDED_COLUMNS)
        match = list(MATCH_COLUMNS) if self.match else ["objectId"]
        return native[:2] + match + added + native[2:]


VISIT_TABLES: dict[str, VisitTable] = {
    "source": VisitTable(
        "source",
        "src",
        "calexp",
        _source_native,
        "base_PsfFlux",
        "object",
    ),
    "forced_source": VisitTable(
        "forced_source",
        "forced_src",
        "calexp",
        _forced_native,
        "base_PsfFlux",
        None,
    ),
    "dia_source": VisitTable(
        "dia_source",
        "deepDiff_diaSrc",
        "deepDiff_differenceExp",
        _dia_native,
        "slot_PsfFlux",
        "dia_object",
    ),
}
