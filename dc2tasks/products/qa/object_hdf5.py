"""An Object or trimmed Object product's HDF5 files read for its checks, group (patch) by group.

Apart from dc2tasks.products.qa.object_files because it needs the Object schema rules (pandas,
PyTables): a Parquet product's checks do not import them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from dc2tasks.catalogue import Product
from dc2tasks.products import dpdd, hdf5, object_schema
from dc2tasks.products.qa.columns import arrow_schema
from dc2tasks.products.qa.object_files import Batch, hdf5_unit_rows, id_column, used_columns


class Hdf5Objects:
    """An Object or trimmed Object product's HDF5 files (one group per patch)."""

    def __init__(self, product: Product, files: list[Path]) -> None:
        self.product, self.files = product, files
        self.opened = [object_schema.open_object_file(f) for f in files]  # scanned for pickles first
        self.schema = object_schema.schema_for(self.opened[0])
        self.ctx = self.schema.context()
        self.promised = tuple(dpdd.native_columns(self.ctx))
        self.used_columns = used_columns(product)
        self.used = tuple(dpdd.dpdd_names(self.ctx, self.used_columns))

    def arrow_schemas(self) -> dict[str, pa.Schema]:
        return {
            obj.path.name: arrow_schema({c: d for cols in obj.groups.values() for c, d in cols.items()})
            for obj in self.opened
        }

    def batches(self) -> Iterator[Batch]:
        for obj in self.opened:
            for key in obj.groups:
                frame = object_schema.read_group(obj, key, list(self.promised), self.schema)
                values = dpdd.compute(frame, self.ctx, self.used_columns)
                tract, patch = hdf5.tract_patch(key)
                n = len(frame)
                checked = {c: frame[c].to_numpy() for c in frame.columns}
                del frame
                yield Batch(
                    obj.path.name, np.full(n, tract), np.full(n, patch, dtype=object), values, checked
                )
                del values, checked

    def ids(self) -> Iterator[np.ndarray]:
        id_col = [c for c in self.used_columns if c.name == id_column(self.product)]
        natives = dpdd.native_columns(self.ctx, id_col)
        for obj in self.opened:
            for key in obj.groups:
                frame = object_schema.read_group(obj, key, natives, self.schema)
                yield dpdd.compute(frame, self.ctx, id_col)[id_col[0].name]

    def unit_rows(self) -> dict[tuple[int, str], int]:
        return hdf5_unit_rows(self.files)
