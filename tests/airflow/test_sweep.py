"""The orphan sweep (dc2tasks/airflow/sweep.py) against real Airflow services (scheduler, triggerer,
api-server: tests/airflow/services.py) and the local Slurm emulator, the demo's backend:
- a task deferred and waiting, its trigger live, keeps its job through 10 sweeps;
- a task marked failed while deferred, before any triggerer has started its trigger, keeps running
  its job (no `on_kill` exists to cancel it) until the next sweep cancels it; a dry run and a sweep
  inside the grace period only say what they would do;
- a task marked failed while its trigger runs has its job cancelled by the trigger's `on_kill`.
The sweeps run as a person runs them: `python -m dc2tasks.airflow.sweep` in the service's environment,
and as the deployment runs them: the sweep DAG (dags/dc2_sweep.py, its run files naming the same
cluster) triggered in the same services, which keeps run A's job while its trigger is live and names
run B's job in a dry run. The same on the loopback Slurm over SSH is marked `cluster`.

The sweep DAG (dags/dc2_sweep.py, facts from the Task SDK) with `dag.test()` and the local backend:
jobs whose task ended, whose task moved on to a later try that recorded another job, or whose DAG
run is gone are cancelled; jobs a task waits for are kept; a dry run (the DAG's and `dc2 slurm
sweep`'s, facts from the database) cancels nothing and names the same jobs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import SLURM_CONN_ID, ssh_connection_json
from dagrun import load_dag, xcom_value
from services import AirflowServices, airflow_services

from dc2tasks.airflow.job_name import job_name_for
from dc2tasks.airflow.sweep_dag import SWEEP_DAG_ID, dag_id_candidates, task_id_for, task_keys
from dc2tasks.slurm import SlurmClient, SlurmJob
from dc2tasks.slurm.transports import LocalTransport
from dc2tasks.slurm.transports.ssh import SSHConfig, SSHTransport

SWEEP_DAG = """\
from airflow.sdk import DAG
from dc2tasks.slurm import SlurmJob
from dc2tasks.airflow.operators.slurm import SlurmJobOperator

with DAG({dag_id!r}, schedule=None, catchup=False):
    SlurmJobOperator(task_id="wait", job=SlurmJob(script="sleep 600\\n", name="x"), slurm_conn_id={conn!r},
                     poll_interval=1)
"""
REPO = Path(__file__).resolve().parents[2]
ALIVE = ("PENDING", "RUNNING")  # a second job may wait for the node the first one holds
TEN_SWEEPS = """\
import logging, sys
from dc2tasks.airflow.sweep import sweep
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
for _ in range(10):
    print("cancelled:", [a.job_id for a in sweep(sys.argv[1] or None, grace_s=0)])
"""


SLURM_RUN = {  # a run file whose jobs go to the test's cluster: the sweep DAG sweeps its connection
    "name": "sweep_cluster", "backend": "slurm", "repository": "/data/repo", "tracts": [4850],
    "pixel_scale": 0.2, "products": ["object"], "working_dir": "/scratch/work",
    "central": {"dir": "/central", "group": "lsst"}, "slurm": {"account": "m1727"},
}


def with_sweep_dag(dags: Path, conn: str | None) -> None:
    """The deployment's sweep DAG beside the test's DAG, with a run file submitting to `conn` (the
    demo's, for the local backend)."""
    shutil.copy(REPO / "dags" / "dc2_sweep.py", dags)
    (dags / "runs").mkdir()
    if conn is None:
        shutil.copy(REPO / "dags" / "runs" / "demo.yaml", dags / "runs")
    else:
        run = {**SLURM_RUN, "connections": {"producer": conn, "collaboration": conn}}
        (dags / "runs" / "sweep_cluster.yaml").write_text(json.dumps(run))  # YAML is a superset of JSON


@contextmanager
def sweep_services(dags: Path, dag_id: str, conn: str | None, env: dict[str, str]
                   ) -> Iterator[AirflowServices]:
    (dags / "sweep_dag.py").write_text(SWEEP_DAG.format(dag_id=dag_id, conn=conn))
    with_sweep_dag(dags, conn)
    with airflow_services(dags, env) as s:
        s.wait_dag(dag_id)
        s.wait_dag(SWEEP_DAG_ID)
        yield s


def dag_sweep(s: AirflowServices, conn: str | None, dry_run: bool = False
              ) -> tuple[list[dict[str, Any]], str]:
    """One run of the sweep DAG (grace 0), as the UI triggers it: its task's cancellations, its log."""
    run = s.trigger(SWEEP_DAG_ID, {"grace": 0, "dry_run": dry_run})
    task = task_id_for(conn)
    s.wait_ti(SWEEP_DAG_ID, run, task, "success", timeout=180)
    value = s.xcom(SWEEP_DAG_ID, run, task, "return_value")
    return json.loads(value) if isinstance(value, str) else value, s.task_log(SWEEP_DAG_ID, run, task, 1)


@pytest.fixture(scope="module")
def local_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServices]:
    dags = tmp_path_factory.mktemp("sweep-dags")
    env = {"DC2_LOCAL_SLURM_DIR": str(dags.parent / "local-slurm")}
    with sweep_services(dags, "dc2_sweep_local", None, env) as s:  # the sweep's default prefix is dc2_
        yield s


def run_python(s: AirflowServices, *args: str) -> str:
    r = subprocess.run([sys.executable, *args], env=s.env, capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def deferred_job(s: AirflowServices, dag_id: str) -> tuple[str, str]:
    run = s.trigger(dag_id)
    s.wait_ti(dag_id, run, "wait", "deferred", try_number=1, timeout=180)
    return run, str(s.xcom(dag_id, run, "wait", "slurm_job_id"))


def sweep_scenario(s: AirflowServices, dag_id: str, conn: str | None, slurm: SlurmClient) -> None:
    """Run A waits (its trigger live) through 10 sweeps; run B, marked failed while deferred with no
    triggerer up, loses its job to the first sweep past the grace period; a dry run only tells."""
    conn_args = ["--conn", conn] if conn else []

    def state(job_id: str) -> str:
        return slurm.status([job_id])[job_id].state.base

    run_a, job_a = deferred_job(s, dag_id)
    try:
        s.wait(lambda: f"waiting for Slurm job {job_a}" in s.task_log(dag_id, run_a, "wait", 1), 90,
               "the trigger never started")
        out = run_python(s, "-c", TEN_SWEEPS, conn or "")
        assert out.count("cancelled: []") == 10, out
        assert "1 job(s) of this deployment running or pending, 0 cancelled" in out
        assert s.ti(dag_id, run_a, "wait")["state"] == "deferred"
        assert state(job_a) == "RUNNING"
        kept = f"keeping Slurm job {job_a} (try 1): task {dag_id}.wait of run {run_a} (deferred) waits"
        for _ in range(3):  # the deployment's sweep, facts from the Task SDK, the trigger live
            cancelled, log = dag_sweep(s, conn)
            assert cancelled == [] and kept in log, (cancelled, log[-3000:])
        assert s.ti(dag_id, run_a, "wait")["state"] == "deferred"
        assert state(job_a) == "RUNNING"

        s.stop("triggerer")  # no trigger will start, so no on_kill will run
        run_b, job_b = deferred_job(s, dag_id)
        s.set_state(dag_id, run_b, "wait", "failed")
        assert s.ti(dag_id, run_b, "wait")["state"] == "failed"
        assert state(job_b) in ALIVE
        task_b = f"{dag_id}.wait of run {run_b}"

        out = run_python(s, "-m", "dc2tasks.airflow.sweep", *conn_args, "--dry-run", "--grace", "0")
        assert (f"would cancel (dry run) Slurm job {job_b} (name {job_name_for(dag_id, 'wait', run_b, -1)}), "
                f"task {task_b}, try 1: the task is failed (try 1); nobody waits for the job") in out, out
        assert f"would cancel {job_b} " in out and f"would cancel (dry run) Slurm job {job_a} " not in out
        assert kept in out
        named, _ = dag_sweep(s, conn, dry_run=True)
        assert [(a["job_id"], a["cancelled"]) for a in named] == [(job_b, False)], named
        assert named[0]["reason"] == "the task is failed (try 1); nobody waits for the job", named
        out = run_python(s, "-m", "dc2tasks.airflow.sweep", *conn_args, "--grace", "3600")
        assert f"not yet cancelling Slurm job {job_b} (task {task_b}, try 1)" in out, out
        assert state(job_b) in ALIVE

        out = run_python(s, "-m", "dc2tasks.airflow.sweep", *conn_args, "--grace", "0")
        assert f"cancelled {job_b} " in out and f"cancelling Slurm job {job_b}" in out, out
        slurm.wait([job_b], timeout=60)
        assert state(job_b) == "CANCELLED"
        assert state(job_a) == "RUNNING"
        assert s.ti(dag_id, run_a, "wait")["state"] == "deferred"

        # a user's mark failed, the trigger live: its on_kill cancels the job at once (it is alive,
        # this task instance's, signed for try 1)
        s.start("triggerer")
        s.wait(lambda: s.task_log(dag_id, run_a, "wait", 1).count(f"waiting for Slurm job {job_a}") >= 2,
               120, "the new triggerer never took run A's trigger up")
        s.set_state(dag_id, run_a, "wait", "failed")
        slurm.wait([job_a], timeout=60)
        assert state(job_a) == "CANCELLED"
        s.wait(lambda: s.kill_logged(dag_id, run_a, "wait", 1,
                                     f"task killed by a user action: cancelling Slurm job {job_a} (try 1)"),
               60, "no cancel logged")
    finally:
        slurm.cancel([job_a])


def test_a_waiting_task_keeps_its_job_and_a_task_marked_failed_before_its_trigger_loses_it(
    local_services: AirflowServices,
) -> None:
    s = local_services
    sweep_scenario(s, "dc2_sweep_local", None, SlurmClient(LocalTransport(s.env["DC2_LOCAL_SLURM_DIR"])))



@pytest.mark.cluster
def test_the_same_on_the_loopback_cluster_over_ssh(
    loopback_cluster: dict[str, str], ssh_config: Callable[..., SSHConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    conn = {f"AIRFLOW_CONN_{SLURM_CONN_ID.upper()}": ssh_connection_json(loopback_cluster)}
    with sweep_services(tmp_path_factory.mktemp("sweep-cluster-dags"), "dc2_sweep_cluster", SLURM_CONN_ID,
                        conn) as s:
        sweep_scenario(s, "dc2_sweep_cluster", SLURM_CONN_ID, SlurmClient(SSHTransport(ssh_config())))


def test_the_sweep_refuses_a_negative_grace_and_dc2_slurm_sweep_passes_that_on() -> None:
    r = subprocess.run([str(Path(sys.executable).with_name("dc2")), "slurm", "sweep", "--grace", "-1"],
                       capture_output=True, text=True, check=False, env={**os.environ})
    assert r.returncode == 2 and "dc2-sweep: error: --grace must be >= 0" in r.stderr


DC2 = str(Path(sys.executable).with_name("dc2"))
TARGET = "dc2_sweep_target"
KEYS = [("ended", -1), ("waiting", -1), ("moved_on", -1), ("mapped", 0), ("mapped", 1)]
TARGET_DAG = """\
from airflow.sdk import DAG, get_current_context, task
from dc2tasks.airflow.hooks import SlurmHook
from dc2tasks.airflow.job_name import JOB_ID_XCOM, JOB_XCOM, job_name_for
from dc2tasks.slurm import SlurmJob


def submit(try_number):
    # what SlurmJobOperator.execute does before it defers: submit a signed job, record it
    ti = get_current_context()["ti"]
    name = job_name_for(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
    hook = SlurmHook(None)
    owner = hook.owner()
    job_id = hook.client(owner).submit(SlurmJob(script="sleep 600\\n", name=name,
                                                comment=owner.comment(name, try_number)))
    ti.xcom_push(key=JOB_ID_XCOM, value=job_id)
    ti.xcom_push(key=JOB_XCOM, value={{"job_id": job_id, "name": name, "try": try_number}})


with DAG({dag_id!r}, schedule=None, catchup=False) as dag:
    @task
    def ended():
        submit(1)

    @task
    def waiting():
        submit(1)

    @task
    def moved_on():
        submit(2)

    @task
    def mapped(i):
        submit(1)

    ended()
    waiting()
    moved_on()
    mapped.expand(i=[0, 1])
"""


def test_a_job_name_maps_back_to_its_dag_and_task_instance() -> None:
    name = job_name_for("dc2_run1.2p_v4", "qa.object", "manual__2026-12-02T10:00:00.1+00:00", -1)
    assert dag_id_candidates(name) == ["dc2_run1", "dc2_run1.2p_v4", "dc2_run1.2p_v4.qa",
                                       "dc2_run1.2p_v4.qa.object"]  # the run id's part has a ':'
    assert task_keys("source") == [("source", -1)]
    assert task_keys("step_12") == [("step_12", -1), ("step", 12)]  # the hash tells which


def _set_states(run_id: str, states: dict[tuple[str, int], tuple[str, int]]) -> None:
    """Give task instances of TARGET's run a state and try, as the scheduler or a user's mark would."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        for ti in session.scalars(select(TaskInstance).where(TaskInstance.dag_id == TARGET,
                                                             TaskInstance.run_id == run_id)):
            ti.state, ti.try_number = states[(ti.task_id, ti.map_index)]


def _sweep_result(dr: Any) -> list[dict[str, Any]]:
    value = xcom_value(dr, "sweep_local")
    return json.loads(value) if isinstance(value, str) else value


def test_the_sweep_dag_cancels_what_no_task_waits_for_and_keeps_what_one_does(
    tmp_path: Path, airflow_db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """One test for the whole scenario, as it costs ~30 s on 2 cores: the first `dag.test()` of a
    pytest process starts the in-process Execution API (~20 s, once per process), and `dc2 slurm
    sweep` imports Airflow in its child (~10 s); the sweep's two `dag.test()`s take a second."""
    from dc2tasks.airflow.compat import stored_xcoms
    from dc2tasks.airflow.hooks import SlurmHook

    local = tmp_path / "local-slurm"
    monkeypatch.setenv("DC2_LOCAL_SLURM_DIR", str(local))  # this test's jobs only
    monkeypatch.setenv("DC2_DEMO_DIR", str(tmp_path / "demo"))
    folder = Path(airflow_db) / "dags"
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "runs").mkdir(parents=True)
    shutil.copy(REPO / "dags" / "dc2_sweep.py", folder)
    shutil.copy(REPO / "dags" / "runs" / "demo.yaml", folder / "runs")  # the local backend only
    (folder / f"{TARGET}.py").write_text(TARGET_DAG.format(dag_id=TARGET))

    target = load_dag(folder / f"{TARGET}.py").test()
    run = target.run_id
    jobs = {f"{t}[{i}]" if i >= 0 else t: str(stored_xcoms(TARGET, run, "slurm_job_id", t, i)[t])
            for t, i in KEYS}
    _set_states(run, dict(zip(KEYS, [("failed", 1), ("deferred", 1), ("deferred", 2), ("deferred", 1),
                                     ("success", 1)], strict=True)))
    hook = SlurmHook(None)
    owner, client = hook.owner(), hook.client()

    def submit(task_id: str, run_id: str, try_number: int) -> str:
        name = job_name_for(TARGET, task_id, run_id, -1)
        job = SlurmJob(script="sleep 600\n", name=name, comment=owner.comment(name, try_number))
        return client.submit(job)

    older = submit("moved_on", run, 1)  # try 1's job, left running when try 2 submitted its own
    gone = submit("waiting", "manual__deleted_run", 1)
    label = f"{TARGET}.{{}} of run {run}".format
    nobody = "; nobody waits for the job"
    cancel = {  # job id -> (its task, why), as the sweep logs and returns them
        jobs["ended"]: (label("ended"), "the task is failed (try 1)" + nobody),
        jobs["mapped[1]"]: (label("mapped[1]"), "the task is success (try 1)" + nobody),
        older: (label("moved_on"),
                f"it is try 1; the task is deferred on try 2, waiting for job {jobs['moved_on']}"),
        gone: (f"(no task instance; job name {job_name_for(TARGET, 'waiting', 'manual__deleted_run', -1)})",
               "no task instance has its job name (the DAG run is gone)"),
    }
    keep = {jobs["waiting"], jobs["moved_on"], jobs["mapped[0]"]}

    def actions(listed: list[dict[str, Any]], cancelled: bool) -> None:
        assert {a["job_id"]: (a["task"], a["reason"]) for a in listed} == cancel
        assert {a["cancelled"] for a in listed} == {cancelled}

    def logged(verb: str, text: str) -> None:
        for job_id, (task, why) in cancel.items():
            line = next(x for x in text.splitlines() if f"{verb} Slurm job {job_id} (name " in x)
            assert f"), task {task}, try 1: {why}" in line, line

    def states() -> dict[str, str]:
        return {i: j.state.base for i, j in client.status([*cancel, *keep]).items()}

    try:
        sweep_dag = load_dag(folder / "dc2_sweep.py")
        assert [t.task_id for t in sweep_dag.tasks] == ["sweep_local"]
        caplog.set_level("INFO", logger="dc2tasks.airflow.sweep")
        actions(_sweep_result(sweep_dag.test(run_conf={"dry_run": True, "grace": 0})), cancelled=False)
        logged("would cancel (dry run)", caplog.text)
        for job_id in keep:
            assert f"keeping Slurm job {job_id} (try " in caplog.text, job_id
        assert states() == dict.fromkeys([*cancel, *keep], "RUNNING")

        env = {**os.environ, "DC2_LOCAL_SLURM_DIR": str(local)}  # the database's facts: the same verdicts
        r = subprocess.run([DC2, "slurm", "sweep", "--dry-run", "--grace", "0", "--json"], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stderr[-3000:]
        actions(json.loads(r.stdout.splitlines()[-1]), cancelled=False)
        logged("would cancel (dry run)", r.stdout + r.stderr)
        assert states() == dict.fromkeys([*cancel, *keep], "RUNNING")

        caplog.clear()
        # dry_run given: a second dag.test() of the same DAG object keeps the first one's conf
        actions(_sweep_result(sweep_dag.test(run_conf={"dry_run": False, "grace": 0})), cancelled=True)
        logged("cancelling", caplog.text)
        client.wait(list(cancel), timeout=60)
        assert states() == {**dict.fromkeys(cancel, "CANCELLED"), **dict.fromkeys(keep, "RUNNING")}
    finally:
        client.cancel([*jobs.values(), older, gone])
