"""Per-column facts gathered batch by batch, and the one-schema rule across a product's files.

`ColumnFacts` keeps, per column, the rows seen, the finite values and the smallest and largest
value: enough to say a column is all NaN (no finite value in any row) or constant (every finite
value the same), without keeping a value. Floats are checked for both; integer and boolean columns
(flags, counts) may be constant in a correct catalog (no saturated object in a small field), so
they are not. Used by every product's checks.

`settled_by_statistics` answers both questions for most columns of a Parquet product from its row
groups' statistics alone (no value read): Arrow writes a float column's min and max over its
values that are not NaN, and omits them when every value is NaN or null, so two different finite
values among them prove a column neither all NaN nor constant. Statistics never prove a column
bad: a column they cannot settle is read and counted as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dc2tasks.products.errors import InputError
from dc2tasks.products.parquet_merge import schema_difference


@dataclass
class ColumnFact:
    rows: int = 0
    finite: int = 0
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, values: np.ndarray) -> None:
        self.rows += len(values)
        finite = values[np.isfinite(values)]
        if finite.size:
            self.finite += int(finite.size)
            self.low = min(self.low, float(finite.min()))
            self.high = max(self.high, float(finite.max()))

    @property
    def all_nan(self) -> bool:
        return self.rows > 0 and self.finite == 0

    @property
    def constant(self) -> bool:
        return self.finite > 1 and self.low == self.high


@dataclass
class ColumnFacts:
    """Facts of float columns over every batch added: of those among `names` (`add`), or of any
    one given (`add_column`, with a label such as a band, facts of each label kept apart). `fixed`:
    columns one value by construction (e.g. one per exposure), never reported constant."""

    names: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    facts: dict[tuple[str, str], ColumnFact] = field(default_factory=dict)

    def add(self, batch: Mapping[str, np.ndarray]) -> None:
        for name in self.names:
            values = batch.get(name)
            if values is not None:
                self.add_column(name, values)

    def add_column(self, name: str, values: np.ndarray, label: str = "") -> None:
        values = np.asarray(values)
        if values.dtype.kind == "f":
            self.facts.setdefault((name, label), ColumnFact()).add(values)

    @staticmethod
    def _shown(key: tuple[str, str]) -> str:
        return f"{key[0]} ({key[1]})" if key[1] else key[0]

    def all_nan(self) -> list[str]:
        return [self._shown(k) for k, f in self.facts.items() if f.all_nan]

    def constant(self) -> list[tuple[str, float]]:
        return [
            (self._shown(k), f.low) for k, f in self.facts.items() if f.constant and k[0] not in self.fixed
        ]


def parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.ParquetFile(path).schema_arrow
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from None


def arrow_schema(columns: Mapping[str, str]) -> pa.Schema:
    """An Arrow schema from {column: numpy dtype name} (an HDF5 group's), for schema_difference."""

    def arrow_type(dtype: str) -> pa.DataType:
        kind = np.dtype(dtype).kind
        return pa.string() if kind in "OSU" else pa.from_numpy_dtype(np.dtype(dtype))

    return pa.schema([(name, arrow_type(dtype)) for name, dtype in columns.items()])


def schema_disagreements(schemas: Mapping[str, pa.Schema]) -> list[str]:
    """Each file whose column names or types differ from the first file's, with what differs (names
    and types, not order: readers select columns by name)."""
    items = list(schemas.items())
    if not items:
        return []
    first_name, first = items[0]
    out = []
    for name, schema in items[1:]:
        same = set(schema.names) == set(first.names) and all(
            schema.field(n).type == first.field(n).type for n in schema.names
        )
        if not same:
            out.append(f"{name}: {schema_difference(schema, first, first_name)}")
    return out


def values_of(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as numpy, as `to_numpy(zero_copy_only=False)` gives it (numbers as a view; integers
    with nulls as floats, NaN where null; strings and booleans with nulls as objects) but without
    Arrow's pandas conversion, whose first use imports pandas (0.4 s and 40 MB, in every qa job)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = arr.type
    if (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or (pa.types.is_boolean(kind) and arr.null_count)
    ):
        return np.array(arr.to_pylist(), dtype=object)
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        return arr.to_numpy(zero_copy_only=False)  # dates, dictionaries: not in a checked product
    validity, data = arr.buffers()[:2]
    if pa.types.is_boolean(kind):
        values = _bits(data, arr.offset, len(arr))
    else:
        dtype = np.dtype(kind.to_pandas_dtype())
        values = (
            np.frombuffer(data, dtype, len(arr), arr.offset * dtype.itemsize)
            if len(arr)
            else np.zeros(0, dtype)
        )
    if not arr.null_count:
        return values
    # as Arrow's conversion: a null becomes NaN, in floats of the column's width or (integers) float64
    out = values.astype(dtype if pa.types.is_floating(kind) else np.float64)
    out[~_bits(validity, arr.offset, len(arr))] = np.nan
    return out


def _bits(buffer: pa.Buffer, offset: int, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(buffer, np.uint8), bitorder="little")[offset : offset + n].astype(bool)


def iter_row_groups(path: Path, columns: Iterable[str] | None = None) -> Iterator[pa.Table]:
    """A Parquet file's row groups one at a time (the columns named that it has, or all);
    InputError naming the file when it cannot be read as Parquet."""
    try:
        pf = pq.ParquetFile(path)
        wanted = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
        for i in range(pf.num_row_groups):
            yield pf.read_row_group(i, columns=wanted)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from None


def _finite_bounds(stats: pq.Statistics | None) -> set[float]:
    """The finite ones of a row group's min and max (values the column holds), if it has them."""
    if stats is None or not stats.has_min_max:
        return set()
    return {float(v) for v in (stats.min, stats.max) if isinstance(v, int | float) and math.isfinite(v)}


def _never_float(stats: pq.Statistics | None) -> bool:
    """A non-float row group without nulls: read, it is an integer or bool array, never checked (with
    nulls it would become float, NaN where null)."""
    return stats is not None and stats.has_null_count and stats.null_count == 0


def settled_by_statistics(files: Iterable[Path], names: Iterable[str]) -> set[str]:
    """The columns among `names` that `ColumnFacts` would report neither all NaN nor constant over
    all `files`, decided from row-group statistics: two different finite min/max values of float
    row groups (columns that are float in some files only count only those), or no file where the
    column may read as float (not a float type, and no null in any row group)."""
    wanted = set(names)
    bounds: dict[str, set[float]] = {n: set() for n in wanted}
    maybe_float: set[str] = set()
    for path in files:
        meta = pq.ParquetFile(path).metadata
        floats = {f.name for f in meta.schema.to_arrow_schema() if pa.types.is_floating(f.type)}
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            for j in range(group.num_columns):
                chunk = group.column(j)
                name = chunk.path_in_schema
                if name not in wanted:
                    continue
                stats = chunk.statistics if chunk.is_stats_set else None
                if name in floats:
                    maybe_float.add(name)
                    if len(bounds[name]) < 2:
                        bounds[name] |= _finite_bounds(stats)
                elif not _never_float(stats):
                    maybe_float.add(name)
    return {n for n in wanted if len(bounds[n]) > 1 or n not in maybe_float}
