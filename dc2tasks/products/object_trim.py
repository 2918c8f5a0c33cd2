"""Step 2: keep exactly the native columns the GCRCatalogs object reader needs.

The list comes from the DPDD table (dc2tasks.products.dpdd), for the schema generation and bands
detected in the file the way the reader detects them, so the trimmed file serves every DPDD column
and nothing else.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dc2tasks.products import dpdd, hdf5, hdf5_safety
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError
from dc2tasks.products.repo import sort_bands
from dc2tasks.products.schema import detect_schema_generation

log = logging.getLogger(__name__)

BAND_MAG = re.compile(r"^(.)_mag$")


def context_for(columns: list[str], pixel_scale: float = 0.2) -> dpdd.Context:
    """Generation and bands as GCRCatalogs detects them: bands from `<b>_mag` column names."""
    bands = sort_bands({m.group(1) for c in columns if (m := BAND_MAG.match(c))})
    return dpdd.Context(detect_schema_generation(columns), tuple(bands), pixel_scale)


@dataclass
class TrimResult:
    source: Path
    path: Path
    groups: int
    rows: int
    columns: int


def trimmed_name(source: Path) -> str:
    return f"trim_{source.name}"


def trim_file(source: str | os.PathLike, output_dir: str | os.PathLike) -> TrimResult:
    source = Path(source)
    hdf5_safety.scan_file(source)  # before PyTables reads it: another step's (or account's) file
    keys = hdf5.group_keys(source)
    if not keys:
        raise InputError(f"{source}: no object groups (coadd_<tract>_<xy>) in the file")
    target = Path(output_dir) / trimmed_name(source)
    rows = 0
    ncols = 0
    with atomic_path(target) as tmp, pd.HDFStore(tmp, mode="w") as store:
        for key in keys:
            ctx = context_for(hdf5.all_columns(source, key))
            wanted = dpdd.native_columns(ctx)
            frame = hdf5.read_columns(source, key, wanted)
            store.put(key, frame, format="fixed")
            rows += len(frame)
            ncols = frame.shape[1]
            log.info(
                "%s %s: kept %d of the columns (%s, bands %s)",
                source.name,
                key,
                ncols,
                ctx.generation.name,
                "".join(ctx.bands),
            )
    return TrimResult(source, target, len(keys), rows, ncols)
