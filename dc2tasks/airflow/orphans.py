"""When may this deployment cancel a Slurm job: the one rule the sweep, a trigger's `on_kill` and the
operator's `on_kill` share.

The sweep (`sweep.py`) cancels a job only when all hold:
- it is ours: the account's, its comment signed with the deployment's job token for its name and try
  (`dc2tasks.slurm.owner`), and its name is the task instance's deterministic one;
- it has not ended (cancelling an ended job does nothing, and its id may be reused later);
- no task instance is waiting for it: none has its name (the DAG run is gone), or the task has ended
  (success, failed, skipped... whether by itself or by a user's mark), or the task has moved on to a
  later try that recorded another job.
A task waiting in any way (running, deferred, queued, scheduled, up for retry or reschedule,
restarting, or cleared in a run still going) on this try, or on a later try that has recorded no job
yet (it may reattach to this one) or recorded this one, keeps its job.

An `on_kill` is told by Airflow that a user cleared or marked the task, so it asks only that the job
be this task instance's, signed for its try, and alive, and that the task is not DEFERRED (another
trigger waits for the job) (`kill_verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dc2tasks.slurm import JobInfo

WAITING_STATES = frozenset({"running", "deferred", "queued", "scheduled", "up_for_retry",
                            "up_for_reschedule", "restarting"})
LIVE_RUN_STATES = frozenset({"queued", "running"})


@dataclass(frozen=True)
class TaskFacts:
    """What Airflow says of the task instance a job was submitted for."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    state: str | None
    try_number: int | None
    """Its try; None when not known. The Task SDK gives no task's try number, so the sweep DAG gives
    the try that recorded `job_id` (XCom `slurm_job`): the current try, or an earlier one while the
    next has not started (a try's start clears the XComs), never a later one. Wherever the rule
    compares tries, a lower try only keeps more jobs."""
    job_id: str | None = None
    """The job its current try recorded (XCom `slurm_job_id`), if any."""
    run_state: str | None = "running"

    def label(self) -> str:
        return ti_label(self)

    @property
    def waiting(self) -> bool:
        return self.state in WAITING_STATES or (self.state is None and self.run_state in LIVE_RUN_STATES)


def cancel_reason(job: JobInfo, job_try: int, task: TaskFacts | None) -> str | None:
    """Why `job` (try `job_try`, already known to be ours) should be cancelled, or None to keep it."""
    if job.outcome.final:
        return None
    if task is None:
        return "no task instance has its job name (the DAG run is gone)"
    if task.waiting:
        newer = (task.try_number is not None and task.try_number > job_try
                 and task.job_id not in (None, job.array_job_id))
        if not newer:
            return None
        return (f"it is try {job_try}; the task is {task.state} on try {task.try_number}, "
                f"waiting for job {task.job_id}")
    tried = "" if task.try_number is None else f" (try {task.try_number})"
    return f"the task is {task.state or 'cleared'}{tried}; nobody waits for the job"


def ti_label(ti: Any) -> str:
    """A task instance as the logs name it: `dag.task[map index] of run R`."""
    idx = f"[{ti.map_index}]" if ti.map_index is not None and ti.map_index >= 0 else ""
    return f"{ti.dag_id}.{ti.task_id}{idx} of run {ti.run_id}"


def stale_message(ti: Any, state: str | None, try_number: int, job_id: str, why: str) -> str:
    return (f"stale: task {ti_label(ti)} is {state or 'without a state'}, try {try_number}; "
            f"not cancelling job {job_id} ({why})")


def ours_for_try(elements: list[JobInfo], job_id: str, name: str, try_number: int,
                 verified_try: Any) -> list[JobInfo]:
    """The elements of `job_id` that carry `name` and a comment signed for `try_number`
    (`verified_try`: `Owner.verified_try`)."""
    return [e for e in elements if e.array_job_id == job_id and e.name == name
            and verified_try(e.name, e.comment) == try_number]


def kill_verdict(elements: list[JobInfo], job_id: str, name: str, try_number: int, verified_try: Any,
                 state: str | None) -> str | None:
    """For an `on_kill` (a user's clear or mark, as Airflow says): None to cancel `job_id`, else why
    not. A user action changes the task's state before any `on_kill` runs, so the state says nothing
    of staleness, except DEFERRED (a trigger handed to another triggerer, or a later try deferred:
    someone else waits). What makes a kill stale is the job: a trigger row that outlived its task
    (`dags test`), or a job id Slurm has since given to another job, finds no live job of this
    task instance's name signed for this try."""
    mine = ours_for_try(elements, job_id, name, try_number, verified_try)
    if not mine:
        return f"no job {job_id} named {name} signed for try {try_number} is known to Slurm"
    alive = [e for e in mine if not e.outcome.final]
    if not alive:
        return f"job {job_id} has ended ({mine[0].state.raw})"
    if state == "deferred":
        return "the task is deferred: another trigger waits for its job"
    return None
