"""Step 4: many tract Parquet files into one, row group by row group (never a whole file in memory)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

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
                    diff = sorted(set(pf.schema_arrow.names) ^ set(schema.names))
                    raise InputError(
                        f"{path}: its columns differ from {paths[0].name}'s"
                        + (f" ({', '.join(diff[:5])})" if diff else " (same names, other types)")
                    )
                for i in range(pf.num_row_groups):
                    table = pf.read_row_group(i)
                    writer.write_table(table, row_group_size=max(1, table.num_rows))
                    rows += table.num_rows
                    groups += 1
                log.info("%s: %d row groups", path.name, pf.num_row_groups)
    return MergeResult(output, len(paths), rows, groups)
