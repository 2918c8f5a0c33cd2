"""One rule for band lists (catalogue.parse_bands) and one for patches (names.PATCH), the same in the
command line and the sample config."""

from __future__ import annotations

import pytest

from dc2tasks import names
from dc2tasks.catalogue import BANDS, check_bands, parse_bands
from dc2tasks.sample import SampleConfig, parse_missing_band


@pytest.mark.parametrize(
    ("text", "bands"),
    [("ugrizy", tuple(BANDS)), ("gri", ("g", "r", "i")), ("g,r,i", ("g", "r", "i")), ("y, z", ("y", "z"))],
)
def test_band_lists_people_and_job_scripts_write(text, bands):
    assert parse_bands(text) == bands


@pytest.mark.parametrize("text", ["", ",", "gx", "gg", "G", "ugrizyu", "g;r"])
def test_band_lists_refused_with_the_value(text):
    with pytest.raises(ValueError) as error:
        parse_bands(text)
    assert str(error.value) == f"bands are distinct letters of ugrizy, not {text!r}"


@pytest.mark.parametrize("text", ["0,0", "0,1", "6,7", "9,9"])
def test_patches_accepted_as_written(text):
    assert names.PATCH.check(text) == text


@pytest.mark.parametrize(
    "text", ["", "0", "0;1", "0-1", "0,1,2", "10,1", "01,1", " 0,1", "0, 1", "0,1\n", "a,b"]
)
def test_patches_refused_with_the_value(text):
    with pytest.raises(ValueError) as error:
        names.PATCH.check(text, "--patches")
    assert str(error.value) == f"--patches: {text!r} is not a patch (x,y with single-digit x and y, e.g. 0,1)"


def test_the_sample_config_applies_the_same_rules_naming_the_field():
    for patches in (["0;1"], ["10,1"], ["0, 1"]):
        with pytest.raises(ValueError, match=r"^patches: '.*' is not a patch \(x,y with single-digit"):
            SampleConfig(patches=patches)
    with pytest.raises(ValueError, match=r"^missing_patches: '1-1' is not a patch"):
        SampleConfig(missing_patches=["1-1"])
    with pytest.raises(ValueError, match=r"^missing_bands: '11' is not a patch"):
        SampleConfig(missing_bands=[("g", "11")])
    for missing in ("", "@0,1", "gr", "gr@0,1"):
        with pytest.raises(ValueError, match="a missing band is 'b' or 'b@x,y', b one of ugrizy"):
            parse_missing_band(missing)
    for bands, shown in ((("g", "g"), "gg"), (("g", "x"), "gx"), ((), "")):
        with pytest.raises(ValueError, match=f"^bands: bands are distinct letters of ugrizy, not '{shown}'$"):
            SampleConfig(bands=bands)
    assert check_bands(["r", "g"]) == ("r", "g")
    with pytest.raises(ValueError, match="not 'gr'"):
        check_bands(["gr"])
    assert parse_missing_band("g@0,1") == ("g", "0,1") and parse_missing_band("y") == ("y", None)
    assert SampleConfig(patches=["3,4"], bands=("g", "r")).patches == ("3,4",)
