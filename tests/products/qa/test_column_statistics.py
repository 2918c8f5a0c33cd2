"""Parquet statistics settle the NaN/constant column facts only where they prove the verdict: every
case here gets the same all-NaN and constant lists with the shortcut as from reading every value."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dc2tasks.products.qa.columns import ColumnFacts, iter_row_groups, settled_by_statistics, values_of

NAN, INF = float("nan"), float("inf")


def write(path: Path, groups: list[dict[str, list]], statistics: bool = True, types=None) -> Path:
    """A Parquet file with one row group per mapping of columns to values."""
    types = types or {}
    tables = [
        pa.table({n: pa.array(v, type=types.get(n, pa.float64())) for n, v in g.items()}) for g in groups
    ]
    with pq.ParquetWriter(path, tables[0].schema, write_statistics=statistics) as writer:
        for t in tables:
            writer.write_table(t)
    return path


def facts(files: list[Path], names: list[str], shortcut: bool) -> tuple[list[str], list[tuple[str, float]]]:
    """(all-NaN columns, constant columns) as the checks see them: every value read, or only the
    columns the statistics leave open."""
    settled = settled_by_statistics(files, names) if shortcut else set()
    read = [n for n in names if n not in settled]
    found = ColumnFacts(tuple(read))
    for f in files:
        for table in iter_row_groups(f, read):
            found.add({c: table[c].to_numpy(zero_copy_only=False) for c in table.column_names})
    return found.all_nan(), found.constant()


def both(files: list[Path], names: list[str]) -> tuple[list[str], list[tuple[str, float]]]:
    full = facts(files, names, shortcut=False)
    assert facts(files, names, shortcut=True) == full
    return full


def test_what_arrow_writes_for_nan_is_what_the_shortcut_assumes(tmp_path):
    path = write(tmp_path / "a.parquet", [{"all_nan": [NAN, NAN], "mixed": [NAN, 2.0]}])
    group = pq.ParquetFile(path).metadata.row_group(0)
    all_nan, mixed = group.column(0).statistics, group.column(1).statistics
    assert not all_nan.has_min_max and all_nan.null_count == 0  # NaN is no null, and has no bound
    assert (mixed.min, mixed.max, mixed.null_count) == (2.0, 2.0, 0)  # the bounds skip NaN


def test_an_all_nan_column(tmp_path):
    files = [write(tmp_path / "a.parquet", [{"x": [NAN, NAN, NAN], "ok": [1.0, 2.0, NAN]}] * 2)]
    assert settled_by_statistics(files, ["x", "ok"]) == {"ok"}
    assert both(files, ["x", "ok"]) == (["x"], [])


def test_a_constant_column_and_zeros_of_both_signs(tmp_path):
    groups = [{"c": [3.0, 3.0, NAN], "z": [-0.0, 0.0, 0.0]}, {"c": [3.0], "z": [0.0]}]
    files = [write(tmp_path / "a.parquet", groups)]
    assert settled_by_statistics(files, ["c", "z"]) == set()
    assert both(files, ["c", "z"]) == ([], [("c", 3.0), ("z", -0.0)])


def test_a_column_nan_in_one_row_group_only(tmp_path):
    groups = [{"x": [NAN, NAN], "c": [NAN, NAN]}, {"x": [1.0, 2.0], "c": [5.0, 5.0]}]
    files = [write(tmp_path / "a.parquet", groups)]
    assert settled_by_statistics(files, ["x", "c"]) == {"x"}
    assert both(files, ["x", "c"]) == ([], [("c", 5.0)])


def test_one_value_per_row_group_but_different_values_across_files(tmp_path):
    files = [write(tmp_path / f"{i}.parquet", [{"x": [float(i), float(i)]}]) for i in range(2)]
    assert settled_by_statistics(files, ["x"]) == {"x"}
    assert both(files, ["x"]) == ([], [])
    same = [write(tmp_path / f"s{i}.parquet", [{"x": [4.0, NAN]}]) for i in range(2)]
    assert both(same, ["x"]) == ([], [("x", 4.0)])


def test_infinities_are_no_finite_bound(tmp_path):
    groups = [{"inf": [-INF, INF, NAN], "one": [-INF, 1.0, 1.0], "two": [-INF, 1.0, 2.0]}]
    files = [write(tmp_path / "a.parquet", groups)]
    assert settled_by_statistics(files, ["inf", "one", "two"]) == set()  # one finite bound each
    assert both(files, ["inf", "one", "two"]) == (["inf"], [("one", 1.0)])


def test_a_file_written_without_statistics_is_read(tmp_path):
    groups = [{"x": [NAN, NAN], "c": [2.0, 2.0], "ok": [1.0, 2.0]}]
    files = [write(tmp_path / "a.parquet", groups, statistics=False)]
    assert settled_by_statistics(files, ["x", "c", "ok"]) == set()
    assert both(files, ["x", "c", "ok"]) == (["x"], [("c", 2.0)])


def test_integer_columns_are_skipped_unless_nulls_make_them_float(tmp_path):
    types = {"flag": pa.int64(), "count": pa.int32()}
    groups = [{"flag": [1, 1, 1], "count": [None, 7, 7]}, {"flag": [1, 2, 3], "count": [8, 9, 10]}]
    files = [write(tmp_path / "a.parquet", groups, types=types)]
    assert settled_by_statistics(files, ["flag", "count"]) == {"flag"}
    assert both(files, ["flag", "count"]) == ([], [("count", 7.0)])


ARRAYS = [
    pa.array([1.0, None, 3.0]),
    pa.array([1.5, None], pa.float32()),
    pa.array([1, 2, 3]),
    pa.array([1, None, 3], pa.int32()),
    pa.array([True, False, True]),
    pa.array([True, None]),
    pa.array(["0,1", None, "1,1"]),
    pa.array([], pa.float64()),
    pa.array([1, None, 3, 4]).slice(1, 3),
    pa.array([True, False, True, True, False, False, True, False, True, True]).slice(7, 3),
    pa.chunked_array([pa.array([1.0]), pa.array([2.0, None])]),
]


def _plain(values) -> list:
    return [None if v != v else v for v in values.tolist()]  # NaN compared as a value


def test_values_of_is_arrows_conversion():
    for arr in ARRAYS:
        mine, arrows = values_of(arr), arr.to_numpy(zero_copy_only=False)
        assert mine.dtype == arrows.dtype, arr
        assert _plain(mine) == _plain(arrows), arr
