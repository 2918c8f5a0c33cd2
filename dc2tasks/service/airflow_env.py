"""The Airflow environment `dc2 demo` and `dc2 serve` run in: AIRFLOW_HOME under the work directory
(SQLite), this repository's DAGs, and the local job backend's state inside that home."""

from __future__ import annotations

import os
import sys
from pathlib import Path

RECOVERY_SETTINGS = {
    # A scheduler killed while tasks are queued or running leaves them to the next scheduler, which
    # resets them only at its orphaned-tasks check once the dead one's heartbeat is older than
    # scheduler_health_check_threshold (30 s): every 300 s by default, a 5-minute stall of every
    # run the chaos test saw; every 60 s here.
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "60",
    # A task whose process died (its worker killed with the scheduler) is failed, for its retry,
    # after this long without a heartbeat (default 300 s). Our tasks run in a worker only for
    # seconds (submit, defer, check), so a minute is not a false alarm.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
}
"""How soon a running service recovers from a dead scheduler or task process: every deployment's
settings (`dc2 serve`, docker-compose.yaml, the chaos test's services)."""


def dags_folder() -> Path:
    explicit = os.environ.get("DC2_DAGS_FOLDER")
    folder = Path(explicit) if explicit else Path(__file__).resolve().parents[2] / "dags"
    if not (folder / "dc2_demo.py").is_file():
        raise SystemExit(
            f"dc2 demo: {folder} has no dc2_demo.py; run from the repository or set DC2_DAGS_FOLDER"
        )
    return folder


def airflow_env(workdir: Path) -> dict[str, str]:
    home = workdir / "airflow"
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder()),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        DC2_DEMO_DIR=str(workdir),
        DC2_LOCAL_SLURM_DIR=str(home / "local-slurm"),
    )
    return env


def airflow_command() -> str:
    """This environment's `airflow`, whatever PATH says: the one installed beside this Python."""
    return str(Path(sys.executable).with_name("airflow"))
