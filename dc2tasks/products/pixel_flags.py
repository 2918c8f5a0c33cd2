"""The pixel flags each kind of catalog is read for, named once.

The DPDD `good` column and the visit tables' native columns are made from these lists, and the
sample generator writes exactly these columns, so a flag added or dropped here changes the reader
and the test data together.
"""

from __future__ import annotations

from collections.abc import Iterable

OBJECT_PIXEL_FLAGS = (
    "edge", "interpolatedCenter", "saturatedCenter", "crCenter", "bad", "suspectCenter", "clipped",
)  # fmt: skip
"""Coadd (Object) catalogs: the flags GCRCatalogs' `good` requires unset."""
VISIT_PIXEL_FLAGS = tuple(f for f in OBJECT_PIXEL_FLAGS if f != "clipped")
"""Single-visit catalogs (src, forced_src, diaSrc): `clipped` is set by coadd assembly only."""


def pixel_flag_columns(flags: Iterable[str]) -> tuple[str, ...]:
    """The afw column names of pixel flags: `edge` -> `base_PixelFlags_flag_edge`."""
    return tuple(f"base_PixelFlags_flag_{f}" for f in flags)
