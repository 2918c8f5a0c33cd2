"""A product's QA report as one HTML page: the check table first (failures at the top), the facts,
then the plots.

The page is self-contained: inline style, no script, no external URL; the plots are relative links
into `plots/`, so the report directory can be served or installed as it is. Every text from the
product (column names, ids, patch names, file names) is escaped: a catalog can hold anything.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.qa.core import REPORT_FILE, VERDICTS, CheckResult, Override, QaReport

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.detail { max-width: 60em; font-size: 90%; word-break: break-word; }
.pass { background: #e3f4e1; } .warn { background: #fff3cd; } .fail { background: #f8d7da; }
figure { display: inline-block; margin: 0 1em 1em 0; } figcaption { font-size: 90%; max-width: 640px; }
pre { margin: 0; font-size: 90%; }
.override { border: 4px solid #b00020; background: #f8d7da; padding: 0.6em 1em; margin-bottom: 1.5em; }
.override h2 { margin: 0 0 0.3em 0; color: #b00020; }
"""


def _text(value: object) -> str:
    return escape("" if value is None else str(value))


def _check_rows(checks: list[CheckResult]) -> str:
    """Failures first, then warnings, then passes; each group in the order the checks ran."""
    order = sorted(checks, key=lambda c: -VERDICTS.index(c.verdict))
    return "\n".join(
        f'<tr class="{c.verdict}"><td>{c.verdict.upper()}</td><td>{_text(c.name)}</td>'
        f"<td>{_text(c.value)}</td>"
        f'<td>{_text(c.threshold)}</td><td class="detail">{_text(c.detail)}</td></tr>'
        for c in order
    )


def _fact_value(value: object) -> str:
    if isinstance(value, dict | list):
        return f"<pre>{escape(json.dumps(value, indent=1, default=str))}</pre>"
    return _text(value)


def override_headline(override: Override) -> str:
    """One line of what an install overrode: "Installed despite 2 failed checks (qa mode warn)"."""
    n = len(override.failures)
    who = f", approved by {override.approved_by}" if override.approved_by else ""
    return f"Installed despite {n} failed check{'s' if n != 1 else ''} (qa mode {override.mode}){who}"


def _banner(override: Override | None) -> str:
    """The installed copy's first words: the failed checks it was installed over, by whom and when."""
    if override is None:
        return ""
    items = "\n".join(
        f"<li>{_text(c.name)} = {_text(c.value)} (threshold {_text(c.threshold)})"
        f"{': ' + _text(c.detail) if c.detail else ''}</li>"
        for c in override.failures
    )
    return (
        f'<div class="override" id="override"><h2>{_text(override_headline(override))}</h2>'
        f"<p>dc2 install at {_text(override.at)}; the failed checks:</p><ul>{items}</ul></div>"
    )


def render(report: QaReport) -> str:
    """The page's HTML."""
    failed, warned = len(report.failures), len(report.warnings)
    installed = " (installed despite failures)" if report.override else ""
    facts = "\n".join(
        f"<tr><th>{_text(k)}</th><td>{_fact_value(v)}</td></tr>" for k, v in report.facts.items()
    )
    figures = "\n".join(
        f'<figure><img src="{escape(p.file, quote=True)}" alt="{escape(p.caption, quote=True)}">'
        f"<figcaption>{_text(p.caption)}</figcaption></figure>"
        for p in report.plots
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>QA {_text(report.product)}: {report.verdict}{installed}</title>
<style>{STYLE}</style></head>
<body>
{_banner(report.override)}
<h1>QA of {_text(report.product)}: <span class="{report.verdict}">{report.verdict.upper()}</span></h1>
<p>{len(report.checks)} checks, {failed} failed, {warned} warnings; files in {_text(report.directory)}</p>
<h2>Checks</h2>
<table><thead><tr><th>verdict</th><th>check</th><th>value</th><th>threshold</th><th>detail</th></tr></thead>
<tbody>
{_check_rows(report.checks)}
</tbody></table>
<h2>Facts</h2>
<table><tbody>
{facts}
</tbody></table>
<h2>Plots</h2>
{figures}
</body></html>
"""


def write_report(report: QaReport, out_dir: Path) -> Path:
    """`index.html` in `out_dir`, written to a temporary name and renamed into place."""
    path = out_dir / REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(render(report), encoding="utf-8")
    return path
