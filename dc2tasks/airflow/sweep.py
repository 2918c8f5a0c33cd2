"""The orphan sweep: cancel this deployment's Slurm jobs that no task instance waits for any more.

Why: a task can end while its job runs on, and no `on_kill` is there to cancel it: a deferred task
marked failed or success before a triggerer has started its trigger (Airflow runs no callback for
a state change made in the UI or the REST API), a DAG run deleted, a triggerer killed during an
`on_kill`. At NERSC such a job burns allocation for hours.

How: one `squeue` per cluster lists the account's jobs that have not ended whose names start with
the deployment's prefix (`DEFAULT_PREFIX`: every run DAG is `dc2_<run>`), keeping only those whose
comment carries the deployment's job token (`dc2tasks.slurm.owner`). Each job's deterministic name
(`job_name.job_name_for`: DAG, task, map index and run, hashed) is matched to the task instance it
was made for by a fact source (`FactSource`), which gives its state, try and recorded job id; the
rule of `orphans.cancel_reason` decides, and a job submitted less than `grace_s` ago is left for the
next sweep (between sbatch and the task's state reaching the database is a window no rule can see
into). Every cancellation (and, with `dry_run`, every one that would be made) is logged with the
job, its task and why.

Two fact sources, one loop (`sweep`) and one rule:
- `database_facts`, the metadata database (through `compat.task_instances`), for `dc2-sweep
  [--dry-run] [--grace S] [--conn ID] [--json]` (or `python -m dc2tasks.airflow.sweep`, or `dc2
  slurm sweep`, which runs this module), by a person or from cron where the scheduler runs, with the
  service's environment (AIRFLOW_HOME, and for the local backend DC2_LOCAL_SLURM_DIR);
- the Task SDK (`sweep_dag.TaskSdkFacts`) for the `dc2_sweep` DAG (dags/dc2_sweep.py), whose task
  may not open the database (Airflow 3 blocks it: `block_orm_access` in
  airflow/sdk/execution_time/supervisor.py, checked on 3.3.2).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass

from dc2tasks.airflow import compat
from dc2tasks.airflow.hooks import SlurmHook
from dc2tasks.airflow.job_name import JOB_ID_XCOM, job_name_for, name_prefix
from dc2tasks.airflow.orphans import TaskFacts, cancel_reason
from dc2tasks.slurm import JobInfo, Owner

DEFAULT_PREFIX = "dc2_"
DEFAULT_GRACE_S = 120.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepAction:
    """One job the sweep cancelled (or, in a dry run, would have)."""

    job_id: str
    name: str
    task: str
    try_number: int
    reason: str
    cancelled: bool


def task_facts(dag_ids: Iterable[str]) -> dict[str, TaskFacts]:
    """Every task instance of `dag_ids`, by its deterministic job name."""
    facts = {}
    for row in compat.task_instances(sorted(set(dag_ids)), JOB_ID_XCOM):
        xcom = row.pop("xcom")
        job_id = None if xcom is None else str(xcom).strip('"')
        t = TaskFacts(**row, job_id=job_id)
        facts[job_name_for(t.dag_id, t.task_id, t.run_id, t.map_index)] = t
    return facts


FactSource = Callable[[Collection[str]], Mapping[str, TaskFacts]]
"""Given the names of the listed jobs, the facts of the task instances those names were made for, by
job name; a name it leaves out has no task instance (its DAG run is gone)."""


def database_facts(names: Collection[str]) -> dict[str, TaskFacts]:
    """`FactSource` from the metadata database: every task instance of the DAGs the names may be of."""
    return task_facts(d for d in compat.dag_ids_known() if any(n.startswith(name_prefix(d)) for n in names))


def jobs_by_id(elements: list[JobInfo]) -> dict[str, list[JobInfo]]:
    """The listed elements grouped by (array) job id, each group's live elements only."""
    groups: dict[str, list[JobInfo]] = {}
    for e in elements:
        if not e.outcome.final:
            groups.setdefault(e.array_job_id, []).append(e)
    return groups


def sweep(conn_id: str | None, facts_of: FactSource = database_facts, *, grace_s: float = DEFAULT_GRACE_S,
          dry_run: bool = False, prefix: str = DEFAULT_PREFIX, now: float | None = None) -> list[SweepAction]:
    """One pass over the cluster of `conn_id` (None: the local backend); the jobs cancelled."""
    hook = SlurmHook(conn_id)
    try:
        owner = hook.owner()
        listed = jobs_by_id(hook.client(owner).list_by_prefix(prefix))
        facts = facts_of({els[0].name for els in listed.values()}) if listed else {}
        now = time.time() if now is None else now
        actions = [a for jid, els in sorted(listed.items(), key=lambda kv: int(kv[0]))
                   if (a := _judge(jid, els, owner, facts, now, grace_s, dry_run)) is not None]
        todo = [a.job_id for a in actions if a.cancelled]
        if todo:
            hook.client().cancel(todo)
        log.info("sweep of %s: %d job(s) of this deployment running or pending, %d %s", conn_id or "local",
                 len(listed), len(actions), "would be cancelled (dry run)" if dry_run else "cancelled")
        return actions
    finally:
        hook.close()


def _judge(job_id: str, elements: list[JobInfo], owner: Owner, facts: Mapping[str, TaskFacts], now: float,
           grace_s: float, dry_run: bool) -> SweepAction | None:
    job = elements[0]
    try_number = owner.verified_try(job.name, job.comment)
    assert try_number is not None  # list_by_prefix keeps signed jobs only
    task = facts.get(job.name)
    label = task.label() if task else f"(no task instance; job name {job.name})"
    reason = cancel_reason(job, try_number, task)
    if reason is None:
        log.info("keeping Slurm job %s (try %d): task %s (%s) waits for it", job_id, try_number, label,
                 task.state if task else "-")
        return None
    submitted = min((e.submitted for e in elements if e.submitted is not None), default=None)
    if submitted is not None and now - submitted < grace_s:
        log.info("not yet cancelling Slurm job %s (task %s, try %d): %s; submitted %.0f s ago, grace %.0f s",
                 job_id, label, try_number, reason, now - submitted, grace_s)
        return None
    verb = "would cancel (dry run)" if dry_run else "cancelling"
    log.warning("%s Slurm job %s (name %s), task %s, try %d: %s", verb, job_id, job.name, label,
                try_number, reason)
    return SweepAction(job_id, job.name, label, try_number, reason, cancelled=not dry_run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dc2-sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conn", default=None,
                   help="the cluster's Airflow connection id (default: the local backend)")
    p.add_argument("--grace", type=float, default=DEFAULT_GRACE_S,
                   help="leave jobs submitted less than this many seconds ago (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="log what would be cancelled; cancel nothing")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="job names to look at (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the cancellations as one JSON list, last")
    args = p.parse_args(argv)
    if args.grace < 0:
        p.error("--grace must be >= 0")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    actions = sweep(args.conn, grace_s=args.grace, dry_run=args.dry_run, prefix=args.prefix)
    if args.json:
        print(json.dumps([asdict(a) for a in actions]), flush=True)
        return 0
    for a in actions:
        print(f"{'cancelled' if a.cancelled else 'would cancel'} {a.job_id} {a.name} ({a.task}, "
              f"try {a.try_number}): {a.reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
