"""An Object product's files read for its checks: patch by patch, in DPDD names, never whole.

Parquet files (DPDD, merged DPDD) are read row group by row group; HDF5 files (Object, trimmed
Object) group by group (one group per patch), only the native columns the DPDD table needs, and
the few DPDD values the checks use (id, position, magnitudes) computed from them with that table.
Which columns a file promises comes from dc2tasks.products.dpdd: the DPDD names for Parquet, their
native columns for HDF5.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from dc2tasks.catalogue import CATALOGUE, Product
from dc2tasks.products import dpdd, hdf5, hdf5_safety
from dc2tasks.products.errors import InputError
from dc2tasks.products.qa.columns import (
    iter_row_groups,
    parquet_schema,
    settled_by_statistics,
    values_of,
)
from dc2tasks.products.repo import sort_bands
from dc2tasks.products.schema import SchemaGeneration

MAG_UNIT = "mag(AB)"
MAGNITUDES = tuple(c for c in dpdd.OBJECT_COLUMNS if c.unit == MAG_UNIT and c.per_band)
"""Every calibrated magnitude the DPDD promises per band (PSF and CModel): the range check's."""
PSF_MAG = MAGNITUDES[0]
PSF_MAG_ERR = next(c for c in dpdd.OBJECT_COLUMNS if c.description == f"Error on {PSF_MAG.name}")
POSITION = ("ra", "dec")
UNIT_COLUMNS = dpdd.LOCATION_COLUMNS  # (tract, patch) of each DPDD row


def id_column(product: Product) -> str:
    """The id column of an Object product (a merged product's is its parts')."""
    for name in reversed(CATALOGUE.with_inputs(product.name)):
        catalog = CATALOGUE[name].catalog
        if catalog is not None:
            return catalog.id_column
    raise InputError(f"{product.name}: no catalog names its id column")


def used_columns(product: Product) -> tuple[dpdd.DpddColumn, ...]:
    """The DPDD columns the checks and plots read beyond the NaN check: id, position, magnitudes."""
    wanted = {id_column(product), *POSITION, PSF_MAG_ERR.name, *(c.name for c in MAGNITUDES)}
    return tuple(c for c in dpdd.OBJECT_COLUMNS if c.name in wanted)


@dataclass
class Batch:
    """One patch (or row group) of one file: DPDD values of the used columns, the columns whose
    NaN/constant facts are checked, and each row's (tract, patch)."""

    file: str
    tracts: np.ndarray
    patches: np.ndarray
    values: Mapping[str, np.ndarray]
    checked: Mapping[str, np.ndarray]


def product_files(product: Product, directory: Path) -> list[Path]:
    rx = re.compile(product.file_pattern)
    return (
        sorted(p for p in directory.iterdir() if p.is_file() and rx.match(p.name))
        if directory.is_dir()
        else []
    )


def file_unit(product: Product, path: Path) -> int | None:
    """The tract or visit in a per-tract or per-visit file's name (None for other products)."""
    if product.unit not in ("tract", "visit"):
        return None
    m = re.fullmatch(product.file_pattern.replace(r"\d+", r"(\d+)").rstrip("$"), path.name)
    return int(m.group(1)) if m else None


class ParquetObjects:
    """A DPDD product's Parquet files."""

    def __init__(self, product: Product, files: list[Path]) -> None:
        self.product, self.files = product, files
        self.schemas = {f.name: parquet_schema(f) for f in files}
        first = next(iter(self.schemas.values()))
        meta = first.metadata or {}
        bands = meta.get(b"dc2tasks.bands", b"").decode() or "".join(
            sort_bands({m.group(1) for n in first.names if (m := re.fullmatch(r"mag_(.)", n))})
        )
        self.ctx = dpdd.Context(
            SchemaGeneration(int(meta.get(b"dc2tasks.dm_schema_version", b"4"))), tuple(bands)
        )
        self.promised = tuple(dpdd.dpdd_names(self.ctx))
        self.used = tuple(dpdd.dpdd_names(self.ctx, used_columns(product)))

    def arrow_schemas(self) -> dict[str, pa.Schema]:
        return self.schemas

    def batches(self) -> Iterator[Batch]:
        """Row group by row group: the used columns, and those of the promised columns whose
        NaN/constant facts the statistics leave open (most are settled without a read)."""
        settled = settled_by_statistics(self.files, self.promised)
        checked = [c for c in self.promised if c not in settled]
        for f in self.files:
            for table in iter_row_groups(f, dict.fromkeys((*self.used, *UNIT_COLUMNS, *checked))):
                values = {c: values_of(table[c]) for c in table.column_names}
                del table  # one row group in memory at a time: none held while the next is read
                yield Batch(
                    f.name,
                    values.get("tract", np.zeros(0)),
                    values.get("patch", np.zeros(0)),
                    values,
                    {c: values[c] for c in checked if c in values},
                )
                del values

    def ids(self) -> Iterator[np.ndarray]:
        key = id_column(self.product)
        for f in self.files:
            for table in iter_row_groups(f, [key]):
                yield values_of(table[key])

    def unit_rows(self) -> dict[tuple[int, str], int]:
        return parquet_unit_rows(self.files)


def parquet_unit_rows(files: list[Path]) -> dict[tuple[int, str], int]:
    """Rows per (tract, patch) of DPDD Parquet files, from those two columns only."""
    out: dict[tuple[int, str], int] = {}
    for f in files:
        for table in iter_row_groups(f, UNIT_COLUMNS):
            add_unit_counts(out, values_of(table["tract"]), values_of(table["patch"]))
    return out


def add_unit_counts(out: dict[tuple[int, str], int], tracts: np.ndarray, patches: np.ndarray) -> None:
    """Add a batch's rows per (tract, patch) to `out` (a batch is one patch, nearly always)."""
    if len(tracts) == 0:
        return
    if (tracts == tracts[0]).all() and (patches == patches[0]).all():
        key = (int(tracts[0]), str(patches[0]))
        out[key] = out.get(key, 0) + len(tracts)
        return
    pairs, counts = np.unique(
        np.stack([tracts.astype(str), patches.astype(str)], axis=1), axis=0, return_counts=True
    )
    for (t, p), n in zip(pairs.tolist(), counts.tolist(), strict=True):
        out[(int(t), p)] = out.get((int(t), p), 0) + n


def hdf5_unit_rows(files: list[Path]) -> dict[tuple[int, str], int]:
    """Rows per (tract, patch) of Object HDF5 files, from each group's index length only (each file
    scanned for pickles first: PyTables unpickles some attributes)."""
    for f in files:
        hdf5_safety.scan_file(f)
    return {hdf5.tract_patch(key): hdf5.group_rows(f, key) for f in files for key in hdf5.group_keys(f)}


def unit_rows_of(product: Product, directory: Path) -> dict[tuple[int, str], int] | None:
    """Rows per (tract, patch) of a product's files in a directory; None when it has none."""
    files = product_files(product, directory)
    if not files:
        return None
    return parquet_unit_rows(files) if files[0].suffix == ".parquet" else hdf5_unit_rows(files)
