"""pandas "fixed"-format HDF5 object files: the groups, their columns, and reading a few columns.

A fixed-format group stores each dtype block as one (columns x rows) array, so one column is one
contiguous row of that array. Reading the 135 columns GCRCatalogs needs out of ~2,400 therefore
needs only those rows, not the whole group that `pd.read_hdf` would load.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import tables

from dc2tasks.products.errors import InputError

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


def group_schema(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """{column: {"dtype": name}} over all groups of one file, from metadata only."""
    path = Path(path)
    schema: dict[str, dict[str, str]] = {}
    with _open(path) as h5:
        for key in group_keys(path):
            for items, values in _blocks(h5.get_node("/" + key)):
                for item in items:
                    schema[item] = {"dtype": values.dtype.name}
    return schema


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
            if transposed:
                data = values.read()[:, index].T  # rare: pandas wrote a Fortran-ordered block
            elif len(index) == len(items):
                data = values.read()
            else:
                data = values[index, :] if len(index) > 1 else values[index[0] : index[0] + 1, :]
            for row, i in enumerate(index):
                found[items[i]] = np.ascontiguousarray(data[row])
    missing = [c for c in wanted if c not in found]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(f"{path}: group {key} lacks column(s) {', '.join(missing[:5])}{more}")
    return pd.DataFrame({c: found[c] for c in wanted})


def all_columns(path: str | os.PathLike, key: str) -> list[str]:
    path = Path(path)
    with _open(path) as h5:
        return [item for items, _ in _blocks(h5.get_node("/" + key)) for item in items]
