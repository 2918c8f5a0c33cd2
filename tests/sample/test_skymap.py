"""The rings sky map geometry against facts of the real DC2 sky map."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dc2tasks.sample.skymap import RingsSkyMap

# gcr-catalogs fixture row (spec 1.0 worked test vector): tract 4850, patch 3,1, Run 1.1p, 0.185"/px
RA, DEC = 55.67530876, -29.62466051
X, Y = 13270.49294, 4001.90490


def test_worked_example_pixel_position():
    geom = RingsSkyMap().tract(4850, 0.185)
    x, y = geom.sky_to_pixel(math.radians(RA), math.radians(DEC))
    assert x == pytest.approx(X, abs=0.01)
    assert y == pytest.approx(Y, abs=0.01)
    assert (int((x + 0.5) // 4000), int((y + 0.5) // 4000)) == (3, 1)


def test_tract_4850_contains_the_test_object():
    sky = RingsSkyMap()
    assert sky.find_tracts(math.radians(55.7), math.radians(-29.6)).tolist() == [4850]
    geom = sky.tract(4850, 0.2)
    x, y = geom.sky_to_pixel(math.radians(55.7), math.radians(-29.6))
    assert geom.bbox.contains(x, y)


def test_sky_map_size_and_tract_centres():
    sky = RingsSkyMap()
    assert sky.num_tracts == 18938
    ra, dec = sky.tract_center(4850)
    assert math.degrees(ra) == pytest.approx(55.514018691589, abs=1e-9)
    assert math.degrees(dec) == pytest.approx(-29.008264462810, abs=1e-9)
    assert sky.tract_center(0) == (0.0, -math.pi / 2)
    # each tract centre is found in its own tract
    tracts = np.array([1, 100, 4849, 4850, 4851, 9000, 18936])
    centres = np.array([sky.tract_center(int(t)) for t in tracts])
    assert sky.find_tracts(centres[:, 0], centres[:, 1]).tolist() == tracts.tolist()


@pytest.mark.parametrize(("scale", "patches", "crpix"), [(0.2, 7, 13999.0), (0.185, 8, 15999.0)])
def test_patches_per_tract_follow_the_pixel_scale(scale, patches, crpix):
    geom = RingsSkyMap().tract(4850, scale)
    assert geom.num_patches == patches
    assert geom.crpix0 == crpix
    assert geom.outer_box(0, 0).x0 == 0  # outer boxes are clipped to the tract
    assert geom.outer_box(1, 1).x0 == 3900
    assert geom.outer_box(patches - 1, 0).x1 == patches * 4000 - 1


def test_pixel_sky_round_trip_and_orientation():
    geom = RingsSkyMap().tract(4850, 0.2)
    x = np.array([0.0, 5000.5, 13999.0, 27999.0])
    y = np.array([27999.0, 100.25, 13999.0, 0.0])
    ra, dec = geom.pixel_to_sky(x, y)
    x2, y2 = geom.sky_to_pixel(ra, dec)
    assert np.max(np.abs(x2 - x)) < 1e-6 and np.max(np.abs(y2 - y)) < 1e-6
    assert ra[2] == pytest.approx(geom.ra0) and dec[2] == pytest.approx(geom.dec0)
    # RA grows to the east = to smaller x (CD1_1 < 0); Dec grows with y
    r, d = geom.pixel_to_sky(np.array([13000.0, 14000.0, 14000.0]), np.array([14000.0, 14000.0, 15000.0]))
    assert r[0] > r[1] and d[2] > d[1]
    # pixel scale: 1000 px along y is 200 arcsec
    assert math.degrees(d[2] - d[1]) * 3600 == pytest.approx(200.0, rel=1e-4)
