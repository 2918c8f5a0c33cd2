"""A run whose Object source is an archive of Object HDF5 files (no Gen2 repository), end to end with
`dag.test()` and the local backend: trim (for full files), DPDD, merge, configs and install, then the
installed DPDD Parquet loaded through GCRCatalogs with the config the run generated.

The archive is made here as the DC2 archive was: the sample repository's tracts merged (and trimmed)
by our own steps. Files lacking bands (as the real archive's do) are in their own test: they need
GCRCatalogs' rule for absent columns in trim and DPDD (the schema yaml beside the files).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from dagrun import load_dag, task_instances

from dc2tasks.catalogue import CATALOGUE

TRACTS = (4850, 4851)
RUN = "arch"
KIND_PRODUCTS = {
    "full": ["trim_object", "dpdd_object", "merged_dpdd_object"],
    "trimmed": ["dpdd_object", "merged_dpdd_object"],
}
ARCHIVED = {"full": "object", "trimmed": "trim_object"}
DAG_FILE = '''from pathlib import Path
from dc2tasks.airflow.run_dag import dag_from_run_file
dag = dag_from_run_file(Path(__file__).with_name("runs") / "arch.yaml")
'''
# flags of present bands a damaged file lacks, besides a whole band (GCRCatalogs' own test file
# lacks g and such flags)
DROPPED_FLAGS = ("u_modelfit_CModel_flag", "r_base_PixelFlags_flag_bad")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """Full and trimmed Object files of two tracts, by kind, made once from a sample repository."""
    from dc2tasks.products.object_merge import merge_tract
    from dc2tasks.products.object_trim import trim_file
    from dc2tasks.products.repo import Gen2Repo
    from dc2tasks.sample import SampleConfig, make_sample_repo

    root = tmp_path_factory.mktemp("archive")
    cfg = SampleConfig(tracts=TRACTS, objects_per_patch=40, ref_width=200, forced_width=90)
    sample = make_sample_repo(root / "repo", cfg)
    repo = Gen2Repo.open(sample.root, sample.rerun)
    dirs = {"full": root / "full", "trimmed": root / "trimmed"}
    for tract in TRACTS:
        full = merge_tract(repo, tract, dirs["full"]).path
        trim_file(full, dirs["trimmed"])
    return dirs


def _object_ids(files: list[Path]) -> list[int]:
    ids: list[int] = []
    for f in files:
        with pd.HDFStore(f, "r") as store:
            ids += [int(i) for key in store.keys() for i in store[key]["id"]]
    return sorted(ids)


def _archive(made: dict[str, Path], kind: str, target: Path) -> list[Path]:
    target.mkdir()
    files = []
    for tract in TRACTS:
        name = CATALOGUE[ARCHIVED[kind]].file_name(tract=tract)
        files.append(Path(shutil.copy(made[kind] / name, target / name)))
    return files


def _dags(airflow_db: str, tmp_path: Path, kind: str) -> Path:
    """The run file (its tracts not given: the archive's) and its DAG file in the dags folder."""
    folder = Path(airflow_db) / "dags"
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "runs").mkdir(parents=True)
    run = {
        "name": RUN,
        "backend": "local",
        "object_source": {"archive": str(tmp_path / "archive"), "kind": kind},
        "pixel_scale": 0.2,
        "products": KIND_PRODUCTS[kind],
        "working_dir": str(tmp_path / "work"),
        "central": {"dir": str(tmp_path / "central")},
        "slurm": {"time": {"trim": "0:10:00", "dpdd": "0:10:00", "merge_parquet": "0:10:00"}},
    }
    (folder / "runs" / "arch.yaml").write_text(yaml.safe_dump(run))
    (folder / "dc2_arch.py").write_text(DAG_FILE)
    (tmp_path / "central").mkdir()
    return folder / "dc2_arch.py"


def _run(dag_file: Path, kind: str) -> None:
    dag = load_dag(dag_file)
    assert dag.get_task("object.dpdd").config.tracts == list(TRACTS)  # listed from the archive
    dr = dag.test()
    states = {task_id: str(ti.state) for task_id, ti in task_instances(dr).items()}
    made_steps = {CATALOGUE[p].task_id for p in KIND_PRODUCTS[kind]}
    qa = {f"qa.{p}" for p in KIND_PRODUCTS[kind]}
    expected = {t: "success" for t in ("inventory", "plan", *made_steps, "finalize", *qa, "install")}
    assert states == {**expected, "approve_qa": "skipped"}, states


def _load(config_path: Path, quantities: list[str]) -> dict[str, np.ndarray]:
    import GCRCatalogs
    from GCRCatalogs import ConfigSource

    ConfigSource.set_config_source(dr=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        catalog = GCRCatalogs.load_catalog_from_config_dict(yaml.safe_load(config_path.read_text()))
        return catalog.get_quantities(quantities)


def _installed(central: Path, name: str, quantities: list[str]) -> dict[str, np.ndarray]:
    """A product's installed catalog, loaded with the config the run generated."""
    product = CATALOGUE[name]
    config = central / product.directory / "catalog_configs" / f"{product.catalog_name(RUN)}.yaml"
    return _load(config, quantities)


@pytest.mark.parametrize("kind", ["full", "trimmed"])
def test_archive_run_installs_dpdd_that_loads_in_gcr(made, kind, tmp_path, airflow_db, monkeypatch) -> None:
    files = _archive(made, kind, tmp_path / "archive")
    _run(_dags(airflow_db, tmp_path, kind), kind)
    central = tmp_path / "central"
    data = _installed(central, "dpdd_object", ["objectId", "tract", "mag_g", "mag_y"])
    assert sorted(data["objectId"].tolist()) == _object_ids(files)
    assert sorted(set(data["tract"].tolist())) == list(TRACTS)
    assert np.isfinite(data["mag_g"]).any() and np.isfinite(data["mag_y"]).any()
    merged = central / "dpdd_object" / "current" / CATALOGUE["merged_dpdd_object"].file_name(run=RUN)
    assert len(pd.read_parquet(merged, columns=["objectId"])) == len(data["objectId"])
    provenance = json.loads((central / "dpdd_object" / "current" / "provenance.json").read_text())
    assert provenance["inputs"] == {"object_archive": str(tmp_path / "archive"), "object_archive_kind": kind}
    if kind == "full":  # the run's own trim, installed and served too
        trimmed = _installed(central, "trim_object", ["objectId"])
        assert sorted(trimmed["objectId"].tolist()) == _object_ids(files)
    else:  # nothing of the archive is copied or installed: only what the run made
        assert sorted(p.name for p in central.iterdir()) == ["dpdd_object"]


def _gcr_schema_and_damage(archive: Path, kind: str, files: list[Path]) -> dict[str, np.ndarray]:
    """GCRCatalogs' own schema yaml for the complete files, beside them (six bands), then the last
    tract's file without the g band and without DROPPED_FLAGS; returns what GCRCatalogs' reader
    serves from the damaged archive (the reference)."""
    product = CATALOGUE[ARCHIVED[kind]]
    config = {
        "subclass_name": product.catalog.reader,
        "base_dir": str(archive),
        "filename_pattern": product.file_pattern,
        "schema_filename": product.catalog.schema_filename,
        "pixel_scale": 0.2,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import GCRCatalogs

        GCRCatalogs.load_catalog_from_config_dict(config).generate_schema_yaml()
    with pd.HDFStore(files[-1], "r") as store:
        frames = {key: store[key] for key in store.keys()}
    with pd.HDFStore(files[-1], "w") as store:
        for key, frame in frames.items():
            gone = [c for c in frame.columns if c.startswith("g_") or c in DROPPED_FLAGS]
            store.put(key, frame.drop(columns=gone), format="fixed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GCRCatalogs.load_catalog_from_config_dict(config).get_quantities(COMPARED)


COMPARED = ["objectId", "tract", "mag_g", "mag_r", "magerr_i", "cModelFlux_flag_u", "psFlux_flag_g", "good"]


@pytest.mark.parametrize("kind", ["full", "trimmed"])
def test_archive_files_lacking_bands_need_the_schema_rule(
    made, kind, tmp_path, airflow_db, monkeypatch
) -> None:
    """Needs GCRCatalogs' rule for absent columns in trim and DPDD (products/object_schema.py):
    tract 4851's file lacks the g band and some flags of present bands, with the six-band schema
    yaml beside the files; the installed DPDD serves what GCRCatalogs serves from the archive."""
    archive = tmp_path / "archive"
    files = _archive(made, kind, archive)
    reference = _gcr_schema_and_damage(archive, kind, files)
    _run(_dags(airflow_db, tmp_path, kind), kind)
    data = _installed(tmp_path / "central", "dpdd_object", COMPARED)
    ours, theirs = (pd.DataFrame(d).sort_values("objectId", ignore_index=True) for d in (data, reference))
    lacking = ours["tract"] == TRACTS[-1]
    assert lacking.any() and (~lacking).any()
    assert ours.loc[lacking, "mag_g"].isna().all() and ours.loc[~lacking, "mag_g"].notna().any()
    for column in COMPARED:
        a, b = ours[column].to_numpy(), theirs[column].to_numpy()
        if b.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=0, equal_nan=True, err_msg=column)
        else:
            np.testing.assert_array_equal(a, b, err_msg=column)
    tables = sorted((tmp_path / "central" / "dpdd_object" / "current").glob("dpdd_object_tract_*.parquet"))
    assert len(tables) == len(TRACTS)
    schemas = {str(pq.read_schema(t).remove_metadata()) for t in tables}
    assert len(schemas) == 1  # every file has the same columns and dtypes, whatever its input lacked
