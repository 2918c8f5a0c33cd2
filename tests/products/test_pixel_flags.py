"""The pixel flags of each catalog kind are named once and reach the readers' column lists."""

from __future__ import annotations

from dc2tasks.products.dpdd import OBJECT_COLUMNS
from dc2tasks.products.pixel_flags import OBJECT_PIXEL_FLAGS, VISIT_PIXEL_FLAGS, pixel_flag_columns
from dc2tasks.products.schema import SchemaGeneration
from dc2tasks.products.visit_tables import VISIT_TABLES


def test_object_good_reads_the_object_flags() -> None:
    good = next(c for c in OBJECT_COLUMNS if c.name == "good")
    assert good.natives == pixel_flag_columns(OBJECT_PIXEL_FLAGS)
    assert good.natives[0] == "base_PixelFlags_flag_edge" and len(good.natives) == 7


def test_visit_tables_read_the_visit_flags() -> None:
    assert VISIT_PIXEL_FLAGS == OBJECT_PIXEL_FLAGS[:6]
    wanted = pixel_flag_columns(VISIT_PIXEL_FLAGS)
    for table in VISIT_TABLES.values():
        native = table.native(SchemaGeneration(3))
        assert [n for n in native if n.startswith("base_PixelFlags_flag_")] == list(wanted), table.key
