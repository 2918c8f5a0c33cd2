"""The truth table agrees with what a reader applying the calibration gets from the files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dc2tasks.products.afw import read_table
from dc2tasks.products.calib import NJY_AT_MAG0, read_calibration
from dc2tasks.products.repo import Gen2Repo

FLUXES = (
    ("psf_flux_nJy", "base_PsfFlux_instFlux"),
    ("psf_flux_err_nJy", "base_PsfFlux_instFluxErr"),
    ("cmodel_flux_nJy", "modelfit_CModel_instFlux"),
    ("cmodel_flux_err_nJy", "modelfit_CModel_instFluxErr"),
)


def _check_against_files(sample) -> int:
    repo = Gen2Repo.open(sample.root, sample.rerun)
    truth = pd.read_parquet(sample.truth[4850])
    compared = 0
    for patch in sample.patches[4850]:
        t = truth[truth.patch == patch]
        ref = read_table(repo.require("deepCoadd_ref", tract=4850, patch=patch))
        assert np.array_equal(t.objectId.to_numpy(), ref["id"])
        assert np.array_equal(t.is_primary.to_numpy(), ref["detect_isPrimary"])
        assert np.allclose(t.ra.to_numpy(), np.degrees(ref["coord_ra"]), rtol=0, atol=1e-12)
        for b in sample.bands:
            forced_path = repo.find("deepCoadd_forced_src", tract=4850, patch=patch, filter=b)
            if forced_path is None:
                assert t[f"psf_flux_nJy_{b}"].isna().all() and t[f"fluxmag0_{b}"].isna().all()
                continue
            f0 = read_calibration(
                repo.require("deepCoadd_calexp", tract=4850, patch=patch, filter=b)
            ).fluxmag0
            assert (t[f"fluxmag0_{b}"] == f0).all()
            forced = read_table(forced_path)
            for truth_col, col in FLUXES:
                calibrated = forced[col] * NJY_AT_MAG0 / f0
                expected = t[f"{truth_col}_{b}"].to_numpy()
                assert np.array_equal(np.isnan(calibrated), np.isnan(expected))
                ok = ~np.isnan(expected)
                assert np.max(np.abs(calibrated[ok] / expected[ok] - 1)) < 1e-12
                compared += ok.sum()
            for m in ("xx", "yy", "xy"):
                assert np.array_equal(forced[f"base_SdssShape_psf_{m}"], t[f"psf_{m}_{b}"].to_numpy())
    return compared


def test_truth_matches_the_calibrated_catalogs(default_repo):
    assert _check_against_files(default_repo) > 4 * 6 * 4 * 200


def test_truth_with_jittered_photocalib_and_missing_band(make_repo):
    sample = make_repo(
        "truth_jitter",
        calib_era="photocalib",
        zp_jitter=0.3,
        missing_bands=[("r", "1,0")],
        objects_per_patch=80,
    )
    assert _check_against_files(sample) > 0
    truth = pd.read_parquet(sample.truth[4850])
    # a reader assuming ZP 27 would be off by the jitter
    zp = 2.5 * np.log10(truth["fluxmag0_i"])
    assert np.abs(zp - 27).max() > 0.05


def test_truth_file_layout(default_repo):
    path = default_repo.truth[4850]
    assert path == default_repo.root / "truth" / "object_truth_tract_4850.parquet"
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 4  # one per patch
    assert meta.num_rows == default_repo.rows
    names = set(pq.read_schema(path).names)
    for b in "ugrizy":
        assert {f"psf_flux_nJy_{b}", f"cmodel_flux_err_nJy_{b}", f"fluxmag0_{b}", f"psf_xy_{b}"} <= names
    assert {"objectId", "tract", "patch", "ra", "dec", "is_primary"} <= names
    assert not list(path.parent.glob(".*.tmp"))
