"""What the reports app (reports_app.py) shows, read from the deployed run files and their directories.

Which files may be served: only those under a deployed run's work directory or central directory
(its run file's `working_dir` and `central.dir`), named by a plain relative path (no `..`, no
leading `/`, no hidden part: the manifest's own rule) and opened one directory at a time without
following a symlink, so neither a request nor a link planted in those trees reaches another file.
Only reports are served: HTML, PNG and JSON.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dc2tasks.airflow.compat import configured_dags_folder
from dc2tasks.airflow.run_dag import dag_id_for
from dc2tasks.catalogue import CATALOGUE
from dc2tasks.install.errors import InstallError
from dc2tasks.install.fdops import FILE_FLAGS, open_parent, opened
from dc2tasks.install.layout import CURRENT, VERSIONS
from dc2tasks.install.manifest import PROVENANCE_NAME, check_entry_name, read_regular_json
from dc2tasks.products.errors import InputError
from dc2tasks.products.qa.core import QA_DIR, QA_FILE, REPORT_FILE, Override
from dc2tasks.products.qa.report import override_headline
from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.loader import load_run_dir

RUNS_DIR_ENV = "DC2_RUNS_DIR"
"""Where the API server reads the deployed run files; default `<dags_folder>/runs`, where the DAG
files read them."""
WORK, CENTRAL = "work", "central"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".png": "image/png", ".json": "application/json"}
MAX_SERVED_BYTES = 64 * 1024 * 1024
INSTALLED = ("installed", "unchanged")


class NotServed(Exception):
    """A file the app does not serve; `status` is the HTTP answer (400: a bad name, 404: anything else,
    so a refusal does not tell whether something exists there)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class RunAreas:
    """The directories of one deployed run whose reports may be served, by area name."""

    dag_id: str
    run: str
    areas: Mapping[str, Path]

    def locate(self, path: str) -> tuple[str, str] | None:
        """(area, relative path) of an absolute path under one of the areas (by name, not resolved:
        serving checks the files themselves)."""
        target = PurePosixPath(os.path.normpath(path))
        for area, root in self.areas.items():
            if target.is_relative_to(PurePosixPath(root)) and target != PurePosixPath(root):
                return area, str(target.relative_to(PurePosixPath(root)))
        return None


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or Path(configured_dags_folder()) / "runs")


_cache: dict[tuple[str, tuple[tuple[str, int], ...]], dict[str, RunAreas]] = {}


def deployed_runs(directory: Path | None = None) -> dict[str, RunAreas]:
    """The areas of every valid run file, by DAG id; read again when a run file changes."""
    directory = directory or runs_dir()
    try:
        stamp = tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(directory) if e.is_file()))
    except OSError:
        return {}
    key = (str(directory), stamp)
    if key not in _cache:
        configs, _errors = load_run_dir(directory)  # an invalid run file has no DAG to report on
        _cache.clear()
        _cache[key] = {dag_id_for(c): _areas(dag_id_for(c), c) for c in configs.values()}
    return _cache[key]


def _areas(dag_id: str, config: RunConfig) -> RunAreas:
    return RunAreas(dag_id, config.name, {WORK: Path(config.working_dir), CENTRAL: Path(config.central.dir)})


def read_served_file(run: RunAreas, area: str, relative: str) -> tuple[bytes, str]:
    """The content and content type of a report file of `run`; NotServed for anything else."""
    root = run.areas.get(area)
    if root is None:
        raise NotServed(404, f"no area {area!r}")
    try:
        check_entry_name(relative, "path")
    except InputError as exc:
        raise NotServed(400, str(exc)) from None
    content_type = CONTENT_TYPES.get(PurePosixPath(relative).suffix.lower())
    if content_type is None:
        raise NotServed(404, f"only {', '.join(CONTENT_TYPES)} files are served")
    try:
        with opened(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)) as root_fd:
            parent, leaf = open_parent(root_fd, relative, root)
            with opened(parent), opened(os.open(leaf, FILE_FLAGS, dir_fd=parent)) as fd:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SERVED_BYTES:
                    raise NotServed(404, "not a regular file of a served size")
                with os.fdopen(os.dup(fd), "rb") as fh:
                    return fh.read(), content_type
    except (OSError, InstallError) as exc:  # missing, a symlink, not a directory: all the same answer
        raise NotServed(404, str(exc)) from None


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _json_file(path: Path) -> dict[str, Any]:
    """A JSON object read without following a symlink; {} when it is missing or not one."""
    try:
        return _mapping(read_regular_json(path))
    except (OSError, InputError, ValueError):
        return {}


@dataclass(frozen=True)
class ReportRow:
    """One product's QA report of one run: its verdict, failed checks and where to read it."""

    product: str
    verdict: str
    failures: tuple[str, ...]
    report: tuple[str, str] | None  # (area, relative path of index.html)
    installed_report: tuple[str, str] | None
    override: str = ""  # the installed copy's override headline: installed despite failed checks


def run_reports(run: RunAreas, qa_xcoms: Mapping[str, Any], install_result: Any) -> list[ReportRow]:
    """The `qa_report` XComs of one DAG run's qa tasks, with the installed copy of each report when
    the run's `install` task installed its product."""
    installed: dict[str, str] = {}
    if isinstance(install_result, dict):
        for directory, result in install_result.items():
            if isinstance(result, dict) and result.get("status") in INSTALLED and result.get("version"):
                installed[directory] = f"{result.get('product_dir')}/{VERSIONS}/{result['version']}"
    rows = []
    for _task, xcom in sorted(qa_xcoms.items()):
        if not isinstance(xcom, dict) or not isinstance(xcom.get("product"), str):
            continue
        product = xcom["product"]
        report_dir = xcom.get("report_dir")
        report = run.locate(f"{report_dir}/{REPORT_FILE}") if isinstance(report_dir, str) else None
        directory = CATALOGUE[product].directory if product in CATALOGUE.names else None
        version_dir = installed.get(directory or "")
        installed_report = (
            run.locate(f"{version_dir}/{QA_DIR}/{product}/{REPORT_FILE}") if version_dir else None
        )
        failures = tuple(str(f) for f in xcom.get("failures") or ())
        rows.append(ReportRow(product, str(xcom.get("verdict")), failures, report, installed_report,
                              override_text(installed_qa(run, installed_report))))
    return rows


def installed_qa(run: RunAreas, report: tuple[str, str] | None) -> dict[str, Any]:
    """The qa.json beside a report's index.html, read as the app serves it; {} when there is none."""
    if report is None:
        return {}
    area, relative = report
    try:
        content, _ = read_served_file(run, area, str(PurePosixPath(relative).parent / QA_FILE))
        return _mapping(json.loads(content))
    except (NotServed, ValueError):
        return {}


def report_override(qa: Mapping[str, Any]) -> Override | None:
    """The override record of an installed report (written by `dc2 install`, qa_gate.py), if any."""
    try:
        return Override.from_json(qa["override"], QA_FILE) if "override" in qa else None
    except InputError:
        return None


def override_text(qa: Mapping[str, Any]) -> str:
    override = report_override(qa)
    return override_headline(override) if override is not None else ""


@dataclass(frozen=True)
class InstalledRow:
    """One product in one installed version of its directory."""

    product: str
    directory: str
    version: str
    current: bool
    installed: str
    verdict: str
    qa_mode: str
    rows: int | None
    bytes: int
    report: tuple[str, str] | None
    overridden: tuple[str, ...] = ()  # failed checks installed anyway (qa mode warn or approve)
    approved_by: str = ""


def installed_products(run: RunAreas) -> list[InstalledRow]:
    """Every installed version in the run's central directory, newest first per directory, one row
    per product of the directory that the version holds (its files or its QA report)."""
    central = run.areas[CENTRAL]
    out: list[InstalledRow] = []
    for directory in dict.fromkeys(p.directory for p in CATALOGUE):
        versions = central / directory / VERSIONS
        try:
            names = sorted((e.name for e in os.scandir(versions) if e.is_dir(follow_symlinks=False)),
                           reverse=True)
        except OSError:
            continue  # nothing of this directory installed
        try:
            current = os.readlink(central / directory / CURRENT).rsplit("/", 1)[-1]
        except OSError:
            current = ""
        for version in names:
            out += _version_rows(central, directory, version, version == current)
    return out


def overridden_checks(report: Mapping[str, Any]) -> tuple[str, ...]:
    """The failed checks an install overrode, from the installed report's override record (the one
    source: the report a reader opens says the same), as "check = value (threshold)"."""
    override = report_override(report)
    return tuple(f"{c.name} = {c.value} ({c.threshold})" for c in override.failures) if override else ()


def _version_rows(central: Path, directory: str, version: str, current: bool) -> list[InstalledRow]:
    version_dir = central / directory / VERSIONS / version
    provenance = _json_file(version_dir / PROVENANCE_NAME)
    qa = _mapping(provenance.get("qa"))
    verdicts = _mapping(qa.get("verdicts"))
    files = [f for f in _mapping(provenance.get("outputs")).get("files") or [] if isinstance(f, dict)]
    installed = str(_mapping(provenance.get("timestamps")).get("installed", ""))
    rows = []
    for product in CATALOGUE.in_directory(directory):
        pattern = re.compile(product.file_pattern)
        size = sum(int(f.get("size") or 0) for f in files if pattern.fullmatch(str(f.get("name"))))
        report_rel = f"{directory}/{VERSIONS}/{version}/{QA_DIR}/{product.name}"
        report = _json_file(central / report_rel / QA_FILE)
        if not size and not report:
            continue
        n_rows = _mapping(report.get("facts")).get("rows")
        rows.append(InstalledRow(
            product=product.name, directory=directory, version=version, current=current, installed=installed,
            verdict=str(verdicts.get(product.name) or report.get("verdict") or "none"),
            qa_mode=str(qa.get("mode") or ""), rows=n_rows if isinstance(n_rows, int) else None,
            bytes=size, report=(CENTRAL, f"{report_rel}/{REPORT_FILE}") if report else None,
            overridden=overridden_checks(report), approved_by=str(qa.get("approved_by") or ""),
        ))
    return rows
