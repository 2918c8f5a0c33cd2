"""One rule for band lists and one for patches, the same in the command line and the sample config."""

from __future__ import annotations

import pytest

from dc2tasks.data_ids import BANDS, check_bands, parse_bands, parse_patch
from dc2tasks.sample import SampleConfig


@pytest.mark.parametrize(
    ("text", "bands"),
    [("ugrizy", BANDS), ("gri", ("g", "r", "i")), ("g,r,i", ("g", "r", "i")), ("y, z", ("y", "z"))],
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
    assert parse_patch(text) == text


@pytest.mark.parametrize(
    "text", ["", "0", "0;1", "0-1", "0,1,2", "10,1", "01,1", " 0,1", "0, 1", "0,1\n", "a,b"]
)
def test_patches_refused_with_the_value(text):
    with pytest.raises(ValueError) as error:
        parse_patch(text)
    assert str(error.value) == f"a patch is 'x,y' with single-digit x and y (e.g. 0,1), not {text!r}"


def test_the_sample_config_applies_the_same_rules_naming_the_field():
    for patches in (["0;1"], ["10,1"], ["0, 1"]):
        with pytest.raises(ValueError, match=r"^patches: a patch is 'x,y' with single-digit x and y"):
            SampleConfig(patches=patches)
    with pytest.raises(ValueError, match=r"^missing_patches: a patch is 'x,y'.*not '1-1'"):
        SampleConfig(missing_patches=["1-1"])
    with pytest.raises(ValueError, match=r"^missing_bands: a patch is 'x,y'.*not '11'"):
        SampleConfig(missing_bands=[("g", "11")])
    for bands, shown in ((("g", "g"), "gg"), (("g", "x"), "gx"), ((), "")):
        with pytest.raises(ValueError, match=f"^bands: bands are distinct letters of ugrizy, not '{shown}'$"):
            SampleConfig(bands=bands)
    assert check_bands(["r", "g"]) == ("r", "g")
    assert SampleConfig(patches=["3,4"], bands=("g", "r")).patches == ("3,4",)
