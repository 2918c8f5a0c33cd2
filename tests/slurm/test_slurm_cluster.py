"""The client against a real Slurm 22.05 (slurmctld + slurmd + slurmdbd) through a real sshd.

One TIMEOUT job is submitted when the module starts and checked by the last test, so its ~80 s
(Slurm rounds limits up to whole minutes and checks them periodically) overlap the other tests.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dc2tasks.slurm import (
    AsyncSlurmClient,
    JobInfo,
    Outcome,
    SlurmClient,
    SlurmJob,
    command_body,
    element_ids,
)
from dc2tasks.slurm import commands as c
from dc2tasks.slurm.transports import TransportError, TransportTimeout
from dc2tasks.slurm.transports.ssh import SSHConfig, SSHTransport, certificate_valid_before

SSHConfigFactory = Callable[..., SSHConfig]

pytestmark = pytest.mark.cluster


def wait_final(client: SlurmClient, ids: list[str], timeout: float = 60) -> dict[str, JobInfo]:
    return client.wait(ids, timeout, interval=0.5)


def wait_state(client: SlurmClient, job_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.status([job_id]).get(job_id)
        if info and info.state.base == state:
            return
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never reached {state}")


def remote(transport: SSHTransport, *argv: str) -> str:
    r = transport.run(c.Command(tuple(argv), timeout=20))
    assert r.returncode == 0, r.err
    return r.out


@pytest.fixture(scope="module")
def workdir(loopback_cluster: dict[str, str]) -> str:
    return loopback_cluster["DC2_SLURM_WORKDIR"]


@pytest.fixture(scope="module", autouse=True)
def timeout_job(cluster_client: SlurmClient, workdir: str) -> tuple[str, SlurmJob]:
    job = SlurmJob(script="echo started; sleep 600\n", name="dc2-timeout", time_limit="1",
                   output=f"{workdir}/timeout.%j.out")
    return cluster_client.submit(job), job


def test_submit_runs_and_stdout_is_readable(cluster_client: SlurmClient, workdir: str) -> None:
    job = SlurmJob(script='for i in 1 2 3; do echo "line $i of $SLURM_JOB_NAME"; done\n', name="dc2-hello",
                   output=f"{workdir}/hello.%j.out", time_limit="5", memory="100M", account="dc2",
                   licenses=("scratch:1",), environment={"GREETING": "hi there"})
    jid = cluster_client.submit(job)
    info = wait_final(cluster_client, [jid])[jid]
    assert (info.state.base, info.exit_code, info.outcome) == ("COMPLETED", 0, Outcome.SUCCESS)
    assert info.nodes and info.name == "dc2-hello"
    path = f"{workdir}/hello.{jid}.out"
    text, offset = cluster_client.read_log(path)
    assert text == "".join(f"line {i} of dc2-hello\n" for i in (1, 2, 3))
    assert cluster_client.read_log(path, offset) == ("", offset)
    part, mid = cluster_client.read_log(path, 0, limit=20)  # a cut chunk ends on a line boundary
    assert part == "line 1 of dc2-hello\n" and mid == 20


def test_exit_3_is_failed_with_exit_code_and_log_tail(cluster_client: SlurmClient, workdir: str) -> None:
    job = SlurmJob(script="seq 1 200; echo 'giving up' >&2; exit 3\n", name="dc2-exit3",
                   output=f"{workdir}/exit3.%j.out")
    jid = cluster_client.submit(job)
    info = wait_final(cluster_client, [jid])[jid]
    assert (info.state.base, info.exit_code, info.signal, info.outcome) == ("FAILED", 3, 0, Outcome.FAIL)
    assert cluster_client.tail_log(f"{workdir}/exit3.{jid}.out", 18) == "199\n200\ngiving up\n"


def test_array_of_20_with_3_failures_then_only_those_resubmitted(
    cluster_client: SlurmClient, workdir: str
) -> None:
    script = 'echo "element $SLURM_ARRAY_TASK_ID"\ncase $SLURM_ARRAY_TASK_ID in 3|8|19) exit 5;; esac\n'
    job = SlurmJob(script=script, name="dc2-array", array="0-19%8", output=f"{workdir}/arr.%A_%a.out",
                   time_limit="5")
    jid = cluster_client.submit(job)
    got = wait_final(cluster_client, element_ids(jid, job), timeout=120)
    assert len(got) == 20
    failed = sorted(j.array_task_id for j in got.values() if j.outcome is Outcome.FAIL)
    assert failed == [3, 8, 19]
    assert {got[f"{jid}_{i}"].exit_code for i in failed} == {5}
    assert sum(j.state.base == "COMPLETED" for j in got.values()) == 17
    assert cluster_client.read_log(f"{workdir}/arr.{jid}_8.out")[0] == "element 8\n"

    retry = job.with_array_indices(failed)
    assert "#SBATCH --array=3,8,19%8" in retry.render()
    rid = cluster_client.submit(retry)
    again = wait_final(cluster_client, element_ids(rid, retry), timeout=60)
    assert sorted(again) == sorted(f"{rid}_{i}" for i in (3, 8, 19))
    deadline = time.monotonic() + 30
    while len(by_base := cluster_client.status([rid])) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)  # asked by the array id, sacct may lag a moment behind the elements
    assert {k: v.state.base for k, v in by_base.items()} == \
        {f"{rid}_{i}": "FAILED" for i in (3, 8, 19)}  # and no other element exists


def test_cancel_shows_cancelled_in_sacct(
    cluster_client: SlurmClient, ssh_transport: SSHTransport
) -> None:
    jid = cluster_client.submit(SlurmJob(script="sleep 600\n", name="dc2-cancel"))
    wait_state(cluster_client, jid, "RUNNING")
    cluster_client.cancel([jid])
    uid = int(remote(ssh_transport, "id", "-u"))
    deadline = time.monotonic() + 30
    while True:  # straight from sacct, not through the client's fallback
        sacct = c.sacct([jid], ssh_transport.user).argv
        rows = {j.job_id: j for j in c.parse_sacct(remote(ssh_transport, *sacct))}
        if jid in rows and rows[jid].state.base == "CANCELLED":
            break
        assert time.monotonic() < deadline, f"sacct never showed CANCELLED: {rows}"
        time.sleep(0.5)
    assert rows[jid].state.cancelled_by == uid
    assert rows[jid].outcome is Outcome.FAIL_NO_RETRY


def test_find_by_name(cluster_client: SlurmClient) -> None:
    name = f"dc2-find-{os.getpid()}"
    jid = cluster_client.submit(SlurmJob(script="sleep 3\n", name=name, comment="dc2:try=4"))
    found = cluster_client.find_by_name(name)  # right after sbatch: slurmctld knows it
    assert [(f.job_id, f.comment) for f in found] == [(jid, "dc2:try=4")]
    assert found[0].outcome is Outcome.WAIT
    wait_final(cluster_client, [jid])
    found = cluster_client.find_by_name(name)  # finished: from sacct
    assert [(f.job_id, f.comment, f.state.base) for f in found] == [(jid, "dc2:try=4", "COMPLETED")]
    assert cluster_client.find_by_name("dc2-no-such-job") == []


def test_lookups_by_name_see_only_our_accounts_jobs(
    cluster_client: SlurmClient, ssh_transport: SSHTransport, sbatch_as_other: Callable[..., str],
    loopback_cluster: dict[str, str],
) -> None:
    """Another user's job under our name: squeue shows it to anyone, the client never returns it."""
    name = f"dc2-shared-name-{os.getpid()}"
    theirs = sbatch_as_other(name, "dc2:try=1", "sleep 120")
    ours = cluster_client.submit(SlurmJob(script="sleep 3\n", name=name, comment="dc2:try=1"))
    everyone = remote(ssh_transport, "squeue", "--noheader", f"--name={name}", "--format=%i|%u")
    assert sorted(everyone.split()) == sorted([f"{theirs}|{loopback_cluster['DC2_SLURM_OTHER_USER']}",
                                               f"{ours}|{loopback_cluster['DC2_SLURM_SSH_USER']}"])
    found = cluster_client.find_by_name(name)
    assert [(f.job_id, f.user) for f in found] == [(ours, loopback_cluster["DC2_SLURM_SSH_USER"])]
    wait_final(cluster_client, [ours])
    assert cluster_client.status([theirs]) == {}  # not ours, even asked by id
    assert [f.job_id for f in cluster_client.find_by_name(name)] == [ours]  # sacct as well


def test_a_log_that_is_a_symbolic_link_is_not_read_through(
    cluster_client: SlurmClient, workdir: str
) -> None:
    """dd iflag=nofollow on the login node: the link's target never reaches the reader."""
    secret = Path(workdir, f"notes.{os.getpid()}.txt")
    secret.write_text("the producer's private notes\n")
    secret.chmod(0o644)
    link = Path(workdir, f"slurm-linked.{os.getpid()}.out")
    link.symlink_to(secret)
    assert cluster_client.read_log(str(secret)) == ("the producer's private notes\n", 29)
    assert cluster_client.read_log(str(link)) == ("", 0)
    assert cluster_client.tail_log(str(link), 100) == f"(job log {link} is a symbolic link: not read)\n"


def test_out_of_memory_and_the_scaled_retry(
    cluster_client: SlurmClient, loopback_cluster: dict[str, str], workdir: str
) -> None:
    # bash holds ~200 MB in a variable; --mem=64M cannot hold it.
    hog = 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo "held ${#x} bytes"\n'
    job = SlurmJob(script=hog, name="dc2-oom", memory="64M", output=f"{workdir}/oom.%j.out")
    jid = cluster_client.submit(job)
    info = wait_final(cluster_client, [jid])[jid]
    if loopback_cluster["DC2_SLURM_MEMORY_ENFORCEMENT"] == "cgroup":
        assert info.state.base == "OUT_OF_MEMORY" and info.outcome is Outcome.RETRY_MORE_MEMORY
    else:  # jobacct_gather's OverMemoryKill: Slurm 22.05 reports FAILED, killed by signal 9
        assert (info.state.base, info.signal) == ("FAILED", 9)
    retry = job.scaled(mem_factor=16)
    assert retry.memory == 1024
    rid = cluster_client.submit(retry)
    assert wait_final(cluster_client, [rid])[rid].state.base == "COMPLETED"
    assert cluster_client.read_log(f"{workdir}/oom.{rid}.out")[0] == "held 200000000 bytes\n"


def test_hostile_values_never_reach_a_shell_unquoted(
    cluster_client: SlurmClient, ssh_transport: SSHTransport, workdir: str
) -> None:
    hostile = ["; touch pwned1", "$(touch pwned2)", "`touch pwned3`", "a'b\"c", "x\ny", "*"]
    job = SlurmJob(script=command_body(["printf", "[%s]", *hostile]), name="dc2-hostile",
                   environment={"EVIL": "$(touch pwned4); touch pwned5"}, output=f"{workdir}/hostile.%j.out",
                   workdir=workdir)
    jid = cluster_client.submit(job)
    assert wait_final(cluster_client, [jid])[jid].state.base == "COMPLETED"
    assert cluster_client.read_log(f"{workdir}/hostile.{jid}.out")[0] == "".join(f"[{h}]" for h in hostile)
    assert cluster_client.read_log(f"{workdir}/x; touch pwned6", 0) == ("", 0)
    listing = remote(ssh_transport, "ls", "-a", workdir)
    assert "pwned" not in listing


def test_status_of_many_jobs_is_one_command(cluster_client: SlurmClient, ssh_transport: SSHTransport) -> None:
    ids = [cluster_client.submit(SlurmJob(script="true\n", name=f"dc2-many-{i}")) for i in range(10)]
    wait_final(cluster_client, ids, timeout=90)
    deadline = time.monotonic() + 30
    while True:  # until slurmdbd has caught up (real records, not "allocation" placeholders)
        rows = c.parse_sacct(remote(ssh_transport, *c.sacct(ids, ssh_transport.user).argv))
        if {j.job_id for j in rows if j.name.startswith("dc2-many-")} == set(ids):
            break
        assert time.monotonic() < deadline, "sacct never caught up"
        time.sleep(0.5)
    before = ssh_transport.counter.count
    got = cluster_client.status(ids)
    assert ssh_transport.counter.count - before == 1
    assert sorted(got) == sorted(ids) and all(j.state.base == "COMPLETED" for j in got.values())


def test_async_callers_share_the_one_connection(
    cluster_client: SlurmClient, ssh_transport: SSHTransport
) -> None:
    """A triggerer's event loop drives the same transport: 25 concurrent polls, no new connection."""
    jid = cluster_client.submit(SlurmJob(script="true\n", name="dc2-async"))
    wait_final(cluster_client, [jid])
    connects = ssh_transport.connects

    async def poll_many() -> list[dict[str, JobInfo]]:
        client = AsyncSlurmClient(ssh_transport)
        return await asyncio.gather(*(client.status([jid]) for _ in range(25)))

    results = asyncio.run(poll_many())
    assert [r[jid].state.base for r in results] == ["COMPLETED"] * 25
    assert ssh_transport.connects == connects


def test_reconnects_after_the_connection_is_killed(ssh_transport: SSHTransport) -> None:
    remote(ssh_transport, "true")
    find_sshd = ('p=$$; while [ "$(cat /proc/$p/comm)" != sshd ]; do p=$(cut -d" " -f4 /proc/$p/stat); done;'
                 " echo $p")
    session_pid = int(remote(ssh_transport, "sh", "-c", find_sshd))  # this connection's sshd process
    connects = ssh_transport.connects
    os.kill(session_pid, 9)
    assert remote(ssh_transport, "echo", "still here") == "still here\n"
    assert ssh_transport.connects == connects + 1


CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller")


def test_the_connection_carries_no_callers_context(ssh_config: SSHConfigFactory) -> None:
    """One connection serves every caller. What asyncssh logs from the connection's own callbacks (a
    command's exit status, its channel closing) must not carry the context of the caller that
    happened to connect: Airflow's triggerer sends a line to a task's log by the context's ids."""
    seen: list[tuple[str, str | None]] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), CALLER.get(None)))

    def as_caller(name: str | None, transport: SSHTransport) -> None:
        if name is not None:
            CALLER.set(name)
        transport.run(c.Command(("true",), timeout=30))

    logger, handler = logging.getLogger("asyncssh"), Seen()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        with SSHTransport(ssh_config()) as transport:
            contextvars.Context().run(as_caller, "first", transport)  # it connects
            seen.clear()
            contextvars.Context().run(as_caller, None, transport)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    exits = [caller for message, caller in seen if "exit status" in message]
    assert exits == [None], seen


def test_every_command_has_a_timeout(ssh_transport: SSHTransport) -> None:
    t0 = time.monotonic()
    with pytest.raises(TransportTimeout):
        ssh_transport.run(c.Command(("sleep", "30"), timeout=1))
    assert time.monotonic() - t0 < 5
    assert remote(ssh_transport, "echo", "ok") == "ok\n"


def test_host_key_is_pinned(loopback_cluster: dict[str, str], ssh_config: SSHConfigFactory) -> None:
    line = Path(loopback_cluster["DC2_SLURM_SSH_KNOWN_HOSTS"]).read_text().split()
    pinned = f"{line[1]} {line[2]}"
    with SSHTransport(ssh_config(known_hosts=None, host_key=pinned)) as t:
        assert remote(t, "echo", "pinned") == "pinned\n"
    other = Path(loopback_cluster["DC2_SLURM_SSH_KEY"] + ".pub").read_text().split()  # not the host's
    with SSHTransport(ssh_config(known_hosts=None, host_key=f"{other[0]} {other[1]}")) as t:
        with pytest.raises(TransportError, match="cannot connect"):
            t.run(c.Command(("true",)))


def test_login_uses_the_certificate(
    loopback_cluster: dict[str, str], ssh_config: SSHConfigFactory, tmp_path: Path
) -> None:
    key = Path(loopback_cluster["DC2_SLURM_SSH_KEY"])
    expiry = certificate_valid_before(str(key))
    assert expiry is not None and 3600 < expiry.timestamp() - time.time() < 13 * 3600
    bare = tmp_path / "id_nocert"
    shutil.copy(key, bare)  # the same key without its -cert.pub: the sshd trusts only the CA
    bare.chmod(0o600)
    with SSHTransport(ssh_config(key_file=str(bare))) as t:
        with pytest.raises(TransportError, match="cannot connect"):
            t.run(c.Command(("true",)))


def test_timeout_is_retryable_with_more_time(
    cluster_client: SlurmClient, timeout_job: tuple[str, SlurmJob], workdir: str
) -> None:
    jid, job = timeout_job
    info = wait_final(cluster_client, [jid], timeout=180)[jid]
    assert info.state.base == "TIMEOUT" and info.outcome is Outcome.RETRY_MORE_TIME
    assert info.elapsed_s is not None and info.elapsed_s >= 60
    assert cluster_client.read_log(f"{workdir}/timeout.{jid}.out")[0].startswith("started\n")
    assert "#SBATCH --time=00:02:00" in job.scaled(time_factor=2).render()
