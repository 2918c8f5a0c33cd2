"""Just enough FITS to read afw files fast and with errors that name the file.

astropy.io.fits would do, but it parses every card of a 3,700-card table header into objects and
copies table data on access; afw tables are read whole, column by column, so a byte-offset view of
the record block is all we need. Gzip-compressed files (`.fits.gz`) are read as a stream
(gzip_stream), the uncompressed ones by seeking, as before.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dc2tasks.products import gzip_stream
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
    mark: gzip_stream.Mark | None = field(default=None, repr=False, compare=False)  # in a gzip file


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
                if not joined.endswith("&"):  # the whole string: its trailing blanks are not part of it
                    joined = joined.rstrip()
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
    """Headers and data offsets of the HDUs of a FITS file, reading only header blocks.

    A gzip-compressed file (`.fits.gz`, found by its magic bytes, whatever its name) is scanned in
    one forward pass; each HDU carries a mark that lets `read_data` resume there.
    """
    path = Path(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: file does not exist") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    with fh:
        source = _GzipSource(fh, path) if gzip_stream.is_gzip(fh) else _PlainSource(fh, path)
        hdus: list[Hdu] = []
        offset = 0
        while max_hdus is None or len(hdus) < max_hdus:
            raw = _header_blocks(source, offset, len(hdus), path)
            if raw is None:
                break
            offset += len(raw)
            header = parse_header(raw, path)
            hdu = Hdu(len(hdus), header, offset, _data_size(header), source.mark())
            source.check(hdu)
            hdus.append(hdu)
            offset += math.ceil(hdu.data_size / BLOCK) * BLOCK
    return hdus


def _header_blocks(source: _PlainSource | _GzipSource, offset: int, index: int, path: Path) -> bytes | None:
    """The header blocks of HDU `index` from `offset`, END card included; None at the file's end."""
    chunks: list[bytes] = []
    while True:
        block = source.block(offset + BLOCK * len(chunks))
        if index == 0 and not chunks and not block.startswith(b"SIMPLE  ="):
            raise InputError(f"{path}: not a FITS file (no SIMPLE card at the start)")
        if not block and not chunks:
            return None
        if len(block) < BLOCK:
            raise InputError(
                f"{path}: truncated FITS file: header of HDU {index} is cut off at byte "
                f"{offset + BLOCK * len(chunks)}"
            )
        chunks.append(block)
        if _has_end(block):
            return b"".join(chunks)


def _truncated_data(path: Path, hdu: Hdu, end: int) -> InputError:
    return InputError(
        f"{path}: truncated FITS file: HDU {hdu.index} needs {hdu.data_size} bytes of data "
        f"from byte {hdu.data_offset}, but the file ends at byte {end}"
    )


class _PlainSource:
    """An uncompressed file: any block at its offset, its size known up front."""

    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self._fh, self._path = fh, path
        self._size = os.fstat(fh.fileno()).st_size

    def block(self, offset: int) -> bytes:
        self._fh.seek(offset)
        return self._fh.read(BLOCK)

    def mark(self) -> None:
        return None

    def check(self, hdu: Hdu) -> None:
        if hdu.data_offset + hdu.data_size > self._size:
            raise _truncated_data(self._path, hdu, self._size)


class _GzipSource:
    """A gzip file, read forward: an HDU's data is decompressed (and checked to be all there) only
    when the scan goes past it, so a scan that stops at a catalog's records leaves them for
    `read_data` to decompress once."""

    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self._stream = gzip_stream.GzipStream(fh, str(path))
        self._path = path
        self._last: Hdu | None = None

    def block(self, offset: int) -> bytes:
        reached = self._stream.position + self._stream.skip(offset - self._stream.position)
        last = self._last
        if last is not None and reached < last.data_offset + last.data_size:
            raise _truncated_data(self._path, last, reached)
        if reached < offset:
            return b""  # the file ends in the padding of its last HDU
        buf = bytearray(BLOCK)
        return bytes(buf[: self._stream.readinto(buf)])

    def mark(self) -> gzip_stream.Mark:
        return self._stream.mark()

    def check(self, hdu: Hdu) -> None:
        self._last = hdu


def _has_end(block: bytes) -> bool:
    for i in range(0, BLOCK, CARD):
        if block[i : i + 8] == b"END     ":
            return True
    return False


def read_data(path: str | os.PathLike, hdu: Hdu) -> bytes | bytearray:
    """The data of an HDU that `scan` found (in a gzip file, decompressed from the HDU's mark into
    one buffer: the only copy held)."""
    with open(path, "rb") as fh:
        if hdu.mark is None:
            fh.seek(hdu.data_offset)
            data: bytes | bytearray = fh.read(hdu.data_size)
            got = len(data)
        else:
            data = bytearray(hdu.data_size)
            got = gzip_stream.GzipStream(fh, str(path), hdu.mark).readinto(data)
    if got != hdu.data_size:
        raise InputError(f"{path}: truncated FITS file: HDU {hdu.index} data is short")
    return data


def iter_hdus_by(hdus: list[Hdu], key: str, value: object) -> Iterator[Hdu]:
    return (h for h in hdus if h.header.get(key) == value)
