"""The trigger a deferred `SlurmJobOperator` waits on.

Cancel semantics (Airflow 3.3, airflow/jobs/triggerer_job_runner.py): when a user clears, marks
failed or marks succeeded a deferred task, the triggerer cancels the trigger's asyncio task with
the message `__airflow_user_action__` and then awaits `BaseTrigger.on_kill()`; triggerer shutdown,
restart and trigger timeouts cancel WITHOUT that message and never call `on_kill`. `cleanup()` runs
on every exit, so it must not cancel the job. Hence: `on_kill` cancels this try's job (by id, so
another try's job is never touched); `cleanup` only lets go of the shared poller.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dc2tasks.airflow.hooks import abackend
from dc2tasks.airflow.poller import get_poller
from dc2tasks.airflow.watch import WatchSpec, watch

CANCEL_TIMEOUT_S = 20.0
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
        payload = await watch(poller, self.spec(), self.log)
        await asyncio.sleep(max(0.0, min_wait_s() - (loop.time() - started)))
        yield TriggerEvent(payload)

    async def on_kill(self) -> None:
        """The user cleared / marked the deferred task: cancel this try's job, and only it."""
        poller = get_poller(await abackend(self.slurm_conn_id))
        self.log.info(
            "task killed by a user action: cancelling Slurm job %s (try %s)", self.job_id, self.try_number
        )
        await asyncio.wait_for(poller.client.cancel([self.job_id]), timeout=CANCEL_TIMEOUT_S)
