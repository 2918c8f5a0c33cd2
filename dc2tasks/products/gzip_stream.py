"""A gzip file's decompressed bytes, read forward, with marks to resume from later.

Gen2 butlers read and wrote `.fits.gz`. A FITS reader wants a few HDUs of such a file: scanning it
finds them in one forward pass and marks where each HDU's data begins; reading an HDU's data later
resumes decompression at its mark. So nothing is decompressed twice for a catalog, and no more than
the one HDU being read (plus a chunk) is ever held in memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import BinaryIO

from dc2tasks.products.errors import InputError

MAGIC = b"\x1f\x8b"
CHUNK = 1 << 18  # compressed bytes read from the file at a time
# decompressed bytes made at a time: zlib builds each in blocks, then joins them, so twice this is
# the most held beside the caller's buffer
OUT_CHUNK = 1 << 18
_GZIP_WBITS = 31  # zlib: a gzip wrapper (header and CRC-checked trailer) around deflate data


@dataclass(frozen=True)
class Mark:
    """A point of the decompressed stream: its offset, and what resuming there needs (the
    decompressor's state and the offset in the file of the first byte it has not been given)."""

    position: int
    file_offset: int
    state: object  # a zlib decompressor, copied again on every resume so a mark can be reused


class GzipStream:
    """Forward reading of a gzip file's decompressed bytes (every member, as gzip tools do)."""

    def __init__(self, fh: BinaryIO, name: str, mark: Mark | None = None) -> None:
        self._fh = fh
        self._name = name
        self._input = b""  # compressed bytes read from the file, not yet given to the decompressor
        if mark is None:
            self._z = zlib.decompressobj(wbits=_GZIP_WBITS)
            self.position = 0
        else:
            fh.seek(mark.file_offset)
            self._z = mark.state.copy()  # type: ignore[attr-defined]
            self.position = mark.position

    def mark(self) -> Mark:
        return Mark(self.position, self._fh.tell() - len(self._input), self._z.copy())

    def readinto(self, out: bytearray | memoryview) -> int:
        """Fill `out` from the current position; fewer bytes only at the end of the data."""
        view = memoryview(out).cast("B")
        filled = 0
        while filled < len(view):
            chunk = self._inflate(min(len(view) - filled, OUT_CHUNK))
            if chunk is None:
                break
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            self.position += len(chunk)
        return filled

    def skip(self, count: int) -> int:
        """Decompress and drop up to `count` bytes (fewer only at the end); how many were dropped."""
        left = count
        while left > 0:
            chunk = self._inflate(min(left, OUT_CHUNK))
            if chunk is None:
                break
            left -= len(chunk)
            self.position += len(chunk)
        return count - left

    def _inflate(self, limit: int) -> bytes | None:
        """At most `limit` (> 0) more decompressed bytes, at least one; None at the end of the data."""
        while True:
            if self._z.eof and not self._next_member():
                return None
            if not self._input:
                self._input = self._fh.read(CHUNK)
                if not self._input:
                    raise InputError(
                        f"{self._name}: truncated gzip file: the compressed data ends at decompressed "
                        f"byte {self.position}, before the end of the stream"
                    )
            try:
                out = self._z.decompress(self._input, limit)
            except zlib.error as exc:
                raise InputError(
                    f"{self._name}: corrupt gzip data near decompressed byte {self.position}: {exc}"
                ) from None
            self._input = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
            if out:
                return out

    def _next_member(self) -> bool:
        """After a member's end: start the next one, if the file has one (trailing bytes that are not
        a gzip member, such as zero padding, end the data, as gzip tools treat them)."""
        if len(self._input) < len(MAGIC):
            self._input += self._fh.read(CHUNK)
        if not self._input.startswith(MAGIC):
            return False
        self._z = zlib.decompressobj(wbits=_GZIP_WBITS)
        return True


def is_gzip(fh: BinaryIO) -> bool:
    """Whether an open file starts with the gzip magic bytes; leaves it at its start."""
    head = fh.read(len(MAGIC))
    fh.seek(0)
    return head == MAGIC
