"""The QA engine's parts: accumulators, checks, the HTML page and the manifest append."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from dc2tasks.install.manifest import MANIFEST_NAME, append_files, read_manifest, sha256_file, write_manifest
from dc2tasks.products.errors import InputError
from dc2tasks.products.qa.checks import at_least, at_most, unit_rows_agreement
from dc2tasks.products.qa.columns import ColumnFacts
from dc2tasks.products.qa.core import CheckResult, Plot, QaReport, Thresholds
from dc2tasks.products.qa.report import render
from dc2tasks.products.qa.stats import Histogram, RangeTally, SkyGrid, duplicated_ids


def test_histogram_counts_outside_apart_and_gives_quantiles():
    h = Histogram.linear(0.0, 10.0, 100)
    h.add(np.array([-1.0, 1.04, 2.0, 2.0, 3.0, 11.0, np.nan, np.inf]))
    assert (h.below, h.above, h.nonfinite, h.finite) == (1, 1, 2, 6)
    assert h.quantile(0.5) == pytest.approx(2.05)
    assert h.quantile(0.0) == float("-inf") and h.quantile(1.0) == float("inf")
    assert np.isnan(Histogram.linear(0, 1, 4).quantile(0.5))


@pytest.mark.parametrize("max_ids", [1_000_000, 7])  # one pass; several partitions
def test_duplicated_ids_in_bounded_partitions(max_ids):
    batches = [np.arange(0, 20), np.arange(20, 40), np.array([5, 33, 33])]
    passes = []

    def ids():
        passes.append(1)
        return iter(batches)

    extra, examples = duplicated_ids(ids, rows=43, max_ids=max_ids)
    assert extra == 5  # 5 twice, 33 three times
    assert sorted(examples) == [(5, 2), (33, 3)]
    assert len(passes) == (1 if max_ids > 43 else 7)


@pytest.mark.parametrize("max_ids", [1_000_000, 2])
def test_duplicated_keys_of_several_columns(max_ids):
    # (objectId, detector): one object measured twice on detector 4; on two detectors it is not a repeat
    keys = [np.array([[7, 4], [7, 5], [8, 4]]), np.array([[7, 4], [9, 1]])]
    extra, examples = duplicated_ids(lambda: iter(keys), rows=5, max_ids=max_ids)
    assert (extra, examples) == (2, [((7, 4), 2)])


def test_range_tally_counts_infinite_as_outside_and_nothing_measured_as_nan():
    tally = RangeTally(10.0, 30.0)
    tally.add("g", np.array([5.0, 20.0, np.nan, np.inf]))
    tally.add("r", np.array([20.0, 21.0]))
    assert (tally.outside, tally.measured) == ({"g": 2, "r": 0}, {"g": 3, "r": 2})
    assert tally.worst() == pytest.approx(2 / 3)
    assert np.isnan(RangeTally(10.0, 30.0).worst())


def test_sky_grid_coarsens_to_its_bound():
    grid = SkyGrid(max_cells=100)
    rng = np.random.default_rng(1)
    grid.add(rng.uniform(50, 51, 5000), rng.uniform(-30, -29, 5000))
    image, extent = grid.image()
    assert image.size <= 100 * 4 and image.sum() * (grid.cell_deg * 60) ** 2 == pytest.approx(5000)
    assert extent[0] > extent[1]  # ra grows to the left
    assert grid.cell_deg > 1 / 3600


def test_column_facts_find_all_nan_and_constant_floats_only():
    facts = ColumnFacts(("a", "b", "c", "flag"))
    for _ in range(2):
        facts.add({"a": np.full(3, np.nan), "b": np.array([2.0, np.nan, 2.0]), "c": np.arange(3.0),
                   "flag": np.zeros(3, bool)})
    assert facts.all_nan() == ["a"]
    assert facts.constant() == [("b", 2.0)]


def test_column_facts_by_label_and_fixed_columns():
    facts = ColumnFacts(fixed=("fluxmag0",))
    for band in "gr":
        facts.add_column("psFlux", np.full(3, np.inf if band == "g" else 1.0), band)
        facts.add_column("fluxmag0", np.full(3, 2.0), band)
    assert facts.all_nan() == ["psFlux (g)"]  # no finite value: all-infinite counts as all NaN
    assert facts.constant() == [("psFlux (r)", 1.0)]  # fluxmag0 is one value by construction


def test_checks_hold_values_to_named_thresholds():
    t = Thresholds.from_mapping({"min_matched_fraction": 0.6})
    assert at_most("x", 0, "max_duplicate_ids", t).verdict == "pass"
    c = at_most("x", 3, "max_duplicate_ids", t, "three")
    assert (c.verdict, c.value, c.threshold, c.detail) == ("fail", 3, "<= 0 (max_duplicate_ids)", "three")
    assert at_most("x", float("nan"), "max_duplicate_ids", t).verdict == "fail"
    assert at_least("m", 0.7, "min_matched_fraction", t, warn_key="warn_matched_fraction").verdict == "warn"
    assert at_least("m", 0.5, "min_matched_fraction", t).verdict == "fail"
    c = unit_rows_agreement("rows", {(1, "0,0"): 5, (1, "0,1"): 3}, {(1, "0,0"): 5, (1, "1,1"): 2}, t, "ref")
    assert (c.verdict, c.value) == ("fail", 3)
    assert "1/0,1: 3 rows, ref 0" in c.detail and "1/1,1: 0 rows, ref 2" in c.detail
    bound = unit_rows_agreement("rows", {(1, "0,0"): 4}, {(1, "0,0"): 5}, t, "ref", at_most_expected=True)
    assert bound.verdict == "pass"


def test_page_puts_failures_first_and_escapes_product_text():
    report = QaReport("dpdd_object", "/w/<dir>", checks=[
        CheckResult("ok_check", "pass", 0, "<= 0"),
        CheckResult("bad_check", "fail", 2, "<= 0", 'column <script>alert("x")</script>'),
        CheckResult("meh_check", "warn", 0.7, ">= 0.8"),
    ], plots=[Plot("counts", "plots/counts.png", "counts & <b>")], facts={"bands": "<ugr>", "rows": {"a": 1}})
    html = render(report)
    assert html.index("bad_check") < html.index("meh_check") < html.index("ok_check")
    assert html.index("bad_check") < html.index("<h2>Facts") < html.index("<h2>Plots")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<img src="plots/counts.png" alt="counts &amp; &lt;b&gt;">' in html
    assert "&lt;ugr&gt;" in html and "/w/&lt;dir&gt;" in html


def test_append_files_replaces_and_drops_under_a_folder(tmp_path):
    (tmp_path / "data.parquet").write_bytes(b"rows")
    (tmp_path / "qa/p/plots").mkdir(parents=True)
    (tmp_path / "qa/p/old.png").write_bytes(b"old")
    write_manifest(tmp_path)
    created = json.loads((tmp_path / MANIFEST_NAME).read_text())["created"]
    (tmp_path / "qa/p/old.png").unlink()
    (tmp_path / "qa/p/qa.json").write_text("{}")
    (tmp_path / "qa/q.json").write_text("{}")

    def append(name: str) -> None:
        append_files(tmp_path, ["qa/p/qa.json", name], under="qa/p" if name.startswith("qa/p") else None)

    (tmp_path / "qa/p/plots/a.png").write_bytes(b"a")
    threads = [threading.Thread(target=append, args=(n,)) for n in ("qa/p/plots/a.png", "qa/q.json")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    manifest = read_manifest(tmp_path / MANIFEST_NAME)
    names = [e.name for e in manifest.files]
    assert names == sorted(names)
    assert set(names) == {"data.parquet", "qa/p/qa.json", "qa/p/plots/a.png", "qa/q.json"}
    assert all(e.sha256 == sha256_file(tmp_path / e.name) for e in manifest.files)
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["created"] == created
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(InputError, match="not a regular file"):
        append_files(tmp_path, ["qa/p/missing.png"])
    with pytest.raises(InputError, match="plain relative file name"):
        append_files(tmp_path, ["../x"])
