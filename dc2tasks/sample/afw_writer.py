"""Writing afw tables (SourceCatalog FITS HDUs) as lsst.afw.table does, for the sample repository.

Flag fields are packed into one bit column `flags` (TFORM `NX`, header `FLAGCOL`, bit k named by
`TFLAG{k+1}`), aliases are `ALIAS = 'alias:target'` cards, numbers are big-endian.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dc2tasks.sample import fits_writer

_NP_TO_TFORM = {"b1": "L", "u1": "B", "i2": "I", "i4": "J", "i8": "K", "f4": "E", "f8": "D"}


def table_hdu_bytes(
    columns: Mapping[str, np.ndarray],
    flags: Mapping[str, np.ndarray] | None = None,
    aliases: Mapping[str, str] | None = None,
    extra_cards: list[tuple[str, object]] | None = None,
    docs: Mapping[str, str] | None = None,
) -> bytes:
    """One afw-style BINTABLE HDU (header + data), flags packed first as afw does."""
    flags = dict(flags or {})
    nrows = len(next(iter(columns.values()))) if columns else len(next(iter(flags.values()), []))
    fields: list[tuple[str, np.dtype, str]] = []
    if flags:
        fields.append(("flags", np.dtype((np.uint8, ((len(flags) + 7) // 8,))), f"{len(flags)}X"))
    for name, arr in columns.items():
        arr = np.asarray(arr)
        if len(arr) != nrows:
            raise ValueError(f"column {name!r} has {len(arr)} rows, expected {nrows}")
        base = arr.dtype.base if arr.ndim > 1 else arr.dtype
        repeat = int(np.prod(arr.shape[1:])) if arr.ndim > 1 else 1
        if base.kind in "SU":
            width = max(1, int(base.itemsize // (4 if base.kind == "U" else 1)))
            fields.append((name, np.dtype(f"S{width}"), f"{width}A"))
            continue
        key = f"{base.kind}{base.itemsize}"
        if key not in _NP_TO_TFORM:
            raise ValueError(f"column {name!r}: dtype {base} has no FITS form")
        big = base.newbyteorder(">") if base.itemsize > 1 else base
        dt = np.dtype((big, (repeat,))) if repeat > 1 else big
        fields.append((name, dt, f"{repeat}{_NP_TO_TFORM[key]}"))
    rec = np.zeros(nrows, dtype=[(n, d) for n, d, _ in fields])
    if flags:
        bits = np.stack([np.asarray(v, dtype=bool) for v in flags.values()], axis=1)
        rec["flags"] = np.packbits(bits, axis=1, bitorder="big")
    for name, _, _ in fields:
        if name == "flags" and flags:
            continue
        arr = np.asarray(columns[name])
        rec[name] = arr.astype(rec.dtype[name].base) if arr.ndim == 1 else arr
    cards: list[tuple] = [
        ("XTENSION", "BINTABLE", "binary table extension"),
        ("BITPIX", 8),
        ("NAXIS", 2),
        ("NAXIS1", rec.dtype.itemsize),
        ("NAXIS2", nrows),
        ("PCOUNT", 0),
        ("GCOUNT", 1),
        ("TFIELDS", len(fields)),
    ]
    for i, (name, _, tform) in enumerate(fields, start=1):
        cards.append((f"TTYPE{i}", name))
        cards.append((f"TFORM{i}", tform))
        if docs and name in docs:
            cards.append((f"TDOC{i}", docs[name][:60]))
    if flags:
        cards.append(("FLAGCOL", 1))
        for k, name in enumerate(flags, start=1):
            cards.append((f"TFLAG{k}", name))
    for alias, target in (aliases or {}).items():
        cards.append(("ALIAS", f"{alias}:{target}"))
    cards.extend(extra_cards or [])
    return fits_writer.header_bytes(cards) + fits_writer.pad_data(rec.tobytes())


def primary_hdu_bytes(cards: list[tuple[str, object]] | None = None) -> bytes:
    base: list[tuple] = [("SIMPLE", True), ("BITPIX", 16), ("NAXIS", 0), ("EXTEND", True)]
    return fits_writer.header_bytes(base + list(cards or []))
