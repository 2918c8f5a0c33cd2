"""Just enough FITS to read afw files fast and with errors that name the file.

astropy.io.fits would do, but it parses every card of a 3,700-card table header into objects and
copies table data on access; afw tables are read whole, column by column, so a byte-offset view of
the record block is all we need.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dc2tasks.products.errors import InputError

BLOCK = 2880
CARD = 80


@dataclass
class Header:
    """Cards of one HDU header, in order; `values` keeps the first value of each keyword."""

    cards: list[tuple[str, object]] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)

    def add(self, key: str, value: object) -> None:
        self.cards.append((key, value))
        self.values.setdefault(key, value)

    def get(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)

    def __getitem__(self, key: str) -> object:
        return self.values[key]

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def all(self, key: str) -> list[object]:
        return [v for k, v in self.cards if k == key]


@dataclass
class Hdu:
    """Where an HDU's header and data sit in the file."""

    index: int
    header: Header
    data_offset: int
    data_size: int


def _parse_value(raw: str) -> object:
    s = raw.strip()
    if not s:
        return None
    if s.startswith("'"):
        # string: '' is an escaped quote; the closing quote is the first lone quote
        out = []
        i = 1
        while i < len(s):
            c = s[i]
            if c == "'":
                if i + 1 < len(s) and s[i + 1] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(c)
            i += 1
        return "".join(out).rstrip()
    value = s.split("/", 1)[0].strip()
    if value == "T":
        return True
    if value == "F":
        return False
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value.replace("D", "E"))
    except ValueError:
        return value


def parse_header(raw: bytes, path: Path) -> Header:
    header = Header()
    text = raw.decode("ascii", errors="replace")
    last_key = None
    for i in range(0, len(text), CARD):
        card = text[i : i + CARD]
        key = card[:8].rstrip()
        if key == "END":
            break
        if key == "CONTINUE" and last_key is not None:
            more = _parse_value(card[8:])
            prev = header.cards[-1][1]
            if isinstance(prev, str) and isinstance(more, str):
                joined = (prev[:-1] if prev.endswith("&") else prev) + more
                header.cards[-1] = (last_key, joined)
                if header.values.get(last_key) is prev:
                    header.values[last_key] = joined
            continue
        if key == "HIERARCH":
            rest = card[9:]
            if "=" not in rest:
                continue
            name, value = rest.split("=", 1)
            key = name.strip()
            header.add(key, _parse_value(value))
            last_key = key
            continue
        if card[8:10] == "= ":
            header.add(key, _parse_value(card[10:]))
            last_key = key
        else:
            last_key = None
    return header


def _data_size(header: Header) -> int:
    naxis = int(header.get("NAXIS", 0) or 0)
    if naxis == 0:
        return 0
    bitpix = abs(int(header["BITPIX"]))
    n = 1
    for k in range(1, naxis + 1):
        n *= int(header[f"NAXIS{k}"])
    n += int(header.get("PCOUNT", 0) or 0)
    n *= int(header.get("GCOUNT", 1) or 1)
    return n * bitpix // 8


def scan(path: str | os.PathLike, max_hdus: int | None = None) -> list[Hdu]:
    """Headers and data offsets of the HDUs of a FITS file, reading only header blocks."""
    path = Path(path)
    hdus: list[Hdu] = []
    try:
        size = path.stat().st_size
        fh = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: file does not exist") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    with fh:
        offset = 0
        while offset < size and (max_hdus is None or len(hdus) < max_hdus):
            chunks = []
            while True:
                fh.seek(offset)
                block = fh.read(BLOCK)
                if len(block) < BLOCK and not (hdus or chunks or block.startswith(b"SIMPLE  =")):
                    raise InputError(f"{path}: not a FITS file (no SIMPLE card at the start)")
                if len(block) < BLOCK:
                    raise InputError(
                        f"{path}: truncated FITS file: header of HDU {len(hdus)} is cut off at byte {offset}"
                    )
                if not hdus and not chunks and not block.startswith(b"SIMPLE  ="):
                    raise InputError(f"{path}: not a FITS file (no SIMPLE card at the start)")
                offset += BLOCK
                chunks.append(block)
                if _has_end(block):
                    break
            raw = b"".join(chunks)
            header = parse_header(raw, path)
            data_size = _data_size(header)
            if offset + data_size > size:
                raise InputError(
                    f"{path}: truncated FITS file: HDU {len(hdus)} needs {data_size} bytes of data "
                    f"from byte {offset}, but the file ends at byte {size}"
                )
            hdus.append(Hdu(len(hdus), header, offset, data_size))
            offset += math.ceil(data_size / BLOCK) * BLOCK
    return hdus


def _has_end(block: bytes) -> bool:
    for i in range(0, BLOCK, CARD):
        if block[i : i + 8] == b"END     ":
            return True
    return False


def read_data(path: str | os.PathLike, hdu: Hdu) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(hdu.data_offset)
        data = fh.read(hdu.data_size)
    if len(data) != hdu.data_size:
        raise InputError(f"{path}: truncated FITS file: HDU {hdu.index} data is short")
    return data


def iter_hdus_by(hdus: list[Hdu], key: str, value: object) -> Iterator[Hdu]:
    return (h for h in hdus if h.header.get(key) == value)
