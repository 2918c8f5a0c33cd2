"""Check results from numbers: each product's checks say what they measured, these say the verdict.

Every threshold is looked up by its THRESHOLDS name, so a run file's `qa.thresholds` reaches it and
the report shows the value it was held to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from dc2tasks.products.qa.columns import ColumnFacts
from dc2tasks.products.qa.core import THRESHOLDS, CheckResult, Thresholds, Verdict
from dc2tasks.products.qa.stats import RangeTally

SHOWN = 8
"""At most this many names (columns, patches, ids) in a check's detail; the count is always whole."""


def some(items: Sequence[object], count: int | None = None) -> str:
    """The first few items, and how many more."""
    count = len(items) if count is None else count
    shown = ", ".join(map(str, items[:SHOWN]))
    return shown + (f" and {count - SHOWN} more" if count > SHOWN else "")


def number(value: float) -> str:
    return f"{value:g}"


def at_most(
    name: str, value: float, key: str, thresholds: Thresholds, detail: str = "", warn_key: str | None = None
) -> CheckResult:
    """Pass when value <= thresholds[key] (NaN fails: nothing was measured)."""
    limit = thresholds[key]
    ok = not math.isnan(value) and value <= limit
    verdict: Verdict = "pass" if ok else "fail"
    if ok and warn_key is not None and value > thresholds[warn_key]:
        verdict = "warn"
    return CheckResult(name, verdict, _plain(value), f"<= {number(limit)} ({key})", detail)


def at_least(
    name: str, value: float, key: str, thresholds: Thresholds, detail: str = "", warn_key: str | None = None
) -> CheckResult:
    """Pass when value >= thresholds[key]; a warning when it is below thresholds[warn_key]."""
    limit = thresholds[key]
    ok = not math.isnan(value) and value >= limit
    verdict: Verdict = "pass" if ok else "fail"
    if ok and warn_key is not None and value < thresholds[warn_key]:
        verdict = "warn"
    return CheckResult(name, verdict, _plain(value), f">= {number(limit)} ({key})", detail)


def _plain(value: float) -> float | int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    return value


def listed(name: str, problems: Sequence[str], key: str, thresholds: Thresholds, what: str) -> CheckResult:
    """A check whose value is how many things are wrong (`problems`, each named in the detail)."""
    detail = f"{len(problems)} {what}: {some(problems)}" if problems else ""
    return at_most(name, len(problems), key, thresholds, detail)


def ids_unique(
    extra: int, examples: Sequence[tuple[object, int]], key: str, thresholds: Thresholds
) -> CheckResult:
    """No two rows with one id (`stats.duplicated_ids`'s count: every row of a repeated id)."""
    shown = some([f"{i} ({n} rows)" for i, n in examples], len(examples))
    detail = f"{extra} rows share their {key}: {shown}" if extra else ""
    return at_most("ids_unique", extra, "max_duplicate_ids", thresholds, detail)


def none_counted(name: str, count: int, detail: str = "") -> CheckResult:
    """Pass when nothing is counted: for what no threshold may allow (a match beyond the radius the
    matcher was given)."""
    return CheckResult(name, "pass" if count == 0 else "fail", count, "== 0", detail)


def column_checks(facts: ColumnFacts, thresholds: Thresholds) -> list[CheckResult]:
    """No float column all NaN, none constant (the rules of dc2tasks.products.qa.columns)."""
    constant = [f"{n} (= {v:g})" for n, v in facts.constant()]
    return [
        listed(
            "columns_not_all_nan", facts.all_nan(), "max_bad_columns", thresholds, "float columns all NaN"
        ),
        listed("columns_not_constant", constant, "max_bad_columns", thresholds, "float columns constant"),
    ]


def magnitude_check(mags: RangeTally, thresholds: Thresholds) -> CheckResult:
    """The largest fraction of one magnitude column's (or band's) values outside [mag_min, mag_max];
    fails when no magnitude was measured at all."""
    outside = [f"{c}: {o} of {mags.measured[c]}" for c, o in mags.outside.items() if o]
    detail = (
        f"magnitudes (not NaN) outside [{mags.low:g}, {mags.high:g}] or infinite: {some(outside)}"
        if outside
        else ""
    )
    if not any(mags.measured.values()):
        detail = "no magnitude measured"
    return at_most(
        "magnitudes_in_range", round(mags.worst(), 6), "max_mag_outside_fraction", thresholds, detail
    )


def unit_rows_agreement(
    name: str,
    rows: Mapping[tuple, int],
    expected: Mapping[tuple, int],
    thresholds: Thresholds,
    against: str,
    at_most_expected: bool = False,
) -> CheckResult:
    """Rows per unit (tract, patch or visit) against what `against` says: the largest difference
    of one unit is the value; each unit that differs is named with both numbers. With
    `at_most_expected`, only rows beyond the expected count are a difference (an upper bound)."""
    diffs = []
    for unit in sorted(set(rows) | set(expected), key=str):
        got, want = rows.get(unit, 0), expected.get(unit, 0)
        diff = max(0, got - want) if at_most_expected else abs(got - want)
        if diff:
            diffs.append((diff, f"{'/'.join(map(str, unit))}: {got} rows, {against} {want}"))
    worst = max((d for d, _ in diffs), default=0)
    detail = f"{len(diffs)} of {len(set(rows) | set(expected))} units differ: {some([t for _, t in diffs])}"
    return at_most(name, worst, "max_row_difference", thresholds, detail if diffs else "")


def markdown_table() -> str:
    """The README's table of thresholds (tests/products/qa checks the README holds exactly this)."""
    rows = ["| threshold | default | what it bounds |", "| --- | --- | --- |"]
    bar = "\\|"  # a literal | inside a Markdown table cell
    rows += [
        f"| `{name}` | {number(t.default)} | {t.doc.replace('|', bar)} |" for name, t in THRESHOLDS.items()
    ]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
