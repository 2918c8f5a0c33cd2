"""The quality gate of an install: the product's QA reports (`qa/<product>/qa.json`, made by `dc2 qa`
and listed in its manifest) decide whether it may be installed.

`enforce` refuses a product with a failed check before anything in the central directory changes;
`warn` and `approve` install it and record the failures they override (and, for `approve`, who
approved) in the provenance of the installed version and in the installed copy of each report
that failed: its `qa.json` gains an `override` record (products/qa/core.py: Override) and its
`index.html` is rendered again from it, with the override at the top, so whoever opens the
installed report reads that it was installed over failed checks. The reports are read from the
producer's directory without following a link, and each must have the checksum the manifest gives
it: the verdict the gate reads is the report that gets installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dc2tasks.install.errors import InstallError
from dc2tasks.install.manifest import FileEntry, Manifest
from dc2tasks.products.errors import InputError
from dc2tasks.products.qa.core import QA_DIR, QA_FILE, REPORT_FILE, Override, QaReport, parse_qa_json
from dc2tasks.products.qa.report import render

QaMode = Literal["enforce", "warn", "approve"]
QA_MODES: tuple[QaMode, ...] = ("enforce", "warn", "approve")
DEFAULT_QA_MODE: QaMode = "enforce"
MAX_REPORT_BYTES = 16 << 20
_REPORT_RE = re.compile(rf"{re.escape(QA_DIR)}/([a-z0-9_]+)/{re.escape(QA_FILE)}")

OpenSource = Callable[[int, Path, str], int]
"""Opens a producer's file no-follow (the install's `open_source`): (source_fd, source, name) -> fd."""


@dataclass(frozen=True)
class QaGate:
    """What the install was told (`mode`, `approved_by`) and what the reports say, by product."""

    mode: QaMode
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    approved_by: str | None = None

    @property
    def verdicts(self) -> dict[str, str]:
        return {p: str(r["verdict"]) for p, r in self.reports.items()}

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Every failed check as {product, check, value, threshold}."""
        return [
            {"product": p, "check": c.get("name"), "value": c.get("value"), "threshold": c.get("threshold")}
            for p, r in self.reports.items()
            for c in r["checks"]
            if isinstance(c, dict) and c.get("verdict") == "fail"
        ]

    def check(self, directory: str) -> None:
        """Enforce mode: refuse a product with a failed check, naming each with its numbers."""
        failed = self.failures
        if self.mode == "enforce" and failed:
            shown = "; ".join(
                f"{f['product']}: {f['check']} = {f['value']} (threshold {f['threshold']})" for f in failed
            )
            raise InstallError(
                f"{directory}: QA failed, not installed (qa mode enforce): {shown}; nothing installed "
                "changed (install anyway with --qa-mode warn, or --qa-mode approve --approved-by USER)"
            )

    def provenance(self) -> dict[str, Any]:
        """The `qa` record of the installed version's provenance."""
        return {
            "mode": self.mode,
            "verdicts": self.verdicts,
            "overridden": [] if self.mode == "enforce" else self.failures,
            "approved_by": self.approved_by,
        }

    def installed_reports(self, manifest: Manifest, at: str) -> dict[str, bytes]:
        """The installed copies of the reports whose failed checks this install overrides (warn, or
        approve), by manifest name: `qa.json` with its `override` record (the producer's keys kept
        as they are) and `index.html` rendered from it. Empty in enforce mode (nothing overridden)."""
        if self.mode == "enforce":
            return {}
        entries = {e.name: e for e in manifest.files}
        out: dict[str, bytes] = {}
        for product, data in self.reports.items():
            report = QaReport.from_json(data, product)  # read_gate checked it reads
            if not report.failures:
                continue
            names = (f"{QA_DIR}/{product}/{QA_FILE}", f"{QA_DIR}/{product}/{REPORT_FILE}")
            produced = tuple(_record(entries[n]) for n in names if n in entries)
            report.override = Override(self.mode, tuple(report.failures), self.approved_by, at, produced)
            installed = {**data, "override": report.override.to_json()}
            out[names[0]] = (json.dumps(installed, indent=1, default=str) + "\n").encode()
            out[names[1]] = render(report).encode()
        return out


def _record(entry: FileEntry) -> dict[str, Any]:
    return {"name": entry.name, "size": entry.size, "sha256": entry.sha256}


def check_mode(mode: str, approved_by: str | None) -> QaMode:
    """A mode and its approver agree: `approve` names who approved, the others name nobody."""
    if mode not in QA_MODES:
        raise InputError(f"qa mode {mode!r}: one of {', '.join(QA_MODES)}")
    if mode == "approve" and not approved_by:
        raise InputError("qa mode approve: --approved-by USER (who approved the QA reports) is required")
    if mode != "approve" and approved_by:
        raise InputError(f"--approved-by {approved_by!r}: only with qa mode approve (the mode is {mode})")
    return mode  # type: ignore[return-value]


def read_gate(
    source_fd: int, source: Path, manifest: Manifest, mode: QaMode, approved_by: str | None,
    open_source: OpenSource,
) -> QaGate:  # fmt: skip
    """The gate of a producer's directory: every QA report its manifest lists, checked against it."""
    reports: dict[str, dict[str, Any]] = {}
    for entry in manifest.files:
        m = _REPORT_RE.fullmatch(entry.name)
        if m is None:
            continue
        where = source / entry.name
        if entry.size > MAX_REPORT_BYTES:
            raise InstallError(f"{where}: {entry.size} bytes, not a QA report")
        try:
            fd = open_source(source_fd, source, entry.name)
        except FileNotFoundError:
            raise InstallError(f"{where}: missing (listed in the manifest)") from None
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_REPORT_BYTES + 1)
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise InstallError(f"{where}: not the checksum the manifest gives (changed since dc2 qa)")
        try:
            reports[m[1]] = parse_qa_json(data, where)
            QaReport.from_json(reports[m[1]], where)  # an override renders it again: it must read
        except InputError as exc:
            raise InstallError(str(exc)) from None
    return QaGate(mode, reports, approved_by)
