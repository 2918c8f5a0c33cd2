"""QA of the visit products (Source, ForcedSource, DIASource) and of DIAObject: checks and plots.

Every check reads the product's files once, one row group at a time (visit_scan); the columns
checked are the product's own column table (visit_tables, dia_object), never a second list. What the
inputs held comes from `dc2 inventory`'s report (the repository it names, the catalogs' NAXIS2 read
from their headers only); without it those checks are left out and the facts say so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products import afw
from dc2tasks.products.calib import MAGERR_FACTOR
from dc2tasks.products.dia_object import dia_object_columns
from dc2tasks.products.dia_stats import BANDS
from dc2tasks.products.errors import InputError
from dc2tasks.products.object_index import dia_object_files
from dc2tasks.products.qa import visit_figures as figures
from dc2tasks.products.qa.core import CheckResult, Plot, QaFunction, QaInputs, QaReport
from dc2tasks.products.qa.visit_scan import (
    OFFSET_BINS,
    Bins,
    ColumnTally,
    MagTally,
    MatchTally,
    TruthTally,
    ab_magnitude,
    angular_offset_arcsec,
    band_masks,
    duplicated,
    lookup,
    read_schema,
    row_groups,
    to_njy,
)
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.products.schema import SchemaGeneration, detect_schema_generation
from dc2tasks.products.visit_products import DEFAULT_RADIUS_ARCSEC, RADIUS_KEY
from dc2tasks.products.visit_tables import ADDED_COLUMNS, VISIT_TABLES, VisitTable

KEYS: dict[str, tuple[str, ...]] = {
    "source": ("id",),  # sourceId
    "forced_source": ("objectId", "detector"),  # one measurement of an object per detector of a visit
    "dia_source": ("id",),  # diaSourceId
    "dia_object": ("diaObjectId",),
}
"""The columns whose values are unique in one file (a visit's, a tract's)."""

TRUTH_FILES = {
    "source": "source_truth_visit_{visit}.parquet",
    "forced_source": "forced_truth_visit_{visit}.parquet",
    "dia_source": "dia_source_truth_visit_{visit}.parquet",
}
"""A visit's truth table in a truth directory (the sample generator writes them under these names)."""

PER_EXPOSURE = tuple(c for c in ADDED_COLUMNS if c not in ("mag", "mag_err"))
"""Columns one value per detector by construction: not expected to vary within a band."""

V = TypeVar("V")
SHOWN = 8  # ids, visits or columns named in a check's detail


def _some(items: Sequence[object], count: int | None = None) -> str:
    count = len(items) if count is None else count
    shown = ", ".join(map(str, list(items)[:SHOWN]))
    return shown + (f" and {count - SHOWN} more" if count > SHOWN else "")


def at_most(name: str, value: float, limit: float, detail: str = "") -> CheckResult:
    return CheckResult(name, "pass" if value <= limit else "fail", value, f"<= {limit:g}", detail)


def unit_files(inputs: QaInputs) -> dict[int, Path]:
    """The product's files by tract or visit number; InputError when there is none."""
    rx = re.compile(inputs.product.file_pattern)
    number = re.compile(r"(\d+)")
    files = {}
    if inputs.directory.is_dir():
        for f in sorted(inputs.directory.iterdir()):
            if rx.match(f.name):
                files[int(number.findall(f.name)[-1])] = f
    if not files:
        raise InputError(f"{inputs.directory}: no {inputs.product.files} files: nothing to check")
    return files


# ---- checks every product has --------------------------------------------------------------------


def schema_check(
    schemas: Mapping[int, pa.Schema], declared: Mapping[int, list[str]], unit: str
) -> CheckResult:
    """One set of names and types in every file, and those names the product's column table's."""
    shapes: dict[tuple, list[int]] = {}
    for number, schema in schemas.items():
        shapes.setdefault(tuple((f.name, str(f.type)) for f in schema), []).append(number)
    common = max(shapes, key=lambda s: len(shapes[s]))
    problems = []
    for shape, units in shapes.items():
        if shape != common:
            diff = sorted(set(shape) ^ set(common))
            problems.append(f"{unit} {_some(units)} differ in {_some([f'{n} {t}' for n, t in diff])}")
    undeclared = [u for u, s in schemas.items() if list(s.names) != declared[u]]
    for u in undeclared[:SHOWN]:
        names = schemas[u].names
        lacks = [c for c in declared[u] if c not in names]
        extra = [c for c in names if c not in declared[u]]
        problems.append(
            f"{unit} {u}: not the declared columns (lacks {_some(lacks) or '-'}; "
            f"has {_some(extra) or '-'}{'' if lacks or extra else '; in another order'})"
        )
    bad = len(shapes) - 1 + len(undeclared)
    detail = "; ".join(problems) or f"{len(common)} columns in {len(schemas)} files"
    return CheckResult("one_schema", "fail" if bad else "pass", len(shapes), "== 1", detail)


def column_check(tally: ColumnTally) -> CheckResult:
    nan = tally.all_nan()
    const = tally.constant(skip=PER_EXPOSURE)
    named = [f"{c} ({b}) all NaN" if b else f"{c} all NaN" for c, b in nan]
    named += [
        f"{c} ({b}) constant {tally.lo[(c, b)]:g}" if b else f"{c} constant {tally.lo[(c, b)]:g}"
        for c, b in const
    ]
    checked = len({c for c, _ in tally.rows})
    detail = _some(named) if named else f"{checked} float columns"
    return CheckResult("columns_not_nan_or_constant", "fail" if named else "pass", len(named), "== 0", detail)


def duplicate_check(
    duplicates: Mapping[int, tuple[int, list[tuple]]], keys: Sequence[str], limit: float, unit: str
) -> CheckResult:
    total = sum(n for n, _ in duplicates.values())
    named = [f"{unit} {u}: {n} ({_some(ex)})" for u, (n, ex) in duplicates.items() if n]
    detail = f"key ({', '.join(keys)}); " + (_some(named) if named else "every key unique")
    return at_most("unique_keys", total, limit, detail)


def missing_check(
    planned: Sequence[int], files: Mapping[int, Path], empty: set[int], limit: float, unit: str
) -> CheckResult:
    missing = [u for u in planned if u not in files and u not in empty]
    detail = (
        f"{unit}s missing: {_some(missing)}" if missing else f"all {len(planned)} planned {unit}s present"
    )
    return at_most(f"{unit}s_present", len(missing), limit, detail)


def rows_check(rows: Mapping[int, int], expected: Mapping[int, int], limit: float, unit: str) -> CheckResult:
    off = {
        u: rows.get(u, 0) - n for u, n in expected.items() if u in rows and abs(rows.get(u, 0) - n) > limit
    }
    worst = max((abs(d) for d in off.values()), default=0)
    named = [f"{unit} {u}: {rows[u]} rows, inputs {expected[u]}" for u in off]
    detail = _some(named) if named else f"{sum(rows.values())} rows as the inputs' in {len(rows)} {unit}s"
    return at_most("rows_vs_inputs", worst, limit, detail)


def magnitude_check(mags: MagTally, limit: float) -> CheckResult:
    finite = sum(mags.finite.values())
    outside = sum(mags.outside.values())
    fraction = outside / finite if finite else 1.0
    per_band = ", ".join(f"{b}: {mags.outside[b]} of {n}" for b, n in sorted(mags.finite.items()))
    detail = f"outside [{mags.mag_min:g}, {mags.mag_max:g}]: {per_band}" if finite else "no finite magnitude"
    return CheckResult(
        "magnitudes_plausible",
        "pass" if fraction <= limit else "fail",
        round(fraction, 6),
        f"<= {limit:g}",
        detail,
    )


def by_band(values: Mapping[str, V]) -> dict[str, V]:
    """Per-band values in ugrizy order (the order plots and details show them)."""
    return {b: values[b] for b in BANDS if b in values}


def mag_plot(inputs: QaInputs, mags: MagTally, what: str) -> Plot:
    return figures.save_plot(
        inputs.out,
        "mag_err_vs_mag",
        f"{what}: magnitude error against magnitude, per band (rows per bin, log colour)",
        figures.mag_err_vs_mag(by_band(mags.grid), what),
        size=(10.0, 6.4),
    )


# ---- the inputs: the inventory's repository, headers only -------------------------------------------


def _inventory_repo(inventory: Mapping) -> Gen2Repo:
    try:
        return Gen2Repo.open(inventory["repository"])
    except (KeyError, TypeError) as exc:
        raise InputError(f"the inventory report names no repository ({exc})") from None


def _naxis2(path: Path) -> int:
    return int(afw.read_header(path).get("NAXIS2", 0) or 0)


def input_visit_rows(inventory: Mapping, table: VisitTable, visits: Sequence[int]) -> dict[int, int]:
    """Rows of the visit's per-detector catalogs, from their headers (NAXIS2)."""
    repo = _inventory_repo(inventory)
    return {v: sum(_naxis2(p) for _, p in repo.discover(table.dataset, visit=v)) for v in visits}


def input_tract_rows(inventory: Mapping, tracts: Sequence[int]) -> dict[int, int]:
    out = dict.fromkeys(tracts, 0)
    for tract, _, path in dia_object_files(_inventory_repo(inventory), tracts):
        out[tract] += _naxis2(path)
    return out


def planned_units(inputs: QaInputs, unit: str, dataset: str) -> list[int] | None:
    """The run's tracts or visits: as given, else the inventory's scope, else what its repository
    holds; None when neither plan nor inventory is given."""
    given = inputs.visits if unit == "visit" else inputs.tracts
    if given:
        return list(given)
    if inputs.inventory is None:
        return None
    scope = inputs.inventory.get("scope", {}).get(f"{unit}s") or []
    if scope:
        return [int(u) for u in scope]
    found = _inventory_repo(inputs.inventory).discover(dataset)
    return sorted({int(d[unit]) for d, _ in found})  # type: ignore[call-overload]


def plan_checks(
    inputs: QaInputs, report: QaReport, files: Mapping[int, Path], rows: Mapping[int, int], dataset: str
) -> None:
    """Units present and rows against the inputs, when the plan and inventory say what to expect."""
    unit = inputs.product.unit
    t = inputs.thresholds
    planned = planned_units(inputs, unit, dataset)
    expected: dict[int, int] = {}
    if inputs.inventory is not None:
        units = sorted(set(planned or []) | set(files))
        if unit == "visit":
            expected = input_visit_rows(inputs.inventory, VISIT_TABLES[inputs.product.name], units)
        else:
            expected = input_tract_rows(inputs.inventory, units)
        report.checks.append(rows_check(rows, expected, t["max_row_difference"], unit))
    else:
        report.facts["inputs"] = "not given (no inventory): rows against the inputs not checked"
    if planned is None:
        report.facts["planned"] = f"not given: the {unit}s of the files are checked"
        return
    empty = {u for u, n in expected.items() if n == 0}  # no input rows: no file is right
    report.checks.append(missing_check(planned, files, empty, t["max_missing_units"], unit))


# ---- Source, ForcedSource, DIASource -----------------------------------------------------------------


@dataclass
class VisitScan:
    """Everything the checks and plots of a visit product need, from one pass over its files."""

    columns: ColumnTally
    mags: MagTally
    match: MatchTally | None
    truth: TruthTally | None
    schemas: dict[int, pa.Schema] = field(default_factory=dict)
    declared: dict[int, list[str]] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)
    duplicates: dict[int, tuple[int, list[tuple]]] = field(default_factory=dict)
    no_truth: list[int] = field(default_factory=list)


def _flux_columns(table: VisitTable, gen: SchemaGeneration) -> tuple[str, str]:
    """psFlux's counts and error: the first PSF flux of the product's columns (slot_ or base_)."""
    flux = next(c for c in table.columns(gen) if c.endswith(f"PsfFlux_{gen.flux}"))
    return flux, flux.replace(f"_{gen.flux}", f"_{gen.flux_err}")


def _radius(schema: pa.Schema) -> float:
    raw = (schema.metadata or {}).get(RADIUS_KEY)
    return float(raw) if raw else DEFAULT_RADIUS_ARCSEC


def _float_values(batch: pa.Table, name: str) -> np.ndarray:
    return np.asarray(batch.column(name).to_numpy(), dtype=np.float64)


def _truth_of(inputs: QaInputs, visit: int) -> pa.Table | None:
    if inputs.truth is None:
        return None
    path = inputs.truth / TRUTH_FILES[inputs.product.name].format(visit=visit)
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
        offset = angular_offset_arcsec(
            np.degrees(_float_values(batch, "coord_ra")[found]),
            np.degrees(_float_values(batch, "coord_dec")[found]),
            truth.column("ra").to_numpy()[at][found],
            truth.column("dec").to_numpy()[at][found],
        )
        OFFSET_BINS.add(tally.offset, offset)


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
        values = _float_values(batch, c)
        for b, sel in bands:
            scan.columns.add(c, b, values[sel])
    fluxmag0 = _float_values(batch, "fluxmag0")
    ps_flux = to_njy(_float_values(batch, flux[0]), fluxmag0)
    ps_err = to_njy(_float_values(batch, flux[1]), fluxmag0)
    mag = ab_magnitude(ps_flux)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag_err = MAGERR_FACTOR * ps_err / ps_flux
    for b, sel in bands:
        scan.mags.add(b, mag[sel], mag_err[sel])
    if scan.match is not None:
        scan.match.add(visit, batch.column("objectId").to_numpy(), _float_values(batch, "match_distance"))
    if scan.truth is not None and truth is not None:
        _fold_truth(scan.truth, truth, batch, bands, mag)


def declared_floats(schema: pa.Schema, declared: list[str]) -> list[str] | None:
    """The declared float columns of a file; None when it lacks a declared column (then only the
    schema check reads it: one_schema names what it lacks)."""
    if not set(declared) <= set(schema.names):
        return None
    return [c for c in declared if pa.types.is_floating(schema.field(c).type)]


def scan_visit_file(scan: VisitScan, inputs: QaInputs, table: VisitTable, visit: int, path: Path) -> None:
    schema = read_schema(path)
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
    keys = KEYS[table.key]
    parts: list[list[np.ndarray]] = []
    rows = 0
    for batch in row_groups(path):
        rows += batch.num_rows
        parts.append([batch.column(k).to_numpy() for k in keys])
        _fold_batch(scan, visit, batch, floats, _flux_columns(table, gen), truth)
    scan.rows[visit] = rows
    scan.duplicates[visit] = (
        duplicated([np.concatenate([p[i] for p in parts]) for i in range(len(keys))]) if parts else (0, [])
    )


def match_checks(match: MatchTally, t: Mapping[str, float]) -> list[CheckResult]:
    fractions = match.fractions()
    low_visit = min(fractions, key=fractions.__getitem__)
    low = fractions[low_visit]
    verdict = (
        "fail" if low < t["min_matched_fraction"] else "warn" if low < t["warn_matched_fraction"] else "pass"
    )
    matched = sum(match.matched.values())
    fraction = CheckResult(
        "matched_fraction",
        verdict,
        round(low, 6),
        f">= {t['min_matched_fraction']:g} (warn below {t['warn_matched_fraction']:g})",
        f"lowest: visit {low_visit}; {matched} of {sum(match.rows.values())} rows matched in "
        f"{len(fractions)} visits",
    )
    detail = (
        f"{match.beyond} matched rows beyond the {match.radius:g} arcsec radius; "
        f"worst {match.worst:.4g} arcsec"
        if match.beyond
        else f"every match within {match.radius:g} arcsec; worst {match.worst:.4g} arcsec"
    )
    return [fraction, at_most("match_distance_within_radius", match.beyond, 0, detail)]


def truth_checks(truth: TruthTally, no_truth: list[int], t: Mapping[str, float]) -> list[CheckResult]:
    medians = by_band(truth.medians())
    worst = max((abs(m) for m in medians.values()), default=float("nan"))
    limit = t["max_truth_mag_offset"]
    detail = (
        ", ".join(f"{b}: {m:+.4f}" for b, m in medians.items()) + f" (median mag - truth, {truth.rows} rows)"
    )
    if no_truth:
        detail += f"; no truth for visits {_some(no_truth)}"
    if truth.unmatched:
        detail += f"; {truth.unmatched} rows not in the truth"
    verdict = "pass" if medians and worst <= limit else "fail"
    out = [CheckResult("truth_mag_offset", verdict, round(worst, 6), f"<= {limit:g}", detail)]
    if truth.offset.sum():
        offset = OFFSET_BINS.median(truth.offset)
        out.append(
            at_most(
                "truth_position_offset",
                round(offset, 6),
                t["max_truth_position_arcsec"],
                f"median offset from truth {offset:.4f} arcsec over {int(truth.offset.sum())} rows",
            )
        )
    return out


def _visit_plots(inputs: QaInputs, scan: VisitScan) -> list[Plot]:
    t, name = inputs.thresholds, inputs.product.name
    plots = [mag_plot(inputs, scan.mags, "psFlux magnitude")]
    if scan.match is not None:
        plots.append(
            figures.save_plot(
                inputs.out,
                "matched_fraction",
                f"{name}: fraction of each visit's rows matched",
                figures.matched_fraction(
                    scan.match.fractions(), t["min_matched_fraction"], t["warn_matched_fraction"]
                ),
            )
        )
        plots.append(
            figures.save_plot(
                inputs.out,
                "match_distance",
                f"{name}: distance to the matched object (the radius dashed)",
                figures.match_distance(scan.match.bins, scan.match.counts, scan.match.radius),
            )
        )
    if scan.truth is not None and scan.truth.residual:
        plots.append(
            figures.save_plot(
                inputs.out,
                "truth_residuals",
                f"{name}: psFlux magnitude minus the truth's, per band",
                figures.residuals(by_band(scan.truth.residual), t["max_truth_mag_offset"]),
            )
        )
    return plots


def visit_product_qa(inputs: QaInputs) -> QaReport:
    """The checks and plots of a per-visit product (its table in VISIT_TABLES)."""
    table = VISIT_TABLES[inputs.product.name]
    t = inputs.thresholds
    files = unit_files(inputs)
    scan = VisitScan(
        ColumnTally(),
        MagTally(t["mag_min"], t["mag_max"]),
        MatchTally(DEFAULT_RADIUS_ARCSEC) if table.match else None,
        TruthTally() if inputs.truth is not None else None,
    )
    for visit, path in files.items():
        scan_visit_file(scan, inputs, table, visit, path)
    report = QaReport(inputs.product.name, str(inputs.directory))
    report.facts.update(
        files=len(files),
        rows=sum(scan.rows.values()),
        visits=sorted(files),
        bands=sorted(scan.mags.finite, key=BANDS.index),
    )
    if inputs.truth is None:
        report.facts["truth"] = "not given: residuals against truth not checked"
    plan_checks(inputs, report, files, scan.rows, table.dataset)
    report.checks += [
        duplicate_check(scan.duplicates, KEYS[table.key], t["max_duplicate_ids"], "visit"),
        column_check(scan.columns),
        schema_check(scan.schemas, scan.declared, inputs.product.unit),
        magnitude_check(scan.mags, t["max_mag_outside_fraction"]),
    ]
    if scan.match is not None:
        report.checks += match_checks(scan.match, t.values)
        report.facts["match_radius_arcsec"] = scan.match.radius
    if scan.truth is not None:
        report.checks += truth_checks(scan.truth, scan.no_truth, t.values)
    report.plots += _visit_plots(inputs, scan)
    return report


source_qa: QaFunction = visit_product_qa
forced_source_qa: QaFunction = visit_product_qa
dia_source_qa: QaFunction = visit_product_qa


# ---- DIAObject -----------------------------------------------------------------------------------------

NOBS_BINS = Bins(0.5, 50.5, 50)
CHI2_BINS = Bins(-2.0, 3.0, 50)  # log10 of psFluxChi2 / (psFluxNdata - 1)


@dataclass
class ObjectScan:
    """DIAObject's counters and bins; its ids, nobs and per-band Ndata (one number per object) are
    kept for the comparison with the DIASources."""

    columns: ColumnTally
    mags: MagTally
    schemas: dict[int, pa.Schema] = field(default_factory=dict)
    declared: dict[int, list[str]] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)
    duplicates: dict[int, tuple[int, list[tuple]]] = field(default_factory=dict)
    ids: list[np.ndarray] = field(default_factory=list)
    nobs: list[np.ndarray] = field(default_factory=list)
    ndata: dict[str, list[np.ndarray]] = field(default_factory=dict)
    nobs_hist: np.ndarray = field(default_factory=NOBS_BINS.empty)
    chi2: dict[str, np.ndarray] = field(default_factory=dict)


def _object_bands(names: Sequence[str]) -> list[str]:
    return [b for b in BANDS if f"psFluxMean_{b}" in names]


def _fold_objects(scan: ObjectScan, batch: pa.Table, floats: list[str], bands: list[str]) -> None:
    """Native float columns over every row; a band's statistics over the objects with two or more
    DIASources in it, where each of them is defined."""
    for c in floats:
        if not c.startswith("psFlux"):
            scan.columns.add(c, "", _float_values(batch, c))
    scan.ids.append(batch.column("diaObjectId").to_numpy())
    nobs = batch.column("nobs").to_numpy()
    scan.nobs.append(nobs)
    NOBS_BINS.add(scan.nobs_hist, nobs.astype(np.float64))
    for b in bands:
        ndata = batch.column(f"psFluxNdata_{b}").to_numpy()
        scan.ndata.setdefault(b, []).append(ndata)
        several = ndata >= 2
        for c in floats:
            if c.startswith("psFlux") and c.endswith(f"_{b}"):
                scan.columns.add(c, "", _float_values(batch, c)[several])
        mean = _float_values(batch, f"psFluxMean_{b}")
        with np.errstate(divide="ignore", invalid="ignore"):
            err = MAGERR_FACTOR * _float_values(batch, f"psFluxMeanErr_{b}") / mean
            reduced = _float_values(batch, f"psFluxChi2_{b}")[several] / (ndata[several] - 1)
            log_chi2 = np.log10(reduced)
        seen = ndata >= 1
        scan.mags.add(b, ab_magnitude(mean[seen]), err[seen])
        CHI2_BINS.add(scan.chi2.setdefault(b, CHI2_BINS.empty()), log_chi2)


def scan_object_file(scan: ObjectScan, tract: int, path: Path) -> None:
    schema = read_schema(path)
    bands = _object_bands(schema.names)
    scan.schemas[tract] = schema
    scan.declared[tract] = dia_object_columns(bands)
    floats = declared_floats(schema, scan.declared[tract])
    if floats is None:
        scan.rows[tract] = pq.read_metadata(path).num_rows
        return
    first = len(scan.ids)
    rows = 0
    for batch in row_groups(path):
        rows += batch.num_rows
        _fold_objects(scan, batch, floats, bands)
    scan.rows[tract] = rows
    ids = scan.ids[first:]
    scan.duplicates[tract] = duplicated([np.concatenate(ids)]) if ids else (0, [])


def dia_source_counts(
    directory: Path, ids: np.ndarray, bands: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """For each of `ids` (sorted), its DIASources, in all and per band, from the DIASource files."""
    rx = re.compile(CATALOGUE["dia_source"].file_pattern)
    total = np.zeros(len(ids), dtype=np.int64)
    per_band = {b: np.zeros(len(ids), dtype=np.int64) for b in bands}
    for path in sorted(directory.iterdir()):
        if not rx.match(path.name):
            continue
        for batch in row_groups(path, ["objectId", "filter"]):
            at, found = lookup(ids, batch.column("objectId").to_numpy())
            total += np.bincount(at[found], minlength=len(ids))
            for b, sel in band_masks(batch):
                if b in per_band:
                    per_band[b] += np.bincount(at[sel][found[sel]], minlength=len(ids))
    return total, per_band


def nobs_check(scan: ObjectScan, directory: Path, limit: float) -> CheckResult:
    """nobs and psFluxNdata_<band> of each DIAObject against the DIASources associated with it."""
    ids = np.concatenate(scan.ids)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    total, per_band = dia_source_counts(directory, ids, list(scan.ndata))
    nobs = np.concatenate(scan.nobs)[order]
    bad = nobs != total
    named = [
        f"diaObjectId {i}: nobs {n}, {c} DIASources"
        for i, n, c in zip(ids[bad][:SHOWN], nobs[bad][:SHOWN], total[bad][:SHOWN], strict=True)
    ]
    for b, counts in per_band.items():
        ndata = np.concatenate(scan.ndata[b])[order]
        off = ndata != counts
        bad |= off
        named += [
            f"diaObjectId {i}: psFluxNdata_{b} {n}, {c} {b} DIASources"
            for i, n, c in zip(ids[off][:SHOWN], ndata[off][:SHOWN], counts[off][:SHOWN], strict=True)
        ]
    count = int(bad.sum())
    detail = _some(named, count) if count else f"{len(ids)} DIAObjects, {int(total.sum())} DIASources"
    return at_most("nobs_consistent", count, limit, detail)


def _object_plots(inputs: QaInputs, scan: ObjectScan) -> list[Plot]:
    return [
        mag_plot(inputs, scan.mags, "magMean"),
        figures.save_plot(
            inputs.out,
            "nobs",
            "DIAObject: DIASources per object (nobs)",
            figures.histograms({"all": scan.nobs_hist}, NOBS_BINS, "nobs", "DIAObjects"),
        ),
        figures.save_plot(
            inputs.out,
            "variability",
            "DIAObject: reduced chi-square of psFlux about its mean, "
            "per band (objects with two or more DIASources in the band)",
            figures.histograms(
                by_band(scan.chi2), CHI2_BINS, "log10 psFluxChi2 / (psFluxNdata - 1)", "DIAObjects"
            ),
        ),
    ]


def dia_object_qa(inputs: QaInputs) -> QaReport:
    """DIAObject's checks and plots; nobs against the DIASources of the same run, read from the
    sibling DIASource directory when it is there."""
    t = inputs.thresholds
    files = unit_files(inputs)
    scan = ObjectScan(ColumnTally(), MagTally(t["mag_min"], t["mag_max"]))
    for tract, path in files.items():
        scan_object_file(scan, tract, path)
    report = QaReport(inputs.product.name, str(inputs.directory))
    report.facts.update(
        files=len(files), rows=sum(scan.rows.values()), tracts=sorted(files), bands=list(scan.ndata)
    )
    plan_checks(inputs, report, files, scan.rows, "deepDiff_diaObject")
    report.checks += [
        duplicate_check(scan.duplicates, KEYS["dia_object"], t["max_duplicate_ids"], "tract"),
        column_check(scan.columns),
        schema_check(scan.schemas, scan.declared, inputs.product.unit),
        magnitude_check(scan.mags, t["max_mag_outside_fraction"]),
    ]
    sources = inputs.directory.parent / CATALOGUE["dia_source"].directory
    if sources.is_dir():
        report.checks.append(nobs_check(scan, sources, t["max_nobs_mismatch"]))
    else:
        report.facts["dia_source"] = f"{sources}: not there; nobs against the DIASources not checked"
    report.plots += _object_plots(inputs, scan)
    return report
