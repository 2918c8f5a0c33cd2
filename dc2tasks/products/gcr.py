"""GCRCatalogs catalog configs for what we write (the schema yaml beside the files: gcr_schema).

A config is the contract with the collaboration's reader: `subclass_name`, `base_dir`,
`filename_pattern`, `schema_filename`, `pixel_scale`. Pure functions of the catalogue and the run,
light to import: the DAG renders configs while Airflow parses it.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from dc2tasks.catalogue import CATALOGUE, Catalog, Product
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError

# arcsec per coadd pixel written into a config when the run names none (the DC2 coadds from Run 1.2i
# on; Run 1.1p and 1.2p v3 use 0.185 and say so in their run files)
DEFAULT_PIXEL_SCALE = 0.2


PRODUCTS: dict[str, Product] = CATALOGUE.with_catalog()
"""The products a GCRCatalogs catalog serves, by name (`dc2 gcr-config --product`)."""


def catalog_of(product: Product) -> Catalog:
    if product.catalog is None:
        raise InputError(f"{product.name}: no GCRCatalogs catalog serves this product")
    return product.catalog


def is_parquet(product: Product) -> bool:
    return product.files.endswith(".parquet")


def catalog_config(
    product: Product, base_dir: str, run: str, pixel_scale: float | None, creators: str = "dc2-production"
) -> dict[str, object]:
    catalog = catalog_of(product)
    config: dict[str, object] = {
        "subclass_name": catalog.reader,
        "base_dir": str(base_dir),
        "filename_pattern": product.file_pattern,
        "description": f"DC2 {run}: {catalog.description}",
        "creators": [creators],
        "include_in_default_catalog_list": False,
    }
    if pixel_scale is not None:
        config["pixel_scale"] = float(pixel_scale)
    if catalog.schema_filename and not is_parquet(product):
        config["schema_filename"] = catalog.schema_filename
    if catalog.is_dpdd:
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
