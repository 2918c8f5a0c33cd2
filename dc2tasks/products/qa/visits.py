"""QA of the visit products, Source, ForcedSource and DIASource: checks and plots.

Every check reads the product's files once, one row group at a time (visit_scan); the columns
checked are the product's own column table (visit_tables), never a second list. DIAObject's QA
(dia_object_checks) is named here too, as the catalogue finds each product's QA function in this
module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products.calib import MAGERR_FACTOR, ab_magnitude, to_njy
from dc2tasks.products.errors import InputError
from dc2tasks.products.object_index import dpdd_object_files
from dc2tasks.products.qa import plots
from dc2tasks.products.qa.checks import at_least, at_most, none_counted, some
from dc2tasks.products.qa.columns import ColumnFacts, iter_row_groups, parquet_schema
from dc2tasks.products.qa.core import CheckResult, Plot, QaFunction, QaInputs, QaReport, Thresholds
from dc2tasks.products.qa.dia_object_checks import dia_object_qa
from dc2tasks.products.qa.references import VISIT_TRUTH_FILES, truth_dir
from dc2tasks.products.qa.stats import RangeTally, duplicated_ids, lookup, separation_arcsec
from dc2tasks.products.qa.visit_checks import (
    KEYS,
    PER_EXPOSURE,
    FileScan,
    by_band,
    declared_floats,
    file_checks,
    float_values,
    mag_plot,
    plan_checks,
    unit_files,
)
from dc2tasks.products.qa.visit_scan import (
    FOOTPRINT_CELL_ARCSEC,
    Footprint,
    MagTally,
    MatchTally,
    TruthTally,
    band_masks,
    key_values,
)
from dc2tasks.products.schema import SchemaGeneration, detect_schema_generation
from dc2tasks.products.visit_products import DEFAULT_RADIUS_ARCSEC, RADIUS_KEY
from dc2tasks.products.visit_tables import VISIT_TABLES, VisitTable

__all__ = ["dia_object_qa", "dia_source_qa", "forced_source_qa", "source_qa"]


@dataclass
class VisitScan(FileScan):
    """Everything the checks and plots of a visit product need, from one pass over its files."""

    match: MatchTally | None = None
    truth: TruthTally | None = None
    no_truth: list[int] = field(default_factory=list)
    footprint: Footprint | None = None  # of what the rows were matched to, when it is at hand


def _flux_columns(table: VisitTable, gen: SchemaGeneration) -> tuple[str, str]:
    """psFlux's counts and error: the first PSF flux of the product's columns (slot_ or base_)."""
    flux = next(c for c in table.columns(gen) if c.endswith(f"PsfFlux_{gen.flux}"))
    return flux, flux.replace(f"_{gen.flux}", f"_{gen.flux_err}")


def _radius(schema: pa.Schema) -> float:
    raw = (schema.metadata or {}).get(RADIUS_KEY)
    return float(raw) if raw else DEFAULT_RADIUS_ARCSEC


def _truth_of(inputs: QaInputs, visit: int) -> pa.Table | None:
    if inputs.truth is None:
        return None
    path = truth_dir(inputs.truth) / VISIT_TRUTH_FILES[inputs.product.name].format(visit=visit)
    if not path.is_file():
        return None
    t = pq.read_table(path)
    return t.take(pc.sort_indices(t, [("id", "ascending")]))


def _fold_truth(
    tally: TruthTally,
    truth: pa.Table,
    batch: pa.Table,
    bands: list[tuple[str, slice | np.ndarray]],
    mag: np.ndarray,
) -> None:
    at, found = lookup(truth.column("id").to_numpy(), batch.column("id").to_numpy())
    tally.rows += int(found.sum())
    tally.unmatched += int((~found).sum())
    true_mag = ab_magnitude(truth.column("psf_flux_nJy").to_numpy()[at])
    for b, sel in bands:
        tally.add_residuals(b, mag[sel][found[sel]], true_mag[sel][found[sel]])
    if "coord_ra" in batch.column_names and "ra" in truth.column_names:
        offset = separation_arcsec(
            np.degrees(float_values(batch, "coord_ra")[found]),
            np.degrees(float_values(batch, "coord_dec")[found]),
            truth.column("ra").to_numpy()[at][found],
            truth.column("dec").to_numpy()[at][found],
        )
        tally.offset.add(offset)


def _fold_batch(
    scan: VisitScan,
    visit: int,
    batch: pa.Table,
    floats: list[str],
    flux: tuple[str, str],
    truth: pa.Table | None,
) -> None:
    bands = band_masks(batch)
    for c in floats:
        values = float_values(batch, c)
        for b, sel in bands:
            scan.columns.add_column(c, values[sel], b)
    fluxmag0 = float_values(batch, "fluxmag0")
    ps_flux = to_njy(float_values(batch, flux[0]), fluxmag0)
    ps_err = to_njy(float_values(batch, flux[1]), fluxmag0)
    mag = ab_magnitude(ps_flux)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag_err = MAGERR_FACTOR * ps_err / ps_flux
    for b, sel in bands:
        scan.mags.add(b, mag[sel], mag_err[sel])
    if scan.match is not None:
        inside: np.ndarray | slice = slice(None)
        if scan.footprint is not None:
            ra, dec = (np.degrees(float_values(batch, c)) for c in ("coord_ra", "coord_dec"))
            inside = scan.footprint.covers(ra, dec)
        scan.match.add(
            visit, batch.column("objectId").to_numpy(), float_values(batch, "match_distance"), inside
        )
    if scan.truth is not None and truth is not None:
        _fold_truth(scan.truth, truth, batch, bands, mag)


def scan_visit_file(scan: VisitScan, inputs: QaInputs, table: VisitTable, visit: int, path: Path) -> None:
    schema = parquet_schema(path)
    gen = detect_schema_generation(schema.names)
    scan.schemas[visit] = schema
    scan.declared[visit] = table.columns(gen)
    floats = declared_floats(schema, scan.declared[visit])
    if floats is None:
        scan.rows[visit] = pq.read_metadata(path).num_rows
        return
    if scan.match is not None:
        scan.match.radius = _radius(schema)
    truth = _truth_of(inputs, visit)
    if scan.truth is not None and truth is None:
        scan.no_truth.append(visit)
    keys: list[np.ndarray] = []
    rows = 0
    for batch in iter_row_groups(path):
        rows += batch.num_rows
        keys.append(key_values(batch, KEYS[table.key]))
        _fold_batch(scan, visit, batch, floats, _flux_columns(table, gen), truth)
    scan.rows[visit] = rows
    scan.duplicates[visit] = duplicated_ids(lambda: keys, rows)


def match_checks(match: MatchTally, t: Thresholds) -> list[CheckResult]:
    fractions = match.fractions()
    low_visit: int | str = "-"  # no row to count: nothing matched
    low = 0.0
    if fractions:
        low_visit = min(fractions, key=fractions.__getitem__)
        low = fractions[low_visit]
    matched = sum(match.matched.values())
    fraction = at_least(
        "matched_fraction",
        round(low, 6),
        "min_matched_fraction",
        t,
        f"lowest: visit {low_visit}; {matched} of {sum(match.rows.values())} rows matched in "
        f"{len(fractions)} visits",
        warn_key="warn_matched_fraction",
    )
    detail = (
        f"{match.beyond} matched rows beyond the {match.radius:g} arcsec radius; "
        f"worst {match.worst:.4g} arcsec"
        if match.beyond
        else f"every match within {match.radius:g} arcsec; worst {match.worst:.4g} arcsec"
    )
    return [fraction, none_counted("match_distance_within_radius", match.beyond, detail)]


def truth_checks(truth: TruthTally, no_truth: list[int], t: Thresholds) -> list[CheckResult]:
    medians = by_band(truth.medians())
    worst = max((round(abs(m), 6) for m in medians.values()), default=float("nan"))  # NaN: no truth
    per_band = ", ".join(f"{b}: {m:+.4f}" for b, m in medians.items())
    detail = f"{per_band} (median mag - truth, {truth.rows} rows)" if medians else "no row has a truth"
    if no_truth:
        detail += f"; no truth for visits {some(no_truth)}"
    if truth.unmatched:
        detail += f"; {truth.unmatched} rows not in the truth"
    out = [at_most("truth_mag_offset", worst, "max_truth_mag_offset", t, detail)]
    if truth.offset.finite:
        offset = truth.offset.quantile(0.5)
        out.append(
            at_most(
                "truth_position_offset",
                round(offset, 6),
                "max_truth_position_arcsec",
                t,
                f"median offset from truth {offset:.4f} arcsec over {truth.offset.finite} rows",
            )
        )
    return out


def _visit_plots(inputs: QaInputs, scan: VisitScan) -> list[Plot]:
    t, name, out = inputs.thresholds, inputs.product.name, inputs.out
    made = [mag_plot(inputs, scan.mags, "psFlux magnitude")]
    if scan.match is not None and scan.match.distances is not None:
        made.append(
            plots.unit_values(
                out,
                "matched_fraction",
                scan.match.fractions(),
                "visit",
                "matched fraction",
                f"{name}: fraction of each visit's rows matched",
                {
                    f"fail below {t['min_matched_fraction']:g}": t["min_matched_fraction"],
                    f"warn below {t['warn_matched_fraction']:g}": t["warn_matched_fraction"],
                },
            )
        )
        made.append(
            plots.step_histograms(
                out,
                "match_distance",
                {"matched rows": scan.match.distances},
                "match distance [arcsec]",
                f"{name}: distance to the matched object (the radius dotted)",
                marks=(scan.match.radius,),
            )
        )
    if scan.truth is not None and scan.truth.residual:
        limit = t["max_truth_mag_offset"]
        made.append(
            plots.step_histograms(
                out,
                "truth_residuals",
                by_band(scan.truth.residual),
                "psFlux magnitude - truth [mag]",
                f"{name}: psFlux magnitude minus the truth's, per band (+-max_truth_mag_offset dotted)",
                marks=(-limit, limit),
            )
        )
    return made


FOOTPRINT_OF = {"object": "dpdd_object"}
"""The product whose Objects a table of this `match` was matched to (Source: the run's dpdd_object,
its `--objects`): the matched fraction counts the rows inside its footprint, as a source outside
every patch's inner region has no Object to match. DIAObjects are too sparse to draw a footprint
from: DIASources count every row."""


def matched_footprint(inputs: QaInputs, table: VisitTable) -> tuple[Footprint | None, str]:
    """The footprint of what the rows were matched to, and what the matched fraction counts."""
    product = FOOTPRINT_OF.get(table.match or "")
    if product is None:
        return None, "every row"
    where = inputs.directory.parent / CATALOGUE[product].directory
    try:
        files = dpdd_object_files([where])
    except InputError:
        return None, f"every row ({where}: no Object tables beside it)"
    positions = (
        (t.column("ra").to_numpy(), t.column("dec").to_numpy())
        for f in files
        for t in iter_row_groups(f, ["ra", "dec"])
    )
    return Footprint.of(positions), (
        f"rows inside the {product} footprint ({FOOTPRINT_CELL_ARCSEC:g} arcsec cells holding an Object)"
    )


def visit_product_qa(inputs: QaInputs) -> QaReport:
    """The checks and plots of a per-visit product (its table in VISIT_TABLES)."""
    table = VISIT_TABLES[inputs.product.name]
    t = inputs.thresholds
    files = unit_files(inputs)
    scan = VisitScan(
        ColumnFacts(fixed=PER_EXPOSURE),
        MagTally(RangeTally(t["mag_min"], t["mag_max"])),
        match=MatchTally(DEFAULT_RADIUS_ARCSEC) if table.match else None,
        truth=TruthTally() if inputs.truth is not None else None,
    )
    scan.footprint, counted = matched_footprint(inputs, table) if table.match else (None, "")
    for visit, path in files.items():
        scan_visit_file(scan, inputs, table, visit, path)
    report = QaReport(inputs.product.name, str(inputs.directory))
    report.facts.update(
        files=len(files),
        rows=sum(scan.rows.values()),
        visits=sorted(files),
        bands=list(by_band(scan.mags.range.measured)),
    )
    if inputs.truth is None:
        report.facts["truth"] = "not given: residuals against truth not checked"
    plan_checks(inputs, report, files, scan.rows, table.dataset)
    report.checks += file_checks(inputs, scan, KEYS[table.key])
    if scan.match is not None:
        report.checks += match_checks(scan.match, t)
        report.facts["match_radius_arcsec"] = scan.match.radius
        report.facts["matched_fraction_of"] = counted
    if scan.truth is not None:
        report.checks += truth_checks(scan.truth, scan.no_truth, t)
    report.plots += _visit_plots(inputs, scan)
    return report


source_qa: QaFunction = visit_product_qa
forced_source_qa: QaFunction = visit_product_qa
dia_source_qa: QaFunction = visit_product_qa
