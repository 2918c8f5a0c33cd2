"""`dc2 inventory` on a sample repository with deliberately missing patches, bands, detectors and a
truncated file: the report names exactly those."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest

from dc2tasks.cli import main
from dc2tasks.products.inventory import Scope, header_problem, summary, take_inventory
from dc2tasks.products.repo import TEMPLATES, Gen2Repo
from dc2tasks.sample import SampleConfig, make_sample_repo

PATCHES = tuple(f"{x},{y}" for x in (2, 3) for y in (2, 3))
OTHER_BANDS = "urizy"


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[int], Path]:
    """Patch 3,3 without ref (so without forced), band g absent from patch 2,2, visit 0's calexp
    of detector 95 and visit 1's src of detector 97 removed, patch 2,3's r forced_src truncated."""
    root = tmp_path_factory.mktemp("inventory")
    config = SampleConfig(
        patches=PATCHES, objects_per_patch=40, visits=2, dia=False,
        missing_patches=("3,3",), missing_bands=(("g", "2,2"),),
    )
    sample = make_sample_repo(root / "repo", config)
    repo = Gen2Repo.open(sample.root, sample.rerun)
    v0, v1 = sample.visits[0], sample.visits[1]
    repo.require("calexp", **v0.data_id(95)).unlink()
    repo.require("src", **v1.data_id(97)).unlink()
    truncated = repo.require("deepCoadd_forced_src", tract=4850, patch="2,3", filter="r")
    with open(truncated, "r+b") as fh:
        fh.truncate(os.path.getsize(truncated) - 1000)
    return sample.root, sample.rerun, [v0.visit, v1.visit], truncated


def test_object_inputs_missing_and_truncated_named(damaged) -> None:
    root, rerun, _, truncated = damaged
    report = take_inventory(Gen2Repo.open(root, rerun), ["object"], Scope(tracts=(4850,)))
    obj = report["products"]["object"]
    assert obj["status"] == "partial"
    assert obj["missing_tracts"] == []
    ds = obj["datasets"]
    assert ds["deepCoadd_ref"]["missing"] == ["4850/3,3"]
    assert ds["deepCoadd_ref"]["found"] == 3
    assert ds["deepCoadd_forced_src"]["missing"] == ["4850/2,2/g"] + [f"4850/3,3/{b}" for b in "ugrizy"]
    assert list(ds["deepCoadd_forced_src"]["unreadable"]) == ["4850/2,3/r"]
    assert "truncated" in ds["deepCoadd_forced_src"]["unreadable"]["4850/2,3/r"]
    assert ds["deepCoadd_forced_src"]["found"] == 4 * 6 - 7 - 1
    assert ds["deepCoadd_calexp"]["missing"] == ["4850/2,2/g"]
    assert ds["deepCoadd_calexp"]["unreadable"] == {}
    assert report["schema_generation"] == "v3"
    assert report["calib_era"] == "calib"
    assert header_problem(str(truncated)).startswith("truncated")


def test_visit_detectors_missing_named(damaged) -> None:
    root, rerun, visits, _ = damaged
    report = take_inventory(Gen2Repo.open(root, rerun), ["source", "forced_source"])
    source = report["products"]["source"]
    assert source["status"] == "partial"
    assert source["datasets"]["calexp"]["missing"] == [f"{visits[0]}/95"]
    assert source["datasets"]["src"]["missing"] == [f"{visits[1]}/97"]
    forced = report["products"]["forced_source"]
    assert forced["datasets"]["forced_src"]["missing"] == []
    assert forced["datasets"]["calexp"]["missing"] == [f"{visits[0]}/95"]
    assert source["missing_visits"] == []


def test_requested_but_absent_tracts_visits_and_products(damaged) -> None:
    root, rerun, visits, _ = damaged
    scope = Scope(tracts=(4850, 4851), visits=(visits[0], 999999))
    products = ["object", "source", "dia_object", "trim_object"]
    report = take_inventory(Gen2Repo.open(root, rerun), products, scope)
    products = report["products"]
    assert products["object"]["missing_tracts"] == [4851]
    assert products["source"]["missing_visits"] == [999999]
    assert products["dia_object"]["status"] == "absent"
    assert products["dia_object"]["reason"] == "no readable deepDiff_diaObject in the scope"
    assert products["trim_object"]["status"] == "derived"
    text = summary(report)
    assert "dia_object: absent (no readable deepDiff_diaObject in the scope)" in text
    assert "missing tracts: 4851" in text


def test_child_hides_parent_and_gz_found(damaged, tmp_path: Path) -> None:
    """A rerun's file hides its parent's; a `.fits.gz` is the dataset's file too."""
    root, rerun, _, _ = damaged
    repo = Gen2Repo.open(root, rerun)
    rel = TEMPLATES[repo.camera]["deepCoadd_ref"] % {"tract": 4850, "patch": "3,3"}
    gz = repo.root / (rel + ".gz")
    gz.parent.mkdir(parents=True, exist_ok=True)
    gz.write_bytes(b"\x1f\x8b" + b"\0" * 20)
    try:
        report = take_inventory(repo, ["object"])
    finally:
        gz.unlink()
    assert report["products"]["object"]["datasets"]["deepCoadd_ref"]["missing"] == []


def test_cli_writes_report_and_prints_summary(damaged, tmp_path: Path, capsys) -> None:
    root, rerun, _, _ = damaged
    out = tmp_path / "run" / "inventory.json"
    rc = main(["inventory", str(root), "--rerun", rerun, "--products", "object", "--bands", "ugrizy",
               "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "object: partial" in printed
    assert "deepCoadd_ref: 3 found; 1 missing: 4850/3,3" in printed
    report = json.loads(out.read_text())
    assert report["scope"]["bands"] == list("ugrizy")
    assert report["products"]["object"]["datasets"]["deepCoadd_ref"]["missing"] == ["4850/3,3"]
    assert main(["inventory", str(root), "--rerun", rerun, "--products", "object", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["products"]["object"]["status"] == "partial"


def test_progress_lines(damaged, monkeypatch, caplog) -> None:
    root, rerun, _, _ = damaged
    monkeypatch.setenv("DC2_PROGRESS_INTERVAL_S", "0.001")
    with caplog.at_level(logging.INFO, logger="dc2tasks.progress"):
        report = take_inventory(Gen2Repo.open(root, rerun), ["object"])
    shown = [r.getMessage() for r in caplog.records if r.name == "dc2tasks.progress"]
    assert shown[-1].startswith(f"inventory: {report['directories']} directories, ")
    form = r"inventory: \d+ directories, [\d.]+ directories/s, \d+ files \(\d+/s\), done in [\d.]+ s"
    assert re.fullmatch(form, shown[-1]), shown[-1]
    assert report["files"] > 0
