"""What the checks of Source, ForcedSource, DIASource and DIAObject share: finding the files, the
checks every one of them has, the plan (planned visits or tracts, the inputs' rows) and the
magnitude plot.

What the inputs held comes from `dc2 inventory`'s report: the repository it names, whose catalogs'
rows are read from their FITS headers (NAXIS2) only. Without the report those checks are left out
and the report's facts say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa

from dc2tasks.products.dia_stats import BANDS
from dc2tasks.products.errors import InputError
from dc2tasks.products.object_index import dia_object_files
from dc2tasks.products.qa import checks, plots
from dc2tasks.products.qa.columns import ColumnFacts, schema_disagreements
from dc2tasks.products.qa.core import CheckResult, Plot, QaInputs, QaReport, Thresholds
from dc2tasks.products.qa.object_files import file_unit, product_files
from dc2tasks.products.qa.references import header_rows, inventory_repo
from dc2tasks.products.qa.visit_scan import MagTally
from dc2tasks.products.visit_tables import ADDED_COLUMNS, VISIT_TABLES, VisitTable

KEYS: dict[str, tuple[str, ...]] = {
    "source": ("id",),  # sourceId
    "forced_source": ("objectId", "detector"),  # one measurement of an object per detector of a visit
    "dia_source": ("id",),  # diaSourceId
    "dia_object": ("diaObjectId",),
}
"""The columns whose values are unique in one file (a visit's, a tract's)."""

PER_EXPOSURE = tuple(c for c in ADDED_COLUMNS if c not in ("mag", "mag_err"))
"""Columns one value per detector by construction: not expected to vary within a band."""

V = TypeVar("V")


def unit_files(inputs: QaInputs) -> dict[int, Path]:
    """The product's files by tract or visit number; InputError when there is none."""
    found = product_files(inputs.product, inputs.directory)
    files = {u: f for f in found if (u := file_unit(inputs.product, f)) is not None}
    if not files:
        raise InputError(f"{inputs.directory}: no {inputs.product.files} files: nothing to check")
    return files


# ---- checks every product has --------------------------------------------------------------------


def schema_check(
    schemas: Mapping[int, pa.Schema], declared: Mapping[int, list[str]], thresholds: Thresholds, unit: str
) -> CheckResult:
    """One set of names and types in every file (columns.schema_disagreements), and those names the
    product's column table's, in its order."""
    problems = schema_disagreements({f"{unit} {u}": s for u, s in schemas.items()})
    undeclared = [u for u, s in schemas.items() if list(s.names) != declared[u]]
    for u in undeclared[: checks.SHOWN]:
        names = schemas[u].names
        lacks = [c for c in declared[u] if c not in names]
        extra = [c for c in names if c not in declared[u]]
        problems.append(
            f"{unit} {u}: not the declared columns (lacks {checks.some(lacks) or '-'}; "
            f"has {checks.some(extra) or '-'}{'' if lacks or extra else '; in another order'})"
        )
    return checks.listed("one_schema", problems, "max_schema_mismatches", thresholds, "schema problems")


def duplicate_check(
    duplicates: Mapping[int, tuple[int, list[tuple[object, int]]]],
    keys: Sequence[str],
    thresholds: Thresholds,
    unit: str,
) -> CheckResult:
    """Keys unique within each file (stats.duplicated_ids of each), the files' counts summed."""
    extra = sum(n for n, _ in duplicates.values())
    examples = [(f"{unit} {u}: {k}", n) for u, (_, found) in duplicates.items() for k, n in found]
    key = keys[0] if len(keys) == 1 else f"({', '.join(keys)})"
    return checks.ids_unique(extra, examples, f"{key} within a {unit}", thresholds)


def missing_check(
    planned: Sequence[int], files: Mapping[int, Path], empty: set[int], thresholds: Thresholds, unit: str
) -> CheckResult:
    missing = [f"{unit} {u}" for u in planned if u not in files and u not in empty]
    return checks.listed("units_present", missing, "max_missing_units", thresholds, "planned units absent")


def rows_check(rows: Mapping[int, int], expected: Mapping[int, int], thresholds: Thresholds) -> CheckResult:
    """Rows of each file against its inputs' (a missing file is units_present's)."""
    return checks.unit_rows_agreement(
        "rows_vs_inputs",
        {(u,): n for u, n in rows.items()},
        {(u,): n for u, n in expected.items() if u in rows},
        thresholds,
        "inputs",
    )


@dataclass
class FileScan:
    """What every visit product's (and DIAObject's) checks keep of its files, file by file."""

    columns: ColumnFacts
    mags: MagTally
    schemas: dict[int, pa.Schema] = field(default_factory=dict)
    declared: dict[int, list[str]] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)
    duplicates: dict[int, tuple[int, list[tuple[object, int]]]] = field(default_factory=dict)


def file_checks(inputs: QaInputs, scan: FileScan, keys: Sequence[str]) -> list[CheckResult]:
    """The checks every one of these products has (the plan's aside: plan_checks)."""
    t, unit = inputs.thresholds, inputs.product.unit
    return [
        duplicate_check(scan.duplicates, keys, t, unit),
        *checks.column_checks(scan.columns, t),
        schema_check(scan.schemas, scan.declared, t, unit),
        checks.magnitude_check(scan.mags.range, t),
    ]


def by_band(values: Mapping[str, V]) -> dict[str, V]:
    """Per-band values in ugrizy order (the order plots and details show them)."""
    return {b: values[b] for b in BANDS if b in values}


def mag_plot(inputs: QaInputs, mags: MagTally, what: str) -> Plot:
    return plots.density_panels(
        inputs.out,
        "mag_err_vs_mag",
        by_band(mags.errors),
        f"{what} [mag]",
        "magnitude error",
        f"{inputs.product.name}: magnitude error against {what}, per band (rows per bin, log colour)",
    )


# ---- the inputs: the inventory's repository, headers only -------------------------------------------


def input_visit_rows(inventory: Mapping, table: VisitTable, visits: Sequence[int]) -> dict[int, int]:
    """Rows of the visit's per-detector catalogs, from their headers (NAXIS2)."""
    repo = inventory_repo(inventory)
    return {v: sum(header_rows(p) for _, p in repo.discover(table.dataset, visit=v)) for v in visits}


def input_tract_rows(inventory: Mapping, tracts: Sequence[int]) -> dict[int, int]:
    out = dict.fromkeys(tracts, 0)
    for tract, _, path in dia_object_files(inventory_repo(inventory), tracts):
        out[tract] += header_rows(path)
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
    found = inventory_repo(inputs.inventory).discover(dataset)
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
        report.checks.append(rows_check(rows, expected, t))
    else:
        report.facts["inputs"] = "not given (no inventory): rows against the inputs not checked"
    if planned is None:
        report.facts["planned"] = f"not given: the {unit}s of the files are checked"
        return
    empty = {u for u, n in expected.items() if n == 0}  # no input rows: no file is right
    report.checks.append(missing_check(planned, files, empty, t, unit))


def declared_floats(schema: pa.Schema, declared: list[str]) -> list[str] | None:
    """The declared float columns of a file; None when it lacks a declared column (then only the
    schema check reads it: one_schema names what it lacks)."""
    if not set(declared) <= set(schema.names):
        return None
    return [c for c in declared if pa.types.is_floating(schema.field(c).type)]


def float_values(batch: pa.Table, name: str) -> np.ndarray:
    return np.asarray(batch.column(name).to_numpy(), dtype=np.float64)
