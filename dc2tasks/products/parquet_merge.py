"""Step 4: many tract Parquet files into one, row group by row group (never a whole file in memory)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class MergeResult:
    path: Path
    files: int
    rows: int
    row_groups: int


def merged_name(run: str) -> str:
    return CATALOGUE["merged_dpdd_object"].file_name(run=run)


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def schema_difference(this: pa.Schema, first: pa.Schema, first_name: str) -> str:
    """What a file's columns lack, add or type otherwise than the first file's. DPDD files made from
    the same schema never differ (absent bands are default-valued columns); files that do were made
    from other schemas (another band set or schema generation) and are remade, not merged."""
    lacks = [n for n in first.names if n not in this.names]
    extra = [n for n in this.names if n not in first.names]
    typed = [
        f"{n} ({this.field(n).type}, not {first.field(n).type})"
        for n in this.names
        if n in first.names and this.field(n).type != first.field(n).type
    ]
    parts = [f"lacks {_names(lacks)}"] if lacks else []
    parts += [f"has {_names(extra)} too"] if extra else []
    parts += [f"types {_names(typed)}"] if typed else []
    what = "; ".join(parts) or "same columns in another order"
    return f"its columns differ from {first_name}'s ({what}): remake it from the same schema as the others"


def merge_parquet(inputs: list[str | os.PathLike], output: str | os.PathLike) -> MergeResult:
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("merge-parquet: no input files given")
    output = Path(output)
    if output.resolve() in {p.resolve() for p in paths}:
        raise InputError(f"{output}: the output is also an input")
    try:
        first = pq.ParquetFile(paths[0])
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(f"{paths[0]}: not a readable Parquet file: {exc}") from None
    schema = first.schema_arrow
    rows = groups = 0
    with atomic_path(output) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
            for path in paths:
                try:
                    pf = pq.ParquetFile(path)
                except Exception as exc:
                    raise InputError(f"{path}: not a readable Parquet file: {exc}") from None
                if not pf.schema_arrow.equals(schema, check_metadata=False):
                    raise InputError(f"{path}: {schema_difference(pf.schema_arrow, schema, paths[0].name)}")
                for i in range(pf.num_row_groups):
                    table = pf.read_row_group(i)
                    writer.write_table(table, row_group_size=max(1, table.num_rows))
                    rows += table.num_rows
                    groups += 1
                log.info("%s: %d row groups", path.name, pf.num_row_groups)
    return MergeResult(output, len(paths), rows, groups)
