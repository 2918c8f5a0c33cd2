"""The orphan sweep as a DAG, `dc2_sweep`: every 10 minutes, one task per cluster this deployment's
run files submit jobs to, each running `sweep.sweep` (one `squeue`, the rule of
`orphans.cancel_reason`, the grace period) with the facts the Task SDK gives a task.

Which clusters: the producer connection of every run file with `backend: slurm` (the only
connection jobs are submitted through, dc2tasks/airflow/operators/step.py; the collaboration
connection runs install commands, never a job, and needs no job token), and the local backend when
a run file uses it. One task each (`sweep_local`, `sweep__<connection>`), fixed when the file is
parsed, so a cluster that cannot be reached fails its own task while the others are swept. Params:
`dry_run` (log what would be cancelled, cancel nothing) and `grace` (seconds; a job submitted less
than this ago is left for the next sweep). Each task returns the cancellations (`SweepAction`s) as
its XCom, and logs each with the job, its task and why.

Facts without the metadata database (a task process may not open it): `TaskSdkFacts` asks through
the calls of the task's own `ti` (airflow.sdk.types.RuntimeTaskInstanceProtocol, checked on 3.3.2):
- `get_task_states(dag_id)`: every task instance of a DAG, by run, with its state (a mapped one
  keyed `<task>_<map index>`). A job's name is mapped back to its task instance by recomputing
  `job_name_for` for every task instance of each DAG the name may be of (the readable part of the
  name up to each dot that could end a DAG id, shortest first, asked once per sweep each): the hash
  confirms the match, so a task id ending in `_<digits>` is never confused with a mapped one. A name
  no task instance of any such DAG has: its DAG run is gone (or its DAG).
- `xcom_pull(dag_id=, run_id=, task_ids=, map_indexes=, key="slurm_job")`: the job the task's
  latest try recorded and that try's number.
- `get_dagrun_state`: asked only for a task instance without a state (cleared), whose run's state
  decides whether it is waiting.
Not available through the Task SDK: a task instance's try number. The fact used instead is the try
that recorded the job (XCom `slurm_job`), never higher than the task's try, which the rule only
compares to keep more: a waiting task's newer try that recorded another job is seen as such only
once that try has recorded it (then the recorded try is the current one), and a task that recorded
nothing keeps every job of its name. A run's state that cannot be read counts as running (kept).
So the DAG cancels a subset of what `dc2-sweep` (the database's facts) would, never more.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Iterator
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

from dc2tasks.airflow.job_name import JOB_XCOM, job_name_for
from dc2tasks.airflow.orphans import TaskFacts
from dc2tasks.airflow.sweep import DEFAULT_GRACE_S, sweep
from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.loader import load_run_dir

log = logging.getLogger(__name__)

SWEEP_DAG_ID = "dc2_sweep"
SCHEDULE = timedelta(minutes=10)
DAG_ID_RE = re.compile(r"[A-Za-z0-9_.-]+")  # what Airflow allows in a DAG id
MAPPED_KEY_RE = re.compile(r"(.+)_(\d+)")  # get_task_states' key of a mapped task instance


def dag_id_candidates(name: str) -> list[str]:
    """Every DAG id job name `name` may be of, shortest first: its readable part up to each dot."""
    readable = name.rpartition("-")[0]
    cuts = [readable[:i] for i, ch in enumerate(readable) if ch == "."]
    return [c for c in cuts if DAG_ID_RE.fullmatch(c)]


def task_keys(key: str) -> list[tuple[str, int]]:
    """What a `get_task_states` key may stand for: an unmapped task, or a mapped one's instance."""
    mapped = MAPPED_KEY_RE.fullmatch(key)
    return [(key, -1), *([(mapped[1], int(mapped[2]))] if mapped else [])]


class TaskSdkFacts:
    """`sweep.FactSource` through the Task SDK calls of the sweeping task's `ti`."""

    def __init__(self, ti: Any) -> None:
        self.ti = ti
        self._by_dag: dict[str, dict[str, tuple[str, str, int, str | None]]] = {}

    def __call__(self, names: Collection[str]) -> dict[str, TaskFacts]:
        facts = {}
        for name in sorted(names):
            for dag_id in dag_id_candidates(name):
                found = self._instances(dag_id).get(name)
                if found is not None:
                    facts[name] = self._facts(dag_id, *found)
                    break
        return facts

    def _instances(self, dag_id: str) -> dict[str, tuple[str, str, int, str | None]]:
        """The task instances of `dag_id` by job name: (run, task, map index, state)."""
        if dag_id not in self._by_dag:
            states = self.ti.get_task_states(dag_id=dag_id)
            self._by_dag[dag_id] = dict(_named(dag_id, states))
        return self._by_dag[dag_id]

    def _facts(self, dag_id: str, run_id: str, task_id: str, map_index: int, state: str | None) -> TaskFacts:
        job = self.ti.xcom_pull(task_ids=task_id, dag_id=dag_id, run_id=run_id, map_indexes=map_index,
                                key=JOB_XCOM)
        job = job if isinstance(job, dict) else {}
        recorded_try = job.get("try")
        return TaskFacts(dag_id, task_id, run_id, map_index, state,
                         None if recorded_try is None else int(recorded_try),
                         None if job.get("job_id") is None else str(job["job_id"]),
                         self._run_state(dag_id, run_id) if state is None else None)

    def _run_state(self, dag_id: str, run_id: str) -> str:
        try:
            return str(self.ti.get_dagrun_state(dag_id=dag_id, run_id=run_id))
        except Exception as e:  # the supervisor link is all there is to ask; unknown counts as live
            log.warning("could not read the state of run %s of %s (%s); counting it as running", run_id,
                        dag_id, e or type(e).__name__)
            return "running"


def _named(dag_id: str, states: dict[str, Any]) -> Iterator[tuple[str, tuple[str, str, int, str | None]]]:
    for run_id, by_key in states.items():
        for key, state in by_key.items():
            for task_id, map_index in task_keys(key):
                yield (job_name_for(dag_id, task_id, run_id, map_index),
                       (run_id, task_id, map_index, None if state is None else str(state)))


def clusters(configs: Collection[RunConfig]) -> list[str | None]:
    """The clusters the runs submit jobs to: producer connections, and None for the local backend."""
    conns = {c.connections.producer for c in configs if c.backend == "slurm" and c.connections.producer}
    local: list[str | None] = [None] if any(c.backend == "local" for c in configs) else []
    return local + sorted(conns)


def task_id_for(conn_id: str | None) -> str:
    return "sweep_local" if conn_id is None else f"sweep__{conn_id}"


def _sweep_task(conn_id: str | None) -> Any:
    @task(task_id=task_id_for(conn_id))
    def sweep_cluster() -> list[dict[str, Any]]:
        context = get_current_context()
        params = context["params"]
        actions = sweep(conn_id, TaskSdkFacts(context["ti"]), grace_s=float(params["grace"]),
                        dry_run=bool(params["dry_run"]))
        return [asdict(a) for a in actions]

    return sweep_cluster()


def build_sweep_dag(runs_dir: str | os.PathLike[str]) -> DAG:
    configs, errors = load_run_dir(runs_dir)
    for path, error in errors.items():
        log.warning("orphan sweep: run file %s left out:\n%s", path, error)
    targets = clusters(list(configs.values()))
    swept = ", ".join("the local backend" if t is None else f"connection `{t}`" for t in targets)
    dag = DAG(
        dag_id=SWEEP_DAG_ID,
        description="Cancel this deployment's Slurm jobs that no task instance waits for any more",
        schedule=SCHEDULE,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["dc2", "slurm"],
        params={
            "dry_run": Param(False, type="boolean",
                             description="log what would be cancelled; cancel nothing"),
            "grace": Param(DEFAULT_GRACE_S, type="number", minimum=0,
                           description="seconds; a job submitted less recently is left for the next sweep"),
        },
        doc_md=f"Sweeps {swept or 'no cluster'} (run files in `{Path(runs_dir)}`).\n\n{__doc__}",
    )
    with dag:
        for conn_id in targets:
            _sweep_task(conn_id)
    return dag
