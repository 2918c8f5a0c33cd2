"""The `dc2_slurm_sweep` DAG: the orphan sweep (`sweep.py`) every few minutes, one task per cluster.

The clusters are the Slurm connections the run files name (`connections.producer` of each run with
`backend: slurm`; the local backend for `backend: local`), so a cluster serving several runs is
listed once per sweep, with one `squeue`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException

from dc2tasks.airflow.periodic import periodic_dag, run_configs
from dc2tasks.airflow.sweep import DEFAULT_GRACE_S
from dc2tasks.runs.config import RunConfig

SWEEP_DAG_ID = "dc2_slurm_sweep"
SCHEDULE_ENV = "DC2_SLURM_SWEEP_SCHEDULE"
DEFAULT_SCHEDULE = "*/5 * * * *"
GRACE_ENV = "DC2_SLURM_SWEEP_GRACE_S"
LOCAL = "local"
log = logging.getLogger(__name__)


def slurm_conn_id(config: RunConfig) -> str | None:
    """The connection a run's jobs go through (None: the local backend), as its steps use it."""
    return config.connections.producer if config.backend == "slurm" else None


def clusters(configs: list[RunConfig]) -> list[str | None]:
    """Each connection once, the local backend (None) first."""
    conns = {slurm_conn_id(c) for c in configs}
    return sorted(conns, key=lambda c: (c is not None, c or ""))


def sweep_argv(conn_id: str | None, grace_s: float) -> list[str]:
    """The sweep as a process of its own: Airflow 3's task processes may not reach the metadata
    database (`block_orm_access` in airflow/sdk/execution_time/supervisor.py, checked on 3.3.2), and
    the sweep must read every task instance; a child process reads Airflow's configuration afresh."""
    return [sys.executable, "-m", "dc2tasks.airflow.sweep", "--json", "--grace", str(grace_s),
            *(["--conn", conn_id] if conn_id else [])]


def _sweep_task(conn_id: str | None) -> Any:
    label = re.sub(r"[^A-Za-z0-9_]", "_", conn_id or LOCAL)

    @task(task_id=f"sweep__{label}", retries=1, retry_delay=timedelta(minutes=1),
          execution_timeout=timedelta(minutes=10))
    def run_sweep() -> list[dict[str, Any]]:
        grace = float(os.environ.get(GRACE_ENV) or DEFAULT_GRACE_S)
        r = subprocess.run(sweep_argv(conn_id, grace), capture_output=True, text=True, check=False)
        *logged, last = "\n".join((r.stderr, r.stdout)).strip().splitlines() or [""]
        for line in logged:  # the sweep's log (every cancellation and why), Airflow's too
            log.info("%s", line)
        if r.returncode != 0:
            raise AirflowFailException(f"the sweep of {conn_id or LOCAL} failed (exit {r.returncode}): "
                                       f"{last}")
        return json.loads(last)  # --json: the last line

    return run_sweep()


def build_sweep_dag(runs_dir: str | os.PathLike[str]) -> DAG:
    conns = clusters(run_configs(runs_dir, "slurm sweep"))
    doc = f"Clusters: {', '.join(c or LOCAL for c in conns) or 'none'}.\n\n" + (__doc__ or "")
    dag = periodic_dag(SWEEP_DAG_ID, "Cancel this deployment's Slurm jobs that no task instance waits for",
                       SCHEDULE_ENV, DEFAULT_SCHEDULE, ["dc2", "slurm"], doc)
    with dag:
        for conn in conns:
            _sweep_task(conn)
    return dag
