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
DEFERRED, waiting on the other triggerer's copy, so `on_kill` asks the task's state first and
leaves the job alone in that case.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
from airflow.triggers.base import BaseTrigger, TriggerEvent

from dc2tasks.airflow.hooks import abackend
from dc2tasks.airflow.poller import get_poller
from dc2tasks.airflow.watch import WatchSpec, watch

CANCEL_TIMEOUT_S = 20.0
STATE_TIMEOUT_S = 5.0  # how long on_kill waits to learn whether the task is still deferred
_BACKGROUND: set[asyncio.Task[None]] = set()  # on_kill's and the warm-up's tasks, held until they end
_warmed_up = False
# A job that ends within seconds of sbatch makes the trigger fire before the scheduler has processed
# the executor's report of the deferring process; Airflow 3.3 then fails the resumed try as a state
# mismatch (apache/airflow#71580, #67287) and it goes up_for_retry. Firing no sooner than this after
# the trigger starts avoids the race; `airflow dags test` (no executor) can set it to 0.
MIN_WAIT_ENV = "DC2_TRIGGER_MIN_WAIT_S"
DEFAULT_MIN_WAIT_S = 10.0


def min_wait_s() -> float:
    try:
        return max(0.0, float(os.environ.get(MIN_WAIT_ENV, DEFAULT_MIN_WAIT_S)))
    except ValueError:
        return DEFAULT_MIN_WAIT_S


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
            },
        )

    def spec(self) -> WatchSpec:
        return WatchSpec(
            job_id=self.job_id,
            element_ids=tuple(self.element_ids),
            log_paths=self.log_paths,
            stream_log=self.stream_log,
            poll_interval=self.poll_interval,
            tail_bytes=self.tail_bytes,
            max_failed_tails=self.max_failed_tails,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        poller = get_poller(await abackend(self.slurm_conn_id))
        self.log.info(
            "waiting for Slurm job %s (try %s) through the shared poller of %s",
            self.job_id,
            self.try_number,
            poller.name,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        _warm_up_state_queries(self)
        payload = await watch(poller, self.spec(), self.log)
        await asyncio.sleep(max(0.0, min_wait_s() - (loop.time() - started)))
        yield TriggerEvent(payload)

    async def on_kill(self) -> None:
        """The user cleared / marked the deferred task: cancel this try's job, and only it.

        Airflow re-sends the cancel to the trigger's task at every state sync (about once a second)
        until the trigger has ended, which would cut a slower on_kill short: the decision and the
        scancel run in a task of their own, which such a cancel does not reach."""
        await asyncio.shield(_in_background(self._kill(), name=f"dc2-kill-{self.job_id}"))

    async def _kill(self) -> None:
        if await self._moved_to_another_triggerer():
            self.log.info(
                "trigger handed to another triggerer (the task is still deferred): Slurm job %s (try %s) "
                "is not cancelled", self.job_id, self.try_number,
            )
            return
        poller = get_poller(await abackend(self.slurm_conn_id))
        self.log.info(
            "task killed by a user action: cancelling Slurm job %s (try %s)", self.job_id, self.try_number
        )
        await asyncio.wait_for(poller.client.cancel([self.job_id]), timeout=CANCEL_TIMEOUT_S)

    async def _moved_to_another_triggerer(self) -> bool:
        """True when this task instance is still DEFERRED (a user action has always changed it).

        When its state cannot be read in time, False: cancelling is what a user action means."""
        ti = self.task_instance
        if ti is None:
            return False
        try:
            deferred = await asyncio.wait_for(_deferred_count(ti), timeout=STATE_TIMEOUT_S)
        except Exception as e:  # the triggerer's supervisor link is all there is to ask
            self.log.warning("could not read the state of task %s (%s); treating the kill as a user action",
                             ti.task_id, e or type(e).__name__)
            return False
        return deferred > 0


async def _deferred_count(ti: Any) -> int:
    """How many task instances with the keys of `ti` are DEFERRED (0 or 1), through the triggerer's
    supervisor (the Task SDK's GetTICount)."""
    return int(await asyncio.to_thread(
        RuntimeTaskInstance.get_ti_count, dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id],
        map_index=ti.map_index, states=["deferred"],
    ))


def _in_background(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A task of its own on the running loop, referenced until it ends (asyncio keeps only weak ones)."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


def _in_triggerer() -> bool:
    from airflow.jobs.triggerer_job_runner import TriggerCommsDecoder
    from airflow.sdk.execution_time import task_runner

    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), TriggerCommsDecoder)


def _warm_up_state_queries(trigger: SlurmJobTrigger) -> None:
    """Ask one state query in the background when the first trigger of a triggerer process starts.

    Why: the triggerer's supervisor builds its in-process execution API on the first query (7 s on
    a busy 2-core machine, its heartbeat stalled meanwhile); paid in on_kill instead, it would
    delay the cancel a user's clear asks for, and the next try could reattach to the job about to
    be cancelled. Only in a real triggerer: `airflow dags test` has no such supervisor."""
    global _warmed_up
    ti = trigger.task_instance
    if _warmed_up or ti is None or not _in_triggerer():
        return
    _warmed_up = True

    async def query() -> None:
        with contextlib.suppress(Exception):
            await _deferred_count(ti)

    _in_background(query(), name="dc2-state-query-warm-up")
