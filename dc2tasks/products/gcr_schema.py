"""The schema yaml GCRCatalogs reads beside a product's files, made from file metadata only: what
`DC2ObjectCatalog.generate_schema_yaml` would write (union of column dtypes over every group of every
file, `default: true` for bool `*_flag_bad`/`*_flag_noGoodPixels`), written before install while the
producer still owns the directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from dc2tasks.catalogue import Product
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError
from dc2tasks.products.gcr import catalog_of, is_parquet
from dc2tasks.products.object_schema import infer_schema, with_defaults


def matching_files(base_dir: Path, pattern: str) -> list[Path]:
    rx = re.compile(pattern)
    try:
        names = sorted(os.listdir(base_dir))
    except OSError as exc:
        raise InputError(f"{base_dir}: cannot list the product's files: {exc.strerror}") from None
    return [base_dir / f for f in names if rx.match(f)]


def hdf5_schema(files: list[Path]) -> dict[str, dict[str, object]]:
    return with_defaults(infer_schema(files).columns)


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
        return with_defaults(schema)
    return {}


def write_schema(base_dir: str | os.PathLike, product: Product, overwrite: bool = True) -> Path:
    """Write the product's schema yaml into its base_dir, atomically."""
    base_dir = Path(base_dir)
    files = matching_files(base_dir, product.file_pattern)
    if not files:
        raise InputError(f"{base_dir}: no file matches {product.file_pattern!r} for {product.name}")
    schema = parquet_schema(files) if is_parquet(product) else hdf5_schema(files)
    target = base_dir / (catalog_of(product).schema_filename or "schema.yaml")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: exists; pass overwrite to replace it")
    with atomic_path(target) as tmp:
        tmp.write_text(yaml.dump(schema))
    return target
