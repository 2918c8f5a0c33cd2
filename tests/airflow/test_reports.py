"""What the reports app shows of a version installed over failed checks (qa mode warn or approve):
the overridden failures from the installed report's override record (the one the report page shows
at its top), the mode and the approver from the version's provenance."""

from __future__ import annotations

import json
from pathlib import Path

from dc2tasks.airflow.reports import CENTRAL, WORK, RunAreas, installed_products, run_reports
from dc2tasks.airflow.reports_html import installed_page, run_page
from dc2tasks.products.qa.core import CheckResult, Override

FAILED = CheckResult("ids_unique", "fail", 2, "<= 0 (max_duplicate_ids)", "objectId 7")


def _install(central: Path, version: str, qa: dict[str, object], override: Override | None = None) -> None:
    version_dir = central / "object" / "versions" / version
    report = version_dir / "qa" / "object"
    report.mkdir(parents=True)
    data: dict[str, object] = {"product": "object", "verdict": "fail", "checks": [], "facts": {"rows": 12}}
    if override is not None:  # as dc2 install writes the installed copy
        data["override"] = override.to_json()
    (report / "qa.json").write_text(json.dumps(data))
    (report / "index.html").write_text("<html></html>")
    (version_dir / "provenance.json").write_text(json.dumps({
        "qa": qa, "timestamps": {"installed": "2026-12-02T11:00:00Z"},
        "outputs": {"files": [{"name": "object_tract_4850.hdf5", "size": 2500}]},
    }))


def test_a_version_installed_over_failures_shows_them_and_who_approved(tmp_path: Path) -> None:
    central = tmp_path / "central"
    failure = {"product": "object", "check": FAILED.name, "value": 2, "threshold": FAILED.threshold}
    other = {"product": "trim_object", "check": "one_schema", "value": 1, "threshold": "<= 0"}
    override = Override("approve", (FAILED,), "operator<1>", "2026-12-02T11:00:00+00:00")
    _install(central, "v2", {"mode": "approve", "verdicts": {"object": "fail"},
                             "overridden": [failure, other], "approved_by": "operator<1>"}, override)
    _install(central, "v1", {"mode": "enforce", "verdicts": {"object": "pass"}, "overridden": [],
                             "approved_by": None})
    (central / "object" / "current").symlink_to("versions/v2")
    run = RunAreas("dc2_demo", "demo", {CENTRAL: central, WORK: tmp_path / "work"})
    rows = installed_products(run)
    by_version = {r.version: r for r in rows}
    assert by_version["v2"].overridden == ("ids_unique = 2 (<= 0 (max_duplicate_ids))",)
    assert (by_version["v2"].approved_by, by_version["v2"].verdict, by_version["v2"].current) == (
        "operator<1>", "fail", True)
    assert (by_version["v1"].overridden, by_version["v1"].approved_by) == ((), "")
    html = installed_page("dc2_demo", str(central), rows, "../files")
    assert "ids_unique = 2 (&lt;= 0 (max_duplicate_ids))" in html and "operator&lt;1&gt;" in html
    assert "one_schema" not in html  # another product's override is not this product's
    assert "<th>overridden failures</th>" in html.replace(' scope="col"', "")

    # the run page: the installed copy's override headline beside its link
    xcom = {"product": "object", "verdict": "fail", "report_dir": str(tmp_path / "work/object/qa/object"),
            "failures": ["ids_unique"]}
    installed = {"object": {"status": "installed", "product_dir": str(central / "object"), "version": "v2"}}
    (row,) = run_reports(run, {"qa.object": xcom}, installed)
    assert row.installed_report == (CENTRAL, "object/versions/v2/qa/object/index.html")
    assert row.override == "Installed despite 1 failed check (qa mode approve), approved by operator<1>"
    html = run_page("dc2_demo", "r1", [row], "../../files/")
    assert "<td>Installed despite 1 failed check (qa mode approve), approved by operator&lt;1&gt;</td>" in (
        html)
    installed["object"]["version"] = "v1"
    assert run_reports(run, {"qa.object": xcom}, installed)[0].override == ""
