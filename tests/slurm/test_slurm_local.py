"""The local backend (no Slurm): real subprocesses, real files, real signals."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from dc2tasks.slurm import AsyncSlurmClient, JobInfo, Outcome, SlurmClient, SlurmJob, element_ids
from dc2tasks.slurm.transports import LocalTransport


@pytest.fixture
def local(tmp_path: Path) -> SlurmClient:
    work = tmp_path / "work"
    work.mkdir()
    return SlurmClient(LocalTransport(tmp_path / "state", cwd=work))


def wait_final(client: SlurmClient, ids: list[str], timeout: float = 30) -> dict[str, JobInfo]:
    return client.wait(ids, timeout, interval=0.1)


def wait_running(client: SlurmClient, job_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while client.status([job_id])[job_id].state.base != "RUNNING":
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.05)


def test_success_and_log(local: SlurmClient, tmp_path: Path) -> None:
    out = tmp_path / "work" / "hello.%j.out"
    jid = local.submit(SlurmJob(script='echo "hello $SLURM_JOB_NAME"; echo err >&2\n', name="hello",
                                output=str(out), environment={"X": "1"}))
    info = wait_final(local, [jid])[jid]
    assert (info.state.base, info.exit_code, info.outcome) == ("COMPLETED", 0, Outcome.SUCCESS)
    assert info.name == "hello" and info.nodes == "localhost"
    text, offset = local.read_log(str(out).replace("%j", jid))
    assert text == "hello hello\nerr\n" and offset == len(text)
    assert local.read_log(str(out).replace("%j", jid), offset) == ("", offset)


def test_exit_3_is_failed_with_code_and_tail(local: SlurmClient, tmp_path: Path) -> None:
    out = tmp_path / "work" / "fail.out"
    jid = local.submit(SlurmJob(script="for i in $(seq 1 500); do echo line $i; done; exit 3\n",
                                name="fails", output=str(out)))
    info = wait_final(local, [jid])[jid]
    assert (info.state.base, info.exit_code, info.signal, info.outcome) == ("FAILED", 3, 0, Outcome.FAIL)
    tail = local.tail_log(str(out), 30)
    assert tail.endswith("line 499\nline 500\n") and len(tail) == 30


def test_array_with_failing_indices_and_throttle(local: SlurmClient, tmp_path: Path) -> None:
    work = tmp_path / "work"
    script = (
        'echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_JOB_ID $SLURM_JOB_ID"\n'
        'date +%s.%N > "start.$SLURM_ARRAY_TASK_ID"; sleep 0.3; date +%s.%N > "end.$SLURM_ARRAY_TASK_ID"\n'
        'case "$SLURM_ARRAY_TASK_ID" in 4|11|17) exit 2;; esac\n'
    )
    job = SlurmJob(script=script, name="arr", array="0-19%2", output="arr.%A_%a.out")
    jid = local.submit(job)
    ids = element_ids(jid, job)
    got = wait_final(local, ids, timeout=60)
    failed = sorted(j.array_task_id for j in got.values() if j.state.base == "FAILED")
    assert failed == [4, 11, 17]
    assert all(got[i].exit_code == 2 for i in (f"{jid}_4", f"{jid}_11", f"{jid}_17"))
    assert sum(j.state.base == "COMPLETED" for j in got.values()) == 17
    first = (work / f"arr.{jid}_0.out").read_text().split()
    assert first[:2] == ["0", jid]
    raw_ids = {(work / f"arr.{jid}_{i}.out").read_text().split()[2] for i in range(20)}
    assert len(raw_ids) == 20  # every element has its own job id (%j), as in Slurm
    spans = [(float((work / f"start.{i}").read_text()), float((work / f"end.{i}").read_text()))
             for i in range(20)]
    most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert most <= 2  # the %2 throttle held

    retry = job.with_array_indices(failed)
    rid = local.submit(retry)
    again = wait_final(local, element_ids(rid, retry), timeout=30)
    assert set(again) == {f"{rid}_4", f"{rid}_11", f"{rid}_17"}


def test_cancel_kills_the_process_group(local: SlurmClient, tmp_path: Path) -> None:
    work = tmp_path / "work"
    jid = local.submit(SlurmJob(script="sleep 300 & echo $! > child.pid; wait\n", name="long"))
    wait_running(local, jid)
    deadline = time.monotonic() + 5
    while not (work / "child.pid").exists() or not (work / "child.pid").read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int((work / "child.pid").read_text())
    local.cancel([jid])
    info = wait_final(local, [jid], timeout=15)[jid]
    assert info.state.base == "CANCELLED" and info.state.cancelled_by == os.getuid()
    assert info.outcome is Outcome.FAIL_NO_RETRY
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_timeout(local: SlurmClient) -> None:
    t0 = time.monotonic()
    jid = local.submit(SlurmJob(script="sleep 60\n", name="slow", time_limit="0:02"))
    info = wait_final(local, [jid], timeout=20)[jid]
    assert info.state.base == "TIMEOUT" and info.outcome is Outcome.RETRY_MORE_TIME
    assert 2 <= time.monotonic() - t0 < 10


def test_find_by_name_and_comment(local: SlurmClient) -> None:
    a = local.submit(SlurmJob(script="sleep 5\n", name="dag.run.task", comment="dc2:try=1"))
    local.submit(SlurmJob(script="true\n", name="something-else"))
    found = local.find_by_name("dag.run.task")
    assert [(f.job_id, f.comment, f.outcome) for f in found] == [(a, "dc2:try=1", Outcome.WAIT)]
    local.cancel([a])
    assert local.find_by_name("nobody") == []


def test_dependency_never_satisfied_is_cancelled(local: SlurmClient) -> None:
    bad = local.submit(SlurmJob(script="exit 1\n", name="first"))
    dep = local.submit(SlurmJob(script="echo never\n", name="second", dependencies=(f"afterok:{bad}",)))
    ok = local.submit(SlurmJob(script="true\n", name="third", dependencies=(f"afterany:{bad}",)))
    got = wait_final(local, [bad, dep, ok])
    assert got[dep].state.base == "CANCELLED" and got[ok].state.base == "COMPLETED"


def test_supervisor_gone_is_node_fail(local: SlurmClient, tmp_path: Path) -> None:
    jid = local.submit(SlurmJob(script="sleep 30\n", name="orphan"))
    wait_running(local, jid)
    pid = int((tmp_path / "state" / "jobs" / jid / "supervisor.pid").read_text())
    os.kill(pid, 9)
    info = wait_final(local, [jid], timeout=10)[jid]
    assert info.state.base == "NODE_FAIL" and info.outcome is Outcome.RETRY_EXCLUDE_NODES
    pgid = int(__import__("json").loads(
        (tmp_path / "state" / "jobs" / jid / "elements" / "batch.json").read_text())["pgid"])
    assert Path(f"/proc/{pgid}").exists()
    local.cancel([jid])  # with its supervisor gone, scancel kills the orphaned element itself
    time.sleep(0.2)
    assert not Path(f"/proc/{pgid}").exists() or "Z" in Path(f"/proc/{pgid}/stat").read_text().split()[2]
    assert local.status([jid])[jid].state.base == "NODE_FAIL"  # what happened stays recorded


def test_emulator_refuses_unknown_options(local: SlurmClient) -> None:
    from dc2tasks.slurm.commands import Command

    script = b"#!/bin/bash\n#SBATCH --gres=gpu:1\ntrue\n"
    r = local.transport.run(Command(("sbatch", "--parsable"), stdin=script))
    assert r.returncode == 1 and "gres" in r.err


def test_async_client_on_local(tmp_path: Path) -> None:
    async def go() -> str:
        c = AsyncSlurmClient(LocalTransport(tmp_path / "state", cwd=tmp_path))
        jid = await c.submit(SlurmJob(script="exit 0\n", name="async"))
        for _ in range(200):
            s = await c.status([jid])
            if s[jid].outcome.final:
                return s[jid].state.base
            await asyncio.sleep(0.05)
        return "not final"

    assert asyncio.run(go()) == "COMPLETED"


def test_local_log_reader_matches_gnu_dd_and_tail(tmp_path: Path) -> None:
    """LocalTransport reads logs in Python; the SSH path runs dd/tail. Same bytes, same offsets."""
    from dc2tasks.slurm.transports import SubprocessTransport

    log = tmp_path / "mixed.log"
    log.write_bytes("".join(f"ligne {i} é\n" for i in range(2000)).encode())
    python_side = SlurmClient(LocalTransport(tmp_path / "state"))
    gnu_side = SlurmClient(SubprocessTransport())
    for offset, limit in [(0, 100), (7, 1000), (30000, 1 << 20), (10**7, 10)]:
        assert python_side.read_log(str(log), offset, limit) == gnu_side.read_log(str(log), offset, limit)
    assert python_side.tail_log(str(log), 50) == gnu_side.tail_log(str(log), 50) != ""
    assert python_side.read_log(str(tmp_path / "nope"), 3) == gnu_side.read_log(str(tmp_path / "nope"), 3)


def test_logs_are_never_read_through_a_symbolic_link(tmp_path: Path) -> None:
    """A log path swapped for a link to another file reads as nothing, with the local reader
    (O_NOFOLLOW, lstat) as with GNU dd iflag=nofollow and stat."""
    from dc2tasks.slurm.transports import SubprocessTransport

    secret = tmp_path / "secret.txt"
    secret.write_text("the producer's private notes\n")
    link = tmp_path / "slurm-7.out"
    link.symlink_to(secret)
    for client in (SlurmClient(LocalTransport(tmp_path / "state")), SlurmClient(SubprocessTransport())):
        assert client.read_log(str(link), 0) == ("", 0)
        assert client.tail_log(str(link), 100) == f"(job log {link} is a symbolic link: not read)\n"


def test_the_emulator_records_and_reports_the_submitting_user(local: SlurmClient) -> None:
    """The local backend runs the same user checks as a cluster: squeue %u, sacct User and scontrol
    UserId say who submitted, and `--user` filters on it."""
    from dc2tasks.slurm import commands as c
    from dc2tasks.slurm.owner import account_name

    me = account_name(os.geteuid())
    assert local.transport.user == me
    jid = local.submit(SlurmJob(script="true\n", name="whose", comment="dc2:try=1"))
    assert [(j.job_id, j.user) for j in local.elements_by_name("whose")] == [(jid, me)]
    assert wait_final(local, [jid])[jid].user == me
    run = local.transport.run
    assert run(c.squeue_by_name("whose", me)).out.startswith(f"{jid}|whose|")
    assert run(c.squeue_by_name("whose", "dc2other")).out == ""
    assert run(c.sacct_by_name("whose", "dc2other")).out == ""
    assert f"UserId={me}({os.geteuid()})" in run(c.scontrol_show_jobs()).out


def test_list_by_prefix_is_one_squeue_of_our_live_signed_jobs_with_submit_times(tmp_path: Path) -> None:
    from dc2tasks.slurm import Owner
    from dc2tasks.slurm.owner import job_comment

    token = "a-test-deployment-token"
    transport = LocalTransport(tmp_path / "state", cwd=tmp_path)
    user = SlurmClient(transport).transport.user
    ours = SlurmClient(transport, owner=Owner(user, token))
    before = time.time()

    def submit(name: str, script: str, signed: bool = True, array: str | None = None) -> str:
        comment = job_comment(name, 1, token) if signed else "dc2:try=1"
        return ours.submit(SlurmJob(script=script, name=name, comment=comment, array=array,
                                    output=str(tmp_path / "%x.out")))

    sleeping = submit("dc2_x.wait.r1-aaaa", "sleep 60\n")
    array = submit("dc2_x.arr.r1-bbbb", "sleep 60\n", array="0-1")
    unsigned = submit("dc2_x.hand.r1-cccc", "sleep 60\n", signed=False)
    other = submit("other.wait.r1-dddd", "sleep 60\n")
    done = submit("dc2_x.done.r1-eeee", "true\n")
    try:
        wait_final(ours, [done])
        listed = ours.list_by_prefix("dc2_")
        assert sorted(j.job_id for j in listed) == sorted([sleeping, f"{array}_0", f"{array}_1"])
        assert all(before - 2 <= (j.submitted or 0) <= time.time() + 1 for j in listed)
        assert {j.name for j in listed} == {"dc2_x.wait.r1-aaaa", "dc2_x.arr.r1-bbbb"}
    finally:
        ours.cancel([sleeping, array, unsigned, other])
