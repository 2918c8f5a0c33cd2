"""Polling N waiting Slurm jobs: our shared poller against one SSH connection per task, one run.

The shared poller (dc2tasks/airflow/poller.py) is what every deferred SlurmJobOperator of a
triggerer process subscribes to: one connection, one `sacct` per interval for the union of all
waiting job ids. The baseline is what the per-task integrations do: each waiting task opens its own
SSH connection and runs its own status command, every interval (here 8 at a time, under sshd's
default MaxStartups of 10).

Both run against a real Slurm with accounting over a real sshd: the loopback cluster of
tests/cluster/loopback_cluster.sh, started here (as root) and stopped at the end, or an existing
one named by the DC2_SLURM_SSH_* variables that `loopback_cluster.sh env` prints. The jobs are
submitted held (`sbatch --hold`), so they wait for as long as the benchmark needs and never run;
they are cancelled at the end.

Printed per N (1, 10, 100, 1000 by default): SSH commands and new connections per poll interval
and the seconds one poll of all N takes, for both approaches, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from dc2tasks.airflow.poller import SharedPoller
from dc2tasks.slurm import AsyncSlurmClient
from dc2tasks.slurm import commands as c
from dc2tasks.slurm.transports.ssh import SSHConfig, SSHTransport

CLUSTER_SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "cluster" / "loopback_cluster.sh"
BASELINE_CONCURRENCY = 8


@dataclass
class Figures:
    commands: float
    """SSH commands per poll interval."""
    connects: float
    """New SSH connections per poll interval."""
    seconds: float
    """Wall time of one poll of every waiting job (median)."""


@contextlib.contextmanager
def cluster() -> Iterator[SSHConfig]:
    """The cluster named by the environment, or a loopback cluster started (and stopped) here."""
    if os.environ.get("DC2_SLURM_SSH_HOST"):
        yield config_from(dict(os.environ))
        return
    if os.geteuid() != 0:
        sys.exit("slurm_polling: needs root to start the loopback cluster "
                 "(or set DC2_SLURM_SSH_* to an existing one: loopback_cluster.sh env)")
    print("starting the loopback Slurm + sshd (a minute or two)...", flush=True)
    started = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        sys.exit(f"slurm_polling: loopback cluster did not start:\n{started.stderr}")
    state_dir = started.stdout.strip().splitlines()[-1]
    try:
        env_lines = subprocess.run(["bash", str(CLUSTER_SCRIPT), "env", state_dir], check=True,
                                   capture_output=True, text=True).stdout
        yield config_from(dict(line.split("=", 1) for line in env_lines.splitlines() if "=" in line))
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop", state_dir], capture_output=True)


def config_from(env: dict[str, str]) -> SSHConfig:
    return SSHConfig(host=env["DC2_SLURM_SSH_HOST"], port=int(env["DC2_SLURM_SSH_PORT"]),
                     username=env["DC2_SLURM_SSH_USER"], key_file=env["DC2_SLURM_SSH_KEY"],
                     known_hosts=env["DC2_SLURM_SSH_KNOWN_HOSTS"], connect_timeout=30.0)


def remote(transport: SSHTransport, *argv: str, timeout: float = 600) -> str:
    result = transport.run(c.Command(tuple(argv), timeout=timeout))
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
    return result.stdout.decode()


def submit_held(transport: SSHTransport, n: int) -> list[str]:
    """`n` held jobs from one remote command (one sbatch per job, as n tasks would submit them)."""
    loop = ('for i in $(seq "$1"); do sbatch --parsable --hold --job-name=dc2-bench-poll '
            '--output=/dev/null --wrap=true || exit 1; done')
    out = remote(transport, "bash", "-c", loop, "submit", str(n))
    ids = [line.split(";")[0] for line in out.split()]
    if len(ids) != n:
        raise RuntimeError(f"submitted {len(ids)} of {n} jobs")
    return ids


def wait_accounted(transport: SSHTransport, ids: list[str], timeout: float = 300) -> None:
    """Until slurmdbd has recorded every job: before that a poll also asks scontrol (by design),
    which would be measured as a second command."""
    deadline = time.monotonic() + timeout
    while True:
        out = remote(transport, "sacct", "--noheader", "--parsable2", "--allocations",
                     "--format=JobID", f"--jobs={','.join(ids)}")
        known = set(out.split())
        if known >= set(ids):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"sacct knows {len(known)} of {len(ids)} jobs after {timeout} s")
        time.sleep(1)


class TimedClient:
    """The poller's client, timing each status call (the poller only calls `status`)."""

    def __init__(self, client: AsyncSlurmClient) -> None:
        self.client = client
        self.seconds: list[float] = []

    async def status(self, ids: list[str]) -> dict:
        start = time.perf_counter()
        found = await self.client.status(ids)
        self.seconds.append(time.perf_counter() - start)
        if set(found) < set(ids):
            raise RuntimeError(f"status saw {len(found)} of {len(ids)} jobs")
        return found


def shared_poller(cfg: SSHConfig, ids: list[str], polls: int, interval: float = 0.2) -> Figures:
    """N subscriptions (one per waiting task, as N triggers make) on one SharedPoller."""
    transport = SSHTransport(cfg)
    timed = TimedClient(AsyncSlurmClient(transport))

    async def scenario() -> tuple[int, int]:
        shared = SharedPoller(timed, name="bench")  # type: ignore[arg-type]
        async with contextlib.AsyncExitStack() as stack:
            subs = [await stack.enter_async_context(shared.subscribe([i], interval)) for i in ids]
            for _ in range(2):  # the first poll pays the SSH handshake
                await asyncio.gather(*(s.next() for s in subs))
            commands, connects, timed.seconds[:] = transport.counter.count, transport.connects, []
            for _ in range(polls):
                await asyncio.gather(*(s.next() for s in subs))
            return transport.counter.count - commands, transport.connects - connects

    try:
        commands, connects = asyncio.run(scenario())
    finally:
        transport.close()
    return Figures(commands / polls, connects / polls, median(timed.seconds))


def per_task_connections(cfg: SSHConfig, ids: list[str], polls: int) -> Figures:
    """Every waiting task opens its own connection and runs its own sacct, each interval."""

    def one_task(job_id: str) -> tuple[int, int]:
        with SSHTransport(cfg) as transport:
            result = transport.run(c.sacct([job_id], cfg.username))
            if result.returncode != 0 or job_id not in result.stdout.decode():
                raise RuntimeError(f"sacct of {job_id}: {result.stderr.decode()[-500:]}")
            return transport.counter.count, transport.connects

    seconds, commands, connects = [], 0, 0
    with ThreadPoolExecutor(BASELINE_CONCURRENCY) as pool:
        for _ in range(polls):
            start = time.perf_counter()
            for n_commands, n_connects in pool.map(one_task, ids):
                commands, connects = commands + n_commands, connects + n_connects
            seconds.append(time.perf_counter() - start)
    return Figures(commands / polls, connects / polls, median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 10, 100, 1000], metavar="N",
                        help="numbers of waiting jobs to measure (default: 1 10 100 1000)")
    parser.add_argument("--polls", type=int, default=5, help="poll intervals measured per N (default 5)")
    parser.add_argument("--baseline-polls", type=int, default=2,
                        help="poll intervals of the per-task baseline per N (default 2; it is slow)")
    args = parser.parse_args()
    asyncssh_log = logging.getLogger("asyncssh")  # one info line per channel: thousands here
    asyncssh_log.setLevel(logging.WARNING)
    asyncssh_log.propagate = False

    with cluster() as cfg:
        admin = SSHTransport(cfg)
        ids: list[str] = []
        try:
            ids = submit_held(admin, max(args.jobs))
            print(f"{len(ids)} held jobs submitted; waiting for slurmdbd to record them...", flush=True)
            wait_accounted(admin, ids)
            print(f"{'jobs':>6} | {'shared: cmds/poll':>17} {'conns/poll':>10} {'s/poll':>8} | "
                  f"{'per task: cmds/poll':>19} {'conns/poll':>10} {'s/poll':>8}")
            rows = []
            for n in args.jobs:
                ours = shared_poller(cfg, ids[:n], args.polls)
                base = per_task_connections(cfg, ids[:n], args.baseline_polls)
                rows.append((n, ours, base))
                print(f"{n:>6} | {ours.commands:>17.0f} {ours.connects:>10.0f} {ours.seconds:>8.3f} | "
                      f"{base.commands:>19.0f} {base.connects:>10.0f} {base.seconds:>8.3f}", flush=True)
            for n, ours, base in rows:
                print(f"ratio {n} jobs: {base.commands / ours.commands:.0f}x fewer SSH commands, "
                      f"{base.seconds / ours.seconds:.1f}x less time per poll")
        finally:
            for start in range(0, len(ids), 500):
                remote(admin, "scancel", *ids[start:start + 500])
            admin.close()


if __name__ == "__main__":
    main()
