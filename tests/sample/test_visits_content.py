"""What the visit-level files hold, read back with our own afw reader, astropy and GCRCatalogs' column
lists: columns per schema generation, rows against the truth, positions against each detector's WCS,
calibrations, dates, difference images and DIA objects."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits as afits
from astropy.time import Time
from astropy.wcs import WCS
from GCRCatalogs.dc2_dia_source import DC2DiaSourceCatalog
from GCRCatalogs.dc2_forced_source import DC2ForcedSourceCatalog
from GCRCatalogs.dc2_source import DC2SourceCatalog

from dc2tasks.products.afw import column_names, read_table
from dc2tasks.products.calib import read_calibration
from dc2tasks.products.fits import scan
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleRepo

ADDED_BY_PRODUCTS = {"objectId", "visit", "detector", "filter", "mjd", "fluxmag0", "mag", "mag_err"}
VISITS = dict(visits=3, objects_per_patch=700, ref_width=200, forced_width=80)


@pytest.fixture(scope="module")
def v3(make_repo) -> SampleRepo:
    return make_repo("visits_v3", **VISITS)


@pytest.fixture(scope="module")
def v1(make_repo) -> SampleRepo:
    return make_repo("visits_v1", schema=1, calib_era="photocalib", bands=("g", "r"), **VISITS)


@pytest.fixture(scope="module", params=["v1", "v3"])
def sample(request, v1, v3) -> SampleRepo:
    return {"v1": v1, "v3": v3}[request.param]


def _repo(sample: SampleRepo) -> Gen2Repo:
    return Gen2Repo.open(sample.root, rerun=sample.rerun)


def _truth(sample: SampleRepo, kind: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(sample.visit_truth(kind, v)) for v in sample.visit_ids()])


def _detectors(sample: SampleRepo):
    """(visit, detector, data id) of every written detector."""
    for v in sample.visits:
        for d in v.detectors:
            yield v, d, v.data_id(d, sample.camera)


def _native(reader, version: int) -> set[str]:
    """Every native column a GCRCatalogs reader's quantities use."""
    out: set[str] = set()
    for mod in reader._generate_modifiers(dm_schema_version=version).values():
        out.update([mod] if isinstance(mod, str) else mod[1:])
    return out


@pytest.mark.parametrize(
    ("dataset", "reader"),
    [
        ("src", DC2SourceCatalog),
        ("forced_src", DC2ForcedSourceCatalog),
        ("deepDiff_diaSrc", DC2DiaSourceCatalog),
    ],
)
def test_gcr_native_columns_resolve_in_every_catalog(sample, dataset, reader):
    repo = _repo(sample)
    version = 3 if dataset == "deepDiff_diaSrc" else sample.schema.version  # DIA tables are instFlux-era
    wanted = _native(reader, version) - ADDED_BY_PRODUCTS
    if dataset == "src" and version == 1:
        assert "base_Blendedness_abs_flux" in wanted and "slot_Centroid_xSigma" in wanted
    for _, _, data_id in _detectors(sample):
        table = read_table(repo.require(dataset, **data_id))
        missing = {name for name in wanted if name not in table}
        assert not missing, f"{dataset} {data_id}: {missing}"


def test_field_names_follow_the_generation(v1, v3):
    for sample, flux, err, centroid_err, version in (
        (v1, "flux", "fluxSigma", "xSigma", 1),
        (v3, "instFlux", "instFluxErr", "xErr", 3),
    ):
        repo = _repo(sample)
        _, _, data_id = next(_detectors(sample))
        src = read_table(repo.require("src", **data_id))
        assert src.version == version
        assert f"base_PsfFlux_{flux}" in src.columns and f"base_PsfFlux_{err}" in src.columns
        assert f"base_SdssCentroid_{centroid_err}" in src.columns
        other = "instFlux" if flux == "flux" else "fluxSigma"
        assert not [n for n in src.columns if n.endswith(other)]
        # slots resolve as afw resolves them
        assert src.resolve(f"slot_PsfFlux_{flux}") == f"base_PsfFlux_{flux}"
        assert src.resolve(f"slot_ApFlux_{err}") == f"base_CircularApertureFlux_12_0_{err}"
        assert src.resolve(f"slot_Centroid_{centroid_err}") == f"base_SdssCentroid_{centroid_err}"
        assert src.resolve("slot_Shape_flag") == "base_SdssShape_flag"
        assert src.resolve("slot_PsfShape_xx") == "base_SdssShape_psf_xx"
        assert src.resolve("slot_PsfFlux_area") == "base_PsfFlux_area"
        forced = read_table(repo.require("forced_src", **data_id))
        assert f"base_PsfFlux_{flux}" in forced.columns and "slot_PsfFlux" not in forced.aliases
        dia = read_table(repo.require("deepDiff_diaSrc", **data_id))
        assert dia.version == 3 and "base_PsfFlux_instFlux" in dia.columns
        assert "slot_Centroid_xErr" in dia and "ip_diffim_forced_PsfFlux_instFluxErr" in dia
        # widths count every field and flag bit
        assert len(column_names(repo.require("src", **data_id))) == 60
        assert len(column_names(repo.require("forced_src", **data_id))) == 30
        assert len(column_names(repo.require("deepDiff_diaSrc", **data_id))) == 60


def test_rows_ids_and_objects_agree_with_truth(sample):
    repo = _repo(sample)
    objects = pd.read_parquet(sample.truth_path(4850))
    primary = set(objects.objectId[objects.is_primary])
    known = set(objects.objectId)
    ids: list[np.ndarray] = []
    for kind, dataset in (("source", "src"), ("forced", "forced_src"), ("dia_source", "deepDiff_diaSrc")):
        truth = _truth(sample, kind)
        rows = 0
        for v, d, data_id in _detectors(sample):
            table = read_table(repo.require(dataset, **data_id))
            t = truth[(truth.visit == v.visit) & (truth.detector == d)]
            assert np.array_equal(table["id"], t.id.to_numpy())
            rows += len(table)
            ids.append(table["id"])
            if dataset == "forced_src":
                assert np.array_equal(table["objectId"], t.objectId.to_numpy())
                assert set(table["objectId"]) <= primary
        assert rows == len(truth) == sample.visit_rows[dataset] > 0
        real = truth.objectId[truth.objectId >= 0]
        assert set(real) <= known
    every = np.concatenate(ids)
    assert len(np.unique(every)) == len(every)
    src = _truth(sample, "source")
    # each object gives at most one source per visit; spurious ones are a twentieth of the real ones
    real = src[src.objectId >= 0]
    assert not real.duplicated(["visit", "objectId"]).any()
    n_spurious = (src.objectId < 0).sum()
    assert n_spurious == pytest.approx(0.05 * len(real), rel=0.05)
    assert src.is_primary.sum() == len(_truth(sample, "forced")) > 0.7 * len(real)


def _objects(sample: SampleRepo) -> pd.DataFrame:
    """The coadd truth, one row per object; primary if any patch catalog calls it primary."""
    rows = pd.read_parquet(sample.truth_path(4850))
    primary = rows.groupby("objectId").is_primary.any()
    objects = rows.drop_duplicates("objectId").set_index("objectId")
    objects["is_primary"] = primary.loc[objects.index]
    return objects


def _wcs(path) -> WCS:
    with afits.open(path) as hdus:
        return WCS(hdus[1].header)


def test_positions_lie_on_their_detector_and_near_their_object(v3):
    repo = _repo(v3)
    width, height = 4000, 4072
    src = _truth(v3, "source")
    objects = _objects(v3)
    for _, _, data_id in _detectors(v3):
        wcs = _wcs(repo.require("calexp", **data_id))
        for dataset, x_name in (("src", "slot_Centroid_x"), ("deepDiff_diaSrc", "slot_Centroid_x")):
            table = read_table(repo.require(dataset, **data_id))
            x, y = wcs.all_world2pix(np.degrees(table["coord_ra"]), np.degrees(table["coord_dec"]), 0)
            assert np.allclose(x, table[x_name], atol=1e-6) and np.allclose(
                y, table["slot_Centroid_y"], atol=1e-6
            )
            assert (x >= -0.5 - 1e-6).all() and (x < width - 0.5 + 1e-6).all()
            assert (y >= -0.5 - 1e-6).all() and (y < height - 0.5 + 1e-6).all()
        # every primary object whose position is on the detector has a forced_src row, and no other
        forced = read_table(repo.require("forced_src", **data_id))
        prim = objects[objects.is_primary]
        ox, oy = wcs.all_world2pix(prim.ra.to_numpy(), prim.dec.to_numpy(), 0)
        on = (ox >= -0.5) & (ox < width - 0.5) & (oy >= -0.5) & (oy < height - 0.5)
        edge = (np.abs(ox + 0.5) < 1e-6) | (np.abs(ox - width + 0.5) < 1e-6)
        assert not edge.any()
        assert set(prim.index[on]) == set(forced["objectId"])
        assert np.allclose(
            forced["base_TransformedCentroid_x"],
            wcs.all_world2pix(np.degrees(forced["coord_ra"]), np.degrees(forced["coord_dec"]), 0)[0],
            atol=1e-6,
        )
    real = src[src.objectId >= 0]
    obj = objects.loc[real.objectId]
    assert np.allclose(real.true_ra, obj.ra, atol=1e-9) and np.allclose(real.true_dec, obj.dec, atol=1e-9)
    sep = _arcsec(real.ra, real.dec, real.true_ra, real.true_dec)
    assert sep.max() < 0.2 and 0.01 < np.sqrt(np.mean(sep**2)) < 0.05  # a few hundredths of an arcsec
    # spurious sources are more than 2" from every object
    spurious = src[src.objectId < 0]
    for _, row in spurious.iterrows():
        assert _arcsec(row.ra, row.dec, objects.ra, objects.dec).min() > 2.0


def _arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance (Vincenty), arcsec; positions in degrees."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(a, dtype=float)) for a in (ra1, dec1, ra2, dec2))
    dra = ra2 - ra1
    num = np.hypot(
        np.cos(dec2) * np.sin(dra), np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(dra)
    )
    den = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(dra)
    return np.degrees(np.arctan2(num, den)) * 3600.0


def test_calibrations_both_eras(sample):
    repo = _repo(sample)
    src = _truth(sample, "source")
    dia = _truth(sample, "dia_source")
    f0s = []
    for v, d, data_id in _detectors(sample):
        calexp_path = repo.require("calexp", **data_id)
        calexp = read_calibration(calexp_path)
        header = scan(calexp_path)[0].header
        if sample.calib_era == "calib":
            assert calexp.era == "calib" and header["FLUXMAG0"] == calexp.fluxmag0
        else:
            assert calexp.era == "photocalib" and "FLUXMAG0" not in header and "PHOTOCALIB_ID" in header
        assert calexp.fluxmag0_err > 0.001 * calexp.fluxmag0
        t = src[(src.visit == v.visit) & (src.detector == d)]
        assert (t.fluxmag0 == calexp.fluxmag0).all()
        table = read_table(repo.require("src", **data_id))
        flux = f"slot_PsfFlux_{sample.schema.flux}"
        assert np.allclose(calexp.nanojansky(table[flux]), t.psf_flux_nJy, rtol=1e-13, equal_nan=True)
        assert np.isfinite(t.psf_flux_nJy).mean() > 0.98
        # the difference image has a calibration of its own, 0.2-0.4 mag away
        diffexp = read_calibration(repo.require("deepDiff_differenceExp", **data_id))
        assert diffexp.era == calexp.era
        assert 0.2 - 1e-9 <= abs(2.5 * math.log10(diffexp.fluxmag0 / calexp.fluxmag0)) <= 0.4 + 1e-9
        td = dia[(dia.visit == v.visit) & (dia.detector == d)]
        assert (td.fluxmag0 == diffexp.fluxmag0).all()
        dsrc = read_table(repo.require("deepDiff_diaSrc", **data_id))
        assert np.allclose(diffexp.nanojansky(dsrc["slot_PsfFlux_instFlux"]), td.psf_flux_nJy, equal_nan=True)
        f0s.append(calexp.fluxmag0)
    assert len(set(f0s)) == len(f0s)  # every detector of every visit has its own zero point


def test_visit_info_in_the_primary_header(v3):
    repo = _repo(v3)
    for v, _, data_id in _detectors(v3):
        for dataset in ("calexp", "deepDiff_differenceExp"):
            header = scan(repo.require(dataset, **data_id))[0].header
            assert header["TIMESYS"] == "TAI" and header["EXPTIME"] == 30.0 and header["FILTER"] == v.band
            date = header["DATE-AVG"]
            assert len(date) == 29 and date[10] == "T" and not date.endswith("Z")
            assert abs(Time(date, format="isot", scale="tai").mjd - v.mjd) < 1e-6
    mjds = [v.mjd for v in v3.visits]
    assert mjds == sorted(mjds) and all(59580 <= m < 59590 for m in mjds)


def test_dia_objects_and_sources(v3):
    repo = _repo(v3)
    dia = _truth(v3, "dia_source")
    objects = _objects(v3)
    truth = pd.read_parquet(v3.dia_object_truth(4850)).set_index("diaObjectId")
    columns = [
        "id",
        "coord_ra",
        "coord_dec",
        "parent",
        "nobs",
        "base_PsfFlux_instFlux",
        "base_PsfFlux_instFluxErr",
    ]
    seen = []
    for patch in v3.patches[4850]:
        table = read_table(repo.require("deepDiff_diaObject", tract=4850, patch=patch))
        assert column_names(repo.require("deepDiff_diaObject", tract=4850, patch=patch)) == columns
        assert table["nobs"].dtype == np.int32 and (table["parent"] == 0).all()
        t = truth.loc[table["id"]]
        assert (t.patch == patch).all() and np.array_equal(table["nobs"], t.nobs)
        obj = objects.loc[t.objectId]
        px, py = (int(v) for v in patch.split(","))  # the variable lies in this patch's inner region
        assert (np.floor((obj.x + 0.5) / 4000) == px).all() and (np.floor((obj.y + 0.5) / 4000) == py).all()
        assert (
            _arcsec(np.degrees(table["coord_ra"]), np.degrees(table["coord_dec"]), obj.ra, obj.dec).max()
            < 0.1
        )
        seen.extend(table["id"])
    assert len(seen) == len(set(seen)) == len(truth) > 20
    assert not set(seen) & set(objects.index)
    real = dia[dia.diaObjectId >= 0]
    counts = real.groupby("diaObjectId").size()
    assert counts.sort_index().equals(truth.nobs.sort_index().rename(None))
    assert (truth.loc[real.diaObjectId].objectId.to_numpy() == real.objectId.to_numpy()).all()
    # the difference flux swings both ways; spurious DIA sources are a twentieth
    assert (real.psf_flux_nJy < 0).mean() > 0.2 and (real.psf_flux_nJy > 0).mean() > 0.2
    assert (dia.diaObjectId < 0).sum() == pytest.approx(0.05 * len(real), abs=8)
