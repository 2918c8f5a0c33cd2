"""The trigger a deferred `SlurmJobOperator` waits on.

Cancel semantics (Airflow 3.3, airflow/jobs/triggerer_job_runner.py): when a user clears, marks
failed or marks succeeded a deferred task, the triggerer cancels the trigger's asyncio task with
the message `__airflow_user_action__` and then awaits `BaseTrigger.on_kill()`; triggerer shutdown,
restart and trigger timeouts cancel WITHOUT that message and never call `on_kill`. `cleanup()` runs
on every exit, so it must not cancel the job. Hence: `on_kill` cancels this try's job (by id, so
another try's job is never touched); `cleanup` only lets go of the shared poller.

One exception in 3.3: a trigger the scheduler hands to another triggerer (this one missed its
heartbeats: paused, overloaded, a network split; or HA rebalancing) leaves this triggerer by the
same path as a user action (`update_triggers` puts every trigger no longer assigned here in
`cancelling_triggers`, cancelled with the user-action message). The task instance is then still
DEFERRED, waiting on the other triggerer's copy, so `on_kill` reads the task's state first and
leaves the job alone in that case, before any Slurm command (an Airflow bug:
`compat.handed_to_another_triggerer`); the same read then serves `orphans.kill_verdict`.

And a kill can be stale: `airflow dags test` leaves its trigger rows behind, and a triggerer started
later runs them, then kills them as a user action, for tasks that ended long ago; or Slurm may have
given the job id to another job since. So `on_kill` cancels only a job that is still alive, carries
this task instance's name and a comment signed for this try (`orphans.kill_verdict`); otherwise it
logs "stale: ..." and does nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dc2tasks.airflow.compat import (
    STATE_TIMEOUT_S,
    handed_to_another_triggerer,
    read_task_state,
    run_to_end,
    wait_out_defer_race,
    warm_up_state_queries,
)
from dc2tasks.airflow.hooks import SlurmHook, abackend
from dc2tasks.airflow.job_name import job_name_for
from dc2tasks.airflow.job_wait import JobWaitSpec, wait_for_job
from dc2tasks.airflow.orphans import kill_verdict, stale_message
from dc2tasks.airflow.poller import get_poller
from dc2tasks.slurm import AsyncSlurmClient

CANCEL_TIMEOUT_S = 20.0
# the longest a user's clear takes to cancel the job from the triggerer: one state read, one
# lookup by name and one scancel (`SlurmJobTrigger._kill`)
KILL_BOUND_S = STATE_TIMEOUT_S + 2 * CANCEL_TIMEOUT_S


class SlurmJobTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        job_id: str,
        element_ids: list[str],
        log_paths: dict[str, str],
        slurm_conn_id: str | None = None,
        poll_interval: float = 30.0,
        stream_log: bool = True,
        tail_bytes: int = 3000,
        max_failed_tails: int = 10,
        try_number: int = 0,
        element_log_bytes: int = JobWaitSpec.element_log_bytes,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.element_ids = list(element_ids)
        self.log_paths = dict(log_paths)
        self.slurm_conn_id = slurm_conn_id
        self.poll_interval = poll_interval
        self.stream_log = stream_log
        self.tail_bytes = tail_bytes
        self.max_failed_tails = max_failed_tails
        self.try_number = try_number
        self.element_log_bytes = element_log_bytes

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "dc2tasks.airflow.triggers.slurm.SlurmJobTrigger",
            {
                "job_id": self.job_id,
                "element_ids": self.element_ids,
                "log_paths": self.log_paths,
                "slurm_conn_id": self.slurm_conn_id,
                "poll_interval": self.poll_interval,
                "stream_log": self.stream_log,
                "tail_bytes": self.tail_bytes,
                "max_failed_tails": self.max_failed_tails,
                "try_number": self.try_number,
                "element_log_bytes": self.element_log_bytes,
            },
        )

    def spec(self) -> JobWaitSpec:
        return JobWaitSpec(
            job_id=self.job_id,
            element_ids=tuple(self.element_ids),
            log_paths=self.log_paths,
            stream_log=self.stream_log,
            poll_interval=self.poll_interval,
            tail_bytes=self.tail_bytes,
            max_failed_tails=self.max_failed_tails,
            element_log_bytes=self.element_log_bytes,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        poller = get_poller(await abackend(self.slurm_conn_id))
        self.log.info(
            "waiting for Slurm job %s (try %s) through the shared poller of %s",
            self.job_id,
            self.try_number,
            poller.name,
        )
        started = asyncio.get_running_loop().time()
        warm_up_state_queries(self.task_instance)
        payload = await wait_for_job(poller, self.spec(), self.log)
        await wait_out_defer_race(started)
        yield TriggerEvent(payload)

    async def on_kill(self) -> None:
        """The user cleared / marked the deferred task: cancel this try's job, and only it (to its
        end, although Airflow cancels on_kill again: `compat.run_to_end`).

        The first line is logged before anything is awaited, so the task log always says that a
        verdict follows; the verdict itself reaches the task log only while Airflow still holds
        the trigger's log open (`compat.run_to_end`), else the triggerer's log."""
        self.log.info(
            "asked to kill: Slurm job %s (try %s) is cancelled only if this try's task no longer waits "
            "for it; the verdict follows here, or in the triggerer's log when it comes after this "
            "trigger's log is closed", self.job_id, self.try_number,
        )
        await run_to_end(self._kill(), name=f"dc2-kill-{self.job_id}")

    async def _kill(self) -> None:
        ti = self.task_instance
        if ti is None:  # nothing to check the job against: the sweep will judge it
            self.log.warning("on_kill without a task instance: not cancelling Slurm job %s", self.job_id)
            return
        state = await read_task_state(ti, self.log)  # one read: a hand-over, and then the verdict
        if handed_to_another_triggerer(state):
            self.log.info(
                "trigger handed to another triggerer (the task is still deferred): Slurm job %s (try %s) "
                "is not cancelled", self.job_id, self.try_number,
            )
            return
        poller = get_poller(await abackend(self.slurm_conn_id))
        owner = await asyncio.to_thread(SlurmHook(self.slurm_conn_id).owner)
        client = AsyncSlurmClient(poller.client.transport, owner=owner)
        name = job_name_for(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
        elements = await asyncio.wait_for(client.elements_by_name(name), timeout=CANCEL_TIMEOUT_S)
        why = kill_verdict(elements, self.job_id, name, self.try_number, owner.verified_try, state)
        if why is not None:
            self.log.warning("%s", stale_message(ti, state, self.try_number, self.job_id, why))
            return
        self.log.info(
            "task killed by a user action: cancelling Slurm job %s (try %s)", self.job_id, self.try_number
        )
        await asyncio.wait_for(poller.client.cancel([self.job_id]), timeout=CANCEL_TIMEOUT_S)
