"""GCRCatalogs catalog configs and schema yaml for what we write.

A config is the contract with the collaboration's reader: `subclass_name`, `base_dir`,
`filename_pattern`, `schema_filename`, `pixel_scale`. The schema yaml is what
`DC2ObjectCatalog.generate_schema_yaml` would write (union of column dtypes over every group of
every file, `default: true` for bool `*_flag_bad`/`*_flag_noGoodPixels`), made from file metadata
only, and written before install while the producer still owns the directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from dc2tasks.products import hdf5, hdf5_safety
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError

# arcsec per coadd pixel written into a config when the run names none (the DC2 coadds from Run 1.2i
# on; Run 1.1p and 1.2p v3 use 0.185 and say so in their run files)
DEFAULT_PIXEL_SCALE = 0.2


@dataclass(frozen=True)
class Product:
    """One catalog product as GCRCatalogs serves it."""

    key: str  # our name for the product
    subclass_name: str
    filename_pattern: str
    schema_filename: str | None
    is_dpdd: bool = False
    description: str = ""


OBJECT_PRODUCTS = {
    "object": Product(
        "object",
        "dc2_object.DC2ObjectCatalog",
        r"object_tract_\d+\.hdf5$",
        "schema.yaml",
        description="Object catalog, all columns of the ref and forced tables",
    ),
    "trim_object": Product(
        "trim_object",
        "dc2_object.DC2ObjectCatalog",
        r"trim_object_tract_\d+\.hdf5$",
        "trim_schema.yaml",
        description="Object catalog, the columns the DPDD quantities need",
    ),
    "dpdd_object": Product(
        "dpdd_object",
        "dc2_object.DC2ObjectParquetCatalog",
        r"dpdd_object_tract_\d+\.parquet$",
        "dpdd_schema.yaml",
        is_dpdd=True,
        description="Object catalog, DPDD columns, one Parquet file per tract",
    ),
}


def _visit_products() -> dict[str, Product]:
    from dc2tasks.products.dia_object import FILE_PATTERN as DIA_OBJECT_PATTERN
    from dc2tasks.products.visit_tables import VISIT_TABLES

    out = {
        key: Product(key, t.gcr_subclass, t.file_pattern, "schema.yaml", description=t.description)
        for key, t in VISIT_TABLES.items()
    }
    out["dia_object"] = Product(
        "dia_object",
        "dc2_dia_object.DC2DiaObjectCatalog",
        DIA_OBJECT_PATTERN,
        "schema.yaml",
        description="DIAObject catalog with per-band light-curve statistics, one Parquet file per tract",
    )
    return out


VISIT_PRODUCTS = _visit_products()
PRODUCTS = OBJECT_PRODUCTS | VISIT_PRODUCTS


def catalog_name(run: str, product: Product) -> str:
    """`dc2_object_<run>` for the trimmed catalog (the DPDD entry point), suffixes for the other Object
    products; `dc2_<product>_<run>` for the others (dc2_source_run1.2i, as the 2019 configs)."""
    run = re.sub(r"[^A-Za-z0-9_.]", "_", run).lower()
    if product.key not in OBJECT_PRODUCTS:
        return f"dc2_{product.key}_{run}"
    suffix = {"object": "_all_columns", "trim_object": "", "dpdd_object": "_dpdd"}[product.key]
    return f"dc2_object_{run}{suffix}"


def is_parquet(product: Product) -> bool:
    return product.filename_pattern.endswith(r"\.parquet$")


def matching_files(base_dir: Path, pattern: str) -> list[Path]:
    rx = re.compile(pattern)
    return [base_dir / f for f in sorted(os.listdir(base_dir)) if rx.match(f)]


def hdf5_schema(files: list[Path]) -> dict[str, dict[str, object]]:
    schema: dict[str, dict[str, object]] = {}
    for f in files:
        hdf5_safety.scan_file(f)  # before PyTables reads its attributes
        schema.update(hdf5.group_schema(f))
    return _with_defaults(schema)


def parquet_schema(files: list[Path]) -> dict[str, dict[str, object]]:
    """numpy dtype codes (`<f8`, `|b1`, `|O`) of the first non-empty file, as the 2019 readers did."""
    for f in files:
        pf = pq.ParquetFile(f)
        if pf.metadata.num_rows == 0:
            continue
        schema = {}
        for f in pf.schema_arrow:
            dtype = np.dtype(f.type.to_pandas_dtype())
            schema[f.name] = {"dtype": "|O" if dtype.kind == "O" else dtype.str}
        return _with_defaults(schema)
    return {}


def _with_defaults(schema: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    for col, this in schema.items():
        if str(this["dtype"]) in ("bool", "|b1") and (
            col.endswith("_flag_bad") or col.endswith("_flag_noGoodPixels")
        ):
            this["default"] = True
    return schema


def write_schema(base_dir: str | os.PathLike, product: Product, overwrite: bool = True) -> Path:
    """Write the product's schema yaml into its base_dir, atomically."""
    base_dir = Path(base_dir)
    files = matching_files(base_dir, product.filename_pattern)
    if not files:
        raise InputError(f"{base_dir}: no file matches {product.filename_pattern!r} for {product.key}")
    schema = parquet_schema(files) if is_parquet(product) else hdf5_schema(files)
    target = base_dir / (product.schema_filename or "schema.yaml")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: exists; pass overwrite to replace it")
    with atomic_path(target) as tmp:
        tmp.write_text(yaml.dump(schema))
    return target


def catalog_config(
    product: Product, base_dir: str, run: str, pixel_scale: float | None, creators: str = "dc2-production"
) -> dict[str, object]:
    config: dict[str, object] = {
        "subclass_name": product.subclass_name,
        "base_dir": str(base_dir),
        "filename_pattern": product.filename_pattern,
        "description": f"DC2 {run}: {product.description}",
        "creators": [creators],
        "include_in_default_catalog_list": False,
    }
    if pixel_scale is not None:
        config["pixel_scale"] = float(pixel_scale)
    if product.schema_filename and not is_parquet(product):
        config["schema_filename"] = product.schema_filename
    if product.is_dpdd:
        config["is_dpdd"] = True
    return config


def write_config(config_dir: str | os.PathLike, name: str, config: dict[str, object]) -> Path:
    target = Path(config_dir) / f"{name}.yaml"
    with atomic_path(target) as tmp:
        tmp.write_text(
            "# Written by dc2tasks; `base_dir` is where the files are (^/ = relative to the GCR site root)\n"
            + yaml.safe_dump(config, sort_keys=False)
        )
    return target
