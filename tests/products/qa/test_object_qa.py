"""The Object products' checks: all pass on a made sample with every plot drawn; each breakage is
found and named with its numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import matplotlib.image
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tables

from dc2tasks.products.inventory import Scope, take_inventory
from dc2tasks.products.qa.core import QA_FILE, REPORT_FILE, read_qa_json
from dc2tasks.products.qa.run import make_inputs, run_qa
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleConfig

SAMPLE = SampleConfig()  # the fixture's tracts and rerun are the defaults
TRACT = SAMPLE.tracts[0]
PRODUCTS = {"object": "object", "trim_object": "object", "dpdd_object": "dpdd_object",
            "merged_dpdd_object": "dpdd_object"}
DPDD = f"dpdd_object/dpdd_object_tract_{TRACT}.parquet"


def qa(work: Path, product: str, truth: Path | None = None, **kw):
    return run_qa(make_inputs(work / PRODUCTS[product], product, truth=truth, **kw))


def check(report, name: str):
    return next(c for c in report.checks if c.name == name)


@pytest.mark.parametrize("product", list(PRODUCTS))
def test_sample_passes_every_check_and_draws_every_plot(qa_sample, work_copy, product):
    truth, work = qa_sample[0], work_copy
    report = qa(work, product, truth)
    assert report.verdict == "pass", [c for c in report.checks if c.verdict != "pass"]
    names = {c.name for c in report.checks}
    assert {"units_present", "ids_unique", "columns_not_all_nan", "columns_not_constant", "one_schema",
            "magnitudes_in_range", "rows_vs_truth", "truth_mag_offset", "truth_position_offset"} <= names
    if product != "object":  # made from another product: its rows per patch agree with it
        assert any(n.startswith("rows_vs_") and n not in ("rows_vs_truth", "rows_vs_inputs") for n in names)
    assert check(report, "truth_mag_offset").value <= 0.001
    assert report.facts["rows"] == sum(report.facts["rows per patch"].values()) > 0
    drawn = {p.name for p in report.plots}
    assert drawn == {"number_counts", "mag_err_vs_mag", f"sky_density_tract_{TRACT}", "colour_colour",
                     "truth_mag_residuals", "truth_position_residuals"}
    out = work / PRODUCTS[product] / "qa" / product
    for plot in report.plots:
        image = matplotlib.image.imread(out / plot.file)
        assert image.shape[0] >= 300 and image.shape[1] >= 400, (plot.name, image.shape)
        assert image[..., :3].std() > 0.01, f"{plot.name} is blank"
    assert read_qa_json(out / QA_FILE)["verdict"] == "pass"
    html = (out / REPORT_FILE).read_text()
    assert html.count("<img ") == len(report.plots)
    assert not re.search(r"(src|href)=\"(https?:|//)", html)


def test_a_parquet_products_qa_imports_no_other_command_no_pandas_scipy_or_pyplot(qa_sample):
    """`dc2 qa` of a DPDD product with truth, as a job runs it: of dc2tasks.cli its own module only,
    and none of pandas, scipy, pyplot (each costs a part of a second and tens of MB in every qa job;
    pyarrow's to_numpy alone imports pandas)."""
    truth, work = qa_sample
    argv = ["qa", str(work / "dpdd_object"), "--product", "dpdd_object", "--truth", str(truth)]
    argv += ["-o", str(work.parent / "qa_imports")]
    code = (
        "import sys\n"
        "from dc2tasks.cli import main\n"
        f"rc = main({argv!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith('dc2tasks.cli.')), rc)\n"
        "print([m for m in ('pandas', 'scipy', 'matplotlib.pyplot') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-2:] == ["['dc2tasks.cli.args', 'dc2tasks.cli.qa'] 0", "[]"]


def rewrite(path: Path, change) -> None:
    """Rewrite a Parquet file row group by row group, `change(table, index)` applied to each
    (returning None drops the row group)."""
    pf = pq.ParquetFile(path)
    tables = [change(pf.read_row_group(i), i) for i in range(pf.num_row_groups)]
    tables = [t for t in tables if t is not None]
    with pq.ParquetWriter(path, tables[0].schema) as writer:
        for t in tables:
            writer.write_table(t)


def set_column(table: pa.Table, name: str, values) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, type=table.schema.field(i).type))


def test_all_nan_column_is_named(work_copy):
    rewrite(work_copy / DPDD, lambda t, _: set_column(t, "psFlux_r", np.full(t.num_rows, np.nan)))
    c = check(qa(work_copy, "dpdd_object"), "columns_not_all_nan")
    assert (c.verdict, c.value) == ("fail", 1)
    assert "psFlux_r" in c.detail


def test_constant_column_is_named(work_copy):
    rewrite(work_copy / DPDD, lambda t, _: set_column(t, "psf_fwhm_i", np.full(t.num_rows, 0.7)))
    c = check(qa(work_copy, "dpdd_object"), "columns_not_constant")
    assert c.verdict == "fail" and "psf_fwhm_i (= 0.7)" in c.detail


@pytest.mark.parametrize("statistics", [True, False])
def test_a_product_without_statistics_gets_the_same_report(work_copy, statistics):
    """The DPDD file rewritten with or without statistics (and one column made constant, one all NaN in
    one row group only): the checks' values and verdicts are those of the file as made."""

    def change(t: pa.Table, i: int) -> pa.Table:
        t = set_column(t, "psf_fwhm_i", np.full(t.num_rows, 0.7))
        return set_column(t, "psFlux_r", np.full(t.num_rows, np.nan)) if i == 0 else t

    rewrite(work_copy / DPDD, change)
    made = qa(work_copy, "dpdd_object")
    table = pq.read_table(work_copy / DPDD)
    groups = table.num_rows // 3 + 1
    pq.write_table(table, work_copy / DPDD, row_group_size=groups, write_statistics=statistics)
    again = qa(work_copy, "dpdd_object")
    assert list(map(asdict, again.checks)) == list(map(asdict, made.checks))
    assert check(again, "columns_not_constant").verdict == "fail"
    assert "psf_fwhm_i (= 0.7)" in check(again, "columns_not_constant").detail
    assert check(again, "columns_not_all_nan").verdict == "pass"


def test_duplicated_object_id_is_named(work_copy):
    def duplicate(t, i):
        ids = t["objectId"].to_numpy().copy()
        if i == 0:
            ids[1] = ids[0]
            duplicate.id = int(ids[0])
        return set_column(t, "objectId", ids)

    c = check(qa(work_copy, "dpdd_object"), "ids_unique")
    assert c.verdict == "pass"
    rewrite(work_copy / DPDD, duplicate)
    c = check(qa(work_copy, "dpdd_object"), "ids_unique")
    assert (c.verdict, c.value) == ("fail", 2)
    assert f"{duplicate.id} (2 rows)" in c.detail


def test_dropped_patch_is_named_with_its_rows(work_copy):
    last = pq.ParquetFile(work_copy / DPDD)
    dropped = last.read_row_group(last.num_row_groups - 1)
    patch, rows = dropped["patch"][0].as_py(), dropped.num_rows
    rewrite(work_copy / DPDD, lambda t, i: None if i == last.num_row_groups - 1 else t)
    report = qa(work_copy, "dpdd_object")
    missing = check(report, "units_present")
    assert (missing.verdict, missing.value) == ("fail", 1)
    assert f"patch {TRACT}/{patch}" in missing.detail
    rows_check = check(report, "rows_vs_trim_object")
    assert (rows_check.verdict, rows_check.value) == ("fail", rows)
    assert f"{TRACT}/{patch}: 0 rows, trim_object {rows}" in rows_check.detail


def test_dropped_tract_file_is_named(work_copy):
    report = qa(work_copy, "dpdd_object", tracts=(TRACT, 9999))
    c = check(report, "units_present")
    assert (c.verdict, c.value) == ("fail", 1)
    assert "tract 9999 (dpdd_object_tract_9999.parquet absent)" in c.detail


def test_file_with_a_column_of_another_dtype_is_named(work_copy):
    other = work_copy / "dpdd_object/dpdd_object_tract_9999.parquet"
    other.write_bytes((work_copy / DPDD).read_bytes())

    def to_float32(t, _):
        i = t.schema.get_field_index("ra")
        return t.set_column(i, pa.field("ra", pa.float32()), t["ra"].cast(pa.float32()))

    rewrite(other, to_float32)
    c = check(qa(work_copy, "dpdd_object"), "one_schema")
    assert (c.verdict, c.value) == ("fail", 1)
    assert "dpdd_object_tract_9999.parquet" in c.detail and "ra (float, not double)" in c.detail


def test_magnitudes_off_by_a_tenth_against_truth(qa_sample, work_copy):
    def shift(t, _):
        for name in t.column_names:
            if re.fullmatch(r"mag_.", name):
                t = set_column(t, name, t[name].to_numpy(zero_copy_only=False) + 0.1)
        return t

    rewrite(work_copy / DPDD, shift)
    c = check(qa(work_copy, "dpdd_object", qa_sample[0]), "truth_mag_offset")
    assert c.verdict == "fail"
    assert c.value == pytest.approx(0.1, abs=0.001)
    assert re.search(r"r \+0\.100", c.detail), c.detail


def test_object_against_the_inventory(qa_sample, work_copy):
    """With the inventory, the planned patches are the repository's and each patch's rows are held to
    its deepCoadd_ref's NAXIS2 (read from the header only)."""
    root = qa_sample[0]
    inventory = take_inventory(Gen2Repo.open(root, SAMPLE.rerun), ["object"], Scope())
    report = qa(work_copy, "object", inventory=inventory)
    c = check(report, "rows_vs_inputs")
    assert c.verdict == "pass"
    assert check(report, "units_present").verdict == "pass"
    inventory = {**inventory, "scope": {"tracts": [TRACT, 9998]}}
    c = check(qa(work_copy, "object", inventory=inventory), "units_present")
    assert c.verdict == "fail" and "tract 9998" in c.detail


def test_thresholds_reach_the_checks(work_copy):
    report = qa(work_copy, "dpdd_object", thresholds={"mag_max": 20.0})
    c = check(report, "magnitudes_in_range")
    assert c.verdict == "fail" and c.value > 0.01
    assert "outside [10, 20]" in c.detail


def test_hdf5_product_with_a_dropped_patch_group(work_copy):
    """The trimmed Object file read group by group: a group removed is a missing patch, and its rows
    are named against the Object file it was trimmed from."""
    path = work_copy / f"object/trim_object_tract_{TRACT}.hdf5"
    with tables.open_file(str(path), mode="a") as h5:
        key = sorted(g._v_name for g in h5.root._f_iter_nodes("Group"))[-1]
        rows = int(h5.get_node(f"/{key}/axis1").nrows)
        h5.remove_node(f"/{key}", recursive=True)
    patch = ",".join(key.split("_")[-1])
    report = qa(work_copy, "trim_object")
    assert f"patch {TRACT}/{patch}" in check(report, "units_present").detail
    c = check(report, "rows_vs_object")
    assert (c.verdict, c.value) == ("fail", rows)
    assert f"{TRACT}/{patch}: 0 rows, object {rows}" in c.detail


def test_an_infinite_magnitude_is_out_of_range(work_copy):
    def infinite(t, i):
        mags = t["mag_i"].to_numpy(zero_copy_only=False).copy()
        mags[: max(1, t.num_rows // 20)] = np.inf  # 5% of the rows
        return set_column(t, "mag_i", mags)

    rewrite(work_copy / DPDD, infinite)
    c = check(qa(work_copy, "dpdd_object"), "magnitudes_in_range")
    assert c.verdict == "fail" and c.value >= 0.04
    assert "mag_i: " in c.detail and "or infinite" in c.detail
