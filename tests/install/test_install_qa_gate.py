"""The install's quality gate: the QA reports a producer's directory holds (listed in its manifest)
decide whether `dc2 install` installs it, and what its provenance says about them."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from dc2tasks.cli import install as cli
from dc2tasks.install import InstallError, install_product, write_manifest
from dc2tasks.install.manifest import PROVENANCE_NAME, Manifest, build_manifest, read_manifest
from dc2tasks.products.errors import InputError
from dc2tasks.products.qa.core import CheckResult, QaReport, write_qa_json
from dc2tasks.service.demo import qa_lines

FAILED = CheckResult("max_duplicate_ids", "fail", 3, "<= 0", "objectId 7, 8, 9")
WARNED = CheckResult("min_matched_fraction", "warn", 0.7, ">= 0.8")
PASSED = CheckResult("max_missing_units", "pass", 0, "<= 0")


def _with_reports(source: Path, checks: dict[str, list[CheckResult]]) -> Path:
    """The producer's directory with a QA report per product, its manifest rewritten (as dc2 qa does)."""
    provenance = (source / PROVENANCE_NAME).read_text()
    for product, results in checks.items():
        out = source / "qa" / product
        out.mkdir(parents=True)
        write_qa_json(QaReport(product, str(source), list(results)), out)
        (out / "index.html").write_text("<html></html>\n")
    write_manifest(source)
    assert (source / PROVENANCE_NAME).read_text() == provenance
    return source


def _provenance(central: Path) -> dict:
    return json.loads((central / "object" / "current" / PROVENANCE_NAME).read_text())


def _verified(version: Path) -> Manifest:
    """An installed version checked as `dc2 install` checks a copy: every file its manifest lists is
    there with that size and sha256, and there is no other."""
    manifest = read_manifest(version / "manifest.json")
    assert sorted(build_manifest(version).files, key=str) == sorted(manifest.files, key=str)
    return manifest


def _producer_entries(source: Path, product: str) -> list[dict]:
    files = {e.name: e for e in read_manifest(source / "manifest.json").files}
    return [{"name": e.name, "size": e.size, "sha256": e.sha256}
            for e in (files[f"qa/{product}/qa.json"], files[f"qa/{product}/index.html"])]


def test_enforce_refuses_a_failed_product_and_changes_nothing(source, central, tree) -> None:
    _with_reports(source, {"object": [PASSED], "trim_object": [FAILED, WARNED]})
    before = tree(central)
    with pytest.raises(InstallError) as info:
        install_product(source, central, "object", check=None)
    assert str(info.value).startswith(
        "object: QA failed, not installed (qa mode enforce): trim_object: max_duplicate_ids = 3 "
        "(threshold <= 0); nothing installed changed"
    )
    assert tree(central) == before == {}


def test_warn_installs_and_records_the_overridden_failures(source, central) -> None:
    _with_reports(source, {"object": [PASSED], "trim_object": [FAILED, WARNED]})
    result = install_product(source, central, "object", check=None, qa_mode="warn")
    expected = {
        "mode": "warn",
        "verdicts": {"object": "pass", "trim_object": "fail"},
        "overridden": [
            {"product": "trim_object", "check": "max_duplicate_ids", "value": 3, "threshold": "<= 0"}
        ],
        "approved_by": None,
    }
    assert result.status == "installed" and result.qa == expected
    assert _provenance(central)["qa"] == expected
    assert "  qa overridden: trim_object max_duplicate_ids = 3 (<= 0)" in result.summary()
    version = central / "object" / "versions" / result.version
    # the installed report says it was installed over its failure; the passing one is as produced
    installed = json.loads((version / "qa" / "trim_object" / "qa.json").read_text())
    assert installed["override"] == {
        "mode": "warn",
        "failures": [
            {"name": "max_duplicate_ids", "value": 3, "threshold": "<= 0", "detail": "objectId 7, 8, 9"}
        ],
        "approved_by": None,
        "at": _provenance(central)["timestamps"]["installed"],
        "produced": _producer_entries(source, "trim_object"),
    }
    assert {k: v for k, v in installed.items() if k != "override"} == json.loads(
        (source / "qa" / "trim_object" / "qa.json").read_text())
    html = (version / "qa" / "trim_object" / "index.html").read_text()
    assert '<div class="override" id="override"><h2>Installed despite 1 failed check (qa mode warn)</h2>' in (
        html)
    assert html.index('class="override"') < html.index("<h1>")
    assert "<li>max_duplicate_ids = 3 (threshold &lt;= 0): objectId 7, 8, 9</li>" in html
    for name in ("qa/object/qa.json", "qa/object/index.html"):
        assert (version / name).read_bytes() == (source / name).read_bytes()
    # the installed manifest lists the files as installed; it knows the content it was made from
    manifest, produced = _verified(version), read_manifest(source / "manifest.json")
    assert manifest.produced_as == produced.content_sha256 != manifest.content_sha256
    assert _provenance(central)["outputs"]["files"] == manifest.to_json()["files"]
    again = install_product(source, central, "object", check=None, qa_mode="warn")
    assert (again.status, again.version) == ("unchanged", result.version)
    assert qa_lines(central) == [
        f"  QA {'object':<20} pass  report {version / 'qa' / 'object' / 'index.html'}",
        f"  QA {'trim_object':<20} fail  report {version / 'qa' / 'trim_object' / 'index.html'}",
    ]


def test_approve_needs_and_records_who_approved(source, central, tree) -> None:
    _with_reports(source, {"trim_object": [FAILED]})
    with pytest.raises(InputError, match="--approved-by USER"):
        install_product(source, central, "object", check=None, qa_mode="approve")
    with pytest.raises(InputError, match="only with qa mode approve"):
        install_product(source, central, "object", check=None, approved_by="alice")
    assert tree(central) == {}
    install_product(source, central, "object", check=None, qa_mode="approve", approved_by="alice")
    qa = _provenance(central)["qa"]
    assert qa["mode"] == "approve" and qa["approved_by"] == "alice"
    assert [o["check"] for o in qa["overridden"]] == ["max_duplicate_ids"]
    report = central / "object" / "current" / "qa" / "trim_object"
    override = json.loads((report / "qa.json").read_text())["override"]
    assert (override["mode"], override["approved_by"]) == ("approve", "alice")
    assert [(f["name"], f["value"], f["threshold"]) for f in override["failures"]] == [
        ("max_duplicate_ids", 3, "<= 0")]
    assert "Installed despite 1 failed check (qa mode approve), approved by alice" in (
        report / "index.html").read_text()
    _verified(central / "object" / "current")


def test_passing_products_and_one_without_reports_install(source, central, made, tmp_path) -> None:
    _with_reports(source, {"object": [PASSED], "trim_object": [WARNED]})
    install_product(source, central, "object", check=None)
    assert _provenance(central)["qa"] == {
        "mode": "enforce", "verdicts": {"object": "pass", "trim_object": "warn"}, "overridden": [],
        "approved_by": None,
    }
    version = central / "object" / "current"  # enforce: the reports are installed as produced
    assert _verified(version).to_json() == read_manifest(source / "manifest.json").to_json()
    assert "override" not in (version / "qa" / "trim_object" / "qa.json").read_text()
    dpdd = tmp_path / "dpdd_object"  # no QA report at all (a hand install): nothing to refuse
    shutil.copytree(made.dpdd_dir, dpdd)
    install_product(dpdd, central, "dpdd_object", check=None)
    provenance = json.loads((central / "dpdd_object" / "current" / PROVENANCE_NAME).read_text())
    assert provenance["qa"]["verdicts"] == {}


def test_a_report_changed_after_the_manifest_is_refused(source, central, tree) -> None:
    _with_reports(source, {"trim_object": [FAILED]})
    path = source / "qa" / "trim_object" / "qa.json"
    data = json.loads(path.read_text())
    data["verdict"], data["checks"] = "pass", []
    text = json.dumps(data)
    files = read_manifest(source / "manifest.json").files
    entry = next(e for e in files if e.name == "qa/trim_object/qa.json")
    path.write_text(text[: entry.size].ljust(entry.size))  # same size: only the checksum tells
    with pytest.raises(InstallError, match=r"qa/trim_object/qa\.json: not the checksum the manifest gives"):
        install_product(source, central, "object", check=None, qa_mode="warn")
    assert tree(central) == {}


def _dc2(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dc2")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_the_cli_gate(source, central, capsys) -> None:
    _with_reports(source, {"trim_object": [FAILED]})
    common = ("install", str(source), "--central", str(central), "--product", "object", "--no-check")
    assert _dc2(*common) == 2
    err = capsys.readouterr().err
    assert "QA failed, not installed (qa mode enforce): trim_object: max_duplicate_ids = 3" in err
    assert _dc2(*common, "--qa-mode", "approve") == 2
    assert "--approved-by USER" in capsys.readouterr().err
    assert _dc2(*common, "--qa-mode", "approve", "--approved-by", "bob", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["qa"]["approved_by"] == "bob" and result["qa"]["verdicts"] == {"trim_object": "fail"}
