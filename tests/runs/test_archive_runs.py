"""Runs whose Object source is an archive of Object HDF5 files (`object_source`): what validates,
what is refused with the field named, the job scripts and finishing commands of a full and of a
trimmed archive, and the shipped Run 1.2p v4 archive run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from dc2tasks.products.errors import InputError
from dc2tasks.runs import RunConfigError, load_run_config, parse_run_config
from dc2tasks.runs.params import ParamsError, validate_params
from dc2tasks.runs.steps import finalize_commands, plan_run, step_scripts

RUNS = Path(__file__).resolve().parents[2] / "dags" / "runs"
FROM_FULL = ["trim_object", "dpdd_object", "merged_dpdd_object"]
FROM_TRIMMED = ["dpdd_object", "merged_dpdd_object"]


def archive_run(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "arch",
        "backend": "local",
        "object_source": {"archive": "/archive/v4", "kind": "full"},
        "tracts": [4850, 4851],
        "pixel_scale": 0.2,
        "products": FROM_FULL,
        "working_dir": "/scratch/work",
        "central": {"dir": "/central"},
    }
    data.update(changes)
    return data


def problems(tmp_path: Path, data: dict[str, object]) -> list[tuple[str, str]]:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RunConfigError) as info:
        load_run_config(path)
    assert str(info.value).startswith(f"{path}: ")
    return info.value.problems


def test_an_archive_run_needs_no_repository_and_records_the_archive(tmp_path):
    config = parse_run_config(archive_run(), tmp_path / "arch.yaml")
    assert config.repository is None and config.rerun is None
    assert config.object_source.product == "object"
    assert config.archived == ("object",)
    assert config.inputs(None) == {"object_archive": "/archive/v4", "object_archive_kind": "full"}
    trimmed = parse_run_config(
        archive_run(
            object_source={"archive": "v4", "kind": "trimmed", "schema_file": "v4/trim_schema.yaml"},
            products=FROM_TRIMMED,
        ),
        tmp_path / "arch.yaml",
    )
    assert trimmed.archived == ("object", "trim_object")
    assert trimmed.object_source.archive == str(tmp_path / "v4")  # relative to the run file
    assert trimmed.inputs(None)["object_schema"] == str(tmp_path / "v4" / "trim_schema.yaml")
    # with a repository as well: the visit products come from it, the Object products from the archive
    both = parse_run_config(
        archive_run(repository="/repo", rerun="multiband", visits=[1, 2], products=[*FROM_FULL, "source"]),
        tmp_path / "arch.yaml",
    )
    assert both.inputs("multiband") == {
        "repository": "/repo",
        "rerun": "multiband",
        "object_archive": "/archive/v4",
        "object_archive_kind": "full",
    }


def test_without_tracts_they_are_the_archives_files(tmp_path):
    archive = tmp_path / "v4"
    archive.mkdir()
    for name in ("trim_object_tract_4851.hdf5", "trim_object_tract_4850.hdf5", "object_tract_4999.hdf5",
                 "trim_object_tract_48x.hdf5", "trim_schema.yaml"):  # fmt: skip
        (archive / name).write_bytes(b"")
    data = archive_run(object_source={"archive": "v4", "kind": "trimmed"}, products=FROM_TRIMMED)
    del data["tracts"]
    assert parse_run_config(data, tmp_path / "arch.yaml").tracts == [4850, 4851]
    data["object_source"] = {"archive": "v4", "kind": "full"}
    data["products"] = FROM_FULL
    assert parse_run_config(data, tmp_path / "arch.yaml").tracts == [4999]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"object_source": None}, "repository",
         "required field is missing (or object_source: Object HDF5 files)"),
        ({"products": ["object", *FROM_FULL]}, "products",
         "object cannot be made in a run whose object_source is an archive of full Object files "
         "(/archive/v4): drop object"),
        ({"object_source": {"archive": "/a", "kind": "trimmed"}}, "products",
         "trim_object cannot be made in a run whose object_source is an archive of trimmed Object files"),
        ({"products": ["dpdd_object"]}, "products", "dpdd_object is made from trim_object; add trim_object"),
        ({"products": [*FROM_FULL, "source"], "visits": [1]}, "repository",
         "required for products source (object_source gives only the Object products made from "
         "object_tract_<t>.hdf5)"),
        ({"rerun": "multiband"}, "rerun", "needs a repository (this run reads only object_source)"),
        ({"watch_reruns": True, "reruns": {"ready": "quiet", "quiet_hours": 2}}, "watch_reruns",
         "needs a repository"),
        ({"object_source": {"archive": "/a", "kind": "raw"}}, "object_source.kind", "'full' or 'trimmed'"),
        ({"object_source": {"kind": "full"}}, "object_source.archive", "required field is missing"),
        ({"object_source": {"archive": "/a/$(x)", "kind": "full"}}, "object_source.archive",
         "is not allowed in a path"),
        ({"object_source": {"archive": "/a", "kind": "full", "schema": "/a/s.yaml"}}, "object_source.schema",
         "unknown key"),
        ({"object_source": {"archive": "/global/projecta/x", "kind": "full"}}, "object_source.archive",
         "projecta was retired"),
    ],
)  # fmt: skip
def test_a_bad_archive_run_names_the_field(tmp_path, changes, field, message):
    found = problems(tmp_path, archive_run(**changes))
    assert any(f == field and message in text for f, text in found), found


def test_tracts_not_given_and_no_archive_to_list_them_from(tmp_path):
    data = archive_run(object_source={"archive": "v4", "kind": "full"})
    del data["tracts"]
    [(field, text)] = problems(tmp_path, data)
    assert field == "tracts"
    assert (
        f"object_source.archive {tmp_path / 'v4'} cannot be listed here" in text and "list the tracts" in text
    )
    (tmp_path / "v4").mkdir()
    (tmp_path / "v4" / "trim_object_tract_4850.hdf5").write_bytes(b"")
    [(field, text)] = problems(tmp_path, data)
    assert (field, text) == ("tracts", f"not given, and object_source.archive {tmp_path / 'v4'} holds no "
                                       "object_tract_<t>.hdf5 file")  # fmt: skip


def _lines(script: str) -> list[str]:
    return script.splitlines()[2:]  # after `set -euo pipefail` and `dc2 --version`


ARRAY = ["TRACTS=(4850 4851)", 'T="${TRACTS[${SLURM_ARRAY_TASK_ID:-0}]}"',
         'echo "tract $T (array element ${SLURM_ARRAY_TASK_ID:-0})"']  # fmt: skip
MERGE = ["dc2 merge-parquet --sort /scratch/work/dpdd_object/dpdd_object_tract_*.parquet "
         "-o /scratch/work/dpdd_object/dpdd_arch_object.parquet"]  # fmt: skip


def test_full_archive_scripts_trim_its_files(tmp_path):
    config = parse_run_config(
        archive_run(
            object_source={"archive": "/archive/v4", "kind": "full", "schema_file": "/s/schema.yaml"}
        ),
        tmp_path / "arch.yaml",
    )
    plan = plan_run(config, validate_params({}, config))
    scripts = step_scripts(config, plan)
    assert list(scripts) == ["trim", "dpdd", "merge_parquet"]
    assert scripts["trim"].array_size == 2
    assert _lines(scripts["trim"].script) == [
        *ARRAY,
        'dc2 trim /archive/v4/object_tract_"$T".hdf5 -o /scratch/work/object --schema /s/schema.yaml',
    ]
    assert _lines(scripts["dpdd"].script) == [
        *ARRAY,  # the run's own trimmed files: their schema is the one made with them
        'dc2 dpdd /scratch/work/object/trim_object_tract_"$T".hdf5 -o /scratch/work/dpdd_object '
        "--pixel-scale 0.2",
    ]
    assert _lines(scripts["merge_parquet"].script) == MERGE
    assert plan.directories == ["object", "dpdd_object"]
    commands = [c.argv for d in plan.directories for c in finalize_commands(config, plan, d)]
    assert [a[1:4] for a in commands] == [
        ["gcr-config", "--product", "trim_object"],
        ["manifest", "/scratch/work/object", "--run"],
        ["gcr-config", "--product", "dpdd_object"],
        ["manifest", "/scratch/work/dpdd_object", "--run"],
    ]
    manifest = commands[1]
    inputs = [manifest[i + 1] for i, a in enumerate(manifest) if a == "--input"]
    assert inputs == [
        "object_archive=/archive/v4",
        "object_archive_kind=full",
        "object_schema=/s/schema.yaml",
    ]


def test_trimmed_archive_scripts_read_its_files_in_dpdd(tmp_path):
    config = parse_run_config(
        archive_run(object_source={"archive": "/archive/v4", "kind": "trimmed"}, products=FROM_TRIMMED),
        tmp_path / "arch.yaml",
    )
    plan = plan_run(config, validate_params({"tracts": [4851]}, config))
    scripts = step_scripts(config, plan)
    assert list(scripts) == ["dpdd", "merge_parquet"]
    assert _lines(scripts["dpdd"].script) == [
        "TRACTS=(4851)",
        *ARRAY[1:],  # no --schema: the schema yaml beside the files, as GCRCatalogs reads them
        'dc2 dpdd /archive/v4/trim_object_tract_"$T".hdf5 -o /scratch/work/dpdd_object --pixel-scale 0.2',
    ]
    assert _lines(scripts["merge_parquet"].script) == MERGE
    assert plan.directories == ["dpdd_object"]
    [gcr, manifest] = finalize_commands(config, plan, "dpdd_object")
    assert gcr.argv[1:4] == ["gcr-config", "--product", "dpdd_object"]
    assert manifest.argv[-4:] == [
        "--input",
        "object_archive=/archive/v4",
        "--input",
        "object_archive_kind=trimmed",
    ]


def test_an_archive_run_takes_no_rerun_param(tmp_path):
    config = parse_run_config(archive_run(), tmp_path / "arch.yaml")
    with pytest.raises(ParamsError, match=r"rerun: 'multiband' is refused"):
        validate_params({"rerun": "multiband"}, config)
    params = dataclasses.replace(validate_params({}, config), rerun="multiband")  # past the schema
    with pytest.raises(
        InputError, match="rerun 'multiband': this run reads no repository, only object_source"
    ):
        plan_run(config, params)
    both = parse_run_config(archive_run(repository="/repo"), tmp_path / "arch.yaml")
    assert plan_run(both, validate_params({"rerun": "x"}, both)).rerun == "x"


def test_shipped_run1_2p_v4_archive(monkeypatch):
    """GCRCatalogs' dc2_object_run1.2p_v4: trim_object_tract_*.hdf5 with trim_schema.yaml in
    DC2-prod/Run1.2p/dpdd/object_catalog_v4 under /global/cfs/cdirs/lsst/shared, 0.2"/px."""
    monkeypatch.delenv("PSCRATCH", raising=False)
    config = load_run_config(RUNS / "run1.2p_v4_archive.yaml")
    archive = "/global/cfs/cdirs/lsst/shared/DC2-prod/Run1.2p/dpdd/object_catalog_v4"
    assert config.object_source.model_dump() == {
        "archive": archive,
        "kind": "trimmed",
        "schema_file": f"{archive}/trim_schema.yaml",
    }
    assert config.repository is None
    assert config.products == FROM_TRIMMED
    assert config.pixel_scale == 0.2
    assert config.tracts == load_run_config(RUNS / "run1.2p_v4.yaml").tracts
    assert config.backend == "slurm" and config.slurm.constraint == "cpu" and config.slurm.account == "m1727"
    assert config.working_dir == "/pscratch/sd/d/desc/dc2/run1.2p_v4_archive/work"
    assert (
        config.central.catalog_base_dir("dpdd_object")
        == "^/DC2-prod/Run1.2p_v4_archive/dpdd/dpdd_object/current"
    )
    plan = plan_run(config, validate_params({}, config))
    dpdd = step_scripts(config, plan, "shifter dc2")["dpdd"]
    assert dpdd.array_size == 20
    assert dpdd.script.endswith(
        f'shifter dc2 dpdd {archive}/trim_object_tract_"$T".hdf5 -o '
        "/pscratch/sd/d/desc/dc2/run1.2p_v4_archive/work/dpdd_object "
        f"--pixel-scale 0.2 --schema {archive}/trim_schema.yaml\n"
    )
