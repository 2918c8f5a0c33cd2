"""Object HDF5 files that lack a band or some flags: our DPDD equals GCRCatalogs' reading of them.

Like the Run 1.1p file GCRCatalogs ships in its own tests (a tract-4850 patch without the g band and
without some flag columns of other bands), the files here are real pipeline outputs with columns
taken out, a six-band schema yaml beside them written by GCRCatalogs' own `generate_schema_yaml`
from the complete files. `dc2 dpdd` then gives, column by column, what `DC2ObjectCatalog` gives.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import GCRCatalogs
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from GCRCatalogs import ConfigSource

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.cli import main
from dc2tasks.products import object_schema
from dc2tasks.products.errors import InputError
from dc2tasks.products.object_dpdd import dpdd_tract
from dc2tasks.products.object_pipeline import run_object_pipeline
from dc2tasks.products.parquet_merge import merge_parquet
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleConfig, make_sample_repo

ConfigSource.set_config_source(dr=False)

PIXEL_SCALE = 0.185
# flags of present bands that the damaged files lack (the GCRCatalogs test file lacks such ones)
DROPPED_FLAGS = (
    "u_modelfit_CModel_flag",
    "r_base_SdssShape_flag",
    "i_base_PsfFlux_flag",
    "z_base_PixelFlags_flag_bad",
)


def gcr_catalog(base_dir: Path, pattern: str, schema_filename: str, **extra):
    config = {
        "subclass_name": "dc2_object.DC2ObjectCatalog",
        "base_dir": str(base_dir),
        "filename_pattern": pattern,
        "schema_filename": schema_filename,
        "pixel_scale": PIXEL_SCALE,
        **extra,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GCRCatalogs.load_catalog_from_config_dict(config)


def damaged_copy(
    source: Path, target: Path, drop_band: str = "g", tract: int | None = None, flags=DROPPED_FLAGS
) -> None:
    """The file without `drop_band`'s columns and without `flags`, group by group."""
    with pd.HDFStore(source, "r") as store:
        keys = [k.lstrip("/") for k in store.keys()]
        frames = {k: store[k] for k in keys}
    with pd.HDFStore(target, "w") as out:
        for key, frame in frames.items():
            gone = [c for c in frame.columns if c.startswith(f"{drop_band}_") or c in flags]
            name = key if tract is None else f"coadd_{tract}_{key.split('_')[2]}"
            out.put(name, frame.drop(columns=gone), format="fixed")


@pytest.fixture(scope="module", params=[1, 2, 3, 4], ids=lambda v: f"v{v}")
def complete(request, tmp_path_factory):
    """(version, object dir) of complete full and trimmed files, each with GCRCatalogs' schema yaml."""
    version = request.param
    root = tmp_path_factory.mktemp(f"schema{version}")
    cfg = SampleConfig(
        seed=30 + version,
        patches=("3,1", "0,0"),
        objects_per_patch=50,
        ref_width=200,
        forced_width=90,
        schema=version,
        calib_era="calib" if version == 1 else "photocalib",
    )
    sample = make_sample_repo(root / "repo", cfg)
    result = run_object_pipeline(Gen2Repo.open(sample.root, sample.rerun), root / "work", run="t")
    obj = root / "work" / "object"
    for name in ("object", "trim_object"):  # GCRCatalogs' own schema yaml, not ours
        catalog = CATALOGUE[name].catalog
        (obj / catalog.schema_filename).unlink()
        gcr_catalog(obj, CATALOGUE[name].file_pattern, catalog.schema_filename).generate_schema_yaml()
    assert result.rows[4850] > 0
    return version, obj


def damaged_dir(complete, product: str, tmp_path: Path, schema: bool = True) -> Path:
    _, obj = complete
    name = CATALOGUE[product].file_name(tract=4850)
    out = tmp_path / product
    out.mkdir()
    damaged_copy(obj / name, out / name)
    if schema:
        shutil.copy(obj / CATALOGUE[product].catalog.schema_filename, out)
    return out / name


@pytest.mark.parametrize("product", ["object", "trim_object"])
def test_dpdd_of_a_file_lacking_a_band_and_flags_equals_gcr(complete, product, tmp_path, dpdd_equals_gcr):
    source = damaged_dir(complete, product, tmp_path)
    out = tmp_path / "dpdd"
    assert main(["dpdd", str(source), "-o", str(out), "--pixel-scale", str(PIXEL_SCALE)]) == 0
    parquet = out / CATALOGUE["dpdd_object"].file_name(tract=4850)
    schema_filename = CATALOGUE[product].catalog.schema_filename
    catalog = gcr_catalog(source.parent, CATALOGUE[product].file_pattern, schema_filename)
    table = pd.read_parquet(parquet)
    dpdd_equals_gcr(table, catalog, rtol=1e-9)
    assert len([c for c in table.columns if c.startswith("psFlux_") and "flag" not in c]) == 6
    assert table["psFlux_g"].isna().all() and not table["psFlux_flag_g"].any()
    assert not table["cModelFlux_flag_u"].any()  # u_modelfit_CModel_flag lacked: False


def test_trimmed_with_schema_option_keeps_every_band_and_equals_gcr(complete, tmp_path, dpdd_equals_gcr):
    """`dc2 trim --schema`: the trimmed file holds the schema's six bands; its DPDD equals GCRCatalogs'
    reading of the full damaged file."""
    _, obj = complete
    source = damaged_dir(complete, "object", tmp_path, schema=False)
    elsewhere = tmp_path / "elsewhere.yaml"
    shutil.copy(obj / "schema.yaml", elsewhere)
    out = tmp_path / "trim"
    assert main(["trim", str(source), "-o", str(out), "--schema", str(elsewhere)]) == 0
    trimmed = out / CATALOGUE["trim_object"].file_name(tract=4850)
    with pd.HDFStore(trimmed, "r") as store:
        frame = store[store.keys()[0]]
    assert "g_base_PsfFlux_flag" in frame and not frame["g_base_PsfFlux_flag"].any()
    assert frame["g_mag"].isna().all()
    dpdd = dpdd_tract(trimmed, tmp_path / "dpdd", PIXEL_SCALE)
    shutil.copy(elsewhere, source.parent / "schema.yaml")
    catalog = gcr_catalog(source.parent, CATALOGUE["object"].file_pattern, "schema.yaml")
    dpdd_equals_gcr(pd.read_parquet(dpdd.path), catalog, rtol=1e-9)


def test_absent_native_columns_take_gcr_defaults(complete, tmp_path):
    """The rule itself, on native columns: NaN, -1, False, and True for a band's bad-pixel flags."""
    source = damaged_dir(complete, "object", tmp_path)
    columns = [
        "g_base_PixelFlags_flag_bad",
        "z_base_PixelFlags_flag_bad",
        "u_modelfit_CModel_flag",
        "g_base_PsfFlux_flag",
        "g_mag",
    ]
    obj = object_schema.open_object_file(source)
    schema = object_schema.schema_for(obj)
    assert schema.bands == tuple("ugrizy") and schema.origin.endswith("schema.yaml")
    ours = object_schema.read_group(obj, "coadd_4850_31", columns, schema)
    catalog = gcr_catalog(source.parent, CATALOGUE["object"].file_pattern, "schema.yaml")
    theirs = catalog.get_quantities(columns, native_filters=[(lambda p: p == "3,1", "patch")])
    for c in columns:
        np.testing.assert_array_equal(ours[c].to_numpy(), theirs[c], err_msg=c)
    assert ours["g_base_PixelFlags_flag_bad"].all() and not ours["u_modelfit_CModel_flag"].any()


def test_without_schema_the_product_files_give_the_bands_as_gcr_infers_them(complete, tmp_path):
    """No yaml: the schema is the union over the product's files (one lacks g, one lacks y), so both
    DPDD files have the same columns and types, and each equals GCRCatalogs' inferred reading."""
    _, obj = complete
    source = damaged_dir(complete, "trim_object", tmp_path, schema=False)
    other = source.parent / CATALOGUE["trim_object"].file_name(tract=4851)
    complete_file = obj / CATALOGUE["trim_object"].file_name(tract=4850)
    damaged_copy(complete_file, other, drop_band="y", tract=4851, flags=())
    out = tmp_path / "dpdd"
    results = [dpdd_tract(p, out, PIXEL_SCALE) for p in (source, other)]
    schemas = [pq.read_schema(r.path).remove_metadata() for r in results]
    assert schemas[0].equals(schemas[1])
    assert "psFlux_g" in schemas[0].names and "psFlux_y" in schemas[0].names
    merged = tmp_path / "merged.parquet"
    assert main(["merge-parquet", *(str(r.path) for r in results), "-o", str(merged)]) == 0
    catalog = gcr_catalog(source.parent, CATALOGUE["trim_object"].file_pattern, "trim_schema.yaml")
    ours = pd.read_parquet(merged)
    theirs = catalog.get_quantities(["psFlux_g", "psFlux_y", "mag_i_cModel", "tract"])
    for q, values in theirs.items():
        np.testing.assert_allclose(ours[q].to_numpy(), values, rtol=1e-9, equal_nan=True, err_msg=q)


def test_dpdd_schema_option_overrides_the_yaml_beside_the_file(complete, tmp_path):
    """`dc2 dpdd --schema`: a three-band schema elsewhere wins over the six-band one beside the file."""
    source = damaged_dir(complete, "trim_object", tmp_path)
    schema = yaml.safe_load((source.parent / "trim_schema.yaml").read_text())
    three = {c: v for c, v in schema.items() if c[:2] not in ("u_", "z_", "y_")}
    elsewhere = tmp_path / "three.yaml"
    elsewhere.write_text(yaml.dump(three))
    out = tmp_path / "dpdd"
    argv = [
        "dpdd",
        str(source),
        "-o",
        str(out),
        "--pixel-scale",
        str(PIXEL_SCALE),
        "--schema",
        str(elsewhere),
    ]
    assert main(argv) == 0
    table = pq.read_table(out / CATALOGUE["dpdd_object"].file_name(tract=4850))
    assert sorted(c[-1] for c in table.column_names if c.startswith("psFluxErr_")) == ["g", "i", "r"]
    assert table.schema.metadata[b"dc2tasks.bands"] == b"gri"


def test_an_unreadable_sibling_is_left_out_of_the_inferred_schema(complete, tmp_path, caplog):
    source = damaged_dir(complete, "trim_object", tmp_path, schema=False)
    broken = source.parent / CATALOGUE["trim_object"].file_name(tract=4851)
    broken.write_bytes(source.read_bytes()[:4096])
    schema = object_schema.schema_for(object_schema.open_object_file(source))
    assert schema.origin == f"inferred from {source.name}"
    assert "g" not in schema.bands and f"skipped {broken.name}" in caplog.text
    with pytest.raises(InputError, match=broken.name):
        object_schema.infer_schema([source, broken])


def test_a_column_absent_from_file_and_schema_is_an_error_naming_both(complete, tmp_path, capsys):
    source = damaged_dir(complete, "trim_object", tmp_path)
    schema_path = source.parent / "trim_schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    del schema["g_base_SdssShape_psf_xx"]
    schema_path.write_text(yaml.dump(schema))
    with pytest.raises(
        InputError,
        match=r"trim_object_tract_4850\.hdf5: group coadd_4850_\d\d lacks column "
        r"g_base_SdssShape_psf_xx, and the schema \(.*trim_schema\.yaml\) has no entry",
    ):
        dpdd_tract(source, tmp_path / "dpdd", PIXEL_SCALE)
    assert main(["dpdd", str(source), "-o", str(tmp_path / "dpdd")]) == 2
    err = capsys.readouterr().err
    assert "lacks column g_base_SdssShape_psf_xx" in err and str(source) in err
    assert not (tmp_path / "dpdd" / CATALOGUE["dpdd_object"].file_name(tract=4850)).exists()


def test_schema_beside_a_file_follows_the_catalogue():
    assert object_schema.product_schema_filename(Path("a/object_tract_1.hdf5")) == "schema.yaml"
    assert object_schema.product_schema_filename(Path("a/trim_object_tract_1.hdf5")) == "trim_schema.yaml"
    assert object_schema.product_schema_filename(Path("a/test_object_tract_4850.hdf5")) == "schema.yaml"


def test_a_broken_schema_yaml_is_an_error(tmp_path):
    bad = tmp_path / "schema.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(InputError, match="not a schema yaml"):
        object_schema.load_schema(bad)


def test_merge_parquet_names_what_a_file_lacks_or_types_otherwise(tmp_path):
    first = pd.DataFrame({"objectId": np.arange(3), "psFlux_g": np.ones(3), "psFlux_r": np.ones(3)})
    first.to_parquet(tmp_path / "a.parquet")
    first.drop(columns=["psFlux_g"]).assign(psFlux_r=np.arange(3)).to_parquet(tmp_path / "b.parquet")
    expect = (
        r"b\.parquet: its columns differ from a\.parquet's "
        r"\(lacks psFlux_g; types psFlux_r \(int64, not double\)\)"
    )
    with pytest.raises(InputError, match=expect):
        merge_parquet([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "out.parquet")
