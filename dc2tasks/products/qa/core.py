"""What a quality check says, and the report of one product's checks (`qa.json`).

A check is a name, a verdict (pass / warn / fail), the number behind it and the threshold it was held
to; a product's report is its checks and plots. The thresholds are one declared table (THRESHOLDS):
its defaults are what a release is held to, a run file's `qa.thresholds` may set any of them, and the
README's table of them is generated from it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from dc2tasks.catalogue import Product
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError

Verdict = Literal["pass", "warn", "fail"]
VERDICTS: tuple[Verdict, ...] = ("pass", "warn", "fail")  # in order of severity

QA_FILE = "qa.json"
REPORT_FILE = "index.html"
PLOTS_DIR = "plots"
QA_DIR = "qa"
"""A product's report goes into `<product dir>/qa/<product>/` (installed with the product)."""

FAILED_EXIT = 3
"""`dc2 qa --enforce` exits with this when a check failed (the report is written all the same)."""


@dataclass(frozen=True)
class Threshold:
    default: float
    doc: str


THRESHOLDS: dict[str, Threshold] = {
    "max_missing_units": Threshold(0, "planned tracts / patches / visits absent from the product"),
    "max_row_difference": Threshold(0, "rows lost or gained against the inputs' rows, per patch or visit"),
    "max_duplicate_ids": Threshold(0, "rows whose id (or per-visit key) is not unique"),
    "max_bad_columns": Threshold(0, "float columns the DPDD promises that are all NaN, or constant"),
    "max_schema_mismatches": Threshold(0, "files whose column names or dtypes differ from the first file's"),
    "mag_min": Threshold(10.0, "brightest plausible magnitude"),
    "mag_max": Threshold(35.0, "faintest plausible magnitude"),
    "max_mag_outside_fraction": Threshold(
        0.01, "fraction of magnitudes (not NaN) outside [mag_min, mag_max] or infinite"
    ),
    "min_matched_fraction": Threshold(0.5, "Source / DIASource rows matched to an Object / DIAObject"),
    "warn_matched_fraction": Threshold(0.8, "below this matched fraction: a warning"),
    "max_truth_mag_offset": Threshold(0.02, "|median magnitude - truth| per band, mag"),
    "max_truth_position_arcsec": Threshold(0.05, "median position offset from truth, arcsec"),
    "max_nobs_mismatch": Threshold(0, "DIAObjects whose nobs differs from their DIASource count"),
}


@dataclass(frozen=True)
class Thresholds:
    """The values checks are held to: THRESHOLDS' defaults with a run file's overrides."""

    values: Mapping[str, float] = field(default_factory=lambda: {k: t.default for k, t in THRESHOLDS.items()})

    @classmethod
    def from_mapping(cls, overrides: Mapping[str, object] | None, where: str = "qa.thresholds") -> Thresholds:
        values = {k: t.default for k, t in THRESHOLDS.items()}
        for key, value in (overrides or {}).items():
            if key not in THRESHOLDS:
                raise InputError(f"{where}: unknown threshold {key!r}; known: {', '.join(THRESHOLDS)}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InputError(f"{where}.{key}: a finite number, not {value!r}")
            values[key] = float(value)
        return cls(values)

    def __getitem__(self, key: str) -> float:
        return self.values[key]


@dataclass(frozen=True)
class CheckResult:
    """One check of one product: `value` is the number found, `threshold` what it was held to
    (as text: "<= 0", ">= 0.5", "in [10, 35]"), `detail` names what failed (columns, patches, ids)."""

    name: str
    verdict: Verdict
    value: float | int | str | None
    threshold: str
    detail: str = ""


@dataclass(frozen=True)
class Plot:
    """One plot of a report: its PNG under the report's `plots/` directory and a caption."""

    name: str
    file: str  # relative to the report directory: "plots/<name>.png"
    caption: str


@dataclass(frozen=True)
class Override:
    """The failed checks of a report that `dc2 install` installed anyway (qa mode warn, or approve and
    who approved), written by the installer into the installed copy of `qa.json` (key `override`) and
    shown at the top of its `index.html`. `produced`: the producer's {name, size, sha256} of the
    report files the installer rewrote, kept for audit (the installed manifest lists the new ones)."""

    mode: str
    failures: tuple[CheckResult, ...]
    approved_by: str | None
    at: str
    produced: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "failures": [{"name": c.name, "value": c.value, "threshold": c.threshold, "detail": c.detail}
                         for c in self.failures],
            "approved_by": self.approved_by,
            "at": self.at,
            "produced": [dict(p) for p in self.produced],
        }

    @classmethod
    def from_json(cls, data: object, where: object) -> Override:
        if not isinstance(data, dict) or not isinstance(data.get("failures"), list):
            raise InputError(f"{where}: not an override record (no list of failures)")
        failures = tuple(
            _check({**f, "verdict": "fail"}, where) for f in data["failures"] if isinstance(f, dict)
        )
        approved_by = data.get("approved_by")
        produced = tuple(p for p in data.get("produced") or [] if isinstance(p, dict))
        return cls(str(data.get("mode")), failures, None if approved_by is None else str(approved_by),
                   str(data.get("at") or ""), produced)


@dataclass
class QaReport:
    """Every check and plot of one product; `qa.json` is this, with the verdict."""

    product: str
    directory: str
    checks: list[CheckResult] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # rows, files, units: what the report shows first
    override: Override | None = None  # only in an installed copy (see Override)

    @property
    def verdict(self) -> Verdict:
        worst = max((VERDICTS.index(c.verdict) for c in self.checks), default=0)
        return VERDICTS[worst]

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.verdict == "fail"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.verdict == "warn"]

    def to_json(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "directory": self.directory,
            "verdict": self.verdict,
            "checks": [asdict(c) for c in self.checks],
            "plots": [asdict(p) for p in self.plots],
            "facts": self.facts,
            **({"override": self.override.to_json()} if self.override is not None else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: object) -> QaReport:
        """A report as parse_qa_json read it (the installer re-renders an installed copy from it)."""
        plots = data.get("plots") or []
        facts = data.get("facts") or {}
        if not isinstance(plots, list) or not isinstance(facts, dict):
            raise InputError(f"{where}: not a QA report (plots must be a list, facts an object)")
        try:
            made = [Plot(str(p["name"]), str(p["file"]), str(p.get("caption", ""))) for p in plots]
        except (KeyError, TypeError):
            raise InputError(f"{where}: not a QA report (a plot without a name or file)") from None
        override = data.get("override")
        return cls(
            str(data.get("product")), str(data.get("directory")), [_check(c, where) for c in data["checks"]],
            made, facts, None if override is None else Override.from_json(override, where),
        )


def _check(data: object, where: object) -> CheckResult:
    """One check of a qa.json."""
    named = isinstance(data, dict) and isinstance(data.get("name"), str)
    if not named or data.get("verdict") not in VERDICTS:  # type: ignore[union-attr]
        raise InputError(f"{where}: not a QA report (a check without a name or verdict: {data!r})")
    value = data.get("value")
    if value is not None and not isinstance(value, int | float | str):
        value = str(value)
    return CheckResult(data["name"], data["verdict"], value, str(data.get("threshold", "")),
                       str(data.get("detail") or ""))


def write_qa_json(report: QaReport, out_dir: Path) -> Path:
    """`qa.json` in `out_dir`, written to a temporary name and renamed into place."""
    path = out_dir / QA_FILE
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(report.to_json(), indent=1, default=str) + "\n")
    return path


def read_qa_json(path: Path) -> dict[str, Any]:
    """A report as written by write_qa_json; InputError naming the file when it is not one."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: not a QA report ({exc})") from None
    return parse_qa_json(text, path)


def parse_qa_json(text: str | bytes, path: object) -> dict[str, Any]:
    """A report's content (read by the caller: `dc2 install` reads it no-follow); `path` names it."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{path}: not a QA report ({exc})") from None
    if not isinstance(data, dict) or data.get("verdict") not in VERDICTS:
        raise InputError(f"{path}: not a QA report (no verdict)")
    if not isinstance(data.get("checks"), list):
        raise InputError(f"{path}: not a QA report (no list of checks)")
    return data


@dataclass(frozen=True)
class QaInputs:
    """What one product's checks read: its files, where its report goes, what it is held to and,
    when given, what the repository held (`dc2 inventory`'s JSON report) and the truth tables."""

    product: Product
    directory: Path  # the product directory, as finalize left it
    out: Path  # the report directory; plots go under out/plots
    thresholds: Thresholds
    inventory: Mapping[str, Any] | None = None
    truth: Path | None = None  # a directory of truth tables (the sample's `truth/`)
    tracts: tuple[int, ...] = ()  # planned; empty: the inventory's, else the files'
    visits: tuple[int, ...] = ()


QaFunction = Callable[[QaInputs], QaReport]
"""A product's checks and plots (the catalogue's `qa` entry names one, "module:function")."""
