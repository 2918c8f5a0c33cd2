"""The Gen2 layout: rerun chain, templates, calibration eras, missing bands and patches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dc2tasks.products.afw import read_table
from dc2tasks.products.calib import read_calibration, read_pixel_scale
from dc2tasks.products.errors import InputError
from dc2tasks.products.fits import scan
from dc2tasks.products.repo import Gen2Repo, read_repository_cfg

ZP27 = 10 ** (27 / 2.5)


def test_rerun_chain_finds_calexps_through_the_parent(default_repo):
    root = default_repo.root
    assert (root / "_mapper").read_text().strip() == "lsst.obs.lsst.imsim.ImsimMapper"
    cfg_text = (root / "rerun" / "multiband" / "repositoryCfg.yaml").read_text()
    assert cfg_text.startswith("!RepositoryCfg_v1\n")
    assert "_mapper: !!python/name:lsst.obs.lsst.imsim.ImsimMapper ''" in cfg_text
    cfg = read_repository_cfg(root / "rerun" / "multiband" / "repositoryCfg.yaml")
    assert cfg["_parents"] == ["../coadd"] and cfg["_policy"] is None and cfg["_root"] is None
    assert read_repository_cfg(root / "rerun" / "coadd" / "repositoryCfg.yaml")["_parents"] == ["../.."]

    repo = Gen2Repo.open(root, rerun="multiband")
    assert repo.camera == "obs_lsst"
    assert [p.name for p in repo.chain] == ["multiband", "coadd", root.resolve().name]
    calexp = repo.require("deepCoadd_calexp", tract=4850, patch="1,0", filter="z")
    assert calexp.parent.parent.parent.parent.parent.name == "coadd"
    assert calexp.name == "calexp-z-4850-1,0.fits"
    ref = repo.require("deepCoadd_ref", tract=4850, patch="1,0")
    assert ref.is_relative_to(root.resolve() / "rerun" / "multiband")
    assert repo.tracts() == [4850]
    assert repo.patches(4850) == ["0,0", "0,1", "1,0", "1,1"]
    assert repo.bands(4850) == list("ugrizy")
    # the coadd rerun alone has exposures but no catalogs
    parent = Gen2Repo.open(root, rerun="coadd")
    assert parent.find("deepCoadd_ref", tract=4850, patch="1,0") is None
    assert parent.find("deepCoadd_calexp", tract=4850, patch="1,0", filter="z") == calexp


def test_calib_era_fluxmag0_and_pixel_scale(default_repo):
    repo = Gen2Repo.open(default_repo.root, rerun=default_repo.rerun)
    for patch in default_repo.patches[4850]:
        for band in default_repo.bands:
            path = repo.require("deepCoadd_calexp", tract=4850, patch=patch, filter=band)
            cal = read_calibration(path)
            assert (cal.era, cal.fluxmag0, cal.fluxmag0_err) == ("calib", ZP27, 0.0)
            assert read_pixel_scale(path) == pytest.approx(0.2, rel=1e-12)
    header = scan(path)[1].header
    assert (header["CTYPE1"], header["CTYPE2"]) == ("RA---TAN", "DEC--TAN")
    # the image origin is the patch's outer corner: tract CRPIX (13999 + 1) minus x0 = 3900
    assert header["CRPIX1"] == pytest.approx(14000.0 - 3900) and header["CRVAL1A"] == 3900.0


def test_photocalib_era_with_jitter(make_repo):
    sample = make_repo("photocalib", calib_era="photocalib", zp_jitter=0.2, patches=["0,0", "2,3"])
    repo = Gen2Repo.open(sample.root, rerun=sample.rerun)
    f0s = []
    for patch in ("0,0", "2,3"):
        for band in sample.bands:
            path = repo.require("deepCoadd_calexp", tract=4850, patch=patch, filter=band)
            assert "FLUXMAG0" not in scan(path)[0].header
            cal = read_calibration(path)
            assert cal.era == "photocalib"
            zp = 2.5 * math.log10(cal.fluxmag0)
            assert abs(zp - 27.0) <= 0.2 + 1e-9
            f0s.append(cal.fluxmag0)
    assert len(set(f0s)) == len(f0s)  # each patch-band has its own zero point
    assert max(abs(2.5 * math.log10(f) - 27) for f in f0s) > 0.05


def test_obs_lsstsim_layout(make_repo, tmp_path):
    sample = make_repo("lsstsim", camera="obs_lsstSim", patches=["0,0"], objects_per_patch=30)
    assert (sample.root / "_mapper").read_text().strip() == "lsst.obs.lsstSim.LsstSimMapper"
    repo = Gen2Repo.open(sample.root, rerun=sample.rerun)
    assert repo.camera == "obs_lsstSim"
    forced = repo.require("deepCoadd_forced_src", tract=4850, patch="0,0", filter="g")
    assert forced.name == "forced-g-4850-0,0.fits"
    assert not list(sample.root.rglob("forced_src-*"))


def test_custom_rerun_name_and_tracts(make_repo):
    sample = make_repo("rerun", rerun="w_2018_39", tracts=[4850, 4851], patches=["3,3"], objects_per_patch=30)
    repo = Gen2Repo.open(sample.root, rerun="w_2018_39")
    assert repo.tracts() == [4850, 4851]
    a = read_table(repo.require("deepCoadd_ref", tract=4850, patch="3,3"))
    b = read_table(repo.require("deepCoadd_ref", tract=4851, patch="3,3"))
    assert not set(a["id"]) & set(b["id"])
    assert np.degrees(b["coord_ra"]).mean() > np.degrees(a["coord_ra"]).mean() + 1.0  # next tract east


def test_missing_band_and_patch(make_repo):
    sample = make_repo(
        "missing",
        missing_bands=[("g", "0,1"), ("u", None)],
        missing_patches=["1,1"],
        objects_per_patch=50,
    )
    repo = Gen2Repo.open(sample.root, rerun=sample.rerun)
    assert repo.patches(4850) == ["0,0", "0,1", "1,0"]
    assert sample.patches[4850] == ["0,0", "0,1", "1,0"]
    with pytest.raises(InputError, match="no deepCoadd_ref"):
        repo.require("deepCoadd_ref", tract=4850, patch="1,1")
    assert repo.find("deepCoadd_forced_src", tract=4850, patch="1,1", filter="r") is None
    assert repo.find("deepCoadd_calexp", tract=4850, patch="1,1", filter="r") is not None
    assert repo.find("deepCoadd_forced_src", tract=4850, patch="0,1", filter="g") is None
    assert repo.find("deepCoadd_calexp", tract=4850, patch="0,1", filter="g") is None
    assert repo.find("deepCoadd_forced_src", tract=4850, patch="0,0", filter="g") is not None
    for patch in ("0,0", "0,1", "1,1"):
        assert repo.find("deepCoadd_calexp", tract=4850, patch=patch, filter="u") is None
    assert "u" not in repo.bands(4850)
    # a band that was never measured is never the reference band (nor detected)
    refs = {p: read_table(repo.require("deepCoadd_ref", tract=4850, patch=p)) for p in ("0,0", "0,1", "1,0")}
    for ref in refs.values():
        assert not ref["merge_measurement_u"].any() and not ref["merge_footprint_u"].any()
    owned_by_01 = (refs["0,1"]["id"] >> 24) == 4850 * 1024 + 1
    assert owned_by_01.sum() > 40
    assert not refs["0,1"]["merge_measurement_g"][owned_by_01].any()
    assert refs["0,0"]["merge_measurement_g"].any() or refs["1,0"]["merge_measurement_g"].any()


def test_missing_options_are_validated():
    from dc2tasks.sample import SampleConfig

    with pytest.raises(ValueError, match="not one of the bands"):
        SampleConfig(bands=("g", "r"), missing_bands=[("u", None)])
    with pytest.raises(ValueError, match="patch"):
        SampleConfig(patches=["0-1"])
    with pytest.raises(ValueError, match="patch"):
        SampleConfig(missing_bands=[("g", "0,1,2")])
    # leaving out a band of a patch that is not generated is a no-op, not an error
    config = SampleConfig(patches=["0,0"], missing_bands=[("g", "5,5")], missing_patches=["3,3"])
    assert config.band_written("g", "0,0") and not config.band_written("g", "5,5")
