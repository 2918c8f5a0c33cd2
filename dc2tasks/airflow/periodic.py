"""What the service's periodic DAGs (the rerun watcher, the orphan sweep) share: the run files they
read, and their scheduling (one run at a time, no catch-up, a schedule an environment variable
may override)."""

from __future__ import annotations

import logging
import os
from datetime import datetime

from airflow.sdk import DAG

from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.loader import load_run_dir

log = logging.getLogger(__name__)


def run_configs(runs_dir: str | os.PathLike[str], what: str) -> list[RunConfig]:
    """The valid run files of `runs_dir`, by name; each invalid one is logged and left out (its own
    DAG file shows the error)."""
    configs, errors = load_run_dir(runs_dir)
    for path, error in errors.items():
        log.warning("%s: run file %s left out:\n%s", what, path, error)
    return [c for _, c in sorted(configs.items())]


def periodic_dag(dag_id: str, description: str, schedule_env: str, default_schedule: str,
                 tags: list[str], doc: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        description=description,
        schedule=os.environ.get(schedule_env) or default_schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=tags,
        doc_md=doc,
    )
