"""Run files: the shipped ones are valid with the seed's values; every fault names the file and field."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from dc2tasks.products.errors import InputError
from dc2tasks.runs import RunConfigError, config_hash, load_run_config, load_run_dir, read_visit_file
from dc2tasks.slurm.job import SlurmJob

RUNS = Path(__file__).resolve().parents[2] / "dags" / "runs"
RUN1_TRACTS = [5066, 5065, 5064, 5063, 5062, 4852, 4851, 4850, 4849, 4848,
               4640, 4639, 4638, 4637, 4636, 4433, 4432, 4431, 4430, 4429]  # fmt: skip
OBJECT_CHAIN = ["object", "trim_object", "dpdd_object", "merged_dpdd_object"]


def minimal(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "t",
        "backend": "local",
        "repository": "/data/repo",
        "rerun": "multiband",
        "tracts": [4850],
        "products": ["object"],
        "working_dir": "/scratch/work",
        "central": {"dir": "/central"},
    }
    data.update(changes)
    return data


def write(tmp_path: Path, data: object, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def error_of(path: Path) -> RunConfigError:
    with pytest.raises(RunConfigError) as info:
        load_run_config(path)
    return info.value


@pytest.mark.parametrize(
    ("name", "repo", "rerun", "pixel", "generation", "products"),
    [
        ("run1.1p", "/global/cfs/cdirs/lsst/shared/in2p3/Run1.1/output", None, 0.185, 1, OBJECT_CHAIN),
        ("run1.2p_v3", "/global/cfs/cdirs/lsst/shared/in2p3/Run1.2p/w_2018_30", "coadd-test5-u",
         0.185, "auto", OBJECT_CHAIN),
        ("run1.2i", "/global/cfs/cdirs/lsst/shared/DC2/data/Run1.2i_globus_in2p3_20181217/w_2018_39",
         "multiband", 0.2, "auto", [*OBJECT_CHAIN, "source"]),
        ("run1.2p_v4", "/global/cfs/cdirs/lsst/shared/in2p3/Run1.2p/w_2018_39", "coadd-v4",
         0.2, "auto", [*OBJECT_CHAIN, "source", "forced_source"]),
    ],
)  # fmt: skip
def test_seed_runs(name, repo, rerun, pixel, generation, products, monkeypatch):
    monkeypatch.delenv("PSCRATCH", raising=False)
    config = load_run_config(RUNS / f"{name}.yaml")
    assert config.name == name
    assert config.backend == "slurm"
    assert config.repository == repo
    assert config.rerun == rerun
    assert config.tracts == RUN1_TRACTS
    assert config.pixel_scale == pixel
    assert config.schema_generation == generation
    assert config.products == products
    assert config.bands == list("ugrizy")
    assert config.central.group == "lsst"
    run_dir = {
        "run1.1p": "Run1.1p",
        "run1.2p_v3": "Run1.2p_v3",
        "run1.2i": "Run1.2i",
        "run1.2p_v4": "Run1.2p_v4",
    }
    assert config.central.catalog_base_dir("object") == f"^/DC2-prod/{run_dir[name]}/dpdd/object/current"
    assert config.slurm.account == "m1727"
    assert config.slurm.image == "lsstdesc/stack-jupyter:prod"
    slurm = config.slurm
    assert (slurm.constraint, slurm.qos, slurm.licenses) == ("cpu", "regular", ["scratch"])
    assert config.working_dir == f"/pscratch/sd/d/desc/dc2/{name}/work"
    assert config.visit_file is None or config.visit_file.startswith("/global/cfs/cdirs/lsst/shared/")
    assert config.connections.producer == "nersc_producer"
    assert config.connections.collaboration == "nersc_desc"


def test_working_dir_follows_the_producer_accounts_pscratch(monkeypatch):
    monkeypatch.setenv("PSCRATCH", "/pscratch/sd/p/prod")
    assert load_run_config(RUNS / "run1.2i.yaml").working_dir == "/pscratch/sd/p/prod/dc2/run1.2i/work"


def test_demo_run_is_local_on_the_sample_repository(monkeypatch):
    monkeypatch.delenv("DC2_DEMO_DIR", raising=False)
    config = load_run_config(RUNS / "demo.yaml")
    demo = RUNS.parents[1] / "demo-output"
    assert config.backend == "local"
    assert config.repository == str(demo / "sample-repo")
    assert config.working_dir == str(demo / "work")
    assert config.central.dir == str(demo / "central")
    assert config.central.group is None
    assert config.central.catalog_base_dir("dpdd_object") == str(demo / "central" / "dpdd_object" / "current")
    assert config.tracts == [4850]
    assert (config.qa.approve_timeout, config.qa.approve_wait) == ("7-00:00:00", timedelta(days=7))
    monkeypatch.setenv("DC2_DEMO_DIR", "/tmp/elsewhere")
    assert load_run_config(RUNS / "demo.yaml").repository == "/tmp/elsewhere/sample-repo"


def test_every_shipped_file_loads_from_the_directory():
    configs, errors = load_run_dir(RUNS)
    assert errors == {}
    assert sorted(configs) == ["demo", "run1.1p", "run1.2i", "run1.2p_v3", "run1.2p_v4", "run1.2p_v4_archive"]


def test_slurm_settings_render_into_sbatch_scripts():
    """The run file's limits are the Slurm job model's: what validates here renders there."""
    slurm = load_run_config(RUNS / "run1.2i.yaml").slurm
    job = SlurmJob(
        script="dc2 merge-tract ...",
        name="dc2-run1.2i-merge_tract",
        account=slurm.account,
        qos=slurm.qos,
        constraint=slurm.constraint,
        image=slurm.image,
        licenses=tuple(slurm.licenses),
        time_limit=slurm.time_for("merge_tract"),
        memory=slurm.memory_for("merge_tract"),
        array=f"0-19%{slurm.array_throttle}",
    )
    text = job.render()
    for line in ("--account=m1727", "--qos=regular", "--constraint=cpu", "--time=06:00:00", "--mem=131072M",
                 "--array=0-19%32", "--image=lsstdesc/stack-jupyter:prod", "--licenses=scratch"):  # fmt: skip
        assert f"#SBATCH {line}\n" in text
    assert slurm.time_for("dia_object") is None


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({k: v for k, v in minimal().items() if k != "repository"}, "repository", "field is missing"),
        (minimal(tracts="4850"), "tracts", "valid list"),
        (minimal(tracts=["4850"]), "tracts[0]", "valid integer"),
        (minimal(tracts=[4850, -3]), "tracts[1]", "greater than or equal to 0"),
        (minimal(tracts=[4850, 4850]), "tracts", "listed more than once: 4850"),
        (minimal(tracts=[True]), "tracts[0]", "valid integer"),
        (minimal(tracts=[]), "tracts", "at least 1 item"),
        (minimal(products=["object", "../object"]), "products[1]", "Input should be 'object'"),
        (minimal(products=["object", "objects"]), "products[1]", "(got 'objects')"),
        (minimal(products=["trim_object"]), "products", "trim_object is made from object"),
        (minimal(products=["object", "source"]), "visits", "required, products source are per visit"),
        (minimal(colour="red"), "colour", "unknown key"),
        (minimal(slurm={"time": {"merge_tract": "soon"}}), "slurm.time.merge_tract", "'soon' is not a Slurm"),
        (minimal(slurm={"time": {"merg_tract": "1:00:00"}}), "slurm.time.merg_tract", "unknown key"),
        (minimal(slurm={"memory": {"dpdd": "4 bananas"}}), "slurm.memory.dpdd", "not a memory size"),
        (minimal(slurm={"account": "m1727; rm -rf ~"}), "slurm.account", "is not a valid name"),
        (minimal(slurm={"array_throttle": 0}), "slurm.array_throttle", "greater than or equal to 1"),
        (minimal(backend="cloud"), "backend", "'local' or 'slurm'"),
        (minimal(backend="slurm"), "backend", "slurm needs slurm.account, connections.producer"),
        (minimal(pixel_scale="0.2"), "pixel_scale", "arcsec per pixel"),
        (minimal(pixel_scale=-1.0), "pixel_scale", "greater than 0"),
        (minimal(schema_generation=5), "schema_generation", "1, 2, 3, 4 or 'auto'"),
        (minimal(bands=["u", "w"]), "bands[1]", "(got 'w')"),
        (minimal(rerun="../other"), "rerun", "is not a rerun name"),
        (minimal(rerun="w_2019_10\n"), "rerun", "'w_2019_10\\n' is not a rerun name"),
        (minimal(rerun="-rf"), "rerun", "'-rf' is not a rerun name"),
        (minimal(rerun=".."), "rerun", "'..' is not a rerun name"),
        (minimal(rerun="a/b"), "rerun", "'a/b' is not a rerun name"),
        (minimal(name="demo\n"), "name", "'demo\\n' is not a run name"),
        (minimal(name="-demo"), "name", "'-demo' is not a run name"),
        (minimal(name="../demo"), "name", "'../demo' is not a run name"),
        (minimal(watch_reruns=True), "reruns", "required with watch_reruns: true"),
        (minimal(reruns={"ready": "marker"}), "reruns", "ready: marker needs `marker`"),
        (minimal(reruns={"ready": "quiet", "quiet_hours": 0}), "reruns.quiet_hours", "or equal to 1"),
        (minimal(reruns={"ready": "quiet", "quiet_hours": "24"}), "reruns.quiet_hours", "valid integer"),
        (minimal(reruns={"ready": "soon"}), "reruns.ready", "'marker' or 'quiet'"),
        (minimal(reruns={"ready": "marker", "marker": "../DONE"}), "reruns.marker", "not a plain file name"),
        (minimal(reruns={"ready": "marker", "marker": "DONE\n"}), "reruns.marker", "not a plain file name"),
        (minimal(reruns={"ready": "marker", "marker": "-DONE"}), "reruns.marker", "not a plain file name"),
        (minimal(reruns={"ready": "marker", "marker": "D", "owners": ["-x"]}), "reruns.owners[0]",
         "'-x' is not a Unix account"),
        (minimal(reruns={"ready": "marker", "marker": "D", "when": 1}), "reruns.when", "unknown key"),
        (minimal(repository="/data/$(whoami)"), "repository", "is not allowed in a path"),
        (minimal(working_dir="${DC2_TEST_UNSET_VAR}/w"), "working_dir", "DC2_TEST_UNSET_VAR is not set"),
        (minimal(visits=12), "visits", "list of visit ids or the path of a visit file"),
        (minimal(central={"dir": "/c", "group": "lsst staff"}), "central.group", "Unix account or group"),
        (minimal(central={"dir": "/c", "gcr_base_dir": {"style": "site_relative"}}), "central.gcr_base_dir",
         "needs site_root"),
        (minimal(connections={"producer": "nersc prod"}), "connections.producer", "not an Airflow conn"),
        (minimal(qa={"mode": "strict"}), "qa.mode", "'enforce', 'warn' or 'approve'"),
        (minimal(qa={"thresholds": {"mag_mni": 12}}), "qa.thresholds", "unknown threshold 'mag_mni'; known:"),
        (minimal(qa={"thresholds": {"mag_min": "12"}}), "qa.thresholds.mag_min", "a finite number, not '12'"),
        (minimal(qa={"thresholds": {"mag_min": True}}), "qa.thresholds.mag_min", "a finite number, not True"),
        (minimal(qa={"truth": "/t/$(id)"}), "qa.truth", "is not allowed in a path"),
        (minimal(qa={"when": "always"}), "qa.when", "unknown key"),
        (minimal(slurm={"time": {"qa": "never"}}), "slurm.time.qa", "'never' is not a Slurm"),
        (minimal(qa={"approve_timeout": "7d"}), "qa.approve_timeout", "'7d' is not a Slurm time"),
        (minimal(qa={"approve_timeout": "0:00"}), "qa.approve_timeout", "must be positive"),
        (minimal(qa={"approve_timeout": 60}), "qa.approve_timeout", "valid string"),
    ],
)  # fmt: skip
def test_invalid_field_is_named_with_the_file(tmp_path, monkeypatch, data, field, message):
    monkeypatch.delenv("DC2_TEST_UNSET_VAR", raising=False)
    path = write(tmp_path, data)
    error = error_of(path)
    text = str(error)
    assert f"{path}: {field}: " in text
    line = next(ln for ln in text.splitlines() if ln.startswith(f"{path}: {field}: "))
    assert message in line
    assert field in [f for f, _ in error.problems]


CPU = "use `cpu` (Perlmutter CPU nodes)"
PSCRATCH = "Cori's scratch was retired in 2023: use $PSCRATCH (/pscratch/sd/<initial>/<user>)"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (minimal(slurm={"constraint": "haswell"}), "slurm.constraint", f"'haswell' is a node feature of Cori "
         f"(retired in 2023): {CPU}"),
        (minimal(slurm={"constraint": "knl"}), "slurm.constraint", f"'knl' is a node feature of Cori "
         f"(retired in 2023): {CPU}"),
        (minimal(slurm={"constraint": "knl&quad&cache"}), "slurm.constraint",
         f"'knl' is a node feature of Cori (retired in 2023): {CPU}"),
        (minimal(slurm={"constraint": "Haswell"}), "slurm.constraint", CPU),
        (minimal(working_dir="/global/cscratch1/sd/desc/DC2/work"), "working_dir",
         f"'/global/cscratch1/sd/desc/DC2/work' is under /global/cscratch1: {PSCRATCH}"),
        (minimal(repository="/global/cscratch1/sd/desc/DC2/data/Run1.2i"), "repository",
         f"'/global/cscratch1/sd/desc/DC2/data/Run1.2i' is under /global/cscratch1: {PSCRATCH}"),
        (minimal(repository="${DC2_TEST_UNSET_VAR:-/global/cscratch1}/../cscratch1/x"), "repository",
         f"is under /global/cscratch1: {PSCRATCH}"),
        (minimal(visits="/global/cscratch1/v.txt", products=["object", "source"]), "visits", PSCRATCH),
        (minimal(repository="/global/projecta/projectdirs/lsst/x"), "repository",
         "is under /global/projecta: projecta was retired into the community file system: use its CFS "
         "location (/global/cfs/cdirs/...)"),
        (minimal(central={"dir": "/global/cscratch1/c"}), "central.dir", PSCRATCH),
    ],
)  # fmt: skip
def test_cori_only_values_are_refused_with_the_perlmutter_value(tmp_path, monkeypatch, data, field, message):
    monkeypatch.delenv("DC2_TEST_UNSET_VAR", raising=False)
    path = write(tmp_path, data)
    error = error_of(path)
    # (`visits` is a list or a path: pydantic reports both readings of a bad path, the path's last)
    assert any(f == field and message in text for f, text in error.problems), error.problems
    assert f"{path}: {field}: " in str(error)


@pytest.mark.parametrize("value", ["cpu", "cpu&(haswellish|x)", "gpu"])
def test_perlmutter_constraints_and_lookalike_paths_pass(tmp_path, value):
    config = load_run_config(
        write(tmp_path, minimal(slurm={"constraint": value}, working_dir="/global/cscratch10/w"))
    )
    assert config.slurm.constraint == value and config.working_dir == "/global/cscratch10/w"


def test_several_problems_are_all_reported(tmp_path):
    path = write(tmp_path, minimal(tracts=["x"], bands=["q"], colour=1))
    fields = [f for f, _ in error_of(path).problems]
    assert sorted(fields) == ["bands[0]", "colour", "tracts[0]"]


def test_not_yaml_and_not_a_mapping(tmp_path):
    bad = write(tmp_path, "name: t\ntracts: [4850\nbackend: local\n", "broken.yaml")
    assert str(error_of(bad)).startswith(f"{bad}: not valid YAML: line ")
    listing = write(tmp_path, "- a\n- b\n", "list.yaml")
    assert str(error_of(listing)) == f"{listing}: expected a mapping of run settings, got list"


def test_directory_with_bad_files_still_yields_the_good_ones(tmp_path):
    for f in RUNS.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    write(tmp_path, minimal(name="broken", tracts=["oops"]), "broken.yaml")
    write(tmp_path, minimal(name="run1.2i"), "zz_same_name.yaml")
    write(tmp_path, "not: [valid", "unparsable.yaml")
    write(tmp_path, minimal(name="ignored", tracts=["x"]), "_shared.yaml")
    configs, errors = load_run_dir(tmp_path)
    assert sorted(configs) == ["demo", "run1.1p", "run1.2i", "run1.2p_v3", "run1.2p_v4", "run1.2p_v4_archive"]
    assert configs["run1.2i"].slurm.constraint == "cpu"  # the shipped one, not the later duplicate
    assert sorted(Path(p).name for p in errors) == ["broken.yaml", "unparsable.yaml", "zz_same_name.yaml"]
    assert f"{tmp_path / 'broken.yaml'}: tracts[0]: " in str(errors[str(tmp_path / "broken.yaml")])
    dup = str(errors[str(tmp_path / "zz_same_name.yaml")])
    assert (
        dup == f"{tmp_path / 'zz_same_name.yaml'}: name: run 'run1.2i' is already defined by "
        f"{tmp_path / 'run1.2i.yaml'}"
    )


def test_config_hash_ignores_layout_and_follows_values(tmp_path):
    a = write(tmp_path, minimal(), "a.yaml")
    b = tmp_path / "b.yaml"
    b.write_text("# comment\n" + yaml.safe_dump(dict(reversed(list(minimal().items()))), sort_keys=False))
    c = write(tmp_path, minimal(tracts=[4849]), "c.yaml")
    ha, hb, hc = (config_hash(load_run_config(p)) for p in (a, b, c))
    assert ha == hb
    assert ha != hc
    assert len(ha) == 64 and int(ha, 16) >= 0


def test_relative_paths_resolve_against_the_run_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub", minimal(working_dir="../work", repository="~/repo"))
    config = load_run_config(path)
    assert config.working_dir == str(tmp_path / "work")
    assert config.repository == str(Path.home() / "repo")


def test_visits_inline_or_from_a_file(tmp_path):
    visits = tmp_path / "visits.txt"
    visits.write_text("# run 1.2 visits\n230\n\n1931758  # last\n230\n")
    config = load_run_config(write(tmp_path, minimal(visits="visits.txt", products=["object", "source"])))
    assert config.visit_file == str(visits)
    assert config.visit_list() == [230, 1931758]
    inline = load_run_config(
        write(tmp_path, minimal(visits=[5, 7], products=["object", "forced_source"]), "i.yaml")
    )
    assert inline.visit_list() == [5, 7] and inline.visit_file is None
    visits.write_text("230\n12a\n")
    with pytest.raises(InputError, match=rf"^{visits}:2: '12a' is not a visit number"):
        read_visit_file(visits)
