"""Step 2: keep exactly the native columns the GCRCatalogs object reader needs.

The list comes from the DPDD table (dc2tasks.products.dpdd), for the schema generation and bands of
the files' schema (dc2tasks.products.object_schema: the yaml beside them, or inferred from them as
GCRCatalogs infers it), so the trimmed file serves every DPDD column and nothing else. A column a
group lacks is written with the schema's default: every trimmed file of a product has the same
columns, whatever band or flag its input lacked.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dc2tasks.products import dpdd, object_schema
from dc2tasks.products.atomic import atomic_path

log = logging.getLogger(__name__)


@dataclass
class TrimResult:
    source: Path
    path: Path
    groups: int
    rows: int
    columns: int


def trimmed_name(source: Path) -> str:
    return f"trim_{source.name}"


def trim_file(
    source: str | os.PathLike, output_dir: str | os.PathLike, schema_file: str | os.PathLike | None = None
) -> TrimResult:
    """Trim one file; `schema_file` overrides the schema yaml beside it (see object_schema)."""
    obj = object_schema.open_object_file(source)
    source, keys = obj.path, list(obj.groups)
    schema = object_schema.schema_for(obj, schema_file)
    ctx = schema.context()
    wanted = dpdd.native_columns(ctx)
    target = Path(output_dir) / trimmed_name(source)
    object_schema.forget_schema(target)
    rows = 0
    ncols = 0
    with atomic_path(target) as tmp, pd.HDFStore(tmp, mode="w") as store:
        for key in keys:
            frame = object_schema.read_group(obj, key, wanted, schema)
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
