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

from dc2tasks.products import hdf5
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError


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


def catalog_name(run: str, product: Product) -> str:
    """`dc2_object_<run>` for the trimmed catalog (the DPDD entry point), suffixes for the others."""
    run = re.sub(r"[^A-Za-z0-9_.]", "_", run).lower()
    suffix = {"object": "_all_columns", "trim_object": "", "dpdd_object": "_dpdd"}.get(
        product.key, f"_{product.key}"
    )
    return f"dc2_object_{run}{suffix}"


def matching_files(base_dir: Path, pattern: str) -> list[Path]:
    rx = re.compile(pattern)
    return [base_dir / f for f in sorted(os.listdir(base_dir)) if rx.match(f)]


def hdf5_schema(files: list[Path]) -> dict[str, dict[str, object]]:
    schema: dict[str, dict[str, object]] = {}
    for f in files:
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
    schema = parquet_schema(files) if product.is_dpdd else hdf5_schema(files)
    target = base_dir / (product.schema_filename or "schema.yaml")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: exists; pass overwrite to replace it")
    with atomic_path(target) as tmp:
        tmp.write_text(yaml.dump(schema))
    return target


def catalog_config(
    product: Product, base_dir: str, run: str, pixel_scale: float, creators: str = "dc2-production"
) -> dict[str, object]:
    config: dict[str, object] = {
        "subclass_name": product.subclass_name,
        "base_dir": str(base_dir),
        "filename_pattern": product.filename_pattern,
        "description": f"DC2 {run}: {product.description}",
        "creators": [creators],
        "pixel_scale": float(pixel_scale),
        "include_in_default_catalog_list": False,
    }
    if product.schema_filename and not product.is_dpdd:
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
