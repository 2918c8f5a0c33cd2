"""The Airflow environment `dc2 demo` and `dc2 serve` run in: AIRFLOW_HOME under the work directory
(SQLite), this repository's DAGs, and the local job backend's state inside that home."""

from __future__ import annotations

import os
import sys
from pathlib import Path


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
