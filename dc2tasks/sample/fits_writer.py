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


def tan_wcs_cards(
    crpix: tuple[float, float],
    crval_deg: tuple[float, float],
    cd: tuple[float, float, float, float],
    xy0: tuple[int, int] = (0, 0),
) -> list[tuple[str, object]]:
    """A TAN WCS as afw writes an image's: the sky WCS, then the "A" WCS and LTV cards that record
    the image origin (xy0) in its parent's pixel frame."""
    x0, y0 = xy0
    return [
        ("CTYPE1", "RA---TAN"),
        ("CTYPE2", "DEC--TAN"),
        ("CRPIX1", crpix[0]),
        ("CRPIX2", crpix[1]),
        ("CRVAL1", crval_deg[0]),
        ("CRVAL2", crval_deg[1]),
        ("CUNIT1", "deg"),
        ("CUNIT2", "deg"),
        ("CD1_1", cd[0]),
        ("CD1_2", cd[1]),
        ("CD2_1", cd[2]),
        ("CD2_2", cd[3]),
        ("RADESYS", "ICRS"),
        ("EQUINOX", 2000.0),
        ("CTYPE1A", "LINEAR"),
        ("CTYPE2A", "LINEAR"),
        ("CRPIX1A", 1.0),
        ("CRPIX2A", 1.0),
        ("CRVAL1A", float(x0)),
        ("CRVAL2A", float(y0)),
        ("CUNIT1A", "PIXEL"),
        ("CUNIT2A", "PIXEL"),
        ("LTV1", float(-x0)),
        ("LTV2", float(-y0)),
    ]
