"""`dc2 qa`: exit codes, the lines it prints, and its report in the product's manifest and install."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dc2tasks.cli import main
from dc2tasks.install.manifest import MANIFEST_NAME, append_files, read_manifest, sha256_file
from dc2tasks.products.qa.core import FAILED_EXIT, QA_FILE, REPORT_FILE


def test_enforce_exits_3_on_a_failure_and_0_on_pass(work_copy, capsys):
    product_dir = work_copy / "dpdd_object"
    assert main(["qa", str(product_dir), "--product", "dpdd_object", "--enforce"]) == 0
    out = capsys.readouterr()
    assert re.fullmatch(
        r"qa dpdd_object: pass \(\d+ checks, 0 failed, 0 warnings\); report .*/qa/dpdd_object/index\.html\n",
        out.out,
    )
    assert out.err == ""
    argv = ["qa", str(product_dir), "--product", "dpdd_object", "--thresholds", '{"mag_max": 20}']
    assert main(argv) == 0  # a failure without --enforce: the report is written, exit 0
    assert main([*argv, "--enforce"]) == FAILED_EXIT
    err = capsys.readouterr().err
    assert "qa dpdd_object: FAIL magnitudes_in_range:" in err and "(max_mag_outside_fraction)" in err
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "fail" and "magnitudes_in_range" in [c["name"] for c in data["checks"]]


def test_bad_input_exits_2(work_copy, capsys):
    product_dir = work_copy / "dpdd_object"
    assert main(["qa", str(product_dir), "--product", "dpdd_object", "--thresholds", '{"mag_maxx": 1}']) == 2
    assert "unknown threshold 'mag_maxx'" in capsys.readouterr().err
    assert main(["qa", str(work_copy / "nothing"), "--product", "dpdd_object"]) == 2


def test_report_joins_the_manifest_and_is_installed(work_copy, tmp_path, capsys):
    product_dir = work_copy / "dpdd_object"
    assert main(["manifest", str(product_dir)]) == 0
    before = {e.name for e in read_manifest(product_dir / MANIFEST_NAME).files}
    for product in ("dpdd_object", "merged_dpdd_object"):  # two products share the directory
        assert main(["qa", str(product_dir), "--product", product]) == 0
    manifest = read_manifest(product_dir / MANIFEST_NAME)
    names = {e.name for e in manifest.files}
    assert before <= names
    added = names - before
    for product in ("dpdd_object", "merged_dpdd_object"):
        assert {f"qa/{product}/{QA_FILE}", f"qa/{product}/{REPORT_FILE}",
                f"qa/{product}/plots/number_counts.png"} <= added
    for entry in manifest.files:
        assert entry.sha256 == sha256_file(product_dir / entry.name), entry.name
    # a re-run that no longer draws a plot leaves it neither on disk nor in the manifest
    stale = product_dir / "qa/dpdd_object/plots/stale.png"
    stale.write_bytes((product_dir / "qa/dpdd_object/plots/number_counts.png").read_bytes())
    append_files(product_dir, ["qa/dpdd_object/plots/stale.png"])
    listed = {e.name for e in read_manifest(product_dir / MANIFEST_NAME).files}
    assert "qa/dpdd_object/plots/stale.png" in listed
    assert main(["qa", str(product_dir), "--product", "dpdd_object"]) == 0
    names = {e.name for e in read_manifest(product_dir / MANIFEST_NAME).files}
    assert "qa/dpdd_object/plots/stale.png" not in names and not stale.exists()
    assert names == before | added
    capsys.readouterr()
    central = tmp_path / "central"
    central.mkdir()
    assert main(["install", str(product_dir), "--central", str(central), "--product", "dpdd_object",
                 "--no-check", "--json"]) == 0
    version = json.loads(capsys.readouterr().out)["version"]
    installed = central / "dpdd_object" / "versions" / version / "qa"
    assert (installed / "dpdd_object" / REPORT_FILE).read_bytes() == (
        product_dir / "qa/dpdd_object" / REPORT_FILE).read_bytes()
    assert (installed / "merged_dpdd_object" / "plots" / "number_counts.png").is_file()
    assert not any(Path(p).name.startswith(".manifest") for p in installed.parent.iterdir())


def test_a_product_without_files_fails(tmp_path, capsys):
    assert main(["qa", str(tmp_path), "--product", "dpdd_object", "--enforce"]) == FAILED_EXIT
    err = capsys.readouterr().err
    assert "FAIL files_present: 1" in err and "no dpdd_object_tract_{tract}.parquet in" in err
