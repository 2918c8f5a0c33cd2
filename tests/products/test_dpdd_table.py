"""The declarative DPDD table against GCRCatalogs' own quantity modifiers, for every generation."""

from __future__ import annotations

import numpy as np
import pytest
from GCRCatalogs import dc2_object

from dc2tasks.products import dpdd
from dc2tasks.products.schema import SchemaGeneration


def gcr_modifiers(version: int, bands: str = "ugrizy", pixel_scale: float = 0.2) -> dict:
    return dc2_object.DC2ObjectCatalog._generate_modifiers(
        pixel_scale, bands, True, True, True, dm_schema_version=version
    )


def natives_of(modifier) -> tuple[str, ...]:
    if modifier is None:
        return ()
    if isinstance(modifier, str):
        return (modifier,)
    return tuple(modifier[1:])


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_names_and_natives_equal_gcr(version):
    ctx = dpdd.Context(SchemaGeneration(version), tuple("ugrizy"))
    ours = {name: natives for _, name, natives in dpdd.expanded(ctx)}
    theirs = {name: natives_of(m) for name, m in gcr_modifiers(version).items()}
    assert ours == theirs
    assert len(ours) == 135
    assert len(dpdd.native_columns(ctx)) == 27 + 18 * 6


@pytest.mark.parametrize("version", [1, 3, 4])
def test_values_equal_gcr_functions_on_random_columns(version):
    ctx = dpdd.Context(SchemaGeneration(version), ("g", "r"), pixel_scale=0.185)
    rng = np.random.default_rng(version)
    n = 1000
    native = {}
    for name in dpdd.native_columns(ctx):
        if "flag" in name or name == "deblend_skipped":
            native[name] = rng.uniform(size=n) < 0.1
        elif name in ("id", "parent"):
            native[name] = rng.integers(0, 2**62, n)
        else:
            native[name] = rng.normal(10, 5, n)
    ours = dpdd.compute(native, ctx)
    for name, modifier in gcr_modifiers(version, "gr", 0.185).items():
        if isinstance(modifier, str):
            expect = native[modifier]
        else:
            expect = modifier[0](*(native[c] for c in modifier[1:]))
        np.testing.assert_array_equal(ours[name], expect, err_msg=name)


def test_markdown_documents_every_column():
    text = dpdd.markdown(generation=1)
    for col in dpdd.OBJECT_COLUMNS:
        assert f"`{col.name.replace('{b}', '<b>')}`" in text
    assert "`<b>_base_PsfFlux_fluxSigma`" in text
    assert "| `psf_fwhm_<b>` |" in text and "arcsec" in text


def test_docs_are_current():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "dpdd_object.md").read_text()
    assert doc.endswith(dpdd.markdown(generation=3)), "regenerate docs/dpdd_object.md with dc2 dpdd-columns"
