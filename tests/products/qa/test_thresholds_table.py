"""The README's thresholds table is THRESHOLDS'."""

from __future__ import annotations

from pathlib import Path

from dc2tasks.products.qa.checks import markdown_table
from dc2tasks.products.qa.core import THRESHOLDS


def test_readme_shows_the_thresholds_table():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    shown = readme.split("<!-- qa-thresholds:begin -->\n")[1].split("<!-- qa-thresholds:end -->")[0]
    assert shown == markdown_table(), "README.md: paste the output of `python -m dc2tasks.products.qa.checks`"
    assert len(shown.splitlines()) == len(THRESHOLDS) + 2
