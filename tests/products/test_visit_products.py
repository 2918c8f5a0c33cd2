"""Source, ForcedSource, DIASource and DIAObject end to end on sample repositories with visits: made by
our commands, loaded by the real GCRCatalogs readers with our configs, compared with the truth."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dc2tasks.products import afw
from dc2tasks.products.dia_stats import dia_object_statistics
from dc2tasks.products.errors import InputError
from dc2tasks.products.matching import SkyMatcher
from dc2tasks.products.object_index import ObjectIndex, load_dia_objects, load_objects
from dc2tasks.products.object_pipeline import run_object_pipeline
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.products.visit_pipeline import run_visit_pipeline
from dc2tasks.products.visit_products import make_visit, make_visits
from dc2tasks.products.visit_tables import VISIT_TABLES
from dc2tasks.sample import SampleConfig, afw_writer, make_sample_repo
from dc2tasks.sample.exposure import write_exposure
from dc2tasks.service.demo import load_with_gcr

CENTRE = tuple(f"{x},{y}" for x in (2, 3, 4) for y in (2, 3, 4))


def _make(root: Path, **options) -> tuple[object, Path]:
    config = SampleConfig(patches=CENTRE, objects_per_patch=150, visits=3, **options)
    sample = make_sample_repo(root / "repo", config)
    work = root / "work"
    repo = Gen2Repo.open(sample.root, sample.rerun)
    run_object_pipeline(repo, work, run="test")
    products = ("source", "forced_source") + (("dia_source", "dia_object") if config.dia else ())
    run_visit_pipeline(repo, work, run="test", products=products)
    return sample, work


@pytest.fixture(scope="module", params=["calib-v3", "photocalib-v4", "lsstSim-v1"])
def visit_run(request, tmp_path_factory):
    options = {
        "calib-v3": {"schema": 3, "calib_era": "calib"},
        "photocalib-v4": {"schema": 4, "calib_era": "photocalib", "zp_jitter": 0.1},
        "lsstSim-v1": {"schema": 1, "camera": "obs_lsstSim", "dia": False},
    }[request.param]
    sample, work = _make(tmp_path_factory.mktemp(request.param), **options)
    return request.param, sample, work


def _truth(sample, kind: str) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(sample.visit_truth(kind, v.visit)) for v in sample.visits)


def _config(work: Path, product: str) -> Path:
    return work / "gcr-catalogs" / f"dc2_{product}_test.yaml"


def test_source_through_gcr_equals_truth(visit_run) -> None:
    _, sample, work = visit_run
    q = ["sourceId", "objectId", "visit", "detector", "filter", "ra", "dec", "psFlux", "mag", "fluxmag0"]
    data = pd.DataFrame(load_with_gcr(_config(work, "source"), [*q, "good", "clean", "psf_fwhm_pixel"]))
    truth = _truth(sample, "source").set_index("id")
    assert len(data) == len(truth) > 100
    assert data["sourceId"].is_unique
    t = truth.loc[data["sourceId"]]
    np.testing.assert_array_equal(data["visit"], t["visit"])
    np.testing.assert_array_equal(data["detector"], t["detector"])
    np.testing.assert_array_equal(data["filter"], t["filter"])
    np.testing.assert_allclose(data["ra"], t["ra"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(data["dec"], t["dec"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(data["psFlux"], t["psf_flux_nJy"], rtol=1e-12)
    np.testing.assert_allclose(data["fluxmag0"], t["fluxmag0"], rtol=1e-12)
    positive = t["psf_flux_nJy"].to_numpy() > 0
    np.testing.assert_allclose(
        data["mag"][positive], -2.5 * np.log10(t["psf_flux_nJy"][positive]) + 31.4, rtol=0, atol=1e-9
    )
    # matching: every source of a primary object finds it, no spurious source finds one
    assert data["objectId"].dtype == np.int64
    primary = t["is_primary"].to_numpy()
    spurious = t["objectId"].to_numpy() == -1
    assert primary.sum() > 100 and spurious.sum() > 0
    np.testing.assert_array_equal(data["objectId"][primary], t["objectId"][primary])
    assert (data["objectId"][spurious] == -1).all()


def test_source_match_columns(visit_run) -> None:
    _, sample, work = visit_run
    frames = [pd.read_parquet(p) for p in sorted((work / "source").glob("src_visit_*.parquet"))]
    df = pd.concat(frames)
    matched = df["objectId"] >= 0
    assert matched.any() and (~matched).any()
    assert (df.loc[matched, "match_distance"] < 1.0).all()
    assert (df.loc[matched, "match_candidates"] >= 1).all()
    assert df.loc[~matched, "match_distance"].isna().all()
    assert (df.loc[~matched, "match_candidates"] == 0).all()
    assert df["match_candidates"].dtype == np.int32
    mjd = {v.visit: v.mjd for v in sample.visits}
    np.testing.assert_allclose(df["mjd"], df["visit"].map(mjd), rtol=0, atol=1e-9)


def test_forced_source_through_gcr_equals_truth(visit_run) -> None:
    _, sample, work = visit_run
    data = pd.DataFrame(
        load_with_gcr(_config(work, "forced_source"), ["id", "objectId", "psFlux", "fluxmag0", "good"])
    )
    truth = _truth(sample, "forced").set_index("id")
    assert len(data) == len(truth) > 100
    t = truth.loc[data["id"]]
    np.testing.assert_array_equal(data["objectId"], t["objectId"])
    np.testing.assert_allclose(data["psFlux"], t["psf_flux_nJy"], rtol=1e-12)
    np.testing.assert_allclose(data["fluxmag0"], t["fluxmag0"], rtol=1e-12)


def test_dia_source_and_dia_object_through_gcr(visit_run) -> None:
    name, sample, work = visit_run
    if name == "lsstSim-v1":
        assert not (work / "dia_source").exists()  # no difference imaging in that repository
        return
    data = pd.DataFrame(
        load_with_gcr(
            _config(work, "dia_source"),
            ["diaSourceId", "diaObjectId", "psFlux", "psFluxErr", "filter", "mjd"],
        )
    )
    truth = _truth(sample, "dia_source").set_index("id")
    assert len(data) == len(truth) > 20
    t = truth.loc[data["diaSourceId"]]
    np.testing.assert_allclose(data["psFlux"], t["psf_flux_nJy"], rtol=1e-12)
    np.testing.assert_array_equal(data["diaObjectId"], t["diaObjectId"])

    objects = pd.DataFrame(load_with_gcr(_config(work, "dia_object"), ["diaObjectId", "ra", "dec"]))
    dia_truth = pd.concat(pd.read_parquet(sample.dia_object_truth(t)) for t in sample.tracts)
    assert sorted(objects["diaObjectId"]) == sorted(dia_truth["diaObjectId"])
    # the statistics, from the DIASources the reader gives, as a plain per-object computation
    table = pd.concat(pd.read_parquet(p) for p in (work / "dia_object").glob("*.parquet")).set_index(
        "diaObjectId"
    )
    bands = sorted(set(data["filter"]), key="ugrizy".index)
    for band in bands:
        for oid, group in data[(data["filter"] == band) & (data["diaObjectId"] >= 0)].groupby("diaObjectId"):
            f = group["psFlux"].to_numpy()
            row = table.loc[oid]
            assert row[f"psFluxNdata_{band}"] == len(f)
            finite = f[~np.isnan(f)]
            mean = finite.mean() if len(finite) else np.nan
            sigma = finite.std(ddof=1) if len(finite) > 1 else np.nan
            assert row[f"psFluxMean_{band}"] == pytest.approx(mean, rel=1e-12, nan_ok=True)
            assert row[f"psFluxSigma_{band}"] == pytest.approx(sigma, rel=1e-10, nan_ok=True)


def test_dia_object_dm_statistics_on_request(visit_run, tmp_path) -> None:
    name, sample, work = visit_run
    if name == "lsstSim-v1":
        return
    from dc2tasks.products.dia_object import dia_object_tract, read_dia_sources

    repo = Gen2Repo.open(sample.root, sample.rerun)
    tract = sample.tracts[0]
    r = dia_object_tract(repo, tract, work / "dia_source", tmp_path, definition="dm")
    got = pd.read_parquet(r.path).set_index("diaObjectId")
    src = read_dia_sources(work / "dia_source")
    expect = dia_object_statistics(
        src.dia_object_id, src.band, src.ps_flux, src.ps_flux_err, bands=r.bands, definition="dm"
    )
    common = got.index.intersection(expect.index)
    assert len(common) > 0
    for col in expect.columns:
        np.testing.assert_allclose(got.loc[common, col], expect.loc[common, col], rtol=1e-12)
    assert pq.read_schema(r.path).metadata[b"dc2tasks.statistics"] == b"dm"


# ---- behaviour on one visit ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    sample = make_sample_repo(root / "repo", SampleConfig(patches=CENTRE, objects_per_patch=80, visits=2))
    work = root / "work"
    repo = Gen2Repo.open(sample.root, sample.rerun)
    run_object_pipeline(repo, work, run="test")
    return sample, work


def _copy_repo(sample, tmp_path: Path) -> Gen2Repo:
    shutil.copytree(sample.root, tmp_path / "repo", symlinks=True)
    return Gen2Repo.open(tmp_path / "repo", sample.rerun)


def test_rerun_skips_unchanged_and_force_rewrites(small, tmp_path) -> None:
    sample, work = small
    repo = Gen2Repo.open(sample.root, sample.rerun)
    objects = load_objects([work / "dpdd_object"])
    visit = sample.visits[0].visit
    table = VISIT_TABLES["source"]
    first = make_visit(repo, table, visit, tmp_path, objects)
    assert first.status == "written" and first.rows > 0
    before = first.path.read_bytes()
    again = make_visit(repo, table, visit, tmp_path, objects)
    assert again.status == "unchanged"
    forced = make_visit(repo, table, visit, tmp_path, objects, force=True)
    assert forced.status == "written" and forced.path.read_bytes() == before
    wider = make_visit(repo, table, visit, tmp_path, objects, radius_arcsec=2.0)
    assert wider.status == "written"  # the radius is part of what the file depends on
    assert [p.name for p in tmp_path.iterdir()] == [f"src_visit_{visit}.parquet"]


def test_visit_overlapping_no_object_is_all_minus_one_int64(small, tmp_path) -> None:
    sample, _ = small
    repo = Gen2Repo.open(sample.root, sample.rerun)
    far = SkyMatcher(np.array([1, 2], dtype=np.int64), np.array([180.0, 181.0]), np.array([80.0, 80.0]))
    index = ObjectIndex(far, [], "far")
    r = make_visit(repo, VISIT_TABLES["source"], sample.visits[0].visit, tmp_path, index)
    df = pd.read_parquet(r.path)
    assert df["objectId"].dtype == np.int64
    assert (df["objectId"] == -1).all() and len(df) == r.rows > 0
    assert r.matched == 0


def test_unknown_visit_is_a_clear_error(small, tmp_path) -> None:
    sample, work = small
    repo = Gen2Repo.open(sample.root, sample.rerun)
    with pytest.raises(InputError, match="visit 4242: no src catalog"):
        make_visit(repo, VISIT_TABLES["source"], 4242, tmp_path, load_objects([work / "dpdd_object"]))
    assert list(tmp_path.iterdir()) == []


def _detector_file(repo: Gen2Repo, dataset: str, visit: int) -> Path:
    return repo.discover(dataset, visit=visit)[0][1]


def test_missing_detector_refuses_the_visit_unless_allowed(small, tmp_path) -> None:
    sample, work = small
    repo = _copy_repo(sample, tmp_path)
    visit = sample.visits[0].visit
    _detector_file(repo, "src", visit).unlink()
    out = tmp_path / "out"
    objects = load_objects([work / "dpdd_object"])
    with pytest.raises(InputError, match=r"have a calexp but no src: the visit is incomplete"):
        make_visit(repo, VISIT_TABLES["source"], visit, out, objects)
    assert not out.exists()
    r = make_visit(repo, VISIT_TABLES["source"], visit, out, objects, allow_missing=True)
    assert r.status == "written" and r.detectors == len(sample.visits[0].detectors) - 1


def test_calexp_without_calibration_names_the_file(small, tmp_path) -> None:
    sample, _ = small
    repo = _copy_repo(sample, tmp_path)
    visit = sample.visits[0].visit
    calexp = _detector_file(repo, "calexp", visit)
    write_exposure(calexp, None)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=rf"{calexp.name}: no calibration"):
        make_visit(repo, VISIT_TABLES["forced_source"], visit, out)
    assert not out.exists() or list(out.iterdir()) == []


def _empty_catalog(path: Path) -> None:
    columns = {"id": np.zeros(0, dtype=np.int64), "coord_ra": np.zeros(0), "coord_dec": np.zeros(0)}
    path.write_bytes(afw_writer.primary_hdu_bytes() + afw_writer.table_hdu_bytes(columns))


def test_empty_catalogs_are_skipped_and_an_empty_visit_writes_nothing(small, tmp_path) -> None:
    sample, work = small
    repo = _copy_repo(sample, tmp_path)
    objects = load_objects([work / "dpdd_object"])
    first, second = sample.visits[0].visit, sample.visits[1].visit
    found = repo.discover("src", visit=first)
    _empty_catalog(found[0][1])
    out = tmp_path / "out"
    r = make_visit(repo, VISIT_TABLES["source"], first, out, objects)
    assert r.status == "written" and r.empty_detectors == 1
    for _, path in repo.discover("src", visit=second):
        _empty_catalog(path)
    batch = make_visits(repo, VISIT_TABLES["source"], [second, 4242], out, objects)
    assert [(x.visit, x.status, x.path) for x in batch.results] == [(second, "empty", None)]
    assert [v for v, _ in batch.failures] == [4242]
    assert sorted(p.name for p in out.iterdir()) == [f"src_visit_{first}.parquet"]


def test_real_zero_row_catalog_is_a_detector_with_no_rows(small, tmp_path, real_fixtures, caplog) -> None:
    """afw's own zero-row catalog (a 300-column coadd schema) as one detector's src: that detector
    has no rows, the visit goes on; an all-empty visit is said at the batch's end; the batch's
    progress counts visits, detectors and rows."""
    sample, work = small
    repo = _copy_repo(sample, tmp_path)
    objects = load_objects([work / "dpdd_object"])
    first, second = sample.visits[0].visit, sample.visits[1].visit
    found = repo.discover("src", visit=first)
    shutil.copyfile(real_fixtures / "afw-ticket42210.fits", found[0][1])
    for _, path in repo.discover("src", visit=second):
        shutil.copyfile(real_fixtures / "afw-ticket42210.fits", path)
    caplog.set_level(logging.INFO, logger="dc2tasks")
    batch = make_visits(repo, VISIT_TABLES["source"], [first, second], tmp_path / "out", objects)
    assert [(r.visit, r.status, r.empty_detectors) for r in batch.results] == [
        (first, "written", 1),
        (second, "empty", len(repo.discover("src", visit=second))),
    ]
    written = batch.results[0]
    assert written.detectors == len(found) and written.rows == len(pd.read_parquet(written.path)) > 0
    messages = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    said = f"1 of 2 visit(s) have no src rows in any detector, so no file: {second}"
    assert ("dc2tasks.products.visit_products", "WARNING", said) in messages
    progress = [m for name, _, m in messages if name == "dc2tasks.progress"]
    detectors = len(found) + len(repo.discover("src", visit=second))
    assert progress[-1].startswith("source of 2 visit(s): 2/2 visits, ")
    assert f" {detectors} detectors " in progress[-1] and f" {written.rows} rows " in progress[-1]


def test_dia_object_empty_patch_and_empty_tract(small, tmp_path, caplog) -> None:
    from dc2tasks.products.dia_object import dia_object_tract
    from dc2tasks.products.object_index import dia_object_files

    sample, _ = small
    repo = _copy_repo(sample, tmp_path)
    visits = [v.visit for v in sample.visits]
    make_visits(repo, VISIT_TABLES["dia_source"], visits, tmp_path / "dia_source", load_dia_objects(repo))
    tract = sample.tracts[0]
    found = dia_object_files(repo, [tract])
    full = dia_object_tract(repo, tract, tmp_path / "dia_source", tmp_path / "full")
    rows = [len(afw.read_table(path)) for _, _, path in found]
    assert 0 < rows.count(0) < len(found) - 1  # the sample's sky leaves some patches without any
    k = rows.index(max(rows))
    _empty_like(found[k][2])
    caplog.set_level(logging.WARNING)
    less = dia_object_tract(repo, tract, tmp_path / "dia_source", tmp_path / "less")
    assert less.rows == full.rows - rows[k]
    empty = rows.count(0) + 1
    assert f"tract {tract}: {empty} of {len(found)} deepDiff_diaObject catalogs have no rows" in caplog.text
    for _, _, path in found:
        _empty_like(path)
    none = dia_object_tract(repo, tract, tmp_path / "dia_source", tmp_path / "none")
    assert none.rows == 0 and "the tract's table has no rows, only its columns" in caplog.text
    assert pq.read_schema(none.path).names == pq.read_schema(full.path).names


def _empty_like(path: Path) -> None:
    """The same catalog with no rows (its columns and flags kept)."""
    t = afw.read_table(path)
    cols = {k: v[:0] for k, v in t.columns.items() if k not in t.flag_names}
    flags = {k: t.columns[k][:0] for k in t.flag_names}
    path.write_bytes(afw_writer.primary_hdu_bytes() + afw_writer.table_hdu_bytes(cols, flags))


def test_cli_array_stripes_cover_the_visit_list_once(small, tmp_path, capsys) -> None:
    from dc2tasks.cli import main

    sample, work = small
    visit_file = sample.write_visit_list(tmp_path / "visits.txt")
    visits = [v.visit for v in sample.visits]
    out = tmp_path / "src"
    common = [str(sample.root), "--rerun", sample.rerun, "--visit-file", str(visit_file), "-o", str(out)]
    for index in range(3):
        rc = main(
            [
                "source",
                *common,
                "--objects",
                str(work / "dpdd_object"),
                "--array-index",
                str(index),
                "--array-count",
                "3",
            ]
        )
        assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"src_visit_{v}.parquet" for v in visits)
    rc = main(
        [
            "forced-source",
            str(sample.root),
            "--rerun",
            sample.rerun,
            "--visits",
            "4242",
            str(visits[0]),
            "-o",
            str(tmp_path / "f"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "1 of 2 visit(s) failed" in err and "visit 4242: no forced_src catalog" in err
    assert [p.name for p in (tmp_path / "f").iterdir()] == [f"forced_src_visit_{visits[0]}.parquet"]


def test_source_good_and_clean_follow_the_catalog_flags(visit_run) -> None:
    """`good`/`clean` through GCRCatalogs equal the pixel flags read straight from each src file."""
    _, sample, work = visit_run
    data = pd.DataFrame(load_with_gcr(_config(work, "source"), ["sourceId", "good", "clean"]))
    data = data.set_index("sourceId")
    repo = Gen2Repo.open(sample.root, sample.rerun)
    flags = [f"base_PixelFlags_flag_{f}" for f in ("edge", "interpolatedCenter", "saturatedCenter")]
    flags += [f"base_PixelFlags_flag_{f}" for f in ("crCenter", "bad", "suspectCenter")]
    checked = 0
    for visit in sample.visit_ids():
        for _, path in repo.discover("src", visit=visit):
            t = afw.read_table(path, ["id", "deblend_skipped", *flags])
            bad = np.zeros(len(t), dtype=bool)
            for f in flags:
                bad |= t[f]
            got = data.loc[t["id"]]
            np.testing.assert_array_equal(got["good"].to_numpy(), ~bad)
            np.testing.assert_array_equal(got["clean"].to_numpy(), ~bad & ~t["deblend_skipped"])
            checked += len(t)
    assert checked == len(data)
    assert 0 < int((~data["good"]).sum()) < len(data)  # the sample sets some flags, not all
