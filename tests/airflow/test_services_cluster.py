"""With a real scheduler + triggerer (tests/airflow/services.py) and the loopback Slurm:
- clearing or marking failed a DEFERRED task cancels its job (sacct: CANCELLED), only that try's;
- restarting the triggerer does not cancel anything (the trigger is resumed, the job keeps running);
- deferred tasks hold no worker/pool slot: three wait at once in a pool of one slot;
- a trigger handed to a second triggerer (the first one stopped heartbeating, then came back and
  dropped it through Airflow's user-action path) leaves its job running, and the task succeeds;
- what an on_kill logs after Airflow has ended its trigger is in the triggerer's log, not lost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import compat_probe
import pytest
from cluster_ops import wait_sacct
from conftest import SLURM_CONN_ID, signed, ssh_connection_json
from services import AirflowServices, airflow_services

from dc2tasks.airflow.job_name import job_name_for

pytestmark = pytest.mark.cluster
Remote = Callable[..., str]

LATE_KILL_S = 6  # on_kill work longer than the triggerer's few state syncs after the first cancel
CANCEL_DAG = f"""\
from datetime import timedelta
from airflow.sdk import DAG
from dc2tasks.slurm import SlurmJob
from dc2tasks.airflow.operators.slurm import SlurmJobOperator
from compat_probe import SlowKillOperator

LATE_KILL_S = {LATE_KILL_S}

with DAG("svc_cancel", schedule=None, catchup=False):
    SlurmJobOperator(task_id="slurm", retries=3, retry_delay=timedelta(seconds=1),
                     job=SlurmJob(script="sleep 600\\n", name="x"), slurm_conn_id={SLURM_CONN_ID!r},
                     poll_interval=2)

with DAG("svc_move", schedule=None, catchup=False):
    SlurmJobOperator(task_id="slurm", job=SlurmJob(script="sleep 100\\necho moved-ok\\n", name="x"),
                     slurm_conn_id={SLURM_CONN_ID!r}, poll_interval=2)

with DAG("svc_late", schedule=None, catchup=False):
    SlowKillOperator(task_id="wait", delay=LATE_KILL_S)

with DAG("svc_pool", schedule=None, catchup=False):
    for i in range(3):
        SlurmJobOperator(task_id=f"wait{{i}}", pool="dc2_one_slot",
                         job=SlurmJob(script="sleep 600\\n", name="x"), slurm_conn_id={SLURM_CONN_ID!r},
                         poll_interval=2)
"""


@pytest.fixture(scope="module")
def services(loopback_cluster: dict[str, str], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[AirflowServices]:
    dags = tmp_path_factory.mktemp("service-dags")
    (dags / "svc_dags.py").write_text(CANCEL_DAG)
    conn = {f"AIRFLOW_CONN_{SLURM_CONN_ID.upper()}": ssh_connection_json(loopback_cluster)}
    # a triggerer silent for 15 s is taken for dead and its triggers go to another one (default 30)
    env = {**conn, "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(compat_probe.__file__).parent),
                                                       os.environ.get("PYTHONPATH")]))}
    with airflow_services(Path(dags), env) as s:
        s.wait_dag("svc_cancel")
        s.wait_dag("svc_pool")
        s.wait_dag("svc_move")
        s.wait_dag("svc_late")
        yield s


def states(remote: Remote, name: str, comments: bool = False) -> dict[str, str]:
    """sacct's state per job (the comment too: slurmdbd stores it when the job ends)."""
    out = remote("sacct", "--noheader", "--parsable2", "--starttime=now-1days", f"--name={name}",
                 "--format=JobID,State,Comment")
    rows = [line.split("|") for line in out.splitlines() if line and "." not in line.split("|")[0]]
    return {r[0]: r[1].split(" ")[0] + (f" {r[2]}" if comments else "") for r in rows}


def deferred_first_try(s: AirflowServices, dag_id: str) -> tuple[str, str, str]:
    """Trigger `dag_id` (one task, "slurm") and wait until try 1 is deferred: run id, job name, job id."""
    run = s.trigger(dag_id)
    s.wait_ti(dag_id, run, "slurm", "deferred", try_number=1)
    return run, job_name_for(dag_id, "slurm", run, -1), str(s.xcom(dag_id, run, "slurm", "slurm_job_id"))


def test_clear_and_mark_failed_cancel_only_that_trys_job_and_a_triggerer_restart_cancels_nothing(
    services: AirflowServices, remote: Remote
) -> None:
    s = services
    run, name, job1 = deferred_first_try(s, "svc_cancel")
    wait_sacct(remote, name, lambda rows: [(r["JobID"], r["State"]) for r in rows] == [(job1, "RUNNING")])

    s.stop("triggerer")  # SIGTERM, as a deployment restart does
    s.start("triggerer")
    s.wait_healthy()
    time.sleep(8)  # the new triggerer picks the trigger up and polls a few times
    assert s.ti("svc_cancel", run, "slurm")["state"] == "deferred"
    assert states(remote, name) == {job1: "RUNNING"}

    s.clear("svc_cancel", run, ["slurm"])
    wait_sacct(remote, name, lambda rows: any(r["JobID"] == job1 and r["State"].startswith("CANCELLED")
                                              for r in rows))
    s.wait_ti("svc_cancel", run, "slurm", "deferred", try_number=2)
    job2 = str(s.xcom("svc_cancel", run, "slurm", "slurm_job_id"))
    assert job2 != job1
    time.sleep(5)  # several polls: try 1's cancel never reaches try 2's job
    assert states(remote, name) == {job1: "CANCELLED", job2: "RUNNING"}

    s.set_state("svc_cancel", run, "slurm", "failed")
    wait_sacct(remote, name, lambda rows: all(r["State"].startswith("CANCELLED") for r in rows)
               and len(rows) == 2)
    assert states(remote, name, comments=True) == {job1: f"CANCELLED {signed(name, 1)}",
                                                   job2: f"CANCELLED {signed(name, 2)}"}
    try1_log = s.task_log("svc_cancel", run, "slurm", 1)  # the trigger's on_kill logs into the task log
    assert f"asked to kill: Slurm job {job1} (try 1)" in try1_log
    assert s.kill_logged("svc_cancel", run, "slurm", 1, f"cancelling Slurm job {job1} (try 1)"), try1_log


def test_deferred_tasks_hold_no_slot(services: AirflowServices, remote: Remote) -> None:
    s = services
    s.create_pool("dc2_one_slot", 1)
    run = s.trigger("svc_pool")
    for i in range(3):  # with one slot, a task holding it while waiting would block the next
        s.wait_ti("svc_pool", run, f"wait{i}", "deferred", timeout=120)
    assert all(s.ti("svc_pool", run, f"wait{i}")["state"] == "deferred" for i in range(3))
    jobs = [str(s.xcom("svc_pool", run, f"wait{i}", "slurm_job_id")) for i in range(3)]
    for i, jid in enumerate(jobs):  # on_kill exists only once the triggerer runs the trigger (see report)
        s.wait(lambda i=i, jid=jid: f"waiting for Slurm job {jid}"
               in s.task_log("svc_pool", run, f"wait{i}", 1), 60, f"no trigger ran for wait{i}")
    for i in range(3):
        s.set_state("svc_pool", run, f"wait{i}", "failed")
    for i, jid in enumerate(jobs):
        wait_sacct(remote, job_name_for("svc_pool", f"wait{i}", run, -1),
                   lambda rows, jid=jid: [(r["JobID"], r["State"].split(" ")[0]) for r in rows]
                   == [(jid, "CANCELLED")])


def test_a_trigger_handed_to_another_triggerer_leaves_its_job_running(
    services: AirflowServices, remote: Remote
) -> None:
    s = services
    run, name, job = deferred_first_try(s, "svc_move")
    s.wait(lambda: f"waiting for Slurm job {job}" in s.task_log("svc_move", run, "slurm", 1), 60,
           "the trigger never ran")
    first = s.ti("svc_move", run, "slurm")["triggerer_job"]["id"]
    s.start("triggerer-b", like="triggerer")
    try:
        s.pause("triggerer")
        try:
            s.wait(lambda: (s.ti("svc_move", run, "slurm").get("triggerer_job") or {}).get("id")
                   not in (None, first), 90, "the second triggerer never took the trigger over")
        finally:
            s.resume("triggerer")
        # the first triggerer wakes up, finds the trigger is no longer its own and cancels it with
        # Airflow's user-action message, which calls on_kill
        s.wait(lambda: "Trigger cancelled by user action" in s.task_log("svc_move", run, "slurm", 1), 60,
               "the first triggerer never dropped the trigger it lost")
        time.sleep(5)  # a cancel would be in sacct by now
        assert states(remote, name) == {job: "RUNNING"}
        ti = s.wait_ti("svc_move", run, "slurm", "success", timeout=240)
        assert ti["try_number"] == 1
        assert states(remote, name) == {job: "COMPLETED"}
        log = s.task_log("svc_move", run, "slurm", 1)
        assert f"asked to kill: Slurm job {job} (try 1)" in log
        # the verdict reaches the task log while Airflow still holds the trigger's log open (about
        # two state syncs); a first triggerer slow to read the task state logs it in its own log
        # (test_what_on_kill_logs_after_its_trigger_ended_reaches_the_triggerers_log)
        assert s.kill_logged("svc_move", run, "slurm", 1, f"Slurm job {job} (try 1) is not cancelled"), log
        assert "moved-ok" in log
    finally:
        s.stop("triggerer-b")


def test_what_on_kill_logs_after_its_trigger_ended_reaches_the_triggerers_log(
    services: AirflowServices,
) -> None:
    """The compat.run_to_end claim the Slurm trigger's log lines rely on: on_kill work that outlives
    Airflow's repeated cancels still runs to its end, and a line it logs then is not lost; it is in
    the triggerer's own log (Airflow has closed the task's trigger log by then)."""
    s, probe = services, compat_probe.SlowKillTrigger
    run = s.trigger("svc_late")
    s.wait_ti("svc_late", run, "wait", "deferred")
    s.wait(lambda: "slow kill: waiting" in s.task_log("svc_late", run, "wait", 1), 60,
           "the trigger never ran")
    s.set_state("svc_late", run, "wait", "failed")
    s.wait(lambda: probe.LATE in s.log_of("triggerer"), LATE_KILL_S + 60, "the late line was lost")
    log = s.task_log("svc_late", run, "wait", 1)
    assert probe.EARLY in log
    assert probe.LATE not in log
