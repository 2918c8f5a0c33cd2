"""The column schema of Object HDF5 files, with GCRCatalogs' rule for a column a file lacks.

GCRCatalogs' `DC2ObjectCatalog` reads a schema yaml beside the files (`{column: {dtype, default}}`)
or, without one, the union of every group's column dtypes over the files it serves. A column a
group lacks is then served as a constant: the schema's `default`, else NaN for floats, -1 for
integers, False for booleans ('' for strings), except that a missing band's `*_flag_bad` and
`*_flag_noGoodPixels` flags are True so a reader can tell "not measured" from "measured, fine".
The bands (`<b>_mag` columns) and the dm_schema_version come from that schema, not from the group.

Everything here that reads Object HDF5 (trim, DPDD, the schema yaml writer) takes its schema from
this module, so a product's files all have the same columns whatever each input lacked.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dc2tasks.catalogue import CATALOGUE, OBJECT_READER, Product
from dc2tasks.products import dpdd, hdf5, hdf5_safety
from dc2tasks.products.errors import InputError
from dc2tasks.products.repo import sort_bands
from dc2tasks.products.schema import detect_schema_generation

log = logging.getLogger(__name__)

DEFAULT_SCHEMA_FILENAME = "schema.yaml"  # GCRCatalogs' SCHEMA_FILENAME, for files no product names
BAND_MAG = re.compile(r"^(.)_mag$")

ColumnSchema = dict[str, dict[str, object]]


def is_true_by_default(name: str, dtype: object) -> bool:
    """A missing band's bad-pixel flags: True, so its rows are never taken for measured ones."""
    return np.dtype(dtype).kind == "b" and (name.endswith("_flag_bad") or name.endswith("_flag_noGoodPixels"))


def default_value(name: str, dtype: object) -> object:
    """GCRCatalogs' value for a column a group lacks and its schema gives no default for."""
    kind = np.dtype(dtype).kind
    if kind == "b":
        return is_true_by_default(name, dtype)
    if kind in "iu":
        return -1
    if kind == "U" or kind == "O":
        return ""
    return np.nan


def with_defaults(schema: ColumnSchema) -> ColumnSchema:
    """The `default: true` entries GCRCatalogs' `generate_schema_yaml` writes (and no others)."""
    for col, this in schema.items():
        if is_true_by_default(col, this["dtype"]):
            this["default"] = True
    return schema


@dataclass(frozen=True)
class ObjectSchema:
    """Dtype and default of every column a product's files may hold, and where that came from."""

    columns: ColumnSchema
    origin: str  # the yaml's path, or "inferred from <files>"

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(sort_bands({m.group(1) for c in self.columns if (m := BAND_MAG.match(c))}))

    def context(self, pixel_scale: float = 0.2) -> dpdd.Context:
        return dpdd.Context(detect_schema_generation(self.columns), self.bands, pixel_scale)

    def constant(self, name: str, nrows: int, source: Path, key: str) -> np.ndarray:
        this = self.columns.get(name)
        if this is None:
            raise InputError(
                f"{source}: group {key} lacks column {name}, and the schema ({self.origin}) has no "
                "entry for it"
            )
        dtype = np.dtype(this["dtype"])
        value = this["default"] if "default" in this else default_value(name, dtype)
        return np.full(nrows, value, dtype=dtype)


def _object_product(source: Path) -> Product | None:
    """The Object HDF5 product (served by GCRCatalogs' object reader) whose files this one is."""
    for product in CATALOGUE:
        catalog = product.catalog
        if catalog is None or catalog.reader != OBJECT_READER:
            continue
        if re.match(product.file_pattern, source.name):
            return product
    return None


def product_schema_filename(source: Path) -> str:
    """The schema yaml GCRCatalogs' config for this file's product names (`schema.yaml` for a full
    Object file, `trim_schema.yaml` for a trimmed one)."""
    product = _object_product(source)
    return (product and product.catalog.schema_filename) or DEFAULT_SCHEMA_FILENAME


def forget_schema(target: Path) -> None:
    """Remove the schema yaml beside a product file a step is rewriting: made from the old files, it
    would give the next step their bands; without it the next step infers the new files' schema."""
    product = _object_product(target)
    if product is not None and product.catalog.schema_filename:
        (target.parent / product.catalog.schema_filename).unlink(missing_ok=True)


def siblings(source: Path) -> list[Path]:
    """The files GCRCatalogs would serve with this one: its product's files in its directory."""
    product = _object_product(source)
    if product is None:
        return [source]
    rx = re.compile(product.file_pattern)
    return sorted(p for p in source.parent.iterdir() if rx.match(p.name))


def load_schema(path: str | os.PathLike) -> ObjectSchema:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the schema yaml: {exc.strerror}") from None
    try:
        columns = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not a schema yaml: {exc}") from None
    if not isinstance(columns, dict) or not all(
        isinstance(v, dict) and "dtype" in v for v in columns.values()
    ):
        raise InputError(f"{path}: not a schema yaml ({{column: {{dtype: ..., default: ...}}}} expected)")
    try:
        for this in columns.values():
            np.dtype(this["dtype"])
    except TypeError as exc:
        raise InputError(f"{path}: {exc}") from None
    return ObjectSchema(columns, str(path))


@dataclass(frozen=True)
class ObjectFile:
    """An Object HDF5 file as the steps read it: scanned for pickles, its groups' columns known."""

    path: Path
    groups: dict[str, dict[str, str]]  # {group: {column: dtype name}}, in file order


def open_object_file(source: str | os.PathLike) -> ObjectFile:
    source = Path(source)
    hdf5_safety.scan_file(source)  # before PyTables reads it: another step's (or account's) file
    groups = hdf5.group_schemas(source)
    if not groups:
        raise InputError(f"{source}: no object groups (coadd_<tract>_<xy>) in the file")
    return ObjectFile(source, groups)


def infer_schema(files: Iterable[Path], known: ObjectFile | None = None) -> ObjectSchema:
    """The union of every group's column dtypes over the files, as GCRCatalogs infers it (a column
    in several groups: the last one's dtype). `known`: the file a step reads, already opened; the
    others are the product's other files, and one that cannot be read is skipped with a warning,
    as GCRCatalogs skips it (its own step reports it), rather than failing this file's step."""
    files = list(files)
    columns: ColumnSchema = {}
    used = []
    for f in files:
        if known is not None and f.name == known.path.name and f.parent == known.path.parent:
            groups = known.groups
        else:
            try:
                hdf5_safety.scan_file(f)  # before PyTables reads its attributes
                groups = hdf5.group_schemas(f)
            except InputError as exc:
                if known is None:
                    raise
                log.warning("schema of %s: skipped %s (%s)", known.path.name, f.name, exc)
                continue
        used.append(f.name)
        for group in groups.values():
            columns.update({c: {"dtype": d} for c, d in group.items()})
    names = ", ".join(used[:3]) + (f" and {len(used) - 3} more" if len(used) > 3 else "")
    return ObjectSchema(columns, f"inferred from {names}")


def schema_for(obj: ObjectFile, schema_file: str | os.PathLike | None = None) -> ObjectSchema:
    """The schema named, else the one beside the file, else inferred from its product's files."""
    if schema_file is not None:
        return load_schema(schema_file)
    beside = obj.path.parent / product_schema_filename(obj.path)
    if beside.is_file():
        return load_schema(beside)
    return infer_schema(siblings(obj.path), known=obj)


def read_group(obj: ObjectFile, key: str, wanted: list[str], schema: ObjectSchema) -> pd.DataFrame:
    """The wanted columns of one group, a column it lacks filled by the schema's rule."""
    source, present = obj.path, obj.groups[key]
    if all(c in present for c in wanted):
        return hdf5.read_columns(source, key, wanted)
    frame = hdf5.read_columns(source, key, [c for c in wanted if c in present])
    nrows = hdf5.group_rows(source, key) if frame.shape[1] == 0 else len(frame)
    absent = [c for c in wanted if c not in present]
    log.info(
        "%s %s: %d column(s) absent (%s), served by the schema's rule",
        source.name,
        key,
        len(absent),
        ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else ""),
    )
    return pd.DataFrame(
        {c: frame[c].to_numpy() if c in present else schema.constant(c, nrows, source, key) for c in wanted}
    )
