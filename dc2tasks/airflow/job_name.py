"""The deterministic Slurm job name of a task instance, and the prefix every job of a DAG shares.

Why deterministic: a retry (or the sweep) finds a task instance's jobs by name, without anything
recorded in Airflow; the hash makes it unique although the readable part is sanitised and cut.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:+@=-]")
NAME_READABLE_MAX = 150


def job_name_for(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    """Deterministic and unique per task instance: a readable part (Slurm-safe characters only,
    truncated) and a hash of the exact identifiers, so two runs never share a name even when
    sanitising or truncating makes their readable parts equal."""
    idx = "" if map_index is None or map_index < 0 else f".{map_index}"
    raw = f"{dag_id}\0{task_id}\0{run_id}\0{idx}"
    digest = hashlib.sha1(raw.encode()).hexdigest()[:10]
    readable = _UNSAFE.sub("_", f"{dag_id}.{task_id}{idx}.{run_id}")[:NAME_READABLE_MAX]
    return f"{readable}-{digest}"


def name_prefix(dag_id: str) -> str:
    """What the names of all of a DAG's jobs start with (its sanitised id and a dot, cut as names are)."""
    return _UNSAFE.sub("_", f"{dag_id}.")[:NAME_READABLE_MAX]


JOB_ID_XCOM = "slurm_job_id"
"""The XCom key under which a try records the id of the job it waits for."""

JOB_XCOM = "slurm_job"
"""The XCom key under which a try records its job: id, name, the try that recorded it, connection, logs."""
