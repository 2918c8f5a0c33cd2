"""Positions, patch membership, primary flags, deblend families, overlaps, reference bands."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dc2tasks.products.afw import read_table
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample.skymap import RingsSkyMap


def _refs(sample) -> dict[str, object]:
    repo = Gen2Repo.open(sample.root, sample.rerun)
    return {p: read_table(repo.require("deepCoadd_ref", tract=4850, patch=p)) for p in sample.patches[4850]}


def test_coordinates_follow_the_tract_projection(default_repo):
    geom = RingsSkyMap().tract(4850, default_repo.pixel_scale)
    for ref in _refs(default_repo).values():
        ra, dec = geom.pixel_to_sky(ref["base_SdssCentroid_x"], ref["base_SdssCentroid_y"])
        assert np.max(np.abs(ra - ref["coord_ra"])) < 1e-12
        assert np.max(np.abs(dec - ref["coord_dec"])) < 1e-12
        # radians, near RA 55.5, Dec -29
        assert 0.95 < np.median(ref["coord_ra"]) < 0.99 and -0.53 < np.median(ref["coord_dec"]) < -0.48


def test_records_in_outer_box_primaries_in_inner_box(default_repo):
    geom = RingsSkyMap().tract(4850, default_repo.pixel_scale)
    for patch, ref in _refs(default_repo).items():
        px, py = (int(v) for v in patch.split(","))
        x, y = ref["base_SdssCentroid_x"], ref["base_SdssCentroid_y"]
        assert geom.outer_box(px, py).contains(x, y).all()
        inner = geom.inner_box(px, py).contains(x, y)
        assert np.array_equal(ref["detect_isPatchInner"], inner)
        assert 0 < (~inner).sum() < 0.2 * len(ref)  # the border holds neighbours' objects
        primary = ref["detect_isPrimary"]
        assert np.array_equal(primary, inner & ref["detect_isTractInner"] & (ref["deblend_nChild"] == 0))
        assert primary.sum() > 0.5 * len(ref)
        expected_tract_inner = RingsSkyMap().find_tracts(ref["coord_ra"], ref["coord_dec"]) == 4850
        assert np.array_equal(ref["detect_isTractInner"], expected_tract_inner)
    # patch 0,0 is at the tract corner, partly closer to the neighbouring tracts
    assert not _refs(default_repo)["0,0"]["detect_isTractInner"].all()


def test_deblend_families(default_repo):
    for ref in _refs(default_repo).values():
        parents = ref["deblend_nChild"] > 0
        assert parents.sum() >= 3
        assert not ref["detect_isPrimary"][parents].any()
        children = ref["parent"] != 0
        in_catalog = np.isin(ref["parent"][children], ref["id"][parents])
        assert in_catalog.mean() > 0.9
        counts = pd.Series(ref["parent"][children]).value_counts()
        n_child = dict(zip(ref["id"][parents], ref["deblend_nChild"][parents], strict=True))
        full = [pid for pid in counts.index if pid in n_child and counts[pid] == n_child[pid]]
        assert len(full) >= 0.8 * len(counts)
        assert ref["deblend_skipped"][ref["deblend_nChild"] > 0].sum() == 0


def test_overlap_objects_share_ids_and_one_is_primary(default_repo):
    refs = _refs(default_repo)
    frames = [
        pd.DataFrame(
            {
                "id": r["id"],
                "patch": p,
                "primary": r["detect_isPrimary"],
                "inner": r["detect_isPatchInner"],
                "ra": r["coord_ra"],
                "tinner": r["detect_isTractInner"],
                "nchild": r["deblend_nChild"],
            }
        )
        for p, r in refs.items()
    ]
    rows = pd.concat(frames)
    per_id = rows.groupby("id").agg(
        n=("patch", "size"),
        primary=("primary", "sum"),
        inner=("inner", "sum"),
        ra=("ra", "nunique"),
        tinner=("tinner", "all"),
        nchild=("nchild", "max"),
    )
    shared = per_id[per_id.n > 1]
    assert len(shared) > 20
    assert (shared.ra == 1).all()  # same object, same position
    assert (shared.inner == 1).all()  # patch-inner in exactly one patch
    eligible = shared[shared.tinner & (shared.nchild == 0)]
    assert len(eligible) > 10 and (eligible.primary == 1).all()
    assert (per_id.primary <= 1).all()


def test_exactly_one_reference_band(default_repo):
    for ref in _refs(default_repo).values():
        merge = np.stack([ref[f"merge_measurement_{b}"] for b in default_repo.bands])
        assert (merge.sum(axis=0) == 1).all()
        for k, b in enumerate(default_repo.bands):
            chosen = merge[k]
            assert ref[f"merge_footprint_{b}"][chosen].all() and ref[f"merge_peak_{b}"][chosen].all()
        assert merge[default_repo.bands.index("i")].mean() > 0.25  # i leads the priority list


def test_ids_are_unique_per_patch_and_64_bit(default_repo):
    for ref in _refs(default_repo).values():
        assert ref["id"].min() > 2**40
        assert len(set(ref["id"])) == len(ref)
