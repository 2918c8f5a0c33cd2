"""100 deferred Slurm tasks' triggers in one event loop (as in one triggerer process): one status
command per poll interval for all of them, over one SSH connection, against the real cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from dc2tasks.airflow import poller
from dc2tasks.airflow.hooks import abackend
from dc2tasks.airflow.triggers.slurm import SlurmJobTrigger
from dc2tasks.slurm import SlurmJob

pytestmark = pytest.mark.cluster
N_JOBS = 100
INTERVAL = 1.0


def test_100_waiting_jobs_cost_one_command_per_poll(slurm_conn: str, remote: Callable[..., str]) -> None:
    async def scenario() -> tuple[list[int], list[dict], int, float]:
        backend = await abackend(slurm_conn)
        transport = poller.shared_transport(backend)
        client = poller.get_poller(backend).client
        blocker = await client.submit(SlurmJob(script="sleep 600\n", name="dc2-poll-blocker"))
        ids = [await client.submit(SlurmJob(script="echo waited\n", name=f"dc2-poll-{i}",
                                            dependencies=(f"afterany:{blocker}",)))
               for i in range(N_JOBS)]
        triggers = [SlurmJobTrigger(job_id=j, element_ids=[j], log_paths={j: f"slurm-{j}.out"},
                                    slurm_conn_id=slurm_conn, poll_interval=INTERVAL) for j in ids]

        async def first_event(t: SlurmJobTrigger) -> dict:
            async for event in t.run():
                return event.payload
            raise AssertionError("no event")

        tasks = [asyncio.create_task(first_event(t)) for t in triggers]
        shared = poller.get_poller(backend)
        while shared.waiting_ids < N_JOBS:
            await asyncio.sleep(0.05)
        # until slurmdbd has recorded all 100, a poll also asks scontrol for the missing ones (two
        # commands, by design); under load that takes more than a few seconds
        await asyncio.to_thread(_wait_accounted, remote, ids)
        await asyncio.sleep(2 * INTERVAL)  # one whole poll after sacct has them all
        # count from the end of a poll: a poll whose command was already sent when counting began
        # would end inside the first interval and show 0 commands there (and 2 in none)
        polls = shared.polls
        while shared.polls == polls:
            await asyncio.sleep(0.01)
        per_poll: list[int] = []
        for _ in range(5):  # all 100 pending on the dependency: measure each interval
            polls, commands = shared.polls, transport.counter.count
            while shared.polls == polls:
                await asyncio.sleep(0.01)
            per_poll.append(transport.counter.count - commands)
        connects = transport.connects
        await client.cancel([blocker])  # afterany: now they all run
        t0 = time.monotonic()
        payloads = await asyncio.wait_for(asyncio.gather(*tasks), timeout=240)
        return per_poll, payloads, transport.connects - connects, time.monotonic() - t0

    per_poll, payloads, new_connects, seconds = asyncio.run(scenario())
    assert per_poll == [1, 1, 1, 1, 1]
    assert len(payloads) == N_JOBS
    assert all(p["status"] == "final" for p in payloads)
    assert {next(iter(p["elements"].values()))["state"] for p in payloads} == {"COMPLETED"}
    assert new_connects == 0
    print(f"100 jobs: {per_poll} commands per poll while waiting; all ended {seconds:.1f} s after release")


def _wait_accounted(remote: Callable[..., str], ids: list[str], timeout: float = 150) -> None:
    """Until sacct (slurmdbd) knows every one of `ids`, pending ones included."""
    deadline = time.monotonic() + timeout
    while True:
        out = remote("sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID",
                     f"--jobs={','.join(map(str, ids))}")
        known = {line.strip() for line in out.splitlines() if line.strip()}
        if known >= set(map(str, ids)):
            return
        assert time.monotonic() < deadline, f"sacct knows {len(known)} of {len(ids)} jobs after {timeout} s"
        time.sleep(0.5)
