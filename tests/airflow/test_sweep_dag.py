"""The `dc2_slurm_sweep` DAG (dags/dc2_slurm_sweep.py) run with the real `dag.test()` on the local
backend: a job of this deployment whose DAG run does not exist is cancelled by the `sweep__local`
task, which returns what it cancelled and why; an unsigned job of the same account is left alone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from dagrun import load_dag, xcom_value

from dc2tasks.airflow.hooks import local_job_token
from dc2tasks.airflow.job_name import job_name_for
from dc2tasks.slurm import Owner, SlurmClient, SlurmJob
from dc2tasks.slurm.owner import job_comment
from dc2tasks.slurm.transports import LocalTransport

DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_the_sweep_dag_cancels_a_job_whose_run_is_gone(airflow_db: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DC2_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("DC2_SLURM_SWEEP_GRACE_S", "0")
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "runs").mkdir(parents=True)
    shutil.copy(DAGS / "dc2_slurm_sweep.py", folder)
    shutil.copy(DAGS / "runs" / "demo.yaml", folder / "runs")
    transport = LocalTransport(os.environ["DC2_LOCAL_SLURM_DIR"], cwd=tmp_path)
    token = local_job_token()
    slurm = SlurmClient(transport, owner=Owner(transport.user, token))
    name = job_name_for("dc2_demo", "source", "gone", -1)
    orphan = slurm.submit(SlurmJob(script="sleep 300\n", name=name, comment=job_comment(name, 1, token),
                                   output=str(tmp_path / "%j.out")))
    unsigned = slurm.submit(SlurmJob(script="sleep 300\n", name="dc2_by_hand", comment="dc2:try=1",
                                     output=str(tmp_path / "%j.out")))
    try:
        dr = load_dag(folder / "dc2_slurm_sweep.py").test()
        assert str(dr.state) == "success"
        assert xcom_value(dr, "sweep__local") == [{
            "job_id": orphan, "name": name, "task": f"(no task instance; job name {name})", "try_number": 1,
            "reason": "no task instance has its job name (the DAG run is gone)", "cancelled": True}]
        slurm.wait([orphan], timeout=30)
        assert slurm.status([orphan])[orphan].state.base == "CANCELLED"
        assert slurm.status([unsigned])[unsigned].state.base in ("PENDING", "RUNNING")
    finally:
        slurm.cancel([orphan, unsigned])
