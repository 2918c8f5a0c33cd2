"""Writing FITS header cards and padded data blocks, for the sample repository's afw files.

Cards are in the FITS fixed format (numbers right-aligned to column 30, strings quoted), with the
HIERARCH convention for keys longer than 8 characters.
"""

from __future__ import annotations

from dc2tasks.products.fits import BLOCK, CARD


def format_card(key: str, value: object, comment: str = "") -> str:
    if isinstance(value, bool):
        v = f"{'T' if value else 'F':>20}"
    elif isinstance(value, int):
        v = f"{value:>20d}"
    elif isinstance(value, float):
        r = repr(value).upper()
        if "E" not in r and "." not in r and "INF" not in r and "NAN" not in r:
            r += ".0"
        v = f"{r:>20}"
    elif value is None:
        v = ""
    else:
        s = str(value).replace("'", "''")
        v = f"'{s:<8}'"
    if len(key) > 8:
        card = f"HIERARCH {key} = {v.strip()}"
    else:
        card = f"{key:<8}= {v}"
    if comment and len(card) + 3 < CARD:
        card = f"{card} / {comment}"
    if len(card) > CARD:
        raise ValueError(f"FITS card for {key!r} is longer than 80 characters")
    return f"{card:<80}"


def header_bytes(cards: list[tuple[str, object] | tuple[str, object, str]]) -> bytes:
    text = "".join(format_card(*c) for c in cards) + f"{'END':<80}"
    pad = (-len(text)) % BLOCK
    return (text + " " * pad).encode("ascii")


def pad_data(data: bytes) -> bytes:
    return data + b"\0" * ((-len(data)) % BLOCK)
