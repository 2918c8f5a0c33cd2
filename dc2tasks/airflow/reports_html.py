"""The reports app's HTML pages: a run's QA reports and the installed products.

Every value shown comes from files and XComs that tasks wrote, so every one is escaped; links are
relative (the pages work under any base URL the API server is mounted at) and every path segment
in them is URL-quoted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from dc2tasks.airflow.reports import InstalledRow, ReportRow

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1a202c; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #cbd5e0; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #edf2f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #276749; font-weight: 600; } .warn { color: #975a16; font-weight: 600; }
.fail { color: #c53030; font-weight: 600; } .none { color: #718096; }
"""


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True)
class Verdict:
    text: str


Cell = str | int | Link | Verdict | None


def file_href(to_files: str, where: tuple[str, str]) -> str:
    """The app's URL of a served file, relative to a page: `to_files` leads from the page to
    `dags/<dag_id>/files/`."""
    area, relative = where
    return to_files + "/".join(quote(part, safe="") for part in (area, *relative.split("/")))


def _cell(value: Cell) -> str:
    if value is None:
        return '<td class="none">–</td>'
    if isinstance(value, Link):
        return f'<td><a href="{escape(value.href, quote=True)}">{escape(value.text)}</a></td>'
    if isinstance(value, Verdict):
        return f'<td class="{escape(value.text, quote=True)}">{escape(value.text)}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{escape(value)}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], row_ids: Sequence[str] = ()) -> str:
    """A table; `row_ids` (one per row) make each row a link target (`#<id>`)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    ids = [f' id="{escape(i, quote=True)}"' for i in row_ids] or [""] * len(rows)
    body = "".join(
        f"<tr{i}>" + "".join(_cell(c) for c in row) + "</tr>" for i, row in zip(ids, rows, strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, *parts: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{''.join(parts)}</body></html>"
    )


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def run_page(dag_id: str, run_id: str, rows: Sequence[ReportRow], to_files: str) -> str:
    """One DAG run: each product's verdict, failed checks and report links."""
    if not rows:
        return page(f"QA reports of {dag_id}, run {run_id}", paragraph(
            "No QA report for this run yet: its qa tasks have not run (or the run made no products)."))
    table_rows = [
        [
            r.product, Verdict(r.verdict), ", ".join(r.failures) or None,
            Link("report", file_href(to_files, r.report)) if r.report else None,
            Link("installed copy", file_href(to_files, r.installed_report)) if r.installed_report else None,
            r.override or None,
        ]
        for r in rows
    ]
    return page(
        f"QA reports of {dag_id}, run {run_id}",
        table(["product", "verdict", "failed checks", "report", "installed", "override"], table_rows,
              row_ids=[r.product for r in rows]),
    )


def _size(n: int) -> str:
    value, unit = float(n), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def installed_page(dag_id: str, central: str, rows: Sequence[InstalledRow], to_files: str) -> str:
    """Every installed version of the products in a DAG's central directory."""
    if not rows:
        return page(f"Installed products of {dag_id}", paragraph(f"Nothing is installed in {central}."))
    table_rows = [
        [
            r.product, f"{r.version} (current)" if r.current else r.version, r.installed or None,
            Verdict(r.verdict), r.qa_mode or None, "; ".join(r.overridden) or None, r.approved_by or None,
            r.rows, _size(r.bytes), Link("QA report", file_href(to_files, r.report)) if r.report else None,
        ]
        for r in rows
    ]
    return page(
        f"Installed products of {dag_id}",
        paragraph(f"Central directory {central}"),
        table(["product", "version", "installed", "QA verdict", "QA mode", "overridden failures",
               "approved by", "rows", "size", "report"], table_rows),
    )
