"""The compatibility contract: the real GCRCatalogs reads what we write and agrees with it."""

from __future__ import annotations

import shutil
import warnings

import GCRCatalogs
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml
from GCRCatalogs import ConfigSource

ConfigSource.set_config_source(dr=False)


def load(config_path, **overrides):
    config = yaml.safe_load(config_path.read_text())
    config.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GCRCatalogs.load_catalog_from_config_dict(config)


def test_trimmed_hdf5_dpdd_values_equal_our_parquet(pipeline_run, dpdd_equals_gcr):
    sample, result = pipeline_run
    catalog = load(result.configs["trim_object"])
    ours = pd.concat(pd.read_parquet(p) for p in result.files["dpdd_object"])
    # the same DPDD columns, no more and no fewer (plus where each row came from), and values
    quantities = dpdd_equals_gcr(ours, catalog, rtol=1e-12)
    assert len(quantities) == 21 + 19 * len(sample.bands)


def test_trim_keeps_exactly_what_the_reader_needs(pipeline_run):
    _, result = pipeline_run
    catalog = load(result.configs["trim_object"])
    needed = set()
    for q in catalog.list_all_quantities():
        needed |= set(catalog._translate_quantities({q}))
    trimmed = yaml.safe_load((result.workdir / "object" / "trim_schema.yaml").read_text())
    assert set(trimmed) == needed


def test_schema_yaml_equals_gcr_generate_schema_yaml(pipeline_run, tmp_path):
    _, result = pipeline_run
    copy = tmp_path / "object"
    shutil.copytree(result.workdir / "object", copy)
    for config_key, schema in (("object", "schema.yaml"), ("trim_object", "trim_schema.yaml")):
        (copy / schema).unlink()
        load(result.configs[config_key], base_dir=str(copy)).generate_schema_yaml()
        assert (copy / schema).read_text() == (result.workdir / "object" / schema).read_text(), schema


def test_all_columns_catalog_loads(pipeline_run):
    _, result = pipeline_run
    catalog = load(result.configs["object"])
    data = catalog.get_quantities(["objectId", "mag_i"])
    assert len(data["objectId"]) == sum(result.rows.values())


def test_dpdd_parquet_loads_through_the_parquet_reader(pipeline_run):
    _, result = pipeline_run
    catalog = load(result.configs["dpdd_object"])
    data = catalog.get_quantities(["objectId", "psFlux_r", "tract"])
    ours = pd.concat(pd.read_parquet(p) for p in result.files["dpdd_object"])
    np.testing.assert_array_equal(data["objectId"], ours["objectId"])
    np.testing.assert_array_equal(data["psFlux_r"], ours["psFlux_r"])
    assert set(np.unique(data["tract"])) == set(result.tracts)


def test_one_row_group_per_patch(pipeline_run):
    sample, result = pipeline_run
    for path in result.files["dpdd_object"]:
        pf = pq.ParquetFile(path)
        patches = [
            pf.read_row_group(i, columns=["patch"]).column(0).unique().to_pylist()
            for i in range(pf.num_row_groups)
        ]
        assert all(len(p) == 1 for p in patches)
        tract = int(pf.read_row_group(0, columns=["tract"]).column(0)[0].as_py())
        assert sorted(p[0] for p in patches) == sorted(sample.patches[tract])
