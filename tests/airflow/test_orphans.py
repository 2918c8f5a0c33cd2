"""The rule of what this deployment may cancel (dc2tasks/airflow/orphans.py), and the split of
`airflow dags test`'s console log into per-task logs (dc2tasks/airflow/dags_test.py)."""

from __future__ import annotations

import json

from dc2tasks.airflow.dags_test import split_task_logs
from dc2tasks.airflow.orphans import TaskFacts, cancel_reason, kill_verdict, stale_message
from dc2tasks.slurm import JobInfo, Owner, SlurmState
from dc2tasks.slurm.owner import job_comment

TOKEN = "a-test-deployment-token"
NAME = "dc2_demo.source.r1-0123456789"


def job(state: str = "RUNNING", job_id: str = "7", try_number: int = 1, name: str = NAME) -> JobInfo:
    return JobInfo(job_id=job_id, name=name, state=SlurmState.parse(state), user="dc2test",
                   comment=job_comment(name, try_number, TOKEN))


def task(state: str | None, try_number: int = 1, job_id: str | None = "7", run_state: str = "running"
         ) -> TaskFacts:
    return TaskFacts("dc2_demo", "source", "r1", -1, state, try_number, job_id, run_state)


def test_a_waiting_task_keeps_its_job_whatever_it_waits_in() -> None:
    for state in ("running", "deferred", "queued", "scheduled", "up_for_retry", "restarting"):
        assert cancel_reason(job(), 1, task(state)) is None, state
    assert cancel_reason(job(), 1, task(None, run_state="queued")) is None  # cleared, run going on
    # a later try that recorded no job yet, or this one (reattached), may wait for it
    assert cancel_reason(job(), 1, task("running", 2, None)) is None
    assert cancel_reason(job(), 1, task("deferred", 2, "7")) is None


def test_a_job_nobody_waits_for_is_cancelled_with_the_reason() -> None:
    assert cancel_reason(job(), 1, None) == "no task instance has its job name (the DAG run is gone)"
    assert cancel_reason(job(), 1, task("failed")) == (
        "the task is failed (try 1); nobody waits for the job")
    assert cancel_reason(job(), 1, task("success", 2)) == (
        "the task is success (try 2); nobody waits for the job")
    assert cancel_reason(job(), 1, task(None, run_state="success")) == (
        "the task is cleared (try 1); nobody waits for the job")
    assert cancel_reason(job(), 1, task("deferred", 2, "9")) == (
        "it is try 1; the task is deferred on try 2, waiting for job 9")
    assert cancel_reason(job("COMPLETED"), 1, task("failed")) is None  # ended: nothing to cancel


def test_on_kill_cancels_only_a_live_job_of_this_name_signed_for_this_try() -> None:
    verified = Owner("dc2test", TOKEN).verified_try
    assert kill_verdict([job()], "7", NAME, 1, verified, "failed") is None  # a user's mark failed
    assert kill_verdict([job()], "7", NAME, 1, verified, None) is None  # a user's clear
    ended = kill_verdict([job("COMPLETED")], "7", NAME, 1, verified, "success")
    assert ended == "job 7 has ended (COMPLETED)"
    assert kill_verdict([job()], "7", NAME, 1, verified, "deferred") == (
        "the task is deferred: another trigger waits for its job")
    # the id now belongs to another job (a reused id), or to another try of this task
    for other in (job(name="dc2_demo.source.r2-9999999999"), job(try_number=2), job(job_id="8")):
        assert kill_verdict([other], "7", NAME, 1, verified, "failed") == (
            f"no job 7 named {NAME} signed for try 1 is known to Slurm")
    unsigned = JobInfo(job_id="7", name=NAME, state=SlurmState.parse("RUNNING"), user="dc2test",
                       comment=job_comment(NAME, 1, "another-deployment-token"))
    assert kill_verdict([unsigned], "7", NAME, 1, verified, "failed") is not None
    assert stale_message(task("success"), "success", 1, "7", "job 7 has ended (COMPLETED)") == (
        "stale: task dc2_demo.source of run r1 is success, try 1; not cancelling job 7 "
        "(job 7 has ended (COMPLETED))")


RUN = "manual__1"
CONSOLE = """\
2026-12-02T09:40:00.000001Z [info     ] Filling up the DagBag [airflow] loc=x.py:1
2026-12-02T09:40:13.928926Z [info     ] [DAG TEST] starting task_id=source map_index=-1 [dag] loc=dag.py:1501
2026-12-02T09:40:13.9Z [info] [DAG TEST] running task <TaskInstance: dc2_demo.source manual__1 [s]
2026-12-02T09:40:14.164414Z [info     ] submitted Slurm job 1:
#!/bin/bash
#SBATCH --job-name=x
 [op] loc=slurm.py:144
2026-12-02T09:40:16.000000Z [info     ] 4950000: 120 sources [trigger] loc=job_wait.py:62
2026-12-02T09:40:20.520529Z [info     ] [DAG TEST] end task task_id=source map_index=-1 [dag] loc=dag.py:1563
2026-12-02T09:40:21.000000Z [info     ] [DAG TEST] starting task_id=source map_index=-1 [dag] loc=dag.py:1501
2026-12-02T09:40:21.1Z [info] [DAG TEST] running task <TaskInstance: dc2_demo.source manual__1 [s]
2026-12-02T09:40:22.000000Z [info     ] [DAG TEST] end task task_id=source map_index=-1 [dag] loc=dag.py:1563
2026-12-02T09:40:23.000000Z [info     ] DagRun Finished [airflow] loc=x.py:2
"""


def test_the_console_log_is_split_into_one_log_per_task_try_with_the_jobs_output() -> None:
    logs = split_task_logs(CONSOLE, "dc2_demo")
    assert [(t.task_id, t.map_index, t.attempt, t.run_id) for t in logs] == [
        ("source", -1, 1, RUN), ("source", -1, 2, RUN)]
    records = [json.loads(line) for line in logs[0].text().splitlines()]
    assert len(records) == 5
    script = "submitted Slurm job 1:\n#!/bin/bash\n#SBATCH --job-name=x\n [op] loc=slurm.py:144"
    assert records[2] == {"timestamp": "2026-12-02T09:40:14.164414Z", "level": "info", "event": script}
    assert records[3]["event"].startswith("4950000: 120 sources")  # the job's stdout, streamed
    assert "DagRun Finished" not in logs[1].text() and "Filling up" not in logs[0].text()
