"""Bands and patches as people, run files and job scripts write them: one rule for each.

Standard library only (no argparse): the sample generator's config, the `dc2` command line and
anything else that reads a band list or a patch uses these functions, so they accept the same
values and refuse the rest with the same message.

Why these rules: DC2 has the six LSST filters, and a band given twice would be merged twice. A
patch is `x,y` with single-digit indices because that is all the DC2 sky map has (7x7 or 8x8 per
tract) and because the Object files name a patch's group `coadd_<tract>_<xy>` with the comma
dropped, which GCRCatalogs reads back one digit per index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

BANDS = ("u", "g", "r", "i", "z", "y")
_PATCH = re.compile(r"[0-9],[0-9]")
_SEPARATORS = re.compile(r"[,\s]")


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def check_bands(bands: Iterable[str], where: str = "", text: object = None) -> tuple[str, ...]:
    """`bands` as a tuple if each is one of ugrizy, given once, and there is at least one; else
    ValueError naming `where` (a field; argparse names the option itself) and quoting `text`
    (what was written) or the bands."""
    out = tuple(bands)
    if not out or any(b not in BANDS for b in out) or len(set(out)) != len(out):
        shown = text if text is not None else "".join(map(str, out))
        raise ValueError(f"{_where(where)}bands are distinct letters of {''.join(BANDS)}, not {shown!r}")
    return out


def parse_bands(text: str, where: str = "") -> tuple[str, ...]:
    """`ugrizy`, `gri`, or with commas `g,r,i`; in the order given."""
    return check_bands(_SEPARATORS.sub("", text), where, text)


def parse_patch(text: str, where: str = "") -> str:
    """`x,y` with single-digit x and y, e.g. `0,1`; returned as given."""
    if not isinstance(text, str) or not _PATCH.fullmatch(text):
        raise ValueError(
            f"{_where(where)}a patch is 'x,y' with single-digit x and y (e.g. 0,1), not {text!r}"
        )
    return text
