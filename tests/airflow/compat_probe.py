"""A deferring operator and its trigger that report what `dc2tasks.airflow.compat` sees from inside a
task and from inside a trigger of a real `dag.test()` run (tests/airflow/test_compat.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.triggers.base import BaseTrigger, TriggerEvent
from dagrun import TaskKey

from dc2tasks.airflow import compat


class ProbeTrigger(BaseTrigger):
    """Reports its task's state as compat reads it. `dag.test()` gives a trigger no `task_instance`
    (the triggerer does), so the task's key comes in the kwargs."""

    def __init__(self, dag_id: str, task_id: str, run_id: str) -> None:
        super().__init__()
        self.key = TaskKey(dag_id, task_id, run_id)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        k = self.key
        return (f"{__name__}.ProbeTrigger", {"dag_id": k.dag_id, "task_id": k.task_id, "run_id": k.run_id})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        state = await compat.read_task_state(self.key)
        yield TriggerEvent({
            "deferred": compat.ti_count(self.key, ["deferred"]),
            "queued": compat.ti_count(self.key, ["queued"]),
            "handed_over": compat.handed_to_another_triggerer(state),
            "state": state,
            "in_triggerer": compat.in_triggerer_process(),
        })


class ProbeOperator(BaseOperator):
    """Reports from the task itself, then defers once to `ProbeTrigger`; returns both reports."""

    def execute(self, context: Context) -> Any:
        ti = context["ti"]
        pushed = TaskKey(ti.dag_id, "push", ti.run_id)
        report = {
            "in_task": compat.in_task_process(),
            "in_triggerer": compat.in_triggerer_process(),
            "xcom": compat.task_xcom(pushed, "return_value"),
            "running": compat.ti_count(ti, ["running"]),
            "deferred": compat.ti_count(ti, ["deferred"]),
            "push_succeeded": compat.ti_count(pushed, ["success"]),
            "state": compat.task_state(ti),
            "push_state": compat.task_state(pushed),
        }
        ti.xcom_push(key="in_task", value=report)
        self.defer(trigger=ProbeTrigger(ti.dag_id, ti.task_id, ti.run_id), method_name="resume")

    def resume(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return event


class SlowKillTrigger(BaseTrigger):
    """Waits forever; its `on_kill` logs EARLY at once and LATE after `delay` s of work run by
    `compat.run_to_end`, as the Slurm trigger's does (tests/airflow/test_services_cluster.py)."""

    EARLY = "slow kill: asked"
    LATE = "slow kill: done after the delay"

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.SlowKillTrigger", {"delay": self.delay})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self.log.info("slow kill: waiting")
        await asyncio.Event().wait()
        yield TriggerEvent(None)  # never reached

    async def on_kill(self) -> None:
        self.log.info(self.EARLY)
        await compat.run_to_end(self._work(), name="slow-kill")

    async def _work(self) -> None:
        await asyncio.sleep(self.delay)
        self.log.info(self.LATE)


class SlowKillOperator(BaseOperator):
    def __init__(self, delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay = delay

    def execute(self, context: Context) -> None:
        self.defer(trigger=SlowKillTrigger(self.delay), method_name="execute")
