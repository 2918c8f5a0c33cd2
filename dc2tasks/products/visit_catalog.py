"""One detector's rows of a per-visit product: the catalog's own columns, calibrated.

Only the fields the product keeps are decoded (slot aliases resolved as afw does), then the columns
every visit product adds: the detector's identity, the calibration's F0 (`fluxmag0`, which the
GCRCatalogs readers use to turn counts into nJy) and the magnitudes computed with it, and the date.
"""

from __future__ import annotations

import logging

import numpy as np

from dc2tasks.products import afw
from dc2tasks.products.errors import InputError
from dc2tasks.products.schema import SchemaGeneration, detect_schema_generation
from dc2tasks.products.visit_detectors import DetectorFiles
from dc2tasks.products.visit_info import read_exposure_info
from dc2tasks.products.visit_tables import VisitTable

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]


def _aliases(records: afw.RawRecords) -> dict[str, str]:
    out = {}
    for card in records.header.all("ALIAS"):
        if isinstance(card, str) and ":" in card:
            alias, target = card.split(":", 1)
            out[alias] = target
    return out


def _field_names(records: afw.RawRecords) -> list[str]:
    names = [name for name, code, _, _ in records.layout if code != "X"]
    for flags, _, _ in records.flag_groups():
        names.extend(flags)
    return names


def read_detector(
    det: DetectorFiles, table: VisitTable, visit: int, generation: SchemaGeneration | None = None
) -> tuple[Columns, SchemaGeneration] | None:
    """The product's columns for one detector, or None when its catalog has no rows.

    `generation` pins the field names (all detectors of a visit must agree); by default it is
    detected from this catalog the way GCRCatalogs detects it.
    """
    parts: list[tuple[Columns, np.ndarray, np.ndarray]] = []
    gen = generation
    for path in det.catalogs:
        records = afw.RawRecords.open(path)
        if len(records) == 0:
            log.info("visit %d detector %d: %s has no rows; skipped", visit, det.number, path)
            continue
        fields = _field_names(records)
        this_gen = detect_schema_generation(fields)
        if gen is None:
            gen = this_gen
        elif this_gen.flux_err != gen.flux_err:
            raise InputError(
                f"{path}: field names of schema generation {this_gen.name}, but the visit's other "
                f"detectors use {gen.name}"
            )
        parts.append(_catalog_columns(records, table, gen, fields))
    if not parts or gen is None:
        return None
    native = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    n = len(native["id"])

    info = read_exposure_info(det.exposure, det.calexp)
    calib = info.calibration
    mag, mag_err = calib.magnitude(
        np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
    )
    added: Columns = {
        "visit": np.full(n, visit, dtype=np.int64),
        "detector": np.full(n, det.number, dtype=np.int64),
        "filter": np.full(n, det.band, dtype=object),
        "mjd": np.full(n, info.mjd, dtype=np.float64),
        "fluxmag0": np.full(n, calib.fluxmag0, dtype=np.float64),
        "mag": mag,
        "mag_err": mag_err,
    }
    return native | added, gen


def _catalog_columns(
    records: afw.RawRecords, table: VisitTable, gen: SchemaGeneration, fields: list[str]
) -> tuple[Columns, np.ndarray, np.ndarray]:
    """The kept columns, and the counts and errors `mag` is computed from."""
    aliases = _aliases(records)
    resolver = afw.AfwTable(records.path, dict.fromkeys(fields), aliases)  # for resolve() only
    wanted = table.native(gen)
    mag_fields = [f"{table.mag_flux}_{gen.flux}", f"{table.mag_flux}_{gen.flux_err}"]
    actual = {name: resolver.resolve(name) for name in [*wanted, *mag_fields]}
    missing = [name for name, field in actual.items() if field not in resolver.columns]
    if missing:
        raise InputError(
            f"{records.path}: no column(s) {', '.join(missing)} (schema generation {gen.name}); "
            f"a {table.dataset} catalog must have them"
        )
    decoded = records.to_table(set(actual.values())).columns
    out: Columns = {name: decoded[actual[name]] for name in wanted}
    return out, decoded[actual[mag_fields[0]]], decoded[actual[mag_fields[1]]]
