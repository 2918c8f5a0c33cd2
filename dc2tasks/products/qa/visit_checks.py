"""What the checks of Source, ForcedSource, DIASource and DIAObject share: finding the files, the
checks every one of them has, the plan (planned visits or tracts, the inputs' rows) and the
magnitude plot.

What the inputs held comes from `dc2 inventory`'s report: the repository it names, whose catalogs'
rows are read from their FITS headers (NAXIS2) only. Without the report those checks are left out
and the report's facts say so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa

from dc2tasks.products import afw
from dc2tasks.products.dia_stats import BANDS
from dc2tasks.products.errors import InputError
from dc2tasks.products.object_index import dia_object_files
from dc2tasks.products.qa import visit_figures as figures
from dc2tasks.products.qa.core import CheckResult, Plot, QaInputs, QaReport
from dc2tasks.products.qa.visit_scan import ColumnTally, MagTally
from dc2tasks.products.repo import Gen2Repo
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
SHOWN = 8  # ids, visits or columns named in a check's detail


def some(items: Sequence[object], count: int | None = None) -> str:
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
            problems.append(f"{unit} {some(units)} differ in {some([f'{n} {t}' for n, t in diff])}")
    undeclared = [u for u, s in schemas.items() if list(s.names) != declared[u]]
    for u in undeclared[:SHOWN]:
        names = schemas[u].names
        lacks = [c for c in declared[u] if c not in names]
        extra = [c for c in names if c not in declared[u]]
        problems.append(
            f"{unit} {u}: not the declared columns (lacks {some(lacks) or '-'}; "
            f"has {some(extra) or '-'}{'' if lacks or extra else '; in another order'})"
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
    detail = some(named) if named else f"{checked} float columns"
    return CheckResult("columns_not_nan_or_constant", "fail" if named else "pass", len(named), "== 0", detail)


def duplicate_check(
    duplicates: Mapping[int, tuple[int, list[tuple]]], keys: Sequence[str], limit: float, unit: str
) -> CheckResult:
    total = sum(n for n, _ in duplicates.values())
    named = [f"{unit} {u}: {n} ({some(ex)})" for u, (n, ex) in duplicates.items() if n]
    detail = f"key ({', '.join(keys)}); " + (some(named) if named else "every key unique")
    return at_most("unique_keys", total, limit, detail)


def missing_check(
    planned: Sequence[int], files: Mapping[int, Path], empty: set[int], limit: float, unit: str
) -> CheckResult:
    missing = [u for u in planned if u not in files and u not in empty]
    detail = f"{unit}s missing: {some(missing)}" if missing else f"all {len(planned)} planned {unit}s present"
    return at_most(f"{unit}s_present", len(missing), limit, detail)


def rows_check(rows: Mapping[int, int], expected: Mapping[int, int], limit: float, unit: str) -> CheckResult:
    off = {
        u: rows.get(u, 0) - n for u, n in expected.items() if u in rows and abs(rows.get(u, 0) - n) > limit
    }
    worst = max((abs(d) for d in off.values()), default=0)
    named = [f"{unit} {u}: {rows[u]} rows, inputs {expected[u]}" for u in off]
    detail = some(named) if named else f"{sum(rows.values())} rows as the inputs' in {len(rows)} {unit}s"
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


def declared_floats(schema: pa.Schema, declared: list[str]) -> list[str] | None:
    """The declared float columns of a file; None when it lacks a declared column (then only the
    schema check reads it: one_schema names what it lacks)."""
    if not set(declared) <= set(schema.names):
        return None
    return [c for c in declared if pa.types.is_floating(schema.field(c).type)]


def float_values(batch: pa.Table, name: str) -> np.ndarray:
    return np.asarray(batch.column(name).to_numpy(), dtype=np.float64)
