"""Every catalog reads back with the project's afw reader, with the real file structure."""

from __future__ import annotations

import numpy as np
import pytest

from dc2tasks.products.afw import column_names, read_header, read_table
from dc2tasks.products.fits import scan
from dc2tasks.products.repo import Gen2Repo

REQUIRED_REF = {
    1: [
        "base_SdssCentroid_xSigma",
        "base_PsfFlux_flux",
        "base_PsfFlux_fluxSigma",
        "modelfit_CModel_flux",
        "modelfit_CModel_fluxSigma",
        "base_Blendedness_abs_flux",
    ],
    2: [
        "base_SdssCentroid_xErr",
        "base_PsfFlux_flux",
        "base_PsfFlux_fluxErr",
        "modelfit_CModel_fluxErr",
        "base_Blendedness_abs_flux",
    ],
    3: [
        "base_SdssCentroid_xErr",
        "base_PsfFlux_instFlux",
        "base_PsfFlux_instFluxErr",
        "modelfit_CModel_instFluxErr",
        "base_Blendedness_abs_instFlux",
    ],
    4: [
        "base_SdssCentroid_xErr",
        "base_PsfFlux_instFlux",
        "base_PsfFlux_instFluxErr",
        "modelfit_CModel_instFluxErr",
        "base_Blendedness_abs",
    ],
}
COMMON_REF = [
    "id",
    "parent",
    "coord_ra",
    "coord_dec",
    "base_SdssCentroid_x",
    "base_SdssCentroid_y",
    "base_SdssCentroid_flag",
    "base_PsfFlux_area",
    "base_ClassificationExtendedness_value",
    "deblend_skipped",
    "deblend_nChild",
    "ext_shapeHSM_HsmSourceMoments_xx",
    "ext_shapeHSM_HsmSourceMoments_yy",
    "ext_shapeHSM_HsmSourceMoments_xy",
    "ext_shapeHSM_HsmSourceMoments_flag",
    "base_SdssShape_psf_xx",
    "base_SdssShape_psf_yy",
    "base_SdssShape_psf_xy",
    "base_PsfFlux_flag",
    "modelfit_CModel_flag",
    "detect_isPrimary",
    "detect_isPatchInner",
    "detect_isTractInner",
] + [
    f"base_PixelFlags_flag_{p}"
    for p in ("edge", "interpolatedCenter", "saturatedCenter", "crCenter", "bad", "suspectCenter", "clipped")
]


def _files(sample, dataset: str, band: str | None = None):
    repo = Gen2Repo.open(sample.root, sample.rerun)
    tract = sample.tracts[0]
    for patch in sample.patches[tract]:
        ids = {"tract": tract, "patch": patch}
        if band:
            ids["filter"] = band
        yield patch, repo.require(dataset, **ids)


def test_ref_and_forced_read_back_row_aligned(default_repo):
    n_total = 0
    for patch, ref_path in _files(default_repo, "deepCoadd_ref"):
        ref = read_table(ref_path)
        assert 200 < len(ref) < 260, patch  # 200 owned records plus overlap copies
        assert ref["id"].dtype == np.int64 and ref["parent"].dtype == np.int64
        assert len(np.unique(ref["id"])) == len(ref)
        assert np.all(np.diff(ref["id"]) > 0)
        n_total += len(ref)
        for band in default_repo.bands:
            forced = read_table(
                next(p for q, p in _files(default_repo, "deepCoadd_forced_src", band) if q == patch)
            )
            assert np.array_equal(forced["id"], ref["id"])
            assert np.array_equal(forced["parent"], ref["parent"])
            assert np.array_equal(forced["coord_ra"], ref["coord_ra"])
    assert n_total == default_repo.rows


def test_flags_are_packed_with_names(default_repo):
    _, path = next(_files(default_repo, "deepCoadd_ref"))
    header = read_header(path)
    assert header["TTYPE1"] == "flags"
    assert header["TFORM1"].endswith("X")
    nbits = int(header["TFORM1"][:-1])
    names = [header[f"TFLAG{k}"] for k in range(1, nbits + 1)]
    assert header["FLAGCOL"] == 1
    for flag in (
        "detect_isPrimary",
        "merge_measurement_i",
        "merge_footprint_u",
        "merge_peak_y",
        "base_PixelFlags_flag_clipped",
        "deblend_skipped",
    ):
        assert flag in names
    # no other column is a bit or boolean column
    tforms = [header[f"TFORM{i}"] for i in range(2, header["TFIELDS"] + 1)]
    assert not any(t.endswith(("X", "L")) for t in tforms)
    table = read_table(path)
    assert table["detect_isPrimary"].dtype == bool
    assert table.flag_names == names


def test_hdu_shape_and_cards(default_repo):
    _, path = next(_files(default_repo, "deepCoadd_ref"))
    hdus = scan(path)
    assert len(hdus) == 3  # primary, records, archive index (real files put footprints there)
    assert hdus[0].header["NAXIS"] == 0
    h = hdus[1].header
    assert (h["AFW_TYPE"], h["AR_HDU"], h["AFW_TABLE_VERSION"]) == ("SOURCE", 3, 3)
    assert hdus[2].header["EXTTYPE"] == "ARCHIVE_INDEX"
    aliases = dict(a.split(":", 1) for a in h.all("ALIAS"))
    assert aliases["slot_Centroid"] == "base_SdssCentroid"
    assert aliases["slot_PsfFlux"] == "base_PsfFlux"
    assert aliases["slot_Shape"] == "ext_shapeHSM_HsmSourceMoments"
    assert aliases["slot_PsfShape"] == "base_SdssShape_psf"
    assert aliases["slot_ModelFlux"] == "modelfit_CModel"
    table = read_table(path)
    assert np.array_equal(table["slot_PsfShape_xx"], table["base_SdssShape_psf_xx"], equal_nan=True)
    assert np.array_equal(table["slot_ApFlux_instFlux"], table["base_CircularApertureFlux_12_0_instFlux"])


def test_widths_as_configured(default_repo, make_repo):
    _, ref = next(_files(default_repo, "deepCoadd_ref"))
    _, forced = next(_files(default_repo, "deepCoadd_forced_src", "r"))
    assert len(column_names(ref)) == 740
    assert len(column_names(forced)) == 280
    narrow = make_repo("narrow", patches=["0,0"], ref_width=150, forced_width=60, objects_per_patch=20)
    _, ref = next(_files(narrow, "deepCoadd_ref"))
    _, forced = next(_files(narrow, "deepCoadd_forced_src", "u"))
    assert len(column_names(ref)) == 150
    assert len(column_names(forced)) == 60
    wide = make_repo("wide", patches=["0,0"], ref_width=1000, forced_width=400, objects_per_patch=20)
    _, ref = next(_files(wide, "deepCoadd_ref"))
    names = column_names(ref)
    assert len(names) == 1000 and len(set(names)) == 1000


def test_width_below_the_core_is_refused(tmp_path):
    from dc2tasks.sample import SampleConfig, make_sample_repo

    with pytest.raises(ValueError, match="deepCoadd_ref width 40 is below"):
        make_sample_repo(tmp_path / "r", SampleConfig(ref_width=40))
    assert not (tmp_path / "r").exists()


def test_column_types(default_repo):
    _, path = next(_files(default_repo, "deepCoadd_ref"))
    t = read_table(path)
    assert t["coord_ra"].dtype == np.float64
    assert t["base_PsfFlux_instFlux"].dtype == np.float64
    assert t["base_SdssCentroid_xErr"].dtype == np.float32
    assert t["base_PsfFlux_area"].dtype == np.float32
    assert t["deblend_nChild"].dtype == np.int32
    dtypes = {t[c].dtype for c in t.columns}
    assert {np.dtype("f8"), np.dtype("f4"), np.dtype("i4"), np.dtype("i8"), np.dtype(bool)} <= dtypes


def test_field_names_per_generation(generation_repo):
    version = generation_repo.schema.version
    _, ref = next(_files(generation_repo, "deepCoadd_ref"))
    names = set(column_names(ref))
    for name in COMMON_REF + REQUIRED_REF[version]:
        assert name in names, name
    for b in generation_repo.bands:
        assert {f"merge_measurement_{b}", f"merge_footprint_{b}", f"merge_peak_{b}"} <= names
    other = {1: "_instFlux", 2: "_fluxSigma", 3: "_fluxErr", 4: "base_Blendedness_abs_instFlux"}[version]
    assert not any(other in n for n in names)
    if version == 4:
        assert "base_Blendedness_abs_flux" not in names
    assert read_header(ref)["AFW_TABLE_VERSION"] == min(version, 3)
    flux, err = REQUIRED_REF[version][1], REQUIRED_REF[version][2]
    _, forced = next(_files(generation_repo, "deepCoadd_forced_src", "i"))
    fnames = set(column_names(forced))
    expected = {
        "id",
        "parent",
        "coord_ra",
        "coord_dec",
        flux,
        err,
        "base_PsfFlux_flag",
        "base_SdssShape_xx",
        "base_SdssShape_yy",
        "base_SdssShape_xy",
        "base_SdssShape_flag",
        "base_SdssShape_psf_xx",
        "base_SdssShape_psf_yy",
        "base_SdssShape_psf_xy",
        flux.replace("base_PsfFlux", "modelfit_CModel"),
        err.replace("base_PsfFlux", "modelfit_CModel"),
        "modelfit_CModel_flag",
        flux.replace("base_PsfFlux", "base_LocalBackground"),
        err.replace("base_PsfFlux", "base_LocalBackground"),
        "base_LocalBackground_flag",
    }
    assert expected <= fnames
    assert {f"base_PixelFlags_flag_{p}" for p in ("edge", "bad", "clipped", "suspectCenter")} <= fnames


def test_values_look_like_measurements(default_repo):
    t = read_table(next(_files(default_repo, "deepCoadd_ref"))[1])
    psf, err = t["base_PsfFlux_instFlux"], t["base_PsfFlux_instFluxErr"]
    ok = np.isfinite(psf)
    assert 0.02 < np.mean(psf[ok] < 0) < 0.3  # faint objects scatter below zero
    assert np.all(err[ok] > 0)
    assert np.all(np.isnan(psf[~ok])) and np.all(t["base_PsfFlux_flag"][~ok])  # NaN only when flagged
    xx = t["base_SdssShape_psf_xx"]
    assert 1.5 < np.median(xx) < 3.5
    ext = t["base_ClassificationExtendedness_value"]
    assert set(np.unique(ext[np.isfinite(ext)])) == {0.0, 1.0}
    assert np.all(t["base_ClassificationExtendedness_flag"][~np.isfinite(ext)])
    hsm_bad = t["ext_shapeHSM_HsmSourceMoments_flag"]
    assert np.all(np.isnan(t["ext_shapeHSM_HsmSourceMoments_xx"][hsm_bad]))
    assert np.all(np.isfinite(t["ext_shapeHSM_HsmSourceMoments_xx"][~hsm_bad]))
