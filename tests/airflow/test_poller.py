"""The shared poller (dc2tasks/airflow/poller.py) on the local Slurm backend."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog

from dc2tasks.airflow.poller import PollResult, SharedPoller
from dc2tasks.slurm import AsyncSlurmClient, SlurmJob
from dc2tasks.slurm.commands import Command, CommandResult
from dc2tasks.slurm.transports import LocalTransport


class ContextRecording(LocalTransport):
    """The local backend, noting the log context (structlog's contextvars) each command runs in."""

    def __init__(self, state_dir: Path, cwd: Path) -> None:
        super().__init__(state_dir, cwd=cwd)
        self.contexts: list[tuple[str, dict[str, Any]]] = []

    async def arun(self, cmd: Command) -> CommandResult:
        self.contexts.append((cmd.argv[0], structlog.contextvars.get_contextvars()))
        return await super().arun(cmd)


def test_polls_run_in_no_triggers_log_context(tmp_path: Path) -> None:
    """The triggerer sends a line to a task's log by the `trigger_id` bound in the context it is
    logged from; the poll a trigger starts serves every trigger, so it carries none of them."""
    transport = ContextRecording(tmp_path / "state", tmp_path)
    poller = SharedPoller(AsyncSlurmClient(transport))

    async def trigger() -> PollResult:
        structlog.contextvars.bind_contextvars(trigger_id=7, task_id="first")
        job_id = await poller.client.submit(SlurmJob(script="sleep 1\n", name="x"))
        async with poller.subscribe([job_id], interval=0.05) as sub:
            got = await sub.next()
        assert isinstance(got, PollResult)
        return got

    got = asyncio.run(trigger())
    assert got.poll_number == 1
    programs = [(program, context.get("trigger_id")) for program, context in transport.contexts]
    assert programs[0] == ("sbatch", 7)  # the trigger's own command keeps its context
    assert programs[1:] and all(trigger_id is None for _, trigger_id in programs[1:]), programs
