"""Our fixed-format writer against pandas' reader, and column reads against pandas' writer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import tables

from dc2tasks.products import afw, hdf5
from dc2tasks.sample import afw_writer


def _records(tmp_path, n=1300, seed=0):
    rng = np.random.default_rng(seed)
    cols = {
        "id": np.arange(n, dtype=np.int64) + 10**15,
        "a": rng.normal(size=n),
        "b": rng.normal(size=n),
        "c": rng.normal(size=n).astype(np.float32),
        "d": rng.normal(size=n),
        "k": rng.integers(0, 9, n).astype(np.int32),
    }
    flags = {f"flag{k}": rng.uniform(size=n) < 0.3 for k in range(13)}
    path = tmp_path / f"t{seed}.fits"
    path.write_bytes(afw_writer.primary_hdu_bytes() + afw_writer.table_hdu_bytes(cols, flags))
    return afw.RawRecords.open(path), {**cols, **flags}


def test_frame_builder_round_trips_through_pandas(tmp_path):
    ref, ref_values = _records(tmp_path, seed=1)
    forced, forced_values = _records(tmp_path, seed=2)
    rows = np.flatnonzero(ref_values["flag0"])
    frame = hdf5.FrameBuilder(len(rows))
    frame.add_records(ref, rows)
    frame.add_records(forced, rows, prefix="g_", skip={"id"})
    extra = np.linspace(0, 1, len(rows))
    frame.add("g_mag", extra)
    path = tmp_path / "out.h5"
    with tables.open_file(str(path), "w") as h5:
        hdf5.write_frame(h5, "coadd_4850_11", frame.blocks(), len(rows))
    df = pd.read_hdf(path, "coadd_4850_11")
    assert len(df) == len(rows) and df.shape[1] == frame.ncolumns
    for name, values in ref_values.items():
        np.testing.assert_array_equal(df[name].to_numpy(), values[rows], err_msg=name)
        assert df[name].dtype == values.dtype
    for name, values in forced_values.items():
        if name != "id":
            np.testing.assert_array_equal(df[f"g_{name}"].to_numpy(), values[rows], err_msg=name)
    np.testing.assert_array_equal(df["g_mag"].to_numpy(), extra)
    assert "g_id" not in df
    assert hdf5.group_keys(path) == ["coadd_4850_11"]
    assert hdf5.tract_patch("coadd_4850_11") == (4850, "1,1")


def test_read_columns_of_a_pandas_file(tmp_path):
    df = pd.DataFrame(
        {
            "x": np.arange(5.0),
            "n": np.arange(5),
            "f": [True, False, True, True, False],
            "y": np.ones(5, np.float32),
        }
    )
    path = tmp_path / "p.h5"
    df.to_hdf(path, key="coadd_1_00", format="fixed", mode="w")
    got = hdf5.read_columns(path, "coadd_1_00", ["y", "f", "x"])
    assert list(got.columns) == ["y", "f", "x"]
    pd.testing.assert_frame_equal(got, df[["y", "f", "x"]])
    assert hdf5.group_schema(path) == {
        "x": {"dtype": "float64"},
        "n": {"dtype": "int64"},
        "f": {"dtype": "bool"},
        "y": {"dtype": "float32"},
    }
