"""The default install check: every GCRCatalogs config of the product loads the staged files.

Why load for real: a config whose pattern matches nothing, a schema yaml that does not fit the
files, or a file the reader cannot open would otherwise be found by the first user after the
switch. The configs are the producer's (`catalog_configs/*.yaml` in the product); `base_dir` is
pointed at the staging directory, the reader lists the files, and one chunk of one quantity is read.

Before GCRCatalogs (pandas, PyTables) opens anything, every HDF5 file of the staged copy is scanned
with h5py (dc2tasks.products.hdf5_safety): PyTables unpickles some attribute values, so a producer's
file could otherwise run code as the installing account, and then as every reader. The staged copy
is the one to scan: only the installing account can change it between the scan and the load.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dc2tasks.install.manifest import CATALOG_CONFIGS
from dc2tasks.products import hdf5_safety
from dc2tasks.products.errors import InputError

Check = Callable[[Path], list[str]]
"""A check gets the staged directory, returns what it checked (for the report), raises on failure."""


def catalog_config_files(product_dir: Path) -> list[Path]:
    folder = product_dir / CATALOG_CONFIGS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))


def read_catalog_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the catalog config: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("subclass_name"), str):
        raise InputError(f"{path}: not a GCRCatalogs catalog config (no subclass_name)")
    if "alias" in config or "based_on" in config:
        raise InputError(f"{path}: alias/based_on configs resolve through the network; install a full config")
    return config


def load_with_gcr(config: dict[str, Any], base_dir: Path) -> Any:
    import GCRCatalogs
    from GCRCatalogs import ConfigSource

    ConfigSource.set_config_source(dr=False)  # offline: never ask the data registry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GCRCatalogs.load_catalog_from_config_dict({**config, "base_dir": str(base_dir)})


def hdf5_scan(staged_dir: Path) -> list[str]:
    """Scan every HDF5 file of `staged_dir`, whatever its name (the configs' file patterns are the
    producer's); raises hdf5_safety.UnsafeHDF5Error, an InputError, naming file, node and attribute."""
    return [hdf5_safety.summary(hdf5_safety.scan_tree(staged_dir))]


def gcr_check(staged_dir: Path) -> list[str]:
    """Scan the HDF5 files, then load every catalog config against `staged_dir` and read one chunk."""
    configs = catalog_config_files(staged_dir)
    if not configs:
        raise InputError(
            f"{staged_dir}: no GCRCatalogs config in {CATALOG_CONFIGS}/ "
            "(put the product's catalog configs there before writing the manifest)"
        )
    checked = hdf5_scan(staged_dir)
    for path in configs:
        config = read_catalog_config(path)
        try:
            catalog = load_with_gcr(config, staged_dir)
            quantities = sorted(catalog.list_all_quantities())
            if not quantities:
                raise InputError("the catalog has no quantities")
            first = next(iter(catalog.get_quantities(quantities[:1], return_iterator=True)), None)
            if first is None:
                raise InputError("the catalog has no data")
        except InputError as exc:
            raise InputError(f"{path.name}: GCRCatalogs check failed: {exc}") from None
        except Exception as exc:  # any reader failure stops the install; say which config and why
            raise InputError(
                f"{path.name}: GCRCatalogs cannot load it: {type(exc).__name__}: {exc}"
            ) from None
        checked.append(f"{path.stem}: {len(quantities)} quantities, loads")
    return checked
