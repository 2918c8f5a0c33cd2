"""pandas "fixed"-format HDF5 object files: the groups, their columns, and reading a few columns.

A fixed-format group stores each dtype block as one (columns x rows) array, so one column is one
contiguous row of that array. Reading the 135 columns GCRCatalogs needs out of ~2,400 therefore
needs only those rows, not the whole group that `pd.read_hdf` would load.

Reading goes through PyTables, which unpickles some attribute values: a file made by another step or
account is scanned with dc2tasks.products.hdf5_safety first (trim, dpdd and the schema writer do).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tables

from dc2tasks.products.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

GROUP_PATTERN = re.compile(r"(?:coadd|object)_\d+_\d\d$")


def _open(path: Path) -> tables.File:
    try:
        return tables.open_file(str(path), mode="r")
    except (OSError, tables.HDF5ExtError) as exc:
        raise InputError(f"{path}: not a readable HDF5 file: {exc}") from None


def group_keys(path: str | os.PathLike) -> list[str]:
    """Object groups (`coadd_<tract>_<xy>`) of a file, in file order."""
    path = Path(path)
    with _open(path) as h5:
        return [g._v_name for g in h5.root._f_iter_nodes("Group") if GROUP_PATTERN.match(g._v_name)]


def tract_patch(key: str) -> tuple[int, str]:
    """(tract, "x,y") from `coadd_<tract>_<xy>`, the way GCRCatalogs' object reader reads it."""
    _, tract, xy = key.split("_")
    return int(tract), ",".join(xy)


def _blocks(group: tables.Group) -> Iterator[tuple[list[str], tables.Array]]:
    nblocks = int(group._v_attrs.nblocks)
    for i in range(nblocks):
        items = [
            x.decode() if isinstance(x, bytes) else str(x) for x in getattr(group, f"block{i}_items").read()
        ]
        yield items, getattr(group, f"block{i}_values")


def group_schemas(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """{group: {column: dtype name}} of every object group of one file, in file order, from metadata
    only and in one opening of the file."""
    path = Path(path)
    with _open(path) as h5:
        return {
            g._v_name: {item: values.dtype.name for items, values in _blocks(g) for item in items}
            for g in h5.root._f_iter_nodes("Group")
            if GROUP_PATTERN.match(g._v_name)
        }


def group_schema(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """{column: {"dtype": name}} over all groups of one file, from metadata only."""
    return {c: {"dtype": d} for columns in group_schemas(path).values() for c, d in columns.items()}


def read_columns(path: str | os.PathLike, key: str, columns: Iterable[str]) -> pd.DataFrame:
    """The named columns of one fixed-format group, reading only their rows of each block."""
    path = Path(path)
    wanted = list(columns)
    found: dict[str, np.ndarray] = {}
    with _open(path) as h5:
        group = h5.get_node("/" + key)
        if getattr(group._v_attrs, "pandas_type", None) != "frame":
            raise InputError(f"{path}: group {key} is not a pandas fixed-format frame")
        want = set(wanted)
        for items, values in _blocks(group):
            index = [i for i, item in enumerate(items) if item in want]
            if not index:
                continue
            transposed = bool(getattr(values._v_attrs, "transposed", False))
            if len(index) == len(items):
                data = values.read()
                data = data.T if transposed else data
            elif transposed:  # (rows x columns) on disk, as pandas writes it: select columns
                data = (values[:, index] if len(index) > 1 else values[:, index[0] : index[0] + 1]).T
            else:
                data = values[index, :] if len(index) > 1 else values[index[0] : index[0] + 1, :]
            for row, i in enumerate(index):
                found[items[i]] = np.ascontiguousarray(data[row])
    missing = [c for c in wanted if c not in found]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(f"{path}: group {key} lacks column(s) {', '.join(missing[:5])}{more}")
    import pandas as pd  # here: the group listing and row counts (QA's) need no pandas

    return pd.DataFrame({c: found[c] for c in wanted})


def group_rows(path: str | os.PathLike, key: str) -> int:
    """Rows of one fixed-format group (its index length), without reading a column."""
    with _open(Path(path)) as h5:
        return int(h5.get_node(f"/{key}/axis1").nrows)


# ---- writing ---------------------------------------------------------------------------------


class FrameBuilder:
    """Columns of one patch gathered straight into pandas-style dtype blocks.

    pandas writes a fixed-format frame as one (rows x columns) array per dtype. Building those
    arrays ourselves lets runs of same-type fields move from the FITS rows in one strided copy
    (byte-swapped on the way), with no intermediate per-column arrays, DataFrame consolidation or
    PyTables re-copy. Rows are moved in chunks that stay in cache, the row selection (primary
    objects) applied per chunk: the merge then costs little more than reading its input.
    """

    CHUNK_ROWS = 512

    def __init__(self, nrows: int) -> None:
        self.nrows = nrows
        self._sources: list[tuple[object, np.ndarray | None]] = []  # (RawRecords, row index)
        # per native dtype: (name, source) with source ("raw", src, offset, dtype) |
        # ("flag", src, offset, count, index) | ("array", array)
        self._entries: dict[str, list[tuple[str, tuple]]] = {}
        self._names: set[str] = set()

    def _add(self, name: str, dtype: np.dtype, source: tuple) -> None:
        if name in self._names:
            raise ValueError(f"column {name!r} added twice")
        self._names.add(name)
        self._entries.setdefault(np.dtype(dtype).newbyteorder("=").str, []).append((name, source))

    def add_records(
        self, records, rows: np.ndarray | None = None, prefix: str = "", skip: Iterable[str] = ()
    ) -> None:
        """Every numeric field and flag of an afw.RawRecords (the `rows` index of it), names prefixed."""
        n = len(records) if rows is None else len(rows)
        if n != self.nrows:
            raise ValueError(f"{records.path}: {n} rows, expected {self.nrows}")
        src = len(self._sources)
        self._sources.append((records, rows))
        skip = set(skip)
        for name, dtype, offset in records.scalar_fields():
            if name not in skip:
                self._add(prefix + name, dtype, ("raw", src, offset, dtype))
        for names, offset, count in records.flag_groups():
            for k, name in enumerate(names):
                if name not in skip:
                    self._add(prefix + name, np.dtype(bool), ("flag", src, offset, count, k))

    def add(self, name: str, values: np.ndarray) -> None:
        values = np.asarray(values)
        if values.shape != (self.nrows,):
            raise ValueError(f"column {name!r} has shape {values.shape}, expected ({self.nrows},)")
        self._add(name, values.dtype, ("array", values))

    @property
    def ncolumns(self) -> int:
        return len(self._names)

    def _runs(self, entries: list[tuple[str, tuple]]) -> list[tuple[int, int, tuple]]:
        """(first column, end column, source) of each stretch that is one strided copy."""
        runs = []
        j = 0
        while j < len(entries):
            source = entries[j][1]
            end = j + 1
            while end < len(entries) and source[0] != "array":
                nxt, step = entries[end][1], end - j
                if nxt[0] != source[0] or nxt[1] != source[1]:
                    break
                if source[0] == "raw" and (
                    nxt[3] != source[3] or nxt[2] != source[2] + step * source[3].itemsize
                ):
                    break
                if source[0] == "flag" and (nxt[2] != source[2] or nxt[4] != source[4] + step):
                    break
                end += 1
            runs.append((j, end, source))
            j = end
        return runs

    def blocks(self) -> list[tuple[list[str], np.ndarray]]:
        plan = []
        for dtype, entries in self._entries.items():
            block = np.empty((self.nrows, len(entries)), dtype=np.dtype(dtype))
            plan.append(([name for name, _ in entries], block, self._runs(entries)))
        for r0 in range(0, self.nrows, self.CHUNK_ROWS):
            r1 = min(r0 + self.CHUNK_ROWS, self.nrows)
            chunks = [
                records.rows[r0:r1] if rows is None else records.rows.take(rows[r0:r1], axis=0)
                for records, rows in self._sources
            ]
            unpacked: dict[tuple[int, int], np.ndarray] = {}
            for _, block, runs in plan:
                for j, end, source in runs:
                    kind = source[0]
                    if kind == "array":
                        block[r0:r1, j] = source[1][r0:r1]
                    elif kind == "raw":
                        _, src, offset, dtype = source
                        chunk = chunks[src]
                        view = np.ndarray(
                            shape=(r1 - r0, end - j),
                            dtype=dtype,
                            buffer=chunk,
                            offset=offset,
                            strides=(chunk.strides[0], dtype.itemsize),
                        )
                        block[r0:r1, j:end] = view
                    else:
                        _, src, offset, count, k = source
                        bits = unpacked.get((src, offset))
                        if bits is None:
                            packed = chunks[src][:, offset : offset + (count + 7) // 8]
                            bits = np.unpackbits(packed, axis=1, bitorder="big")[:, :count].view(bool)
                            unpacked[(src, offset)] = bits
                        block[r0:r1, j:end] = bits[:, k : k + (end - j)]
        return [(names, block) for names, block, _ in plan]


def write_frame(h5: tables.File, key: str, blocks: list[tuple[list[str], np.ndarray]], nrows: int) -> None:
    """One group in pandas' fixed "frame" layout (what `DataFrame.to_hdf(format='fixed')` writes)."""
    group = h5.create_group("/", key)
    attrs = group._v_attrs
    attrs.pandas_type = "frame"
    attrs.encoding = "UTF-8"
    attrs.errors = "strict"
    attrs.ndim = 2
    attrs.nblocks = len(blocks)
    attrs.axis0_variety = "regular"
    attrs.axis1_variety = "regular"
    names = [name for items, _ in blocks for name in items]
    _write_strings(h5, group, "axis0", names)
    axis1 = h5.create_array(group, "axis1", np.arange(nrows, dtype=np.int64))
    axis1._v_attrs.kind = "integer"
    axis1._v_attrs.name = None
    axis1._v_attrs.transposed = True
    for i, (items, values) in enumerate(blocks):
        setattr(attrs, f"block{i}_items_variety", "regular")
        _write_strings(h5, group, f"block{i}_items", items)
        node = h5.create_array(group, f"block{i}_values", np.ascontiguousarray(values))
        node._v_attrs.transposed = True


def _write_strings(h5: tables.File, group: tables.Group, name: str, values: list[str]) -> None:
    node = h5.create_array(group, name, np.array([v.encode() for v in values]))
    node._v_attrs.kind = "string"
    node._v_attrs.name = None
    node._v_attrs.nan_rep = ""
    node._v_attrs.transposed = True
