"""Where visit files go and how detectors and visits are named: the focal plane's numbering, the obs_lsst
and obs_lsstSim templates, the rerun chain, visit lists, the command line and bad options."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from dc2tasks.cli.sample import config_from_args, register, run
from dc2tasks.products.afw import read_table
from dc2tasks.products.calib import read_calibration
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.products.visit_info import detector_number as products_detector_number
from dc2tasks.sample import SampleConfig, make_sample_repo
from dc2tasks.sample.focal_plane import RAFTS, FocalPlane, detector_names, detector_number, raft_sensor

SMALL = dict(visits=2, objects_per_patch=150, ref_width=150, forced_width=60)


def test_detector_numbers_follow_obs_lsst():
    assert len(RAFTS) == 21 and not {(0, 0), (0, 4), (4, 0), (4, 4)} & set(RAFTS)
    assert detector_names(0, "obs_lsst") == ("R01", "S00")
    assert detector_names(8, "obs_lsst") == ("R01", "S22")
    assert detector_names(9, "obs_lsst") == ("R02", "S00")
    assert detector_names(94, "obs_lsst") == ("R22", "S11")
    assert detector_names(188, "obs_lsst") == ("R43", "S22")
    assert detector_names(94, "obs_lsstSim") == ("2,2", "1,1")
    for d in range(189):
        raft, sensor = raft_sensor(d)
        assert detector_number(raft, sensor) == d
        name, sensor_name = detector_names(d, "obs_lsst")
        assert products_detector_number({"raftName": name, "detectorName": sensor_name}) == d
        sim_raft, sim_sensor = detector_names(d, "obs_lsstSim")
        assert products_detector_number({"raft": sim_raft, "sensor": sim_sensor}) == d
    with pytest.raises(ValueError, match="189"):
        raft_sensor(189)


def test_focal_plane_locates_every_detector_and_its_gaps():
    plane = FocalPlane(4000, 4072)
    centres = np.array([plane.center(d) for d in range(189)])
    det, x, y = plane.locate(centres[:, 0], centres[:, 1])
    assert np.array_equal(det, np.arange(189))
    assert np.allclose(x, 1999.5) and np.allclose(y, 2035.5)
    assert plane.center(94) == (0.0, 0.0)
    # R22 S11 and S12 are neighbours along y, one sensor pitch (4072 + 229 px gap) apart
    assert plane.center(95) == (0.0, 4072.0 + 229)
    # a pixel's edge belongs to it: [-0.5, size - 0.5)
    det, x, _ = plane.locate(np.array([-1999.5 - 0.5, 1999.5 + 0.5, 1999.5 + 0.5 - 1e-9]), np.zeros(3))
    assert list(det) == [94, -1, 94] and x[0] == -0.5
    # gaps between sensors and rafts, and the missing corner rafts, hold no detector
    gap_u = 0.5 * (plane.center(94)[0] + plane.center(97)[0])
    corner = plane.center(detector_number((0, 1), (0, 0)))
    assert plane.locate(np.array([gap_u]), np.array([0.0]))[0][0] == -1
    assert plane.locate(np.array([corner[0]]), np.array([corner[1] - plane.raft_pitch[1]]))[0][0] == -1
    small = FocalPlane(2000, 2000)
    assert small.sensor_pitch == (2112, 2112) and small.raft_pitch == (6448, 6448)


def test_visit_files_in_the_obs_lsst_layout(make_repo):
    sample = make_repo("visits_layout", **SMALL)
    repo = Gen2Repo.open(sample.root, rerun=sample.rerun)
    assert [v.visit for v in sample.visits] == [4950000, 4950001]
    assert [v.band for v in sample.visits] == ["u", "g"]
    v = sample.visits[0]
    assert v.tract == 4850 and v.detectors == [94, 95, 97, 98]
    assert v.raft_sensor == {94: ("R22", "S11"), 95: ("R22", "S12"), 97: ("R22", "S21"), 98: ("R22", "S22")}
    data_id = v.data_id(95)
    assert data_id == {
        "visit": 4950000,
        "filter": "u",
        "raftName": "R22",
        "detectorName": "S12",
        "detector": 95,
    }
    coadd = (sample.root / "rerun" / "coadd").resolve()
    rerun = sample.rerun_path.resolve()
    expected = {
        "calexp": coadd / "calexp/04950000-u/R22/calexp_04950000-u-R22-S12-det095.fits",
        "src": coadd / "src/04950000-u/R22/src_04950000-u-R22-S12-det095.fits",
        "forced_src": rerun / "forced/04950000-u/R22/forced_04950000-u-R22-S12-det095.fits",
        "deepDiff_differenceExp": rerun / "deepDiff/v04950000-fu/R22/diffexp_04950000-u-R22-S12-det095.fits",
        "deepDiff_diaSrc": rerun / "deepDiff/v04950000-fu/R22/diaSrc_04950000-u-R22-S12-det095.fits",
    }
    for dataset, path in expected.items():
        assert repo.require(dataset, **data_id) == path
    # the butler-like discovery finds exactly the written detectors of a visit
    found = repo.discover("src", visit=4950001)
    assert [d["detector"] for d, _ in found] == [94, 95, 97, 98]
    assert {d["filter"] for d, _ in found} == {"g"}
    for patch in sample.patches[4850]:
        assert repo.find("deepDiff_diaObject", tract=4850, patch=patch) is not None
    # truth files exist and name the visit
    assert sample.visit_truth("source", 4950001).name == "source_truth_visit_4950001.parquet"
    assert sample.visit_truth("dia_source", 4950001).is_file()
    assert sample.dia_object_truth(4850).name == "dia_object_truth_tract_4850.parquet"
    with pytest.raises(KeyError, match="4950009"):
        sample.visit_truth("source", 4950009)
    with pytest.raises(ValueError, match="kind"):
        sample.visit_truth("object", 4950001)


def test_visit_list_file(make_repo, tmp_path):
    sample = make_repo("visits_layout", **SMALL)
    path = sample.write_visit_list(tmp_path / "visits.txt")
    assert path.read_text() == "4950000\n4950001\n"
    assert np.loadtxt(path, ndmin=1, dtype=int).tolist() == sample.visit_ids(4850)
    assert sample.visit_ids(4851) == []
    assert sample.visit_info(4950001).band == "g"


def test_obs_lsstsim_visits(make_repo):
    sample = make_repo("visits_sim", camera="obs_lsstSim", tracts=[4850, 4851], patches=["1,1"], **SMALL)
    repo = Gen2Repo.open(sample.root, rerun=sample.rerun)
    v = sample.visit_info(4951001)
    assert v.raft_sensor[94] == ("2,2", "1,1")
    data_id = v.data_id(94, "obs_lsstSim")
    assert data_id == {"visit": 4951001, "filter": "g", "raft": "2,2", "sensor": "1,1", "tract": 4851}
    coadd = (sample.root / "rerun" / "coadd").resolve()
    assert repo.require("calexp", **data_id) == coadd / "calexp/v4951001-fg/R22/S11.fits"
    assert repo.require("src", **data_id) == coadd / "src/v4951001-fg/R22/S11.fits"
    forced = repo.require("forced_src", **data_id)
    assert forced == sample.rerun_path.resolve() / "forced/4851/v4951001-fg/R22/S11.fits"
    dia_src = repo.require("deepDiff_diaSrc", **data_id)
    assert dia_src == sample.rerun_path.resolve() / "deepDiff/v4951001-fg/R22/diaSrc-S11.fits"
    assert read_calibration(repo.require("deepDiff_differenceExp", **data_id)).fluxmag0 > 0
    assert len(read_table(forced)) > 0


def test_no_dia_and_no_spurious(make_repo):
    sample = make_repo("visits_nodia", dia=False, spurious_fraction=0.0, detectors=[94], **SMALL)
    assert not list(sample.root.rglob("deepDiff"))
    assert not list((sample.root / "truth").glob("dia_*"))
    repo = Gen2Repo.open(sample.root, rerun=sample.rerun)
    src = read_table(repo.require("src", **sample.visits[0].data_id(94)))
    truth = pd.read_parquet(sample.visit_truth("source", sample.visits[0].visit))
    assert len(src) == len(truth) > 50 and (truth.objectId >= 0).all()


def test_bad_visit_options_are_refused_before_writing(tmp_path):
    for kw, message in (
        (dict(visits=-1), "visits"),
        (dict(visits=1001), "visits"),
        (dict(detectors=(94, 189)), "detectors"),
        (dict(detectors=(94, 94)), "twice"),
        (dict(detectors=()), "detector"),
        (dict(detector_pixels=(10, 4000)), "detector_pixels"),
        (dict(spurious_fraction=1.5), "spurious_fraction"),
        (dict(variable_fraction=-0.1), "variable_fraction"),
    ):
        with pytest.raises(ValueError, match=message):
            SampleConfig(**kw)
    with pytest.raises(ValueError, match="src width 10"):
        make_sample_repo(tmp_path / "r", SampleConfig(visits=1, src_width=10))
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    # visit options do not matter without visits
    assert SampleConfig(src_width=10).dia is False
    assert SampleConfig(visits=1).dia is True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dc2")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_visit_options(tmp_path, capsys):
    parser = _parser()
    argv = "sample-repo out --visits 3 --detectors 90-92,94 --detector-pixels 2000x1000"
    argv += " --spurious-fraction 0.1 --variable-fraction 0.2 --no-dia --src-width 80"
    args = parser.parse_args(argv.split())
    config = config_from_args(args)
    assert (config.visits, config.detectors, config.detector_pixels) == (3, (90, 91, 92, 94), (2000, 1000))
    assert (config.spurious_fraction, config.variable_fraction, config.dia, config.src_width) == (
        0.1,
        0.2,
        False,
        80,
    )
    assert config_from_args(parser.parse_args(["sample-repo", "o", "--detectors", "all"])).detectors == tuple(
        range(189)
    )
    assert config_from_args(parser.parse_args(["sample-repo", "o", "--visits", "1"])).dia is True
    for bad in (["--detectors", "94,x"], ["--detectors", "150-200"], ["--detector-pixels", "4k"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["sample-repo", "o", *bad])
    assert "detector" in capsys.readouterr().err

    out = tmp_path / "repo"
    listing = tmp_path / "visits.txt"
    argv = ["sample-repo", str(out), "--patches", "1,1", "--objects-per-patch", "100", "--bands", "gr"]
    argv += ["--ref-width", "150", "--forced-width", "60", "--visits", "2", "--detectors", "94"]
    argv += ["--visit-list", str(listing)]
    assert run(parser.parse_args(argv)) == 0
    text = capsys.readouterr().out
    assert "2 visit(s) 4950000..4950001 of 1 detector(s) (4000x4072 px), with DIA" in text
    assert "src rows" in text and str(listing) in text
    assert listing.read_text() == "4950000\n4950001\n"


def test_help_explains_visits_and_awkward_tracts(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["sample-repo", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--visits",
        "--detectors",
        "--detector-pixels",
        "--spurious-fraction",
        "--variable-fraction",
    ):
        assert option in text
    assert "--no-dia" in text and "R22 S11 = 94" in text
    assert "tract 0 is the south polar cap" in text and "4606 near Dec -30" in text
