"""Run one-task DAGs with the real `dag.test()` and read back what happened (states, XComs).

Airflow 3.3's `dag.test()` creates its run from the DAG as serialized from the dags folder, so each
test writes a small DAG file there, imports it, and tests that very object.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

DC2_IN_DAG = """\
import json
import subprocess
import sys
from pathlib import Path

DC2 = str(Path(sys.executable).with_name("dc2"))


def dc2(*args):
    return subprocess.run([DC2, *args], check=True, capture_output=True, text=True).stdout
"""
"""The head of a DAG file whose tasks run the installed `dc2` (no braces: templates append to it)."""


DAG_TEMPLATE = """\
import sys
from datetime import timedelta
sys.path.insert(0, {here!r})
from airflow.sdk import DAG
from dc2tasks.slurm import SlurmJob
from {module} import {operator}

with DAG({dag_id!r}, schedule=None, catchup=False) as dag:
    {operator}(task_id="slurm", retries={retries}, retry_delay=timedelta(seconds=0),
               job=SlurmJob(**{job!r}), **{op!r})
"""


@dataclass
class TaskResult:
    state: str
    try_number: int
    job_id: Any
    run_id: str


def write_dag(dag_id: str, job: dict[str, Any], retries: int = 0, operator: str = "SlurmJobOperator",
              module: str = "dc2tasks.airflow.operators.slurm", **op: Any) -> Path:
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dags.mkdir(parents=True, exist_ok=True)
    path = dags / f"{dag_id}.py"
    path.write_text(DAG_TEMPLATE.format(here=str(HERE), module=module, operator=operator, dag_id=dag_id,
                                        retries=retries, job=job, op=op))
    return path


def load_dag(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"dc2_test_dag_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def task_instances(dr: Any) -> dict[str, Any]:
    """A finished run's task instances by task id."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: ti for ti in dr.get_task_instances(session=session)}


@dataclass(frozen=True)
class TaskKey:
    """An unmapped task instance's key, as an extra link gets it (no task instance object)."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1


def xcom_value(dr: Any, task_id: str, key: str = "return_value") -> Any:
    """What a task of a finished run pushed under `key`, as stored (None: nothing)."""
    from dc2tasks.airflow.compat import stored_xcoms

    return stored_xcoms(dr.dag_id, dr.run_id, key, task_id).get(task_id)


def run_dag(dag_id: str, job: dict[str, Any], retries: int = 0, **op: Any) -> TaskResult:
    dag = load_dag(write_dag(dag_id, job, retries, **op))
    dr = dag.test()
    (ti,) = task_instances(dr).values()
    return TaskResult(str(ti.state), ti.try_number, xcom_value(dr, "slurm", "slurm_job_id"), dr.run_id)


def retries_of(tis: dict[str, Any], console: str) -> str:
    """Each task of a `dag.test()` run that needed more than one try, then the run's error records
    from `console` (what it printed): why it retried, in the failure. The tasks' own records go to
    another stream than dag.test()'s task markers, so they cannot be told apart by task here."""
    from dc2tasks.airflow.dags_test import TaskLog

    again = {task_id: ti.try_number for task_id, ti in tis.items() if ti.try_number > 1}
    if not again:
        return ""
    parsed = TaskLog("", -1, 0)
    for line in console.splitlines():
        parsed.add(line)
    errors = [r["event"] for r in parsed.records if r.get("level") == "error"]
    return "\n".join([*(f"{task_id}: try {n}" for task_id, n in sorted(again.items())),
                      *(f"  error: ...{event[-2000:]}" for event in errors)])
