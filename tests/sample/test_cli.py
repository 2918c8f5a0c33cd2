"""`dc2 sample-repo`: options, summary, refusal of a non-empty directory."""

from __future__ import annotations

import argparse

import pytest

from dc2tasks.cli.sample import config_from_args, register, run
from dc2tasks.products.afw import column_names, read_table
from dc2tasks.products.calib import read_calibration
from dc2tasks.products.repo import Gen2Repo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dc2")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["sample-repo", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--seed",
        "--tracts",
        "--patches",
        "--patch-grid",
        "--objects-per-patch",
        "--bands",
        "--schema",
        "--camera",
        "--calib-era",
        "--zero-point",
        "--zp-jitter",
        "--pixel-scale",
        "--ref-width",
        "--forced-width",
        "--missing-band",
        "--missing-patch",
        "--rerun",
        "--no-truth",
        "--overwrite",
    ):
        assert option in text
    assert "obs_lsstSim" in text and "FLUXMAG0" in text and "PhotoCalib" in text


def test_options_reach_the_config():
    args = _parser().parse_args(
        [
            "sample-repo",
            "out",
            "--seed",
            "4",
            "--tracts",
            "4850",
            "4851",
            "--patches",
            "0,0",
            "0,1",
            "--objects-per-patch",
            "50",
            "--schema",
            "v1",
            "--camera",
            "obs_lsstSim",
            "--calib-era",
            "photocalib",
            "--zp-jitter",
            "0.1",
            "--ref-width",
            "300",
            "--forced-width",
            "100",
            "--missing-band",
            "g@0,1",
            "r",
            "--missing-patch",
            "0,0",
            "--rerun",
            "mine",
            "--pixel-scale",
            "0.185",
            "--bands",
            "gri",
        ]
    )
    config = config_from_args(args)
    assert config.seed == 4 and config.tracts == (4850, 4851) and config.patches == ("0,0", "0,1")
    assert (config.schema, config.camera, config.calib_era, config.zp_jitter) == (
        1,
        "obs_lsstSim",
        "photocalib",
        0.1,
    )
    assert config.missing_bands == (("g", "0,1"), ("r", None))
    assert config.missing_patches == ("0,0",)
    assert (config.rerun, config.pixel_scale, config.bands) == ("mine", 0.185, ("g", "r", "i"))
    grid = config_from_args(_parser().parse_args(["sample-repo", "out", "--patch-grid", "2x3"]))
    assert grid.patches == ("0,0", "0,1", "0,2", "1,0", "1,1", "1,2")


def test_bad_values_are_argparse_errors(capsys):
    for bad in (["--patches", "0;1"], ["--missing-band", "@0,1"], ["--patch-grid", "0"], ["--bands", "gx"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(["sample-repo", "out", *bad])
        assert "error" in capsys.readouterr().err


def test_run_writes_and_summarises(tmp_path, capsys):
    target = tmp_path / "repo"
    args = _parser().parse_args(
        [
            "sample-repo",
            str(target),
            "--patches",
            "1,1",
            "--objects-per-patch",
            "40",
            "--schema",
            "v4",
            "--calib-era",
            "photocalib",
            "--ref-width",
            "200",
            "--forced-width",
            "80",
        ]
    )
    assert run(args) == 0
    out = capsys.readouterr().out
    assert str(target.resolve()) in out and "1 tract(s) 4850" in out and "schema v4" in out and "MB/s" in out
    repo = Gen2Repo.open(target, rerun="multiband")
    ref = repo.require("deepCoadd_ref", tract=4850, patch="1,1")
    assert len(column_names(ref)) == 200 and "base_Blendedness_abs" in column_names(ref)
    assert len(read_table(ref)) >= 40
    cal = read_calibration(repo.require("deepCoadd_calexp", tract=4850, patch="1,1", filter="y"))
    assert cal.era == "photocalib"
    # a second run into the same directory is refused, with a clear message
    assert run(args) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err
    args.overwrite = True
    assert run(args) == 0


def test_run_reports_a_patch_outside_the_tract(tmp_path, capsys):
    args = _parser().parse_args(["sample-repo", str(tmp_path / "r"), "--patches", "7,0"])
    assert run(args) == 2
    assert "patch '7,0' is not in tract 4850" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
