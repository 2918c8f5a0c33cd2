"""The rerun watcher DAG (dags/dc2_rerun_watcher.py) with the real `dag.test()`: it triggers the watched
run's DAG once per new complete rerun, with the rerun in the conf and the run id `rerun__<rerun>`,
never for a rerun it has triggered before, never for one still being written, symlinked or owned by
another account, never for the run's own rerun or the reruns it is built on; and a triggered rerun
that changes fails the watcher's `changed__<run>` task, naming it."""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException
from dagrun import load_dag, xcom_value

from dc2tasks.airflow.rerun_dag import build_watcher_dag, changed_failure, watch_run
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.runs.loader import load_run_config
from dc2tasks.runs.rerun_facts import FactsRequest
from dc2tasks.runs.reruns import JsonRerunStore, MemoryRerunStore, list_facts
from dc2tasks.sample.layout import repository_cfg
from dc2tasks.slurm.transports import SubprocessTransport

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
MAPPER = "lsst.obs.lsst.imsim.ImsimMapper"
MARKER = "DC2_RERUN_COMPLETE"  # demo.yaml's reruns.marker
DC2 = str(Path(sys.executable).with_name("dc2"))


def add_rerun(repo: Path, name: str, parents: list[Any], complete: bool = True) -> Path:
    """A rerun as the Gen2 butler leaves it: a directory with a repositoryCfg.yaml naming its parents,
    tract 4850's ref and forced photometry (what the run's object product needs), and, once the
    pipelines are done, the completion marker."""
    rerun = repo / "rerun" / name
    rerun.mkdir(parents=True)
    (rerun / "repositoryCfg.yaml").write_text(repository_cfg(MAPPER, parents))
    layout = Gen2Repo(rerun, [rerun], "obs_lsst")
    for dataset in ("deepCoadd_ref", "deepCoadd_forced_src"):
        path = rerun / layout.relpath(dataset, tract=4850, patch="1,1", filter="r")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("catalog")
    if complete:
        (rerun / MARKER).write_text("")
    return rerun


def make_repository(root: Path) -> Path:
    """A repository shaped like the sample one: `coadd` under the root, `multiband` on top of it."""
    root.mkdir(parents=True)
    (root / "_mapper").write_text(MAPPER + "\n")
    add_rerun(root, "coadd", ["../.."])
    add_rerun(root, "multiband", ["../coadd"])
    return root


def run_file(tmp: Path, name: str, repo: Path, **extra: Any) -> dict[str, Any]:
    """A demo-like run file (the demo's settings, its own repository, directories and name)."""
    data = yaml.safe_load((DAGS / "runs" / "demo.yaml").read_text())
    data.update(
        name=name,
        repository=str(repo),
        products=["object"],
        working_dir=str(tmp / "work"),
        central={"dir": str(tmp / "central"), "gcr_base_dir": {"style": "absolute"}},
    )
    data.pop("visits")
    data.update(extra)
    return data


def install_dags(folder: Path, runs: dict[str, dict[str, Any]]) -> Path:
    """The watcher's DAG file and one run DAG file per run, where `dag.test()` syncs DAGs from."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "runs").mkdir(parents=True)
    shutil.copy(DAGS / "dc2_rerun_watcher.py", folder)
    for name, data in runs.items():
        (folder / "runs" / f"{name}.yaml").write_text(yaml.safe_dump(data))
        stub = (DAGS / "dc2_demo.py").read_text().replace('"demo.yaml"', f'"{name}.yaml"')
        (folder / f"dc2_{name}.py").write_text(stub)
    return folder / "dc2_rerun_watcher.py"


def triggered(dag_id: str) -> dict[str, Any]:
    """Every run of `dag_id` in the metadata database: run id -> conf."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)).all()
        return {r.run_id: r.conf for r in runs}


def xcom_json(dr: Any, task_id: str, key: str) -> Any:
    value = xcom_value(dr, task_id, key)
    return json.loads(value) if isinstance(value, str) else value


def watcher_states(dr: Any) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dr.get_task_instances(session=session)
        }


@pytest.fixture
def state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state" / "reruns.json"
    monkeypatch.setenv("DC2_RERUN_STATE", str(path))
    return path


def test_each_new_rerun_is_triggered_once(tmp_path: Path, airflow_db: str, state_file: Path) -> None:
    repo = make_repository(tmp_path / "repo")
    add_rerun(repo, "a", ["../coadd"])
    add_rerun(repo, "b", ["../coadd"])
    watcher = load_dag(
        install_dags(Path(airflow_db) / "dags", {"watched": run_file(tmp_path, "watched", repo)})
    )
    assert {t.task_id for t in watcher.tasks} == {"find__watched", "trigger__watched", "changed__watched"}

    dr = watcher.test()
    assert str(dr.state) == "success", watcher_states(dr)
    # multiband is the run's own rerun, coadd its parent: neither is triggered
    assert triggered("dc2_watched") == {"rerun__a": {"rerun": "a"}, "rerun__b": {"rerun": "b"}}
    state = json.loads(state_file.read_text())
    assert sorted(state["runs"]["watched"]) == ["a", "b"]
    assert state["runs"]["watched"]["a"]["dag_id"] == "dc2_watched"
    assert state["runs"]["watched"]["a"]["watcher_run_id"] == dr.run_id

    dr = watcher.test()
    assert str(dr.state) == "success", watcher_states(dr)
    assert triggered("dc2_watched") == {"rerun__a": {"rerun": "a"}, "rerun__b": {"rerun": "b"}}

    add_rerun(repo, "c", ["../multiband"])
    dr = watcher.test()
    states = watcher_states(dr)
    assert str(dr.state) == "success", states
    assert states == {"find__watched[-1]": "success", "trigger__watched[0]": "success",
                      "changed__watched[-1]": "success"}
    assert triggered("dc2_watched") == {
        "rerun__a": {"rerun": "a"},
        "rerun__b": {"rerun": "b"},
        "rerun__c": {"rerun": "c"},
    }


def test_slurm_backend_lists_through_the_producer_connection(
    tmp_path: Path, airflow_db: str, state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """backend slurm: the listing is `dc2 reruns REPO --facts` through SlurmHook(producer).client()
    .transport (here the `dc2_local` connection type: the same argv as over SSH, run as local
    subprocesses), parsed strictly; the not-yet-complete rerun is not triggered."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_DC2_WATCH_PRODUCER",
        json.dumps({"conn_type": "dc2_local", "extra": {"state_dir": str(tmp_path / "slurm-state")}}),
    )
    repo = make_repository(tmp_path / "repo")
    add_rerun(repo, "v2", ["../coadd"])
    add_rerun(repo, "v3", ["../coadd"], complete=False)
    data = run_file(
        tmp_path,
        "watched_remote",
        repo,
        backend="slurm",
        slurm={"account": "m1727", "dc2_command": DC2},
        connections={"producer": "dc2_watch_producer", "collaboration": "dc2_watch_producer"},
    )
    data["central"]["group"] = "lsst"
    quiet = run_file(tmp_path, "not_watched", repo, watch_reruns=False)
    watcher = load_dag(
        install_dags(Path(airflow_db) / "dags", {"watched_remote": data, "not_watched": quiet})
    )
    assert {t.task_id for t in watcher.tasks} == {
        "find__watched_remote", "trigger__watched_remote", "changed__watched_remote"}
    dr = watcher.test()
    assert str(dr.state) == "success", watcher_states(dr)
    assert triggered("dc2_watched_remote") == {"rerun__v2": {"rerun": "v2"}}
    assert triggered("dc2_not_watched") == {}
    assert (tmp_path / "slurm-state").is_dir()  # the connection's transport was made


def test_parents_are_read_locally_and_through_a_runner(tmp_path: Path) -> None:
    """The run's own rerun and its ancestors, from the listing's no-follow reads of each
    repositoryCfg.yaml, here and through `dc2 reruns --facts` run by a command runner."""
    repo = make_repository(tmp_path / "repo")
    # the butler's own form: a parent as a nested RepositoryCfg with an absolute _root
    (repo / "rerun" / "deep").mkdir()
    (repo / "rerun" / "deep" / "repositoryCfg.yaml").write_text(
        f"!RepositoryCfg_v1\n_mapper: !!python/name:{MAPPER} ''\n_parents:\n"
        f"- !RepositoryCfg_v1\n  _root: {repo}/rerun/multiband\n  _parents: []\n"
    )
    add_rerun(repo, "sibling", ["../coadd"])
    # a repositoryCfg.yaml that is a symlink is not read: its parents are not followed either
    (repo / "rerun" / "linked-cfg").mkdir()
    deep_cfg = repo / "rerun" / "deep" / "repositoryCfg.yaml"
    (repo / "rerun" / "linked-cfg" / "repositoryCfg.yaml").symlink_to(deep_cfg)

    def ignored(own: str | None, runner: Any) -> list[str]:
        return list_facts(str(repo), FactsRequest(own_rerun=own), runner, (DC2,)).ignored

    for runner in (None, SubprocessTransport()):
        assert ignored("deep", runner) == ["deep", "multiband", "coadd"]
        assert ignored("sibling", runner) == ["sibling", "coadd"]
        assert ignored("not-there-yet", runner) == ["not-there-yet"]
        assert ignored("linked-cfg", runner) == ["linked-cfg"]
        assert ignored(None, runner) == []


def test_claim_ignores_own_rerun_and_parents_and_hands_out_once(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "repo")
    add_rerun(repo, "x", ["../coadd"])
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run_file(tmp_path, "claims", repo)))
    config = load_run_config(path)
    store = MemoryRerunStore()
    report = watch_run(config, store)
    assert report.triggered == ["x"]
    # coadd and multiband are complete too, but they are the run's own rerun and its parent
    assert report.waiting == {}
    assert watch_run(config, store).triggered == []
    assert store.seen("claims") == {"x"}


def test_watcher_dag_settings_and_bad_run_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    repo = make_repository(tmp_path / "repo")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "good.yaml").write_text(yaml.safe_dump(run_file(tmp_path, "good", repo)))
    bad = run_file(tmp_path, "bad", repo, tracts="all")
    (runs / "bad.yaml").write_text(yaml.safe_dump(bad))
    monkeypatch.setenv("DC2_RERUN_WATCH_SCHEDULE", "*/10 * * * *")
    with caplog.at_level(logging.WARNING, logger="dc2tasks.airflow.rerun_dag"):
        dag = build_watcher_dag(runs)
    assert dag.dag_id == "dc2_rerun_watcher"
    assert dag.timetable.expression == "*/10 * * * *"
    assert (dag.max_active_runs, dag.catchup) == (1, False)
    assert {t.task_id for t in dag.tasks} == {"find__good", "trigger__good", "changed__good"}
    assert f"{runs / 'bad.yaml'}: tracts:" in caplog.text
    monkeypatch.delenv("DC2_RERUN_WATCH_SCHEDULE")
    assert build_watcher_dag(runs).timetable.expression == "0 * * * *"


def test_only_complete_own_real_reruns_are_triggered_and_a_changed_one_fails_the_watcher(
    tmp_path: Path, airflow_db: str, state_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rerun being written is triggered once its marker is there; a symlinked rerun and one owned
    by another account never are (the reason is logged on every pass); a triggered rerun that
    changes fails `changed__<run>` naming it, while a new complete rerun is still triggered."""
    repo = make_repository(tmp_path / "repo")
    writing = add_rerun(repo, "writing", ["../coadd"], complete=False)
    elsewhere = add_rerun(tmp_path / "elsewhere", "real", ["../coadd"])
    (repo / "rerun" / "linked").symlink_to(elsewhere)
    foreign = os.geteuid() == 0
    if foreign:
        theirs = add_rerun(repo, "theirs", ["../coadd"])
        nobody = pwd.getpwnam("nobody").pw_uid
        for root, dirs, files in os.walk(theirs):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), nobody, -1)
        os.lchown(theirs, nobody, -1)
    elif os.environ.get("CI") == "true":
        pytest.fail("CI runs as root, which this test needs to chown a rerun to nobody")
    watcher = load_dag(
        install_dags(Path(airflow_db) / "dags", {"guarded": run_file(tmp_path, "guarded", repo)})
    )
    me = pwd.getpwuid(os.geteuid()).pw_name
    with caplog.at_level(logging.INFO, logger="dc2tasks.runs.reruns"):
        dr = watcher.test()
    assert str(dr.state) == "success", watcher_states(dr)
    assert triggered("dc2_guarded") == {}
    where = f"{repo}/rerun"
    assert f"rerun {where}/writing not handed out: completion marker {MARKER}: absent" in caplog.text
    assert f"rerun {where}/linked not handed out: a symlink (never followed)" in caplog.text
    if foreign:
        assert f"rerun {where}/theirs not handed out: owned by nobody, not by {me}" in caplog.text
    assert json.loads(state_file.read_text())["runs"].get("guarded", {}) == {}

    (writing / MARKER).write_text("")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dc2tasks.runs.reruns"):
        dr = watcher.test()
    assert str(dr.state) == "success", watcher_states(dr)
    assert triggered("dc2_guarded") == {"rerun__writing": {"rerun": "writing"}}
    assert f"rerun {where}/linked not handed out" in caplog.text  # logged again on every pass

    # the triggered rerun changes; a new one is complete: the new one is triggered, the task that
    # reports changes fails naming the changed one, which is not triggered again
    (writing / "late.fits").write_text("more")
    add_rerun(repo, "next", ["../coadd"])
    dr = watcher.test()
    states = watcher_states(dr)
    assert str(dr.state) == "failed", states
    assert states["changed__guarded[-1]"] == "failed"
    assert states["find__guarded[-1]"] == "success" and states["trigger__guarded[0]"] == "success"
    assert triggered("dc2_guarded") == {
        "rerun__writing": {"rerun": "writing"}, "rerun__next": {"rerun": "next"}}
    config = load_run_config(Path(airflow_db) / "dags" / "runs" / "guarded.yaml")
    changed = JsonRerunStore(state_file)  # what find__guarded handed to changed__guarded
    assert set(changed.processed("guarded")) == {"writing", "next"}
    with pytest.raises(AirflowFailException) as failure:
        changed_failure(config, {"writing": "1 -> 2 entries"})
    assert str(failure.value).startswith("run guarded: reruns changed after they were processed "
                                         "(not triggered again): writing: 1 -> 2 entries.")
    xcom = xcom_json(dr, "find__guarded", "changed")
    assert list(xcom) == ["writing"] and xcom["writing"].startswith("11 -> 12 entries; ")
