"""What the installed-products page shows of a version installed over failed checks (qa mode warn or
approve): the overridden failures and the approver, from the version's provenance."""

from __future__ import annotations

import json
from pathlib import Path

from dc2tasks.airflow.reports import CENTRAL, WORK, RunAreas, installed_products
from dc2tasks.airflow.reports_html import installed_page


def _install(central: Path, version: str, qa: dict[str, object]) -> None:
    version_dir = central / "object" / "versions" / version
    report = version_dir / "qa" / "object"
    report.mkdir(parents=True)
    (report / "qa.json").write_text(json.dumps({"product": "object", "verdict": "fail", "checks": [],
                                                "facts": {"rows": 12}}))
    (version_dir / "provenance.json").write_text(json.dumps({
        "qa": qa, "timestamps": {"installed": "2026-12-02T11:00:00Z"},
        "outputs": {"files": [{"name": "object_tract_4850.hdf5", "size": 2500}]},
    }))


def test_a_version_installed_over_failures_shows_them_and_who_approved(tmp_path: Path) -> None:
    central = tmp_path / "central"
    failure = {"product": "object", "check": "ids_unique", "value": 2,
               "threshold": "<= 0 (max_duplicate_ids)"}
    other = {"product": "trim_object", "check": "one_schema", "value": 1, "threshold": "<= 0"}
    _install(central, "v2", {"mode": "approve", "verdicts": {"object": "fail"},
                             "overridden": [failure, other], "approved_by": "operator<1>"})
    _install(central, "v1", {"mode": "enforce", "verdicts": {"object": "pass"}, "overridden": [],
                             "approved_by": None})
    (central / "object" / "current").symlink_to("versions/v2")
    rows = installed_products(RunAreas("dc2_demo", "demo", {CENTRAL: central, WORK: tmp_path / "work"}))
    by_version = {r.version: r for r in rows}
    assert by_version["v2"].overridden == ("ids_unique = 2 (<= 0 (max_duplicate_ids))",)
    assert (by_version["v2"].approved_by, by_version["v2"].verdict, by_version["v2"].current) == (
        "operator<1>", "fail", True)
    assert (by_version["v1"].overridden, by_version["v1"].approved_by) == ((), "")
    html = installed_page("dc2_demo", str(central), rows, "../files")
    assert "ids_unique = 2 (&lt;= 0 (max_duplicate_ids))" in html and "operator&lt;1&gt;" in html
    assert "one_schema" not in html  # another product's override is not this product's
    assert "<th>overridden failures</th>" in html.replace(' scope="col"', "")
