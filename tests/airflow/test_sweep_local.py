"""The orphan sweep (dc2tasks/airflow/sweep.py) against real Airflow services (scheduler, triggerer,
api-server: tests/airflow/services.py) and the local Slurm emulator, the demo's backend:
- a task deferred and waiting, its trigger live, keeps its job through 10 sweeps;
- a task marked failed while deferred, before any triggerer has started its trigger, keeps running
  its job (no `on_kill` exists to cancel it) until the next sweep cancels it; a dry run and a sweep
  inside the grace period only say what they would do.
The sweeps run as a person runs them: `python -m dc2tasks.airflow.sweep` in the service's environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from services import AirflowServices, airflow_services

from dc2tasks.airflow.job_name import job_name_for
from dc2tasks.slurm import SlurmClient
from dc2tasks.slurm.transports import LocalTransport

DAG_ID = "dc2_sweep_test"  # the sweep's default prefix is dc2_
SWEEP_DAG = f"""\
from airflow.sdk import DAG
from dc2tasks.slurm import SlurmJob
from dc2tasks.airflow.operators.slurm import SlurmJobOperator

with DAG({DAG_ID!r}, schedule=None, catchup=False):
    SlurmJobOperator(task_id="wait", job=SlurmJob(script="sleep 600\\n", name="x"), poll_interval=1)
"""
TEN_SWEEPS = """\
import logging, sys
from dc2tasks.airflow.sweep import sweep
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
for _ in range(10):
    print("cancelled:", [a.job_id for a in sweep(None, grace_s=0)])
"""


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServices]:
    dags = tmp_path_factory.mktemp("sweep-dags")
    (dags / "sweep_dag.py").write_text(SWEEP_DAG)
    with airflow_services(Path(dags), {"DC2_LOCAL_SLURM_DIR": str(dags.parent / "local-slurm")}) as s:
        s.wait_dag(DAG_ID)
        yield s


def client(s: AirflowServices) -> SlurmClient:
    return SlurmClient(LocalTransport(s.env["DC2_LOCAL_SLURM_DIR"]))


def state(s: AirflowServices, job_id: str) -> str:
    return client(s).status([job_id])[job_id].state.base


def run_python(s: AirflowServices, *args: str) -> str:
    r = subprocess.run([sys.executable, *args], env=s.env, capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def deferred_job(s: AirflowServices) -> tuple[str, str]:
    run = s.trigger(DAG_ID)
    s.wait_ti(DAG_ID, run, "wait", "deferred", try_number=1, timeout=180)
    return run, str(s.xcom(DAG_ID, run, "wait", "slurm_job_id"))


def test_a_waiting_task_keeps_its_job_and_a_task_marked_failed_before_its_trigger_loses_it(
    services: AirflowServices,
) -> None:
    s = services
    run_a, job_a = deferred_job(s)
    try:
        s.wait(lambda: f"waiting for Slurm job {job_a}" in s.task_log(DAG_ID, run_a, "wait", 1), 90,
               "the trigger never started")
        out = run_python(s, "-c", TEN_SWEEPS)
        assert out.count("cancelled: []") == 10, out
        assert "1 job(s) of this deployment running or pending, 0 cancelled" in out
        assert s.ti(DAG_ID, run_a, "wait")["state"] == "deferred"
        assert state(s, job_a) == "RUNNING"

        s.stop("triggerer")  # no trigger will start, so no on_kill will run
        run_b, job_b = deferred_job(s)
        s.set_state(DAG_ID, run_b, "wait", "failed")
        assert s.ti(DAG_ID, run_b, "wait")["state"] == "failed"
        assert state(s, job_b) == "RUNNING"
        task_b = f"{DAG_ID}.wait of run {run_b}"

        out = run_python(s, "-m", "dc2tasks.airflow.sweep", "--dry-run", "--grace", "0")
        assert (f"would cancel (dry run) Slurm job {job_b} (name {job_name_for(DAG_ID, 'wait', run_b, -1)}), "
                f"task {task_b}, try 1: the task is failed (try 1); nobody waits for the job") in out, out
        assert f"would cancel {job_b} " in out and f"Slurm job {job_a} " not in out
        out = run_python(s, "-m", "dc2tasks.airflow.sweep", "--grace", "3600")
        assert f"not yet cancelling Slurm job {job_b} (task {task_b}, try 1)" in out, out
        assert state(s, job_b) == "RUNNING"

        out = run_python(s, "-m", "dc2tasks.airflow.sweep", "--grace", "0")
        assert f"cancelled {job_b} " in out and f"cancelling Slurm job {job_b}" in out, out
        client(s).wait([job_b], timeout=30)
        assert state(s, job_b) == "CANCELLED"
        assert state(s, job_a) == "RUNNING"
        assert s.ti(DAG_ID, run_a, "wait")["state"] == "deferred"
    finally:
        client(s).cancel([job_a])


def test_the_sweep_refuses_a_negative_grace() -> None:
    r = subprocess.run([sys.executable, "-m", "dc2tasks.airflow.sweep", "--grace", "-1"], capture_output=True,
                       text=True, check=False, env={**os.environ})
    assert r.returncode == 2 and "--grace must be >= 0" in r.stderr
