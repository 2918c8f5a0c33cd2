"""The install's result, and the file operations it is given: what the install and its dry run share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

CopyFile = Callable[[int, int], tuple[int, str]]
"""Copy from an open source descriptor to an open staged file: (bytes, sha256)."""


@dataclass
class InstallResult:
    status: Literal["installed", "unchanged", "dry-run"]
    product: str
    product_dir: Path
    version: str | None  # the version that is (or, for a dry run, would be) current
    previous: str | None = None
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    catalog_configs: list[Path] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    qa: dict[str, Any] = field(default_factory=dict)  # the quality gate's provenance record

    def summary(self) -> str:
        what = {"installed": "installed", "unchanged": "already installed", "dry-run": "dry run"}[self.status]
        lines = [f"{self.product}: {what}, version {self.version} ({self.files} files, {self.bytes} bytes)"]
        if self.previous and self.status == "installed":
            lines.append(f"  previous version kept: {self.product_dir / 'versions' / self.previous}")
        lines.append(f"  current: {self.product_dir / 'current'}")
        lines += [f"  config: {p}" for p in self.catalog_configs]
        lines += [f"  checked: {c}" for c in self.checks]
        lines += [f"  qa {p}: {v}" for p, v in self.qa.get("verdicts", {}).items()]
        lines += [
            f"  qa overridden: {o['product']} {o['check']} = {o['value']} ({o['threshold']})"
            for o in self.qa.get("overridden", [])
        ]
        return "\n".join(lines)
