"""QA of DIAObject: the checks every product has, nobs against its DIASources, light-curve plots.

The DIAObjects' ids, nobs and per-band Ndata are kept (one number each per object) to compare with
the DIASources of the same run, which are read one row group at a time, two columns of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products.calib import MAGERR_FACTOR, ab_magnitude
from dc2tasks.products.dia_object import dia_object_columns
from dc2tasks.products.dia_stats import BANDS
from dc2tasks.products.qa import plots, visit_checks
from dc2tasks.products.qa.checks import SHOWN, at_most, some
from dc2tasks.products.qa.columns import ColumnFacts, iter_row_groups, parquet_schema
from dc2tasks.products.qa.core import CheckResult, Plot, QaInputs, QaReport, Thresholds
from dc2tasks.products.qa.object_files import product_files
from dc2tasks.products.qa.stats import Histogram, RangeTally, duplicated_ids, lookup
from dc2tasks.products.qa.visit_scan import MagTally, band_masks

NOBS_BINS = (0.5, 50.5, 50)
CHI2_BINS = (-2.0, 3.0, 50)  # log10 of psFluxChi2 / (psFluxNdata - 1)


@dataclass
class ObjectScan(visit_checks.FileScan):
    """DIAObject's counters and bins; its ids, nobs and per-band Ndata (one number per object) are
    kept for the comparison with the DIASources."""

    ids: list[np.ndarray] = field(default_factory=list)
    nobs: list[np.ndarray] = field(default_factory=list)
    ndata: dict[str, list[np.ndarray]] = field(default_factory=dict)
    nobs_hist: Histogram = field(default_factory=lambda: Histogram.linear(*NOBS_BINS))
    chi2: dict[str, Histogram] = field(default_factory=dict)


def _object_bands(names: Sequence[str]) -> list[str]:
    return [b for b in BANDS if f"psFluxMean_{b}" in names]


def _fold_objects(scan: ObjectScan, batch: pa.Table, floats: list[str], bands: list[str]) -> None:
    """Native float columns over every row; a band's statistics over the objects with two or more
    DIASources in it, where each of them is defined."""
    for c in floats:
        if not c.startswith("psFlux"):
            scan.columns.add_column(c, visit_checks.float_values(batch, c))
    scan.ids.append(batch.column("diaObjectId").to_numpy())
    nobs = batch.column("nobs").to_numpy()
    scan.nobs.append(nobs)
    scan.nobs_hist.add(nobs)
    for b in bands:
        ndata = batch.column(f"psFluxNdata_{b}").to_numpy()
        scan.ndata.setdefault(b, []).append(ndata)
        several = ndata >= 2
        for c in floats:
            if c.startswith("psFlux") and c.endswith(f"_{b}"):
                scan.columns.add_column(c, visit_checks.float_values(batch, c)[several])
        mean = visit_checks.float_values(batch, f"psFluxMean_{b}")
        with np.errstate(divide="ignore", invalid="ignore"):
            err = MAGERR_FACTOR * visit_checks.float_values(batch, f"psFluxMeanErr_{b}") / mean
            reduced = visit_checks.float_values(batch, f"psFluxChi2_{b}")[several] / (ndata[several] - 1)
            log_chi2 = np.log10(reduced)
        seen = ndata >= 1
        scan.mags.add(b, ab_magnitude(mean[seen]), err[seen])
        scan.chi2.setdefault(b, Histogram.linear(*CHI2_BINS)).add(log_chi2)


def scan_object_file(scan: ObjectScan, tract: int, path: Path) -> None:
    schema = parquet_schema(path)
    bands = _object_bands(schema.names)
    scan.schemas[tract] = schema
    scan.declared[tract] = dia_object_columns(bands)
    floats = visit_checks.declared_floats(schema, scan.declared[tract])
    if floats is None:
        scan.rows[tract] = pq.read_metadata(path).num_rows
        return
    first = len(scan.ids)
    rows = 0
    for batch in iter_row_groups(path):
        rows += batch.num_rows
        _fold_objects(scan, batch, floats, bands)
    scan.rows[tract] = rows
    ids = scan.ids[first:]
    scan.duplicates[tract] = duplicated_ids(lambda: ids, rows)


def dia_source_counts(
    directory: Path, ids: np.ndarray, bands: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """For each of `ids` (sorted), its DIASources, in all and per band, from the DIASource files."""
    total = np.zeros(len(ids), dtype=np.int64)
    per_band = {b: np.zeros(len(ids), dtype=np.int64) for b in bands}
    for path in product_files(CATALOGUE["dia_source"], directory):
        for batch in iter_row_groups(path, ["objectId", "filter"]):
            at, found = lookup(ids, batch.column("objectId").to_numpy())
            total += np.bincount(at[found], minlength=len(ids))
            for b, sel in band_masks(batch):
                if b in per_band:
                    per_band[b] += np.bincount(at[sel][found[sel]], minlength=len(ids))
    return total, per_band


def _disagreements(ids: np.ndarray, ours: np.ndarray, counted: np.ndarray, what: str, of: str) -> list[str]:
    """The first few objects whose `what` is not the number of DIASources counted for them."""
    off = np.flatnonzero(ours != counted)[:SHOWN]
    return [f"diaObjectId {ids[k]}: {what} {ours[k]}, {counted[k]} {of}" for k in off]


def nobs_check(scan: ObjectScan, directory: Path, thresholds: Thresholds) -> CheckResult:
    """nobs and psFluxNdata_<band> of each DIAObject against the DIASources associated with it."""
    ids = np.concatenate(scan.ids)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    total, per_band = dia_source_counts(directory, ids, list(scan.ndata))
    nobs = np.concatenate(scan.nobs)[order]
    bad = nobs != total
    named = _disagreements(ids, nobs, total, "nobs", "DIASources")
    for b, counts in per_band.items():
        ndata = np.concatenate(scan.ndata[b])[order]
        bad |= ndata != counts
        named += _disagreements(ids, ndata, counts, f"psFluxNdata_{b}", f"{b} DIASources")
    count = int(bad.sum())
    detail = some(named, count) if count else f"{len(ids)} DIAObjects, {int(total.sum())} DIASources"
    return at_most("nobs_consistent", count, "max_nobs_mismatch", thresholds, detail)


def _object_plots(inputs: QaInputs, scan: ObjectScan) -> list[Plot]:
    return [
        visit_checks.mag_plot(inputs, scan.mags, "magMean"),
        plots.step_histograms(
            inputs.out, "nobs", {"all": scan.nobs_hist}, "nobs", "DIAObject: DIASources per object (nobs)"
        ),
        plots.step_histograms(
            inputs.out,
            "variability",
            visit_checks.by_band(scan.chi2),
            "log10 psFluxChi2 / (psFluxNdata - 1)",
            "DIAObject: reduced chi-square of psFlux about its mean, "
            "per band (objects with two or more DIASources in the band)",
        ),
    ]


def dia_object_qa(inputs: QaInputs) -> QaReport:
    """DIAObject's checks and plots; nobs against the DIASources of the same run, read from the
    sibling DIASource directory when it is there."""
    t = inputs.thresholds
    files = visit_checks.unit_files(inputs)
    scan = ObjectScan(ColumnFacts(), MagTally(RangeTally(t["mag_min"], t["mag_max"])))
    for tract, path in files.items():
        scan_object_file(scan, tract, path)
    report = QaReport(inputs.product.name, str(inputs.directory))
    report.facts.update(
        files=len(files), rows=sum(scan.rows.values()), tracts=sorted(files), bands=list(scan.ndata)
    )
    # the per-band statistics are checked over these objects only (see _fold_objects)
    report.facts["light_curves"] = {
        b: int(sum(int((n >= 2).sum()) for n in scan.ndata[b])) for b in visit_checks.by_band(scan.ndata)
    }
    visit_checks.plan_checks(inputs, report, files, scan.rows, "deepDiff_diaObject")
    report.checks += visit_checks.file_checks(inputs, scan, visit_checks.KEYS["dia_object"])
    sources = inputs.directory.parent / CATALOGUE["dia_source"].directory
    if sources.is_dir():
        report.checks.append(nobs_check(scan, sources, t))
    else:
        report.facts["dia_source"] = f"{sources}: not there; nobs against the DIASources not checked"
    report.plots += _object_plots(inputs, scan)
    return report
