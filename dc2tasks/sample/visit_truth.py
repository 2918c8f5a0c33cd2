"""Truth of the visit-level datasets: what the generator put in each row, for tests of the products.

One Parquet file per visit and kind (source, forced, dia_source) and one
per tract for the DIA objects, under `<root>/truth/`, each written under a temporary name and renamed
into place. `psf_flux_nJy` is the written instrumental flux turned back into nJy with that
detector's F0 (the calexp's, or the difference image's for DIA sources): exactly what a correct
reader returns. `objectId` / `diaObjectId` are -1 for spurious sources; `is_primary` says whether a
source's object is in the Object table (non-primary objects, e.g. deblend parents, give sources too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from dc2tasks.products.qa.references import TRUTH_DIR, VISIT_TRUTH_FILES
from dc2tasks.sample.truth import TruthWriter

_I8, _F8, _STR, _BOOL = pa.int64(), pa.float64(), pa.string(), pa.bool_()

SOURCE_SCHEMA = pa.schema(
    [
        ("id", _I8),
        ("visit", _I8),
        ("detector", _I8),
        ("filter", _STR),
        ("objectId", _I8),
        ("ra", _F8),
        ("dec", _F8),
        ("true_ra", _F8),
        ("true_dec", _F8),
        ("psf_flux_nJy", _F8),
        ("psf_flux_err_nJy", _F8),
        ("true_flux_nJy", _F8),
        ("fluxmag0", _F8),
        ("mjd", _F8),
        ("is_primary", _BOOL),
    ]
)
FORCED_SCHEMA = pa.schema(
    [
        ("id", _I8),
        ("visit", _I8),
        ("detector", _I8),
        ("filter", _STR),
        ("objectId", _I8),
        ("psf_flux_nJy", _F8),
        ("psf_flux_err_nJy", _F8),
        ("fluxmag0", _F8),
    ]
)
DIA_SOURCE_SCHEMA = pa.schema(
    [
        ("id", _I8),
        ("visit", _I8),
        ("detector", _I8),
        ("filter", _STR),
        ("diaObjectId", _I8),
        ("objectId", _I8),
        ("ra", _F8),
        ("dec", _F8),
        ("psf_flux_nJy", _F8),
        ("psf_flux_err_nJy", _F8),
        ("fluxmag0", _F8),
        ("mjd", _F8),
    ]
)
DIA_OBJECT_SCHEMA = pa.schema(
    [
        ("diaObjectId", _I8),
        ("objectId", _I8),
        ("patch", _STR),
        ("ra", _F8),
        ("dec", _F8),
        ("nobs", _I8),
    ]
)
KIND_SCHEMAS = {"source": SOURCE_SCHEMA, "forced": FORCED_SCHEMA, "dia_source": DIA_SOURCE_SCHEMA}
KIND_PRODUCT = {"source": "source", "forced": "forced_source", "dia_source": "dia_source"}
"""The visit product whose QA reads each kind's truth (by that product's file name)."""


def visit_truth_path(root: Path, kind: str, visit: int) -> Path:
    return root / TRUTH_DIR / VISIT_TRUTH_FILES[KIND_PRODUCT[kind]].format(visit=visit)


def dia_object_truth_path(root: Path, tract: int) -> Path:
    return root / TRUTH_DIR / f"dia_object_truth_tract_{tract}.parquet"


def truth_table(schema: pa.Schema, columns: dict[str, np.ndarray]) -> pa.Table:
    """A table with exactly `schema`'s columns and types, also when it has no rows."""
    return pa.table([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)


class VisitTruthWriters:
    """The truth files of one visit: rows gathered detector by detector (a few numbers per source),
    each file written once, under a temporary name, when the visit is done."""

    def __init__(self, root: Path, visit: int, kinds: tuple[str, ...]) -> None:
        self.paths = {k: visit_truth_path(root, k, visit) for k in kinds}
        self.parts: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in kinds}

    def write(self, kind: str, columns: dict[str, np.ndarray]) -> None:
        if kind in self.parts:
            self.parts[kind].append(columns)

    def close(self) -> dict[str, tuple[Path, int]]:
        """(path, bytes) of each file written."""
        out = {}
        for kind, parts in self.parts.items():
            if not parts:
                continue
            schema = KIND_SCHEMAS[kind]
            columns = {f.name: np.concatenate([p[f.name] for p in parts]) for f in schema}
            writer = TruthWriter(self.paths[kind])
            try:
                writer.write(truth_table(schema, columns))
            except BaseException as exc:
                writer.abort(exc)
                raise
            out[kind] = (writer.path, writer.close())
        return out
