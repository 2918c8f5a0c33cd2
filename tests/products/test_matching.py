"""SkyMatcher against a brute-force nearest neighbour with Vincenty great-circle distances."""

from __future__ import annotations

import numpy as np
import pytest

from dc2tasks.products.matching import Matches, SkyMatcher

ARCSEC = 1.0 / 3600.0


def vincenty_arcsec(ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    """Pairwise (len1, len2) great-circle distances; Vincenty's form is exact at every angle."""
    l1, p1 = np.deg2rad(ra1)[:, None], np.deg2rad(dec1)[:, None]
    l2, p2 = np.deg2rad(ra2)[None, :], np.deg2rad(dec2)[None, :]
    dl = l2 - l1
    num = np.hypot(np.cos(p2) * np.sin(dl), np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl))
    den = np.sin(p1) * np.sin(p2) + np.cos(p1) * np.cos(p2) * np.cos(dl)
    return np.rad2deg(np.arctan2(num, den)) * 3600.0


def brute_force(ids, ra, dec, sra, sdec, radius) -> Matches:
    dist = vincenty_arcsec(sra, sdec, ra, dec)
    inside = dist <= radius
    key = np.where(inside, dist, np.inf)
    # nearest; among equal distances the smallest id
    order = np.lexsort((np.broadcast_to(ids, dist.shape), key), axis=-1)[:, 0]
    rows = np.arange(len(sra))
    hit = inside.any(axis=1)
    return Matches(
        np.where(hit, ids[order], -1).astype(np.int64),
        np.where(hit, dist[rows, order], np.nan),
        inside.sum(axis=1).astype(np.int32),
    )


def assert_same(got: Matches, want: Matches) -> None:
    assert got.object_id.dtype == np.int64
    assert got.distance_arcsec.dtype == np.float64
    assert got.candidates.dtype == np.int32
    np.testing.assert_array_equal(got.object_id, want.object_id)
    np.testing.assert_array_equal(got.candidates, want.candidates)
    np.testing.assert_array_equal(np.isnan(got.distance_arcsec), np.isnan(want.distance_arcsec))
    np.testing.assert_allclose(got.distance_arcsec, want.distance_arcsec, rtol=0, atol=1e-9, equal_nan=True)


def field(rng, n_obj, ra_range, dec_range, n_src, scatter_arcsec, spurious=0.2):
    """Objects uniform on the sphere inside a box; sources near random objects plus spurious ones."""
    ra = rng.uniform(*ra_range, n_obj) % 360.0
    s0, s1 = np.sin(np.deg2rad(dec_range))
    dec = np.rad2deg(np.arcsin(rng.uniform(s0, s1, n_obj)))
    ids = rng.permutation(n_obj).astype(np.int64) * 7 + 1000
    pick = rng.integers(0, n_obj, n_src)
    # scatter in a local tangent frame, so it is isotropic on the sky even near the poles
    sra, sdec = offset(
        ra[pick], dec[pick], rng.normal(0, scatter_arcsec, n_src), rng.normal(0, scatter_arcsec, n_src)
    )
    n_spur = int(spurious * n_src)
    sra[:n_spur] = rng.uniform(*ra_range, n_spur) % 360.0
    sdec[:n_spur] = np.rad2deg(np.arcsin(rng.uniform(s0, s1, n_spur)))
    return ids, ra, dec, sra, sdec


def offset(ra, dec, east_arcsec, north_arcsec):
    """Move positions by small tangent-plane offsets (exact rotation of the unit vector)."""
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    pos = np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
    east = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)])
    north = np.stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)])
    e, n = np.deg2rad(east_arcsec * ARCSEC), np.deg2rad(north_arcsec * ARCSEC)
    v = pos + e * east + n * north
    v /= np.linalg.norm(v, axis=0)
    return np.rad2deg(np.arctan2(v[1], v[0])) % 360.0, np.rad2deg(np.arcsin(np.clip(v[2], -1, 1)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generic_field_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    ids, ra, dec, sra, sdec = field(rng, 4000, (150.0, 150.2), (2.0, 2.2), 1500, 0.6)
    got = SkyMatcher(ids, ra, dec).match(sra, sdec, 1.0)
    want = brute_force(ids, ra, dec, sra, sdec, 1.0)
    assert_same(got, want)
    # the field must exercise both outcomes
    assert 0.3 < (want.object_id >= 0).mean() < 0.95


@pytest.mark.parametrize("seed", [3, 4])
def test_field_across_ra_zero(seed):
    rng = np.random.default_rng(seed)
    ids, ra, dec, sra, sdec = field(rng, 4000, (-0.1, 0.1), (-30.1, -29.9), 1500, 0.6)
    # and a strip hugging RA = 0, where most matches pair an RA near 360 with one near 0
    strip = field(rng, 300, (-1.5 * ARCSEC, 1.5 * ARCSEC), (-30.1, -29.9), 300, 0.6, spurious=0.0)
    ids = np.concatenate([ids, strip[0] + 10**6])
    ra, dec, sra, sdec = (
        np.concatenate([a, b]) for a, b in zip((ra, dec, sra, sdec), strip[1:], strict=True)
    )
    assert (ra > 359.0).any() and (ra < 1.0).any()
    # sources given with RA in (-180, 180] must match the same objects as RA in [0, 360)
    signed = np.where(sra > 180.0, sra - 360.0, sra)
    matcher = SkyMatcher(ids, ra, dec)
    got = matcher.match(signed, sdec, 1.0)
    want = brute_force(ids, ra, dec, sra, sdec, 1.0)
    assert_same(got, want)
    # pairs whose two RAs lie on either side of 0/360: the old box cut lost exactly these
    obj_ra = dict(zip(ids.tolist(), ra.tolist(), strict=True))
    matched_ra = np.array([obj_ra.get(i, np.nan) for i in want.object_id.tolist()])
    across = (want.object_id >= 0) & (np.abs(matched_ra - sra) > 180.0)
    assert across.sum() >= 20
    assert_same(matcher.match(sra, sdec, 1.0), want)


@pytest.mark.parametrize("pole", [90.0, -90.0])
def test_field_within_one_degree_of_a_pole(pole):
    rng = np.random.default_rng(int(pole) + 100)
    lo, hi = sorted((pole, pole - np.sign(pole) * 1.0))
    # a 1-degree cap has a large area: put the objects in a 0.05-degree cap so matches are common
    lo, hi = (hi - 0.05, hi) if pole > 0 else (lo, lo + 0.05)
    ids, ra, dec, sra, sdec = field(rng, 3000, (0.0, 360.0), (lo, hi), 1500, 0.6)
    # objects exactly at the pole (with arbitrary RA: the same point) and sources right beside it
    ids = np.concatenate([ids, [11, 12]])
    ra = np.concatenate([ra, [0.0, 123.0]])
    dec = np.concatenate([dec, [pole, pole]])
    sra = np.concatenate([sra, [45.0, 300.0, 17.0]])
    sdec = np.concatenate(
        [sdec, [pole - np.sign(pole) * 0.3 * ARCSEC, pole, pole - np.sign(pole) * 0.99 * ARCSEC]]
    )
    got = SkyMatcher(ids, ra, dec).match(sra, sdec, 1.0)
    want = brute_force(ids, ra, dec, sra, sdec, 1.0)
    assert_same(got, want)
    # the two pole objects coincide: a tie, which goes to the smaller id
    np.testing.assert_array_equal(got.object_id[-3:], [11, 11, 11])
    assert got.candidates[-3:].tolist() == [2, 2, 2]
    np.testing.assert_allclose(got.distance_arcsec[-3:], [0.3, 0.0, 0.99], rtol=0, atol=1e-9)
    assert (np.abs(sdec) > 89.0).all() and (want.object_id >= 0).mean() > 0.3


@pytest.mark.parametrize("radius", [2.0, 5.0])
def test_dense_field_counts_every_candidate(radius):
    rng = np.random.default_rng(7)
    ids, ra, dec, sra, sdec = field(rng, 6000, (10.0, 10.05), (-45.0, -44.95), 1500, 1.0)
    got = SkyMatcher(ids, ra, dec).match(sra, sdec, radius)
    want = brute_force(ids, ra, dec, sra, sdec, radius)
    assert_same(got, want)
    assert want.candidates.max() >= 4  # several objects inside the radius, as the test intends


def test_more_candidates_than_the_first_query_asks_for():
    """50 objects inside the radius of one source: the matcher must widen its k until all are seen."""
    rng = np.random.default_rng(8)
    ra, dec = offset(
        np.full(50, 80.0), np.full(50, 10.0), rng.uniform(-0.6, 0.6, 50), rng.uniform(-0.6, 0.6, 50)
    )
    ids = np.arange(50, dtype=np.int64) + 1
    got = SkyMatcher(ids, ra, dec).match([80.0], [10.0], 1.0)
    want = brute_force(ids, ra, dec, np.array([80.0]), np.array([10.0]), 1.0)
    assert_same(got, want)
    assert got.candidates[0] == 50


def test_sources_beyond_the_radius_get_minus_one_int64():
    ids = np.array([5, 6], dtype=np.int32)
    matcher = SkyMatcher(ids, [10.0, 10.0], [0.0, 0.001])
    got = matcher.match([10.0, 10.0 + 1.2 * ARCSEC, 10.0], [0.0, 0.0, 0.001 + 0.999 * ARCSEC], 1.0)
    assert got.object_id.dtype == np.int64
    assert got.object_id.tolist() == [5, -1, 6]
    assert got.candidates.tolist() == [1, 0, 1]
    assert np.isnan(got.distance_arcsec[1])
    np.testing.assert_allclose(got.distance_arcsec[[0, 2]], [0.0, 0.999], rtol=0, atol=1e-9)


def test_equal_distances_go_to_the_smallest_id_whatever_the_order():
    x = 0.5 * ARCSEC  # (x, 0), (-x, 0) and (0, x) give bit-identical chords from (ra, dec) = (0, 0)
    ra, dec = np.array([x, -x, 0.0]), np.array([0.0, 0.0, x])
    for ids in ([30, 20, 10], [10, 30, 20], [20, 10, 30]):
        got = SkyMatcher(np.array(ids), ra, dec).match([0.0], [0.0], 1.0)
        assert got.object_id.tolist() == [10]
        assert got.candidates.tolist() == [3]
        np.testing.assert_allclose(got.distance_arcsec, [0.5], rtol=0, atol=1e-9)
    # duplicated positions (one object listed twice under two ids) are a tie too
    got = SkyMatcher(np.array([9, 4]), [1.0, 1.0], [1.0, 1.0]).match([1.0], [1.0 + 0.2 * ARCSEC])
    assert got.object_id.tolist() == [4] and got.candidates.tolist() == [2]


@pytest.mark.parametrize("seed", range(5))
def test_never_matches_beyond_the_radius_and_never_misses_one_inside(seed):
    rng = np.random.default_rng(seed + 50)
    radius = float(rng.uniform(0.2, 3.0))
    center_ra, center_dec = rng.uniform(0, 360), rng.uniform(-89.5, 89.5)
    ids, ra, dec, sra, sdec = field(
        rng, 2000, (center_ra - 0.05, center_ra + 0.05), (center_dec - 0.05, center_dec + 0.05), 800, radius
    )
    got = SkyMatcher(ids, ra, dec).match(sra, sdec, radius)
    hit = got.object_id >= 0
    assert (got.distance_arcsec[hit] <= radius).all()
    dist = vincenty_arcsec(sra, sdec, ra, dec)
    np.testing.assert_array_equal(hit, (dist <= radius).any(axis=1))
    nearest = dist.min(axis=1)
    np.testing.assert_allclose(got.distance_arcsec[hit], nearest[hit], rtol=0, atol=1e-9)


def test_nan_positions():
    matcher = SkyMatcher(np.array([1, 2, 3]), [10.0, np.nan, 10.0], [0.0, 0.0, np.inf])
    assert len(matcher) == 1 and matcher.dropped == 2
    got = matcher.match([10.0, np.nan, 10.0], [0.0, 0.0, np.nan])
    assert got.object_id.tolist() == [1, -1, -1]
    assert got.candidates.tolist() == [1, 0, 0]


def test_empty_inputs():
    empty = SkyMatcher(np.array([], dtype=np.int64), [], [])
    assert len(empty) == 0
    got = empty.match([1.0, 2.0], [3.0, 4.0])
    assert got.object_id.dtype == np.int64 and got.object_id.tolist() == [-1, -1]
    assert got.candidates.tolist() == [0, 0] and np.isnan(got.distance_arcsec).all()
    got = SkyMatcher(np.array([7]), [1.0], [2.0]).match([], [])
    assert got.object_id.shape == (0,) and got.object_id.dtype == np.int64
    assert got.distance_arcsec.dtype == np.float64 and got.candidates.dtype == np.int32


@pytest.mark.parametrize("radius", [0.0, -1.0, np.nan, "1", None, 200 * 3600.0])
def test_bad_radius_names_the_parameter(radius):
    matcher = SkyMatcher(np.array([1]), [0.0], [0.0])
    with pytest.raises(ValueError, match="radius_arcsec"):
        matcher.match([0.0], [0.0], radius)


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"objects: ra_deg has 2 values but dec_deg has 1"):
        SkyMatcher(np.array([1, 2]), [0.0, 1.0], [0.0])
    with pytest.raises(ValueError, match=r"objects: ids has shape \(3,\) but there are 2 positions"):
        SkyMatcher(np.array([1, 2, 3]), [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="ids must be integers"):
        SkyMatcher(np.array([1.0, 2.0]), [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="no-match sentinel"):
        SkyMatcher(np.array([-1, 2]), [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"objects: dec_deg must lie in \[-90, 90\]"):
        SkyMatcher(np.array([1]), [0.0], [91.0])
    matcher = SkyMatcher(np.array([1]), [0.0], [0.0])
    with pytest.raises(ValueError, match="sources: ra_deg has 1 values but dec_deg has 2"):
        matcher.match([0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"sources: dec_deg must lie in \[-90, 90\]"):
        matcher.match([0.0], [-90.5])
