"""SlurmJobOperator through the real `dag.test()` against the loopback Slurm over real SSH.

`dag.test()` runs the task, then the trigger in line (the same trigger class the triggerer runs),
then resumes the task; retries happen in the same call (retry_delay 0). The task log of this mode
goes to the process's output, which the tests capture.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cluster_ops import restart_sshd, wait_sacct
from conftest import signed
from dagrun import run_dag

from dc2tasks.airflow.job_name import job_name_for

pytestmark = pytest.mark.cluster
Remote = Callable[..., str]


@pytest.fixture(autouse=True)
def _db(airflow_db: str, slurm_conn: str) -> None:
    """Every test here needs the metadata database and the cluster's connection."""


def name_of(dag_id: str, run_id: str) -> str:
    return job_name_for(dag_id, "slurm", run_id, -1)


def test_job_runs_and_its_stdout_is_in_the_task_log(
    slurm_conn: str, remote: Remote, capfd: pytest.CaptureFixture[str]
) -> None:
    job = dict(
        script='for i in 1 2 3; do echo "dc2 line $i of $SLURM_JOB_ID"; sleep 1; done\n',
        name="ignored",
        time_limit="5",
    )
    r = run_dag("cl_hello", job, slurm_conn_id=slurm_conn, poll_interval=1)
    assert (r.state, r.try_number) == ("success", 1)
    out = capfd.readouterr().out
    for i in (1, 2, 3):
        assert f"dc2 line {i} of {r.job_id}" in out
    rows = wait_sacct(
        remote, name_of("cl_hello", r.run_id), lambda rows: any(x["State"] == "COMPLETED" for x in rows)
    )
    assert [(x["JobID"], x["State"], x["Comment"]) for x in rows] == [
        (r.job_id, "COMPLETED", signed(name_of("cl_hello", r.run_id), 1))]


@pytest.mark.parametrize("theirs", ["waiting", "finished"])
def test_another_users_job_under_the_tasks_name_is_never_reattached_nor_adopted(
    theirs: str, slurm_conn: str, remote: Remote, loopback_cluster: dict[str, str],
    sbatch_as_other: Callable[..., str], capfd: pytest.CaptureFixture[str],
) -> None:
    """Names are predictable and comments public: another cluster user submits, before the task
    runs, a job with the task's exact name and the very comment its try 1 will carry (tag
    included). Waiting, it would have been reattached; finished, adopted as the task's result.
    The operator submits its own job instead, and the task's result is that job's."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType
    from dagrun import load_dag, task_instances, write_dag, xcom_value

    dag_id = f"cl_foreign_{theirs}"
    dag = load_dag(write_dag(dag_id, dict(script="echo 'made by our own job'\n", name="x"),
                             slurm_conn_id=slurm_conn, poll_interval=1))
    when = datetime.now(UTC)
    run_id = DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=when, run_after=when)
    name = name_of(dag_id, run_id)
    other, me = loopback_cluster["DC2_SLURM_OTHER_USER"], loopback_cluster["DC2_SLURM_SSH_USER"]
    foreign = sbatch_as_other(name, signed(name, 1),
                              "sleep 600" if theirs == "waiting" else "echo 'made by someone else'")
    state = "RUNNING" if theirs == "waiting" else "COMPLETED"
    deadline = time.monotonic() + 60
    while remote("squeue", "--noheader", "--states=all", f"--jobs={foreign}", "--format=%T").strip() != state:
        assert time.monotonic() < deadline, f"job {foreign} of {other} never {state}"
        time.sleep(0.5)

    dr = dag.test(run_after=when, logical_date=when)
    assert dr.run_id == run_id
    (ti,) = task_instances(dr).values()
    ours = str(xcom_value(dr, "slurm", "slurm_job_id"))
    assert (str(ti.state), ti.try_number, xcom_value(dr, "slurm")) == ("success", 1, ours)
    assert ours != foreign
    out = capfd.readouterr().out
    assert "made by our own job" in out and "made by someone else" not in out
    assert f"Slurm job name {name}, try 1: new job" in out

    def accounting() -> dict[str, tuple[str, ...]]:
        out = remote("sacct", "--noheader", "--parsable2", "--allusers", "--starttime=now-1hours",
                     f"--name={name}", "--format=JobID,User,State,Comment")
        return {r[0]: tuple(r[1:]) for r in (line.split("|") for line in out.splitlines()) if "." not in r[0]}

    deadline = time.monotonic() + 150  # slurmdbd lags slurmctld: our job's record may not be there yet
    while (rows := accounting()).get(ours) != (me, "COMPLETED", signed(name, 1)):
        assert time.monotonic() < deadline, f"sacct never showed job {ours} COMPLETED, {me}, signed: {rows}"
        time.sleep(0.5)
    assert rows.get(foreign, (other,))[0] == other  # sacct may lag on the still-running one
    everyone = remote("squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i|%u")
    assert sorted(everyone.split()) == sorted([f"{ours}|{me}", f"{foreign}|{other}"])


def test_exit_3_fails_with_the_exit_code_and_the_log_tail(
    slurm_conn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    job = dict(script="seq 1 500; echo 'giving up now' >&2; exit 3\n", name="x")
    r = run_dag("cl_exit3", job, slurm_conn_id=slurm_conn, poll_interval=1, tail_bytes=30)
    assert (r.state, r.try_number) == ("failed", 1)
    out = capfd.readouterr().out
    assert f"{r.job_id}: FAILED (exit code 3)" in out
    assert "SlurmJobFailed" in out
    assert "499\n500\ngiving up now\n---" in out  # the last 30 bytes of the log, in the failure


def test_out_of_memory_then_the_retry_has_scaled_memory(
    slurm_conn: str, remote: Remote, loopback_cluster: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    hog = 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo "held ${#x} bytes"\n'
    r = run_dag(
        "cl_oom",
        dict(script=hog, name="x", memory="64M"),
        retries=1,
        slurm_conn_id=slurm_conn,
        poll_interval=1,
        memory_scale=16,
    )
    rows = wait_sacct(remote, name_of("cl_oom", r.run_id), lambda rows: len(rows) >= 2)  # slurmdbd lags
    out = capfd.readouterr().out
    if loopback_cluster["DC2_SLURM_MEMORY_ENFORCEMENT"] != "cgroup":
        # OverMemoryKill: Slurm 22.05 says FAILED (signal 9), an ordinary failure: no scaling.
        assert r.state == "failed" and [x["State"] for x in rows] == ["FAILED", "FAILED"]
        return
    assert (r.state, r.try_number) == ("success", 2)
    assert [(x["State"], x["ReqMem"], x["Comment"]) for x in rows] == [
        ("OUT_OF_MEMORY", "64M", signed(name_of("cl_oom", r.run_id), 1)),
        ("COMPLETED", "1G", signed(name_of("cl_oom", r.run_id), 2)),
    ]
    assert "held 200000000 bytes" in out
    assert "SlurmJobOutOfMemory" in out and "memory x16 after 1 OUT_OF_MEMORY(s)" in out


def test_array_of_20_with_3_failures_reports_them_and_the_retry_runs_only_those(
    slurm_conn: str, remote: Remote, loopback_cluster: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    marks = f"{loopback_cluster['DC2_SLURM_WORKDIR']}/arraymarks.{time.time_ns()}"
    script = (
        f'mkdir -p {marks}; echo "element $SLURM_ARRAY_TASK_ID"\n'
        f"case $SLURM_ARRAY_TASK_ID in 3|8|19)\n"
        f"  if [ ! -e {marks}/$SLURM_ARRAY_TASK_ID ]; then touch {marks}/$SLURM_ARRAY_TASK_ID;"
        f' echo "element $SLURM_ARRAY_TASK_ID fails"; exit 5; fi;;\nesac\n'
    )
    r = run_dag(
        "cl_array",
        dict(script=script, name="x", array="0-19%8", time_limit="5"),
        retries=1,
        slurm_conn_id=slurm_conn,
        poll_interval=1,
    )
    assert (r.state, r.try_number) == ("success", 2)
    ended = ("COMPLETED", "FAILED")
    rows = wait_sacct(
        remote,
        name_of("cl_array", r.run_id),  # slurmdbd lags a little behind slurmctld
        lambda rows: len(rows) == 23 and all(x["State"] in ended for x in rows),
    )
    jobs = sorted({x["JobID"].split("_")[0] for x in rows}, key=int)
    assert len(jobs) == 2
    first = {x["JobID"]: x["State"] for x in rows if x["JobID"].startswith(jobs[0] + "_")}
    second = {x["JobID"]: x["State"] for x in rows if x["JobID"].startswith(jobs[1] + "_")}
    assert len(first) == 20
    failed = sorted(k for k, v in first.items() if v == "FAILED")
    assert failed == sorted(f"{jobs[0]}_{i}" for i in (3, 8, 19))
    assert second == {f"{jobs[1]}_{i}": "COMPLETED" for i in (3, 8, 19)}
    out = capfd.readouterr().out
    assert f"Slurm job {jobs[0]} fail: COMPLETED 17, FAILED 3" in out
    assert "failed indices (3): 3,8,19" in out
    assert f"{jobs[0]}_8: FAILED (exit code 5)" in out and "element 8 fails" in out
    assert f"only the 3 indices not completed by job(s) {jobs[0]}: 3,8,19" in out


def test_a_crash_between_sbatch_and_recording_does_not_submit_twice(
    slurm_conn: str, remote: Remote, capfd: pytest.CaptureFixture[str]
) -> None:
    from crashing import CRASHED

    CRASHED.clear()
    r = run_dag(
        "cl_crash",
        dict(script="sleep 20; echo survived\n", name="x"),
        retries=1,
        operator="CrashAfterSubmitOperator",
        module="crashing",
        slurm_conn_id=slurm_conn,
        poll_interval=1,
    )
    assert (r.state, r.try_number) == ("success", 2)
    assert CRASHED == [r.job_id]  # try 2 finished the very job try 1 submitted
    rows = wait_sacct(
        remote, name_of("cl_crash", r.run_id), lambda rows: any(x["State"] == "COMPLETED" for x in rows)
    )
    assert [(x["JobID"], x["State"], x["Comment"]) for x in rows] == [
        (r.job_id, "COMPLETED", signed(name_of("cl_crash", r.run_id), 1))]
    captured = capfd.readouterr()
    out = captured.out + captured.err
    assert "simulated crash right after sbatch" in out


def test_sshd_restarted_mid_poll_the_trigger_reconnects(
    slurm_conn: str, remote: Remote, loopback_cluster: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    from dc2tasks.airflow import poller

    job = dict(script="echo before restart; sleep 12; echo after restart\n", name="x")
    restarted = threading.Event()

    def restart_when_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = remote("squeue", "--noheader", "--states=RUNNING", "--format=%j")
            if any(line.startswith("cl_sshd.") for line in out.splitlines()):
                time.sleep(2)
                restart_sshd(loopback_cluster, down_s=3)
                restarted.set()
                return
            time.sleep(0.5)

    t = threading.Thread(target=restart_when_running, daemon=True)
    t.start()
    r = run_dag("cl_sshd", job, slurm_conn_id=slurm_conn, poll_interval=1)
    t.join(timeout=30)
    assert restarted.is_set()
    assert (r.state, r.try_number) == ("success", 1)
    out = capfd.readouterr().out
    assert "before restart" in out and "after restart" in out
    assert "Slurm status poll failed" in out  # it did lose the connection, and carried on
    transports = [t for b, t in poller._TRANSPORTS.items() if b.ssh is not None]
    assert transports and max(tr.connects for tr in transports) >= 2
    wait_sacct(remote, name_of("cl_sshd", r.run_id), lambda rows: [x["State"] for x in rows] == ["COMPLETED"])


def test_timeout_then_the_retry_has_a_scaled_time_limit(
    slurm_conn: str, remote: Remote, capfd: pytest.CaptureFixture[str]
) -> None:
    # Sleeps past its limit only under the first try's 1-minute limit (Slurm rounds to minutes).
    script = (
        'tl=$(squeue -h -j "$SLURM_JOB_ID" -o %l); echo "limit $tl"\n'
        'if [ "$tl" = "1:00" ]; then sleep 600; fi; echo finished\n'
    )
    r = run_dag(
        "cl_timeout",
        dict(script=script, name="x", time_limit="1"),
        retries=1,
        slurm_conn_id=slurm_conn,
        poll_interval=2,
        time_scale=2,
    )
    assert (r.state, r.try_number) == ("success", 2)
    rows = wait_sacct(remote, name_of("cl_timeout", r.run_id), lambda rows: len(rows) == 2)
    assert [(x["State"], x["TimelimitRaw"], x["Comment"]) for x in rows] == [
        ("TIMEOUT", "1", signed(name_of("cl_timeout", r.run_id), 1)),
        ("COMPLETED", "2", signed(name_of("cl_timeout", r.run_id), 2)),
    ]
    out = capfd.readouterr().out
    assert "SlurmJobTimedOut" in out and "time limit x2 after 1 TIMEOUT(s)" in out
    assert "limit 2:00" in out and "finished" in out
