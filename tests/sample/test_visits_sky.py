"""Visits across RA = 0/360 and at the south pole: the fields the matching code must get right."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits as afits
from astropy.wcs import WCS

from dc2tasks.products.afw import read_table
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleRepo
from dc2tasks.sample.fields import SOUTH_POLE_TRACT, first_tract_of_ring, north_pole_tract, ra_zero_tract
from dc2tasks.sample.focal_plane import SENSORS, detector_number
from dc2tasks.sample.skymap import RingsSkyMap

RA_ZERO = ra_zero_tract(-30.0)
# the nine central rafts: with 1000-pixel sensors they cover the middle patch of a tract
CENTRAL_RAFTS = tuple(detector_number((x, y), s) for x in (1, 2, 3) for y in (1, 2, 3) for s in SENSORS)


def test_tract_helpers():
    skymap = RingsSkyMap()
    assert RA_ZERO == 4606 and skymap.tract_center(RA_ZERO)[0] == 0.0
    assert math.degrees(skymap.tract_center(RA_ZERO)[1]) == pytest.approx(-30.4959, abs=1e-3)
    assert first_tract_of_ring(0) == 1 and ra_zero_tract(-88.0) == 1
    assert first_tract_of_ring(40) == ra_zero_tract(
        math.degrees(skymap.tract_center(first_tract_of_ring(40))[1])
    )
    assert skymap.tract_center(first_tract_of_ring(40) - 1)[0] > math.radians(350)  # last of ring 39
    assert ra_zero_tract(-90.0) == SOUTH_POLE_TRACT and ra_zero_tract(90.0) == north_pole_tract() == 18937
    with pytest.raises(ValueError, match="ring"):
        first_tract_of_ring(120)
    with pytest.raises(ValueError, match="declination"):
        ra_zero_tract(-91.0)


@pytest.fixture(scope="module")
def awkward(make_repo) -> SampleRepo:
    return make_repo(
        "visits_awkward",
        tracts=[SOUTH_POLE_TRACT, RA_ZERO],
        patches=["3,3"],
        objects_per_patch=2500,
        ref_width=150,
        forced_width=60,
        visits=2,
        detectors=CENTRAL_RAFTS,
        detector_pixels=(1000, 1000),
    )


def _sources(sample: SampleRepo, tract: int) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(sample.visit_truth("source", v)) for v in sample.visit_ids(tract)])


def test_sources_on_both_sides_of_ra_zero(awkward):
    for tract, least in ((RA_ZERO, 1000), (SOUTH_POLE_TRACT, 3)):  # at the pole RA spreads over 360
        src = _sources(awkward, tract)
        assert ((src.ra >= 0) & (src.ra < 360)).all()
        assert (src.ra < 1).sum() > least and (src.ra > 359).sum() > least, tract
        dia = pd.concat(
            [pd.read_parquet(awkward.visit_truth("dia_source", v)) for v in awkward.visit_ids(tract)]
        )
        assert ((dia.ra >= 0) & (dia.ra < 360)).all()
    objects = pd.read_parquet(awkward.truth_path(RA_ZERO))
    assert (objects.ra < 1).any() and (objects.ra > 359).any() and (objects.ra < 360).all()


def test_sources_around_the_south_pole(awkward):
    src = _sources(awkward, SOUTH_POLE_TRACT)
    assert (src.dec > -90).all() and (src.dec < -89).mean() > 0.99
    assert (src.dec < -89.99).any()
    # every quadrant of RA meets at the pole
    assert set(np.floor(src.ra / 90).astype(int)) == {0, 1, 2, 3}
    # the catalogued positions agree with each detector's WCS there too, with coord_ra in [0, 2 pi)
    repo = Gen2Repo.open(awkward.root, rerun=awkward.rerun)
    visit = awkward.visit_info(awkward.visit_ids(SOUTH_POLE_TRACT)[0])
    checked = 0
    for d in visit.detectors:
        table = read_table(repo.require("src", **visit.data_id(d)))
        if not len(table):
            continue
        assert ((table["coord_ra"] >= 0) & (table["coord_ra"] < 2 * math.pi)).all()
        with afits.open(repo.require("calexp", **visit.data_id(d))) as hdus:
            wcs = WCS(hdus[1].header)
        x, y = wcs.all_world2pix(np.degrees(table["coord_ra"]), np.degrees(table["coord_dec"]), 0)
        assert np.allclose(x, table["slot_Centroid_x"], atol=1e-5) and np.allclose(
            y, table["slot_Centroid_y"], atol=1e-5
        )
        checked += 1
    assert checked > 10
