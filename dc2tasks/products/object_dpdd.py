"""Step 3: the DPDD Object table of a tract as Parquet, one row group per patch.

Computed from an object HDF5 file (trimmed or not) with the declarative DPDD table, plus `tract` and
`patch`. The bands and schema generation are the schema's (dc2tasks.products.object_schema), a
column a group lacks takes the schema's default, as GCRCatalogs serves it: every DPDD file of a
product has the same columns and types, whatever band or flag its input lacked. Unlike the old
converter this writes a fresh file every time (no append: re-running never duplicates rows) and
honours the tract it is given.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dc2tasks import __version__
from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products import dpdd, hdf5, object_schema
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError

log = logging.getLogger(__name__)

TRACT_IN_NAME = re.compile(r"tract_(\d+)\.hdf5$")


def dpdd_file_name(tract: int) -> str:
    return CATALOGUE["dpdd_object"].file_name(tract=tract)


@dataclass
class DpddResult:
    path: Path
    tract: int
    rows: int
    row_groups: int
    columns: list[str]


def patch_table(
    obj: object_schema.ObjectFile, key: str, schema: object_schema.ObjectSchema, ctx: dpdd.Context
) -> pa.Table:
    native = object_schema.read_group(obj, key, dpdd.native_columns(ctx), schema)
    values = dpdd.compute(native, ctx)
    tract, patch = hdf5.tract_patch(key)
    n = len(native)
    values["tract"] = np.full(n, tract, dtype=np.int64)
    values["patch"] = np.full(n, patch, dtype=object)
    return pa.table(values)


def dpdd_tract(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    pixel_scale: float = 0.2,
    schema_file: str | os.PathLike | None = None,
) -> DpddResult:
    """One tract's DPDD Parquet; `schema_file` overrides the schema yaml beside the source."""
    obj = object_schema.open_object_file(source)
    source, keys = obj.path, list(obj.groups)
    tracts = {hdf5.tract_patch(k)[0] for k in keys}
    if len(tracts) != 1:
        raise InputError(
            f"{source}: groups of several tracts ({sorted(tracts)}); expected one tract per file"
        )
    tract = tracts.pop()
    schema = object_schema.schema_for(obj, schema_file)
    ctx = schema.context(pixel_scale)
    target = Path(output_dir) / dpdd_file_name(tract)
    rows = 0
    writer = None
    arrow_schema = None
    with atomic_path(target) as tmp:
        try:
            for key in keys:
                table = patch_table(obj, key, schema, ctx)
                if writer is None:
                    arrow_schema = table.schema.with_metadata(
                        {
                            "dc2tasks.version": __version__,
                            "dc2tasks.source": source.name,
                            "dc2tasks.pixel_scale": repr(pixel_scale),
                            "dc2tasks.dm_schema_version": str(ctx.generation.version),
                            "dc2tasks.bands": "".join(ctx.bands),
                        }
                    )
                    writer = pq.ParquetWriter(tmp, arrow_schema, compression="snappy")
                writer.write_table(table.cast(arrow_schema), row_group_size=max(1, table.num_rows))
                rows += table.num_rows
                log.info("tract %d %s: %d rows", tract, key, table.num_rows)
        finally:
            if writer is not None:
                writer.close()
    return DpddResult(target, tract, rows, len(keys), list(arrow_schema.names))
