"""Object pipeline values against the generator's truth, idempotence, and bad input."""

from __future__ import annotations

import hashlib
import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from dc2tasks.cli import main
from dc2tasks.products import afw, hdf5
from dc2tasks.products.errors import InputError, NotARepositoryError
from dc2tasks.products.object_dpdd import dpdd_tract
from dc2tasks.products.object_merge import merge_tract
from dc2tasks.products.object_pipeline import run_object_pipeline
from dc2tasks.products.object_trim import trim_file
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import afw_writer

AB = 31.4


def _truth(sample) -> pd.DataFrame:
    truth = pd.concat(pd.read_parquet(p) for p in sample.truth.values())
    return truth[truth["is_primary"]].set_index("objectId")


def test_values_match_truth(pipeline_run):
    sample, result = pipeline_run
    ours = pd.concat(pd.read_parquet(p) for p in result.files["dpdd_object"]).set_index("objectId")
    truth = _truth(sample)
    assert sorted(ours.index) == sorted(truth.index)  # every primary object, once
    t = truth.loc[ours.index]
    np.testing.assert_allclose(ours["ra"], t["ra"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours["dec"], t["dec"], rtol=0, atol=1e-10)
    for b in sample.bands:
        have = ~((t["patch"] == "0,1") & (b == "g"))  # the band the fixture leaves out there
        flux = t[f"psf_flux_nJy_{b}"][have]
        pos = flux > 0
        mag = ours[f"mag_{b}"][have]
        np.testing.assert_allclose(mag[pos], -2.5 * np.log10(flux[pos]) + AB, rtol=0, atol=1e-9)
        assert mag[~pos].isna().all()
        cflux = t[f"cmodel_flux_nJy_{b}"][have]
        cpos = cflux > 0
        np.testing.assert_allclose(
            ours[f"mag_{b}_cModel"][have][cpos], -2.5 * np.log10(cflux[cpos]) + AB, rtol=0, atol=1e-9
        )
        # psFlux is the GCR ZP-27 convention: equal to truth only where the zero point is 27
        zp = 2.5 * np.log10(t[f"fluxmag0_{b}"][have])
        expect = flux * 10 ** (0.4 * (zp - 27.0))  # instFlux = nJy * F0 / 10**12.56
        np.testing.assert_allclose(ours[f"psFlux_{b}"][have], expect, rtol=1e-9)
        xx, yy, xy = (t[f"psf_{k}_{b}"][have] for k in ("xx", "yy", "xy"))
        fwhm = result.pixel_scale * 2.355 * (xx * yy - xy * xy) ** 0.25
        np.testing.assert_allclose(ours[f"psf_fwhm_{b}"][have], fwhm, rtol=1e-9)


def test_missing_band_is_nan_and_flagged_bad(pipeline_run):
    _, result = pipeline_run
    ours = pd.concat(pd.read_parquet(p) for p in result.files["dpdd_object"])
    missing = ours[ours["patch"] == "0,1"]
    assert len(missing) > 0
    assert missing["mag_g"].isna().all() and missing["psFlux_g"].isna().all()
    present = ours[ours["patch"] != "0,1"]
    assert present["mag_g"].notna().any()
    # and in the HDF5, as GCRCatalogs fills a missing column: bad-pixel flag True
    obj = result.workdir / "object" / f"object_tract_{result.tracts[0]}.hdf5"
    key = f"coadd_{result.tracts[0]}_01"
    frame = hdf5.read_columns(obj, key, ["g_base_PixelFlags_flag_bad", "g_base_PixelFlags_flag_edge"])
    assert frame["g_base_PixelFlags_flag_bad"].all() and not frame["g_base_PixelFlags_flag_edge"].any()


def _digest(paths) -> dict[str, str]:
    return {p.name: hashlib.sha256(pd.read_parquet(p).to_csv().encode()).hexdigest() for p in paths}


def test_rerun_gives_same_content_and_no_duplicates(small_sample, tmp_path):
    sample = small_sample()
    repo = Gen2Repo.open(sample.root, sample.rerun)
    first = run_object_pipeline(repo, tmp_path / "w", run="r")
    before = _digest(first.files["dpdd_object"] + first.files["dpdd_merged"])
    second = run_object_pipeline(repo, tmp_path / "w", run="r")
    assert _digest(second.files["dpdd_object"] + second.files["dpdd_merged"]) == before
    merged = pd.read_parquet(second.files["dpdd_merged"][0])
    assert merged["objectId"].is_unique
    assert len(merged) == sum(second.rows.values())
    assert not list((tmp_path / "w").rglob("*.tmp"))


def test_tract_selection(tmp_path, small_sample):
    sample = small_sample(tracts=[4850, 4851], patches=["0,0"])
    repo = Gen2Repo.open(sample.root, sample.rerun)
    result = run_object_pipeline(repo, tmp_path / "w", run="r", tracts=[4851])
    assert result.tracts == [4851]
    assert [p.name for p in result.files["object"]] == ["object_tract_4851.hdf5"]
    assert set(pd.read_parquet(result.files["dpdd_merged"][0])["tract"]) == {4851}
    with pytest.raises(InputError, match="no tract 9999"):
        run_object_pipeline(repo, tmp_path / "w", run="r", tracts=[9999])


def _ref(repo: Gen2Repo, tract: int, patch: str):
    return repo.require("deepCoadd_ref", tract=tract, patch=patch)


def test_truncated_ref_names_the_file_and_writes_nothing(small_sample, tmp_path):
    sample = small_sample()
    repo = Gen2Repo.open(sample.root, sample.rerun)
    tract = sample.tracts[0]
    ref = _ref(repo, tract, "1,0")
    ref.write_bytes(ref.read_bytes()[:-5000])
    with pytest.raises(InputError, match=rf"ref-{tract}-1,0\.fits: truncated FITS file"):
        merge_tract(repo, tract, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_forced_not_row_aligned(small_sample, tmp_path):
    sample = small_sample()
    repo = Gen2Repo.open(sample.root, sample.rerun)
    tract = sample.tracts[0]
    path = repo.require("deepCoadd_forced_src", tract=tract, patch="0,0", filter="r")
    t = afw.read_table(path)
    cols = {k: v[::-1].copy() for k, v in t.columns.items() if k not in t.flag_names}
    flags = {k: t.columns[k][::-1].copy() for k in t.flag_names}
    path.write_bytes(afw_writer.primary_hdu_bytes() + afw_writer.table_hdu_bytes(cols, flags))
    with pytest.raises(InputError, match=r"forced_src-r-.*not row-aligned with its ref.*row 0 has id"):
        merge_tract(repo, tract, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.hdf5"))


def test_missing_patch_requested(small_sample, tmp_path):
    sample = small_sample(missing_patches=["1,0"])
    repo = Gen2Repo.open(sample.root, sample.rerun)
    assert "1,0" not in repo.patches(sample.tracts[0])
    with pytest.raises(InputError, match=r"no deepCoadd_ref for patch\(es\) 1,0"):
        merge_tract(repo, sample.tracts[0], tmp_path / "out", patches=["0,0", "1,0"])


def test_empty_catalog(small_sample, tmp_path):
    sample = small_sample(patches=["0,0"])
    repo = Gen2Repo.open(sample.root, sample.rerun)
    tract = sample.tracts[0]
    ref = _ref(repo, tract, "0,0")
    t = afw.read_table(ref)
    cols = {k: v[:0] for k, v in t.columns.items() if k not in t.flag_names}
    flags = {k: t.columns[k][:0] for k in t.flag_names}
    ref.write_bytes(afw_writer.primary_hdu_bytes() + afw_writer.table_hdu_bytes(cols, flags))
    said = r"tract \d+: no rows to write: of its 1 patches, 1 empty \(no rows: 0,0\); nothing written"
    with pytest.raises(InputError, match=said):
        merge_tract(repo, tract, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.hdf5"))


def test_empty_patch_is_counted_and_the_tract_goes_on(small_sample, tmp_path, real_fixtures, caplog):
    """A real zero-row catalog (afw's, a 300-column coadd schema) as one patch's ref: that patch has
    no rows and no group; the others are merged, trimmed and made DPDD as usual."""
    sample = small_sample()
    repo = Gen2Repo.open(sample.root, sample.rerun)
    tract = sample.tracts[0]
    whole = merge_tract(repo, tract, tmp_path / "whole")
    shutil.copyfile(real_fixtures / "afw-ticket42210.fits", _ref(repo, tract, "0,1"))
    caplog.set_level(logging.INFO, logger="dc2tasks")
    r = merge_tract(repo, tract, tmp_path / "out")
    assert r.empty_patches == ["0,1"]
    assert r.rows == whole.rows - next(p.rows for p in whole.patches if p.patch == "0,1") > 0
    keys = hdf5.group_keys(r.path)
    assert sorted(keys) == sorted(k for k in hdf5.group_keys(whole.path) if not k.endswith("_01"))
    assert f"tract {tract}: 2 patches written; 1 empty (no rows: 0,1)" in caplog.text
    progress = [m.getMessage() for m in caplog.records if m.name == "dc2tasks.progress"]
    assert progress[-1].startswith(f"tract {tract} merge: 3/3 patches, ")
    assert f" {r.rows} rows " in progress[-1]
    trimmed = trim_file(r.path, tmp_path / "out")
    dpdd = dpdd_tract(trimmed.path, tmp_path / "dpdd")
    assert trimmed.rows == dpdd.rows == r.rows


def test_not_a_repository(tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(NotARepositoryError, match="not a Gen2 repository"):
        Gen2Repo.open(tmp_path / "junk")


def test_cli_reports_errors_with_exit_code_2(tmp_path, capsys):
    (tmp_path / "junk").mkdir()
    rc = main(["merge-tract", str(tmp_path / "junk"), "--tract", "4850", "-o", str(tmp_path / "o")])
    assert rc == 2
    assert "not a Gen2 repository" in capsys.readouterr().err


def test_cli_help_explains_each_step(capsys):
    for cmd in (
        "merge-tract",
        "trim",
        "dpdd",
        "merge-parquet",
        "gcr-config",
        "object-pipeline",
        "sample-repo",
    ):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "usage: dc2 " + cmd in capsys.readouterr().out


def test_rerun_chain_finds_parent_datasets(small_sample):
    sample = small_sample()
    repo = Gen2Repo.open(sample.root, sample.rerun)
    assert len(repo.chain) >= 2
    calexp = repo.require("deepCoadd_calexp", tract=sample.tracts[0], patch="0,0", filter="r")
    assert repo.chain[0] not in calexp.parents  # found in a parent, not in the rerun itself
    assert repo.bands(sample.tracts[0]) == list("ugrizy")


def test_obs_lsstsim_layout_and_older_pixel_scale(small_sample, tmp_path):
    sample = small_sample(camera="obs_lsstSim", pixel_scale=0.185, patches=["0,0", "0,1"])
    repo = Gen2Repo.open(sample.root, sample.rerun)
    assert repo.camera == "obs_lsstSim"
    forced = repo.require("deepCoadd_forced_src", tract=sample.tracts[0], patch="0,0", filter="i")
    assert forced.name.startswith("forced-i-")
    result = run_object_pipeline(repo, tmp_path / "w", run="sim")
    assert result.pixel_scale == pytest.approx(0.185)  # read from the coadd WCS
    ours = pd.read_parquet(result.files["dpdd_object"][0])
    assert len(ours) == sum(result.rows.values()) > 0
