"""The Object products' checks and plots (the catalogue's `qa` for object, trim_object, dpdd_object
and merged_dpdd_object).

One pass over the product's files, patch by patch (dc2tasks.products.qa.object_files), feeds the
accumulators; a second, cheap pass reads only the ids. Then each check holds a number to its
threshold: files present and of one schema, every planned tract and patch present, rows per patch
against what they were made from (the product it needs, the truth, the repository's inputs), ids
unique, no all-NaN or constant float column among those the DPDD promises, magnitudes in the
plausible range and, with truth tables, magnitude and position residuals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dc2tasks.catalogue import CATALOGUE, Product
from dc2tasks.products.calib import ab_magnitude
from dc2tasks.products.qa import plots
from dc2tasks.products.qa.checks import (
    at_most,
    column_checks,
    ids_unique,
    listed,
    magnitude_check,
    unit_rows_agreement,
)
from dc2tasks.products.qa.columns import ColumnFacts, schema_disagreements
from dc2tasks.products.qa.core import CheckResult, Plot, QaInputs, QaReport
from dc2tasks.products.qa.object_files import (
    MAGNITUDES,
    POSITION,
    PSF_MAG,
    PSF_MAG_ERR,
    Batch,
    ParquetObjects,
    add_unit_counts,
    file_unit,
    id_column,
    product_files,
    unit_rows_of,
)
from dc2tasks.products.qa.references import TRUTH_FLUX, Truth, input_rows
from dc2tasks.products.qa.stats import (
    MAG_BINS,
    RESIDUAL_ARCSEC,
    RESIDUAL_MAG,
    Histogram,
    Histogram2D,
    RangeTally,
    SkyGrid,
    duplicated_ids,
    lookup,
    mag_err_histogram,
    separation_arcsec,
)
from dc2tasks.products.qa.stats import edges as _edges

if TYPE_CHECKING:
    from dc2tasks.products.qa.object_hdf5 import Hdf5Objects

    ObjectFiles = ParquetObjects | Hdf5Objects

Units = dict[tuple[int, str], int]
COLOUR_BINS = (-1.0, 3.0, 80)


@dataclass
class Seen:
    """What one pass over the product keeps: binned arrays and counts, never rows."""

    bands: tuple[str, ...]
    facts: ColumnFacts
    rows: int = 0
    units: Units = field(default_factory=dict)
    counts: dict[str, Histogram] = field(default_factory=dict)
    errors: dict[str, Histogram2D] = field(default_factory=dict)
    outside: RangeTally = field(default_factory=lambda: RangeTally(0.0, 0.0))  # per magnitude column
    sky: dict[int, SkyGrid] = field(default_factory=dict)
    colours: Histogram2D = field(
        default_factory=lambda: Histogram2D(_edges(COLOUR_BINS), _edges(COLOUR_BINS))
    )
    truth_mag: dict[str, Histogram] = field(default_factory=dict)
    truth_sep: Histogram = field(default_factory=lambda: Histogram.linear(*RESIDUAL_ARCSEC))
    truth_matched: int = 0


def _psf(band: str) -> str:
    return PSF_MAG.name.format(b=band)


def _add(seen: Seen, batch: Batch, inputs: QaInputs, truth: Truth | None) -> None:
    v, n = batch.values, len(batch.tracts)
    seen.rows += n
    add_unit_counts(seen.units, batch.tracts, batch.patches)
    seen.facts.add(batch.checked)
    for b in seen.bands:
        mag, err = v[_psf(b)], v[PSF_MAG_ERR.name.format(b=b)]
        seen.counts.setdefault(b, Histogram(_edges(MAG_BINS))).add(mag)
        seen.errors.setdefault(b, mag_err_histogram()).add(mag, err)
        for col in MAGNITUDES:
            seen.outside.add(col.name.format(b=b), v[col.name.format(b=b)])
    for tract in np.unique(batch.tracts).tolist():
        rows = batch.tracts == tract
        seen.sky.setdefault(int(tract), SkyGrid()).add(v[POSITION[0]][rows], v[POSITION[1]][rows])
    if {"g", "r", "i"} <= set(seen.bands):
        g, r, i = (np.asarray(v[_psf(b)], np.float64) for b in "gri")
        seen.colours.add(r - i, g - r)
    if truth is not None and n:
        _add_truth(seen, batch, truth, id_column(inputs.product))


def _add_truth(seen: Seen, batch: Batch, truth: Truth, key: str) -> None:
    """Residuals of this batch's rows against their truth rows (matched by id, within the patch)."""
    for tract in np.unique(batch.tracts).tolist():
        rows = batch.tracts == tract
        patches = sorted(set(np.asarray(batch.patches[rows]).astype(str).tolist()))
        flux = [TRUTH_FLUX.format(b=b) for b in seen.bands]
        t = truth.rows(int(tract), patches, ["ra", "dec", *flux])
        if t is None:
            continue
        at, found = lookup(t["objectId"], np.asarray(batch.values[key])[rows])
        where = at[found]
        seen.truth_matched += int(found.sum())
        for b, f in zip(seen.bands, flux, strict=True):
            true_mag = ab_magnitude(t[f][where])
            mag = np.asarray(batch.values[_psf(b)], np.float64)[rows][found]
            seen.truth_mag.setdefault(b, Histogram.linear(*RESIDUAL_MAG)).add(mag - true_mag)
        ra, dec = (np.asarray(batch.values[c], np.float64)[rows][found] for c in POSITION)
        seen.truth_sep.add(separation_arcsec(ra, dec, t["ra"][where], t["dec"][where]))


def _scan(files: ObjectFiles, inputs: QaInputs, truth: Truth | None) -> Seen:
    t = inputs.thresholds
    seen = Seen(
        tuple(files.ctx.bands), ColumnFacts(files.promised), outside=RangeTally(t["mag_min"], t["mag_max"])
    )
    for batch in files.batches():
        _add(seen, batch, inputs, truth)
        del batch  # not held while the next batch is read
    return seen


def _upstream(product: Product, directory: Path) -> tuple[str, Units | None]:
    """The product this one is made from (by `needs`) and its rows per patch, read from its files
    beside this product's (the run's work directory holds every product's directory)."""
    if not product.needs:
        return "", None
    up = CATALOGUE[product.needs[0]]
    where = directory if up.directory == product.directory else directory.parent / up.directory
    return up.name, unit_rows_of(up, where)


def _planned(
    inputs: QaInputs, refs: Units | None, upstream: Units | None, truth_rows: Units | None
) -> tuple[set[int], set[tuple[int, str]]]:
    """The planned tracts (given, else the inventory's) and patches (with rows in the inputs, else
    in the product it is made from, else in the truth)."""
    scope = (inputs.inventory or {}).get("scope", {}).get("tracts", ())
    patches_from = next((u for u in (refs, upstream, truth_rows) if u is not None), {})
    patches = {k for k, n in patches_from.items() if n > 0}
    tracts = set(inputs.tracts or scope) or {t for t, _ in patches}
    return tracts, {k for k in patches if k[0] in tracts}


def _missing(
    inputs: QaInputs, files: list[Path], seen_units: Units, tracts: set[int], patches: set[tuple[int, str]]
) -> CheckResult:
    have_tracts = {t for t, _ in seen_units} | {t for f in files if (t := file_unit(inputs.product, f))}
    missing = [
        f"tract {t}"
        + (f" ({inputs.product.file_name(tract=t)} absent)" if inputs.product.unit == "tract" else "")
        for t in sorted(tracts - have_tracts)
    ]
    missing += [f"patch {t}/{p}" for t, p in sorted(patches) if t in have_tracts and (t, p) not in seen_units]
    return listed("units_present", missing, "max_missing_units", inputs.thresholds, "planned units absent")


def _row_checks(
    inputs: QaInputs,
    seen: Seen,
    refs: Units | None,
    upstream: tuple[str, Units | None],
    truth_rows: Units | None,
) -> list[CheckResult]:
    out = []
    name, up = upstream
    if up is not None:
        out.append(unit_rows_agreement(f"rows_vs_{name}", seen.units, up, inputs.thresholds, name))
    if truth_rows is not None:
        out.append(
            unit_rows_agreement(
                "rows_vs_truth", seen.units, truth_rows, inputs.thresholds, "primary truth rows"
            )
        )
    if refs is not None:
        tracts = {t for t, _ in seen.units}
        out.append(
            unit_rows_agreement(
                "rows_vs_inputs",
                seen.units,
                {k: n for k, n in refs.items() if k[0] in tracts},
                inputs.thresholds,
                "deepCoadd_ref rows (NAXIS2)",
                at_most_expected=True,
            )
        )
    return out


def _column_checks(inputs: QaInputs, seen: Seen, files: ObjectFiles) -> list[CheckResult]:
    t = inputs.thresholds
    mismatches = schema_disagreements(files.arrow_schemas())
    return [
        *column_checks(seen.facts, t),
        listed("one_schema", mismatches, "max_schema_mismatches", t, "files differ from the first"),
        magnitude_check(seen.outside, t),
    ]


def _id_check(inputs: QaInputs, files: ObjectFiles, rows: int) -> CheckResult:
    extra, examples = duplicated_ids(files.ids, rows)
    return ids_unique(extra, examples, id_column(inputs.product), inputs.thresholds)


def _truth_checks(inputs: QaInputs, seen: Seen) -> list[CheckResult]:
    t = inputs.thresholds
    medians = {b: h.quantile(0.5) for b, h in seen.truth_mag.items() if h.finite}
    worst = max((abs(m) for m in medians.values()), default=float("nan"))
    detail = f"median {PSF_MAG.name.format(b='<b>')} - truth per band: " + ", ".join(
        f"{b} {m:+.4f}" for b, m in medians.items()
    )
    sep = seen.truth_sep.quantile(0.5)
    return [
        at_most("truth_mag_offset", round(worst, 5), "max_truth_mag_offset", t, detail),
        at_most(
            "truth_position_offset",
            round(sep, 5),
            "max_truth_position_arcsec",
            t,
            f"median separation of {seen.truth_matched} rows matched by id, arcsec",
        ),
    ]


def _plots(out: Path, product: str, seen: Seen) -> list[Plot]:
    mag, err = (c.name.format(b="<b>") for c in (PSF_MAG, PSF_MAG_ERR))
    made = [
        plots.step_histograms(
            out,
            "number_counts",
            seen.counts,
            f"{mag} [mag]",
            f"{product}: number counts per band ({mag}, legend: finite values)",
        ),
        plots.density_panels(
            out,
            "mag_err_vs_mag",
            seen.errors,
            mag,
            err,
            f"{product}: {err} against {mag} per band",
        ),
    ]
    made += [
        plots.sky_map(
            out, f"sky_density_tract_{t}", grid, f"tract {t}", f"{product}: objects per arcmin² in tract {t}"
        )
        for t, grid in sorted(seen.sky.items())
    ]
    if seen.colours.counts.any():
        made.append(
            plots.density(
                out,
                "colour_colour",
                seen.colours,
                "r - i",
                "g - r",
                f"{product}: g - r against r - i ({mag})",
            )
        )
    if seen.truth_mag:
        made.append(
            plots.step_histograms(
                out,
                "truth_mag_residuals",
                seen.truth_mag,
                f"{mag} - truth [mag]",
                f"{product}: magnitude residuals against truth per band",
            )
        )
        made.append(
            plots.step_histograms(
                out,
                "truth_position_residuals",
                {"all": seen.truth_sep},
                "separation from truth [arcsec]",
                f"{product}: position residuals against truth",
            )
        )
    return made


def open_product(product: Product, files: list[Path]) -> ObjectFiles:
    if files[0].suffix == ".parquet":
        return ParquetObjects(product, files)
    from dc2tasks.products.qa.object_hdf5 import Hdf5Objects  # pandas and PyTables: HDF5 only

    return Hdf5Objects(product, files)


def object_qa(inputs: QaInputs) -> QaReport:
    """Every check and plot of one Object product (the four catalogue entries differ only in their
    files, their format and what they are made from)."""
    product = inputs.product
    report = QaReport(product.name, str(inputs.directory))
    files = product_files(product, inputs.directory)
    report.facts["files"] = [f.name for f in files]
    if not files:
        report.checks.append(
            listed(
                "files_present",
                [f"no {product.files} in {inputs.directory}"],
                "max_missing_units",
                inputs.thresholds,
                "products absent",
            )
        )
        return report
    opened = open_product(product, files)
    truth = Truth(inputs.truth) if inputs.truth is not None else None
    seen = _scan(opened, inputs, truth)
    refs = input_rows(inputs.inventory, inputs.tracts) if inputs.inventory else None
    upstream = _upstream(product, inputs.directory)
    truth_rows = truth.primary_rows(sorted({t for t, _ in seen.units})) if truth is not None else None
    tracts, patches = _planned(inputs, refs, upstream[1], truth_rows)
    report.checks += [
        _missing(inputs, files, seen.units, tracts, patches),
        *_row_checks(inputs, seen, refs, upstream, truth_rows),
        _id_check(inputs, opened, seen.rows),
        *_column_checks(inputs, seen, opened),
    ]
    if truth is not None:
        report.checks += _truth_checks(inputs, seen)
    report.plots = _plots(inputs.out, product.name, seen)
    report.facts.update(_facts(seen, opened))
    return report


def _facts(seen: Seen, files: ObjectFiles) -> dict[str, object]:
    return {
        "rows": seen.rows,
        "tracts": sorted(seen.sky),
        "rows per patch": {f"{t}/{p}": n for (t, p), n in sorted(seen.units.items())},
        "bands": "".join(seen.bands),
        "promised columns": len(files.promised),
        "finite PSF magnitudes per band": {b: h.finite for b, h in seen.counts.items()},
        **({"rows matched to truth": seen.truth_matched} if seen.truth_mag else {}),
    }


trim_object_qa = dpdd_object_qa = merged_dpdd_object_qa = object_qa
