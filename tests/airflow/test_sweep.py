"""The orphan sweep (dc2tasks/airflow/sweep.py) against real Airflow services (scheduler, triggerer,
api-server: tests/airflow/services.py) and the local Slurm emulator, the demo's backend:
- a task deferred and waiting, its trigger live, keeps its job through 10 sweeps;
- a task marked failed while deferred, before any triggerer has started its trigger, keeps running
  its job (no `on_kill` exists to cancel it) until the next sweep cancels it; a dry run and a sweep
  inside the grace period only say what they would do;
- a task marked failed while its trigger runs has its job cancelled by the trigger's `on_kill`.
The sweeps run as a person runs them: `python -m dc2tasks.airflow.sweep` in the service's environment.
The same on the loopback Slurm over SSH is marked `cluster`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import SLURM_CONN_ID, ssh_connection_json
from services import AirflowServices, airflow_services

from dc2tasks.airflow.job_name import job_name_for
from dc2tasks.slurm import SlurmClient
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
ALIVE = ("PENDING", "RUNNING")  # a second job may wait for the node the first one holds
TEN_SWEEPS = """\
import logging, sys
from dc2tasks.airflow.sweep import sweep
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
for _ in range(10):
    print("cancelled:", [a.job_id for a in sweep(sys.argv[1] or None, grace_s=0)])
"""


@contextmanager
def sweep_services(dags: Path, dag_id: str, conn: str | None, env: dict[str, str]
                   ) -> Iterator[AirflowServices]:
    (dags / "sweep_dag.py").write_text(SWEEP_DAG.format(dag_id=dag_id, conn=conn))
    with airflow_services(dags, env) as s:
        s.wait_dag(dag_id)
        yield s


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

        s.stop("triggerer")  # no trigger will start, so no on_kill will run
        run_b, job_b = deferred_job(s, dag_id)
        s.set_state(dag_id, run_b, "wait", "failed")
        assert s.ti(dag_id, run_b, "wait")["state"] == "failed"
        assert state(job_b) in ALIVE
        task_b = f"{dag_id}.wait of run {run_b}"

        out = run_python(s, "-m", "dc2tasks.airflow.sweep", *conn_args, "--dry-run", "--grace", "0")
        assert (f"would cancel (dry run) Slurm job {job_b} (name {job_name_for(dag_id, 'wait', run_b, -1)}), "
                f"task {task_b}, try 1: the task is failed (try 1); nobody waits for the job") in out, out
        assert f"would cancel {job_b} " in out and f"Slurm job {job_a} " not in out
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
        s.wait(lambda: f"task killed by a user action: cancelling Slurm job {job_a} (try 1)"
               in s.task_log(dag_id, run_a, "wait", 1), 60, "no cancel in the task log")
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


def test_the_sweep_refuses_a_negative_grace() -> None:
    r = subprocess.run([sys.executable, "-m", "dc2tasks.airflow.sweep", "--grace", "-1"], capture_output=True,
                       text=True, check=False, env={**os.environ})
    assert r.returncode == 2 and "--grace must be >= 0" in r.stderr
