"""afw tables (SourceCatalog FITS files) read without the LSST stack.

Layout, as lsst.afw.table writes it: HDU 1 holds the records. Boolean Flag fields are packed into
one bit column `flags` (TFORM `NX`, header `FLAGCOL`), bit k named by `TFLAG{k+1}`. Aliases are
`ALIAS = 'alias:target'` cards. Angles are radians, ids 64-bit. Later HDUs hold footprints and other
persisted objects (an archive); a catalog reader ignores them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dc2tasks.products import fits
from dc2tasks.products.errors import InputError

# FITS binary table codes -> big-endian numpy types
_TFORM_TYPES = {
    "L": "?",  # logical (afw writes Flag fields as bits, but `L` is legal FITS)
    "B": "u1",
    "I": ">i2",
    "J": ">i4",
    "K": ">i8",
    "E": ">f4",
    "D": ">f8",
    "A": "S",
}
_TFORM_RE = re.compile(r"^\s*(\d*)([LXBIJKAEDCM]|[PQ][LXBIJKAEDCM])")


@dataclass
class AfwTable:
    """Columns of one afw catalog, native-endian; flags unpacked into bool columns."""

    path: Path
    columns: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)
    flag_names: list[str] = field(default_factory=list)
    version: int = 0
    header: fits.Header | None = None

    def __len__(self) -> int:
        return self.nrows

    @property
    def nrows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def resolve(self, name: str) -> str:
        """Follow aliases (e.g. `slot_Centroid_x` -> `base_SdssCentroid_x`), as afw does by prefix."""
        seen = set()
        while name not in self.columns and name not in seen:
            seen.add(name)
            for alias, target in self.aliases.items():
                if name == alias or name.startswith(alias + "_"):
                    name = target + name[len(alias) :]
                    break
            else:
                break
        return name

    def __getitem__(self, name: str) -> np.ndarray:
        key = self.resolve(name)
        try:
            return self.columns[key]
        except KeyError:
            raise InputError(f"{self.path}: no column {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return self.resolve(name) in self.columns


def _column_layout(header: fits.Header, path: Path) -> list[tuple[str, str, int, int]]:
    """(name, code, repeat, byte offset) of each field of a row."""
    layout = []
    offset = 0
    nfields = int(header.get("TFIELDS", 0) or 0)
    for i in range(1, nfields + 1):
        name = header.get(f"TTYPE{i}")
        tform = header.get(f"TFORM{i}")
        if not isinstance(tform, str):
            raise InputError(f"{path}: table column {i} has no TFORM")
        m = _TFORM_RE.match(tform)
        if not m:
            raise InputError(f"{path}: column {name!r} has an unsupported TFORM {tform!r}")
        repeat = int(m.group(1) or 1)
        code = m.group(2)
        if code == "X":
            width = (repeat + 7) // 8
        elif code[0] in "PQ":  # a variable-length array: (count, heap offset), 32- or 64-bit
            width = 8 if code[0] == "P" else 16
        elif code in ("C", "M"):
            width = repeat * (8 if code == "C" else 16)
        else:
            width = repeat * np.dtype(_TFORM_TYPES[code] if code != "A" else "S1").itemsize
        layout.append((str(name), code, repeat, offset))
        offset += width
    naxis1 = int(header.get("NAXIS1", 0) or 0)
    if offset != naxis1:
        raise InputError(f"{path}: columns add up to {offset} bytes a row but NAXIS1 says {naxis1}")
    return layout


def read_table(
    path: str | os.PathLike,
    columns: Iterable[str] | None = None,
) -> AfwTable:
    """Read the record HDU of an afw catalog.

    `columns`, when given, limits which fields are converted (flags included by name); the file is
    still read whole, since rows are stored contiguously.
    """
    path = Path(path)
    hdus = fits.scan(path, max_hdus=2)
    if len(hdus) < 2:
        raise InputError(f"{path}: not an afw table file (no binary table in HDU 1)")
    return read_table_from_hdu(path, hdus[1], columns)


def read_table_from_hdu(path: Path, hdu: fits.Hdu, columns: Iterable[str] | None = None) -> AfwTable:
    """Read any afw table HDU (a catalog's records, or an archive catalog)."""
    return RawRecords.from_hdu(path, hdu).to_table(columns)


@dataclass
class RawRecords:
    """The record block of an afw catalog, not yet decoded: rows of big-endian bytes and where each
    field sits in a row. Selecting rows and copying runs of same-type fields straight from here
    into column blocks is what makes the Object merge run near the speed of reading the file."""

    path: Path
    header: fits.Header
    rows: np.ndarray  # (nrows, rowbytes) uint8
    layout: list[tuple[str, str, int, int]]
    heap: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint8))  # variable-length arrays
    scaling: dict[str, tuple[float, float]] = field(default_factory=dict)  # name: (TSCAL, TZERO)

    @classmethod
    def open(cls, path: str | os.PathLike) -> RawRecords:
        path = Path(path)
        hdus = fits.scan(path, max_hdus=2)
        if len(hdus) < 2:
            raise InputError(f"{path}: not an afw table file (no binary table in HDU 1)")
        return cls.from_hdu(path, hdus[1])

    @classmethod
    def from_hdu(cls, path: Path, hdu: fits.Hdu) -> RawRecords:
        header = hdu.header
        if header.get("XTENSION") != "BINTABLE":
            raise InputError(f"{path}: HDU {hdu.index} is {header.get('XTENSION')!r}, not a binary table")
        nrows = int(header.get("NAXIS2", 0) or 0)
        rowbytes = int(header.get("NAXIS1", 0) or 0)
        layout = _column_layout(header, path)
        raw = np.frombuffer(fits.read_data(path, hdu) if nrows else b"", dtype=np.uint8)
        rows = raw[: nrows * rowbytes].reshape(nrows, rowbytes)
        heap = raw[int(header.get("THEAP", nrows * rowbytes) or 0) :]
        return cls(path, header, rows, layout, heap, _scaling(header, layout))

    def __len__(self) -> int:
        return self.rows.shape[0]

    def flag_groups(self) -> Iterator[tuple[list[str], int, int]]:
        """(names, byte offset, count) of each packed bit column."""
        flagcol = self.header.get("FLAGCOL")
        for idx, (name, code, repeat, offset) in enumerate(self.layout, start=1):
            if code != "X":
                continue
            if flagcol is not None and idx != flagcol and name != "flags":
                names = [f"{name}_{k}" for k in range(repeat)]
            else:
                names = [str(self.header.get(f"TFLAG{k + 1}", f"{name}_{k}")) for k in range(repeat)]
            yield names, offset, repeat

    def unpack_flags(self, offset: int, count: int) -> np.ndarray:
        """(nrows, count) bool view of one packed bit column."""
        packed = self.rows[:, offset : offset + (count + 7) // 8]
        return np.unpackbits(packed, axis=1, bitorder="big")[:, :count].view(bool)

    def scalar_fields(self) -> Iterator[tuple[str, np.dtype, int]]:
        """(name, big-endian dtype, byte offset) of each numeric single-value field, as stored (a
        field with TSCAL/TZERO too: `column` and `to_table` apply them)."""
        for name, code, repeat, offset in self.layout:
            if repeat == 1 and code in _TFORM_TYPES and code != "A":
                yield name, np.dtype(_TFORM_TYPES[code]), offset

    def view(self, offset: int, dtype: np.dtype, width: int = 1) -> np.ndarray:
        """A strided view of `width` consecutive fields of one type (no copy)."""
        n, rowbytes = self.rows.shape
        if n == 0:
            return np.empty((0, width), dtype=dtype)
        return np.ndarray(
            shape=(n, width), dtype=dtype, buffer=self.rows, offset=offset, strides=(rowbytes, dtype.itemsize)
        )

    def column(self, name: str) -> np.ndarray:
        for field_name, dtype, offset in self.scalar_fields():
            if field_name == name:
                return self._scaled(name, self.view(offset, dtype)[:, 0].astype(dtype.newbyteorder("=")))
        for names, offset, count in self.flag_groups():
            if name in names:
                return np.ascontiguousarray(self.unpack_flags(offset, count)[:, names.index(name)])
        raise InputError(f"{self.path}: no column {name!r}")

    def to_table(self, columns: Iterable[str] | None = None) -> AfwTable:
        wanted = set(columns) if columns is not None else None
        out: dict[str, np.ndarray] = {}
        flag_names: list[str] = []
        groups = {offset: (names, count) for names, offset, count in self.flag_groups()}
        for name, code, repeat, offset in self.layout:
            if code == "X":
                names, count = groups[offset]
                keep = [k for k, n in enumerate(names) if wanted is None or n in wanted]
                if keep:
                    bits_t = np.ascontiguousarray(self.unpack_flags(offset, count).T)
                    for k in keep:
                        out[names[k]] = bits_t[k]
                flag_names.extend(names)
            elif wanted is None or name in wanted:
                values = self._field(code, repeat, offset)
                if values is not None:
                    out[name] = self._scaled(name, values)
        aliases = {}
        for card in self.header.all("ALIAS"):
            if isinstance(card, str) and ":" in card:
                alias, target = card.split(":", 1)
                aliases[alias] = target
        version = int(self.header.get("AFW_TABLE_VERSION", 0) or 0)
        return AfwTable(self.path, out, aliases, flag_names, version, self.header)

    def _field(self, code: str, repeat: int, offset: int) -> np.ndarray | None:
        """One field's values, native-endian: (nrows,) or (nrows, repeat) for an array field, text
        as str, a variable-length field as one array (or str) per row; None for complex numbers,
        which no afw field type writes."""
        nrows, rowbytes = self.rows.shape
        if code[0] in "PQ":
            return self._variable(code, offset)
        if code in ("C", "M"):
            return None
        if code == "A":
            dt = np.dtype(f"S{repeat}")
            return np.char.rstrip(_strided(self.rows, offset, dt, nrows, rowbytes).astype(dt)).astype(str)
        dt = np.dtype(_TFORM_TYPES[code])
        stored = dt if repeat == 1 else np.dtype((dt, (repeat,)))
        return _strided(self.rows, offset, stored, nrows, rowbytes).astype(dt.newbyteorder("="))

    def _variable(self, code: str, offset: int) -> np.ndarray | None:
        """Each row's array of a variable-length field (old afw footprints, archived objects), read
        from the heap after the rows."""
        element = code[1]
        if element in ("X", "C", "M"):
            return None
        nrows, rowbytes = self.rows.shape
        pair = np.dtype((">i4" if code[0] == "P" else ">i8", (2,)))
        out = np.empty(nrows, dtype=object)
        dt = np.dtype("S1" if element == "A" else _TFORM_TYPES[element])
        for i, (count, start) in enumerate(_strided(self.rows, offset, pair, nrows, rowbytes).tolist()):
            values = np.frombuffer(self.heap, dtype=dt, count=count, offset=start)
            if element == "A":
                out[i] = values.tobytes().decode("ascii", errors="replace").rstrip("\0 ")
            else:
                out[i] = values.astype(dt.newbyteorder("="))
        return out

    def _scaled(self, name: str, values: np.ndarray) -> np.ndarray:
        """Stored values with the column's TSCAL and TZERO applied, as FITS readers do: the usual
        offsets of unsigned (and signed-byte) integers give that integer type, others float64."""
        if name not in self.scaling:
            return values
        scale, zero = self.scaling[name]
        if values.dtype == object:
            out = np.empty(len(values), dtype=object)
            out[:] = [self._scaled(name, v) for v in values]
            return out
        size = values.dtype.itemsize
        half = 2 ** (8 * size - 1)
        if scale == 1 and (values.dtype.kind, zero) in (("i", half), ("u", -half)):
            flipped = values.view(f"u{size}") ^ np.array(half, dtype=f"u{size}")
            return flipped.view(f"{'u' if zero > 0 else 'i'}{size}")
        return values * np.float64(scale) + np.float64(zero)


def _scaling(header: fits.Header, layout: list[tuple[str, str, int, int]]) -> dict[str, tuple[float, float]]:
    """(TSCAL, TZERO) of each column that has either."""
    out = {}
    for i, (name, _, _, _) in enumerate(layout, start=1):
        scale, zero = header.get(f"TSCAL{i}", 1), header.get(f"TZERO{i}", 0)
        if (scale, zero) != (1, 0):
            out[name] = (float(scale), float(zero))  # type: ignore[arg-type]
    return out


def _strided(rows: np.ndarray, offset: int, dtype: np.dtype, nrows: int, rowbytes: int) -> np.ndarray:
    if nrows == 0:
        return np.empty(0, dtype=dtype)
    return np.ndarray(shape=(nrows,), dtype=dtype, buffer=rows.data, offset=offset, strides=(rowbytes,))


def read_header(path: str | os.PathLike, hdu_index: int = 1) -> fits.Header:
    hdus = fits.scan(path, max_hdus=hdu_index + 1)
    if len(hdus) <= hdu_index:
        raise InputError(f"{path}: has no HDU {hdu_index}")
    return hdus[hdu_index].header


def column_names(path: str | os.PathLike) -> list[str]:
    """Field and flag names of an afw catalog, from its header alone."""
    path = Path(path)
    header = read_header(path)
    names = []
    for name, code, repeat, _ in _column_layout(header, path):
        if code == "X":
            names.extend(str(header.get(f"TFLAG{k + 1}", f"{name}_{k}")) for k in range(repeat))
        else:
            names.append(name)
    return names




def column_dtypes(path: str | os.PathLike) -> dict[str, np.dtype]:
    """Native numpy dtype of every scalar field and flag of an afw catalog, from its header alone."""
    path = Path(path)
    header = read_header(path)
    out: dict[str, np.dtype] = {}
    for name, code, repeat, _ in _column_layout(header, path):
        if code == "X":
            for k in range(repeat):
                out[str(header.get(f"TFLAG{k + 1}", f"{name}_{k}"))] = np.dtype(bool)
        elif code == "A":
            out[name] = np.dtype(object)
        elif code in _TFORM_TYPES and repeat == 1:
            out[name] = np.dtype(_TFORM_TYPES[code]).newbyteorder("=")
    return out
