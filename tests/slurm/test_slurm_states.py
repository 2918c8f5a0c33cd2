"""State table, state parsing, and the parsers, on output captured from Slurm 22.05."""

from __future__ import annotations

import pytest

from dc2tasks.slurm import STATE_TABLE, Outcome, SlurmState, UnknownSlurmState
from dc2tasks.slurm.commands import (
    parse_elapsed,
    parse_sacct,
    parse_scontrol,
    parse_size,
    parse_squeue,
    sacct,
    sacct_by_name,
    select,
)
from dc2tasks.slurm.states import parse_exit_code

EXPECTED = {
    "PENDING": Outcome.WAIT, "CONFIGURING": Outcome.WAIT, "RUNNING": Outcome.WAIT,
    "COMPLETING": Outcome.WAIT, "REQUEUED": Outcome.WAIT, "REQUEUE_FED": Outcome.WAIT,
    "REQUEUE_HOLD": Outcome.WAIT, "RESV_DEL_HOLD": Outcome.WAIT, "RESIZING": Outcome.WAIT,
    "SUSPENDED": Outcome.WAIT, "STOPPED": Outcome.WAIT, "SIGNALING": Outcome.WAIT,
    "STAGE_OUT": Outcome.WAIT, "PREEMPTED": Outcome.WAIT,
    "COMPLETED": Outcome.SUCCESS,
    "FAILED": Outcome.FAIL, "SPECIAL_EXIT": Outcome.FAIL, "LAUNCH_FAILED": Outcome.FAIL,
    "TIMEOUT": Outcome.RETRY_MORE_TIME,
    "OUT_OF_MEMORY": Outcome.RETRY_MORE_MEMORY,
    "NODE_FAIL": Outcome.RETRY_EXCLUDE_NODES, "BOOT_FAIL": Outcome.RETRY_EXCLUDE_NODES,
    "CANCELLED": Outcome.FAIL_NO_RETRY, "DEADLINE": Outcome.FAIL_NO_RETRY,
    "REVOKED": Outcome.FAIL_NO_RETRY,
}


@pytest.mark.parametrize(("state", "outcome"), sorted(EXPECTED.items()))
def test_state_outcome(state: str, outcome: Outcome) -> None:
    assert SlurmState.parse(state).outcome is outcome


def test_table_is_exactly_the_reviewed_one() -> None:
    """Adding or remapping a state must be a deliberate change to this test too."""
    assert STATE_TABLE == EXPECTED


def test_outcome_flags() -> None:
    assert not Outcome.WAIT.final and Outcome.SUCCESS.final
    assert Outcome.FAIL.retryable and Outcome.RETRY_MORE_TIME.retryable
    assert not Outcome.FAIL_NO_RETRY.retryable and not Outcome.SUCCESS.retryable


def test_cancelled_forms() -> None:
    s = SlurmState.parse("CANCELLED by 1001")
    assert (s.base, s.cancelled_by, s.outcome, str(s)) == ("CANCELLED", 1001, Outcome.FAIL_NO_RETRY,
                                                          "CANCELLED by 1001")
    t = SlurmState.parse("CANCELLED+")
    assert (t.base, t.cancelled_by) == ("CANCELLED", None)
    assert SlurmState.parse(" RUNNING ").base == "RUNNING"


@pytest.mark.parametrize("bad", ["", "DONE", "running", "CANCELLED by x", "FAILED by 3", "COMPLETED extra",
                                 "NODE_FAILED"])
def test_unknown_state_is_an_error(bad: str) -> None:
    with pytest.raises(UnknownSlurmState, match=r"Slurm.* state"):
        SlurmState.parse(bad)


def test_exit_codes() -> None:
    assert parse_exit_code("3:0") == (3, 0)
    assert parse_exit_code("0:9") == (0, 9)
    assert parse_exit_code("") == (None, None)
    with pytest.raises(ValueError, match="exit code"):
        parse_exit_code("x:y")


def test_elapsed_and_size() -> None:
    assert parse_elapsed("00:00:02") == 2
    assert parse_elapsed("1-02:03:04") == 93784
    assert parse_elapsed("05:06") == 306
    assert parse_elapsed("") is None
    assert parse_size("3276K") == 3276 * 1024
    assert parse_size("1.5G") == int(1.5 * 1024**3)
    assert parse_size("") is None


def test_elapsed_and_size_edge_forms() -> None:
    """The forms sacct and scontrol print besides the plain ones; what is not a duration is None."""
    assert parse_elapsed("00:07.250") == 7
    assert parse_elapsed("2-00:00:00") == 2 * 86400
    assert parse_elapsed(" 10:00:00 ") == 36000
    assert parse_elapsed("INVALID") is None
    assert parse_elapsed("UNLIMITED") is None
    assert parse_elapsed("1:2:3:4") is None
    assert parse_size("0") == 0
    assert parse_size("2g") == 2 * 1024**3
    assert parse_size("7M") == 7 * 1024**2
    assert parse_size("1.2.3K") is None


# Captured from the loopback cluster (Slurm 22.05.8): an array of 5 with index 2 failing, while
# slurmdbd still had the stale pending-range record of the last element; then a cancelled job.
SACCT_LAGGING = """\
1_0|t2|COMPLETED|0:0|00:00:02||vm|dc2test|dc2:try=1
1_0.batch|batch|COMPLETED|0:0|00:00:02|3352K|vm||
1_1|t2|COMPLETED|0:0|00:00:02||vm|dc2test|dc2:try=1
1_1.batch|batch|COMPLETED|0:0|00:00:02|3412K|vm||
1_2|t2|FAILED|1:0|00:00:02||vm|dc2test|dc2:try=1
1_2.batch|batch|FAILED|1:0|00:00:02|3312K|vm||
1_3|t2|COMPLETED|0:0|00:00:02||vm|dc2test|dc2:try=1
1_3.batch|batch|COMPLETED|0:0|00:00:02|3384K|vm||
1_[2-4%2]|t2|PENDING|0:0|00:00:00||None assigned|dc2test|
2|t3|CANCELLED by 1001|0:0|00:00:00||None assigned|dc2test|
1|hog.sh|OUT_OF_MEMORY|0:125|00:00:01||vm|dc2test|
"""


def test_parse_sacct() -> None:
    jobs = {j.job_id: j for j in parse_sacct(SACCT_LAGGING)}
    assert sorted(jobs) == ["1", "1_0", "1_1", "1_2", "1_3", "1_4", "2"]
    assert jobs["1_2"].state.base == "FAILED" and jobs["1_2"].exit_code == 1  # not hidden by 1_[2-4]
    assert jobs["1_4"].state.base == "PENDING"
    assert jobs["1_0"].max_rss_bytes == 3352 * 1024  # from the .batch step
    assert jobs["1_0"].comment == "dc2:try=1" and jobs["1_0"].nodes == "vm"
    assert {j.user for j in jobs.values()} == {"dc2test"}
    assert jobs["2"].state.cancelled_by == 1001 and jobs["2"].nodes == ""
    assert jobs["1"].outcome is Outcome.RETRY_MORE_MEMORY and jobs["1"].signal == 125
    assert (jobs["1_3"].array_job_id, jobs["1_3"].array_task_id) == ("1", 3)


def test_parse_sacct_rejects_wrong_field_count() -> None:
    with pytest.raises(ValueError, match="sacct"):
        parse_sacct("1|a|COMPLETED\n")


def test_a_comment_with_bars_stays_a_comment() -> None:
    """Anyone may put `|` in a job comment: it must not shift the fields (the user above all)."""
    [job] = parse_sacct("9|n|RUNNING|0:0|00:00:01||vm|eve|x|dc2test|dc2:try=1\n")
    assert (job.user, job.comment) == ("eve", "x|dc2test|dc2:try=1")
    [job] = parse_squeue("9|n|RUNNING|eve|x|dc2test|dc2:try=1\n")
    assert (job.user, job.comment) == ("eve", "x|dc2test|dc2:try=1")


def test_select() -> None:
    jobs = parse_sacct(SACCT_LAGGING)
    assert sorted(select(jobs, ["1_2", "2"])) == ["1_2", "2"]
    assert sorted(select(jobs, ["1"])) == ["1", "1_0", "1_1", "1_2", "1_3", "1_4"]


SCONTROL = (
    "JobId=1 ArrayJobId=1 ArrayTaskId=0-4%2 ArrayTaskThrottle=2 JobName=t2 UserId=dc2test(1001) "
    "GroupId=dc2test(1001) JobState=PENDING Reason=None Dependency=(null) ExitCode=0:0 RunTime=00:00:00 "
    "TimeLimit=UNLIMITED NodeList= NumNodes=1 Comment=dc2:try=1  StdErr=/dev/null StdOut=/dev/null Power= \n"
    "JobId=7 ArrayJobId=1 ArrayTaskId=3 JobName=t2 JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 "
    "RunTime=00:01:05 NodeList=vm StdOut=/dev/null \n"
    "JobId=2 JobName=t3 UserId=dc2test(1001) JobState=CANCELLED Reason=Resources ExitCode=0:0 "
    "RunTime=00:00:00 NodeList= StdErr=/dev/null Power= \n"
)


def test_parse_scontrol() -> None:
    jobs = {j.job_id: j for j in parse_scontrol(SCONTROL)}
    assert sorted(jobs) == ["1_0", "1_1", "1_2", "1_3", "1_4", "2"]
    assert jobs["1_3"].state.base == "FAILED" and jobs["1_3"].exit_code == 3  # element beats range
    assert (jobs["1_3"].elapsed_s, jobs["1_3"].nodes, jobs["1_3"].reason) == (65, "vm", "NonZeroExitCode")
    assert jobs["1_0"].state.base == "PENDING" and jobs["1_0"].comment == "dc2:try=1"
    assert jobs["2"].state.base == "CANCELLED" and jobs["2"].comment == ""
    assert (jobs["1_0"].user, jobs["2"].user, jobs["1_3"].user) == ("dc2test", "dc2test", "")


def test_parse_squeue() -> None:
    jobs = parse_squeue("1_0|t2|PENDING|dc2test|dc2:try=1\n3|t3|RUNNING|dc2other|(null)\n"
                        "4_[5-6]|t4|PENDING|dc2test|(null)\n")
    assert [(j.job_id, j.state.base, j.user, j.comment) for j in jobs] == [
        ("1_0", "PENDING", "dc2test", "dc2:try=1"), ("3", "RUNNING", "dc2other", ""),
        ("4_5", "PENDING", "dc2test", ""), ("4_6", "PENDING", "dc2test", "")]


def test_sacct_commands() -> None:
    fmt = "--format=JobID,JobName,State,ExitCode,Elapsed,MaxRSS,NodeList,User,Comment"
    head = ("sacct", "--noheader", "--parsable2", fmt, "--user=dc2")
    assert sacct(["5", "6_1"], "dc2", timeout=9).argv == (*head, "--jobs=5,6_1")
    assert sacct(["5"], "dc2", timeout=9).timeout == 9
    assert sacct_by_name("dc2-x", "dc2").argv == (*head, "--name=dc2-x", "--starttime=now-7days")
