"""The run DAGs (dags/dc2_<run>.py from dags/runs/<run>.yaml): they load, a bad run file is that
file's import error only, and the demo run goes end to end with `dag.test()` and the local backend:
every product made, installed, and loaded back through GCRCatalogs from the central directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from dagrun import load_dag, task_instances, xcom_value

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"


def _dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder), safe_mode=False)


def test_every_run_file_has_its_dag_file() -> None:
    runs = sorted(p.stem for p in (DAGS / "runs").glob("*.yaml"))
    not_runs = ("dc2_rerun_watcher.py", "dc2_sweep.py")
    stubs = sorted(p.name for p in DAGS.glob("dc2_*.py") if p.name not in not_runs)
    assert stubs == sorted(f"dc2_{r.replace('.', '_').replace('-', '_')}.py" for r in runs)
    for r in runs:
        text = (DAGS / f"dc2_{r.replace('.', '_').replace('-', '_')}.py").read_text()
        assert f'"{r}.yaml"' in text


def test_dags_load_and_a_bad_run_file_breaks_only_its_own(tmp_path, monkeypatch, airflow_db) -> None:
    monkeypatch.setenv("DC2_DEMO_DIR", str(tmp_path / "demo"))
    bag = _dagbag(DAGS)
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == [
        "dc2_demo",
        "dc2_rerun_watcher",
        "dc2_run1.1p",
        "dc2_run1.2i",
        "dc2_run1.2p_v3",
        "dc2_run1.2p_v4",
        "dc2_run1.2p_v4_archive",
        "dc2_sweep",
    ]
    demo = bag.get_dag("dc2_demo")
    assert {t.task_id for t in demo.tasks} == {
        "inventory",
        "plan",
        "object.merge_tract",
        "object.trim",
        "object.dpdd",
        "object.merge_parquet",
        "source",
        "forced_source",
        "dia_source",
        "dia_object",
        "finalize",
        *(f"qa.{p}" for p in demo.get_task("object.dpdd").config.products),
        "approve_qa",
        "install",
    }
    assert set(demo.params.keys()) == {"products", "tracts", "visits", "rerun", "dry_run", "force", "qa"}
    assert demo.get_task("source").upstream_task_ids == {"object.dpdd"}
    assert demo.get_task("qa.source").upstream_task_ids == {"finalize"}
    made = demo.get_task("object.dpdd").config.products
    assert demo.get_task("approve_qa").upstream_task_ids == {f"qa.{p}" for p in made}
    assert demo.get_task("install").upstream_task_ids == {"approve_qa"}
    assert demo.get_task("plan").upstream_task_ids == {"inventory"}

    broken = tmp_path / "dags"
    shutil.copytree(DAGS, broken)
    bad = yaml.safe_load((broken / "runs" / "run1.2i.yaml").read_text())
    bad["slurm"]["time"]["merge_tract"] = "forever"
    (broken / "runs" / "run1.2i.yaml").write_text(yaml.safe_dump(bad))
    bag = _dagbag(broken)
    assert list(bag.import_errors) == [str(broken / "dc2_run1_2i.py")]
    message = bag.import_errors[str(broken / "dc2_run1_2i.py")]
    assert "run1.2i.yaml: slurm.time.merge_tract:" in message and "forever" in message
    assert sorted(bag.dag_ids) == [
        "dc2_demo",
        "dc2_rerun_watcher",
        "dc2_run1.1p",
        "dc2_run1.2p_v3",
        "dc2_run1.2p_v4",
        "dc2_run1.2p_v4_archive",
        "dc2_sweep",
    ]


def _states(dr) -> dict[str, str]:
    return {task_id: str(ti.state) for task_id, ti in task_instances(dr).items()}


def test_demo_run_end_to_end_with_the_local_backend(demo_dags) -> None:
    from dc2tasks.service.demo import INSTALLED, load_with_gcr

    sample, demo, folder = demo_dags
    dag = load_dag(folder / "dc2_demo.py")
    dr = dag.test()
    states = _states(dr)
    assert str(dr.state) == "success", states
    assert states.pop("approve_qa") == "skipped", states  # qa mode enforce: no approval asked
    assert set(states.values()) == {"success"}, states
    central = demo / "central"
    for directory, catalog, column in INSTALLED:
        assert (central / directory / "current").is_symlink()
        cfg = central / directory / "catalog_configs" / f"{catalog}.yaml"
        assert len(load_with_gcr(cfg, [column])[column]) > 0, catalog
        provenance = json.loads((central / directory / "current" / "provenance.json").read_text())
        assert provenance["run"] == "demo"
        if directory in ("object", "source"):  # made from the repository: its inventory is recorded
            assert provenance["inventory"]["products"]["object"]["status"] == "complete"
    visits = sorted(sample.visit_ids())
    installed = sorted(
        int(p.stem.split("_")[-1]) for p in (central / "source" / "current").glob("src_visit_*.parquet")
    )
    assert installed == visits
    # a second run changes nothing installed
    before = {d: (central / d / "current").resolve() for d in ("object", "source")}
    dr2 = dag.test(run_conf={"products": ["source"]})
    assert str(dr2.state) == "success", _states(dr2)
    assert {d: (central / d / "current").resolve() for d in ("object", "source")} == before


def test_a_run_whose_inputs_are_absent_fails_at_inventory(demo_dags) -> None:
    """No src anywhere in the rerun chain: a run of `source` fails at `inventory`, naming why,
    and no step (so no job) runs."""
    from dc2tasks.products.repo import Gen2Repo

    sample, demo, folder = demo_dags
    for root in Gen2Repo.open(sample.root, sample.rerun).chain:
        shutil.rmtree(root / "src", ignore_errors=True)
    dag = load_dag(folder / "dc2_demo.py")
    dr = dag.test(run_conf={"products": ["source"]})
    states = _states(dr)
    assert str(dr.state) == "failed", states
    assert states["inventory"] == "failed"
    assert all(states[t] in ("upstream_failed", "None") for t in states if t != "inventory"), states
    assert xcom_value(dr, "source", "slurm_job_id") is None
    assert not (demo / "work" / "logs").exists()  # plan never ran


def test_dry_run_shows_every_job_and_config_and_changes_nothing(demo_dags) -> None:
    from dc2tasks.service.demo import INSTALLED

    _, demo, folder = demo_dags
    dag = load_dag(folder / "dc2_demo.py")
    central = demo / "central"
    dr = dag.test(run_conf={"dry_run": True})
    states = _states(dr)
    assert str(dr.state) == "success", states
    assert states.pop("approve_qa") == "skipped", states  # qa mode enforce: no approval asked
    assert set(states.values()) == {"success"}, states
    for task_id in ("object.merge_tract", "object.dpdd", "source", "dia_object"):
        assert "would be accepted" in xcom_value(dr, task_id), task_id  # emulated `sbatch --test-only`
        assert xcom_value(dr, task_id, "slurm_job_id") is None, task_id
    configs = xcom_value(dr, "finalize")
    assert sorted(configs) == sorted(catalog for _, catalog, _ in INSTALLED)
    for directory, catalog, _ in INSTALLED:
        assert configs[catalog]["base_dir"] == str(central / directory / "current"), catalog
    assert configs["dc2_object_demo"]["pixel_scale"] == dag.get_task("object.dpdd").config.pixel_scale
    for result in xcom_value(dr, "install").values():
        assert result["status"] == "dry-run", result
    assert list(central.iterdir()) == []
    assert not (demo / "work").exists()  # not even the log directory


def test_login_node_commands_name_the_image_for_shifter(tmp_path) -> None:
    """finalize and install run on a login node, outside any job: shifter needs --image there."""
    from dc2tasks.airflow.operators.step import dc2_argv, dc2_command
    from dc2tasks.runs.loader import parse_run_config
    from dc2tasks.runs.params import validate_params
    from dc2tasks.runs.steps import install_command, plan_run

    data = {
        "name": "img",
        "backend": "slurm",
        "repository": "/r",
        "tracts": [1],
        "products": ["object"],
        "working_dir": "/w",
        "central": {"dir": "/c", "group": "lsst"},
        "pixel_scale": 0.2,
        "slurm": {"account": "m1727", "image": "lsstdesc/stack-jupyter:prod"},
        "connections": {"producer": "p", "collaboration": "c"},
    }
    config = parse_run_config(data, tmp_path / "img.yaml")
    assert dc2_command(config) == "shifter dc2"  # in a job: #SBATCH --image names it
    assert dc2_argv(config) == ["shifter", "--image=lsstdesc/stack-jupyter:prod", "dc2"]
    plan = plan_run(config, validate_params({}, config))
    argv = install_command(config, plan, "object", dc2_argv(config))
    assert argv[:4] == ["shifter", "--image=lsstdesc/stack-jupyter:prod", "dc2", "install"]
    from dc2tasks.runs.steps import finalize_commands

    for command in finalize_commands(config, plan, "object", dc2_argv(config)):
        assert command.argv[:3] == ["shifter", "--image=lsstdesc/stack-jupyter:prod", "dc2"]
        assert command.argv[3] == command.what
        assert command.what in ("gcr-config", "manifest")
    plain = parse_run_config({**data, "slurm": {"account": "m1727"}}, tmp_path / "plain.yaml")
    assert dc2_argv(plain) == ["dc2"]
