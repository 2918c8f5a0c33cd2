"""The client's command logic: which commands it sends, and how it falls back.

The transport here replays responses captured from Slurm 22.05 (the accounting-disabled message is
the one `sacct` prints on a cluster with AccountingStorageType=accounting_storage/none) and records
every command, so the tests assert the exact command sequence.
"""

from __future__ import annotations

import asyncio

import pytest

from dc2tasks.slurm import AsyncSlurmClient, SlurmClient, SlurmCommandError, SlurmJob, SubmitError
from dc2tasks.slurm.commands import Command, CommandResult

NO_ACCOUNTING = CommandResult(
    1, b"", b"sacct: error: Slurm accounting storage is disabled\n"
)
SCONTROL = CommandResult(0, (
    b"JobId=5 JobName=a JobState=RUNNING Reason=None ExitCode=0:0 RunTime=00:00:07 NodeList=vm\n"
    b"JobId=6 ArrayJobId=6 ArrayTaskId=1 JobName=b JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 "
    b"RunTime=00:00:01 NodeList=vm\n"
    b"JobId=9 JobName=other JobState=RUNNING Reason=None ExitCode=0:0 RunTime=00:00:07 NodeList=vm\n"
), b"")


class Replay:
    """Answers by command name from a script of responses; records what was asked."""

    def __init__(self, responses: dict[str, list[CommandResult]]) -> None:
        self.responses = responses
        self.sent: list[Command] = []

    def run(self, cmd: Command) -> CommandResult:
        self.sent.append(cmd)
        return self.responses[cmd.argv[0]].pop(0)

    async def arun(self, cmd: Command) -> CommandResult:
        return self.run(cmd)


def test_falls_back_to_scontrol_and_remembers() -> None:
    t = Replay({"sacct": [NO_ACCOUNTING], "scontrol": [SCONTROL, SCONTROL]})
    c = SlurmClient(t)
    first = c.status(["5", "6_1"])
    assert {k: (v.state.base, v.exit_code) for k, v in first.items()} == {"5": ("RUNNING", 0),
                                                                         "6_1": ("FAILED", 3)}
    c.status(["5"])
    assert [cmd.argv[0] for cmd in t.sent] == ["sacct", "scontrol", "scontrol"]  # sacct asked once


def test_status_is_one_command_for_many_jobs() -> None:
    lines = "".join(f"{i}|j{i}|RUNNING|0:0|00:00:01||vm|\n" for i in range(100, 200))
    t = Replay({"sacct": [CommandResult(0, lines.encode(), b"")]})
    got = SlurmClient(t).status([str(i) for i in range(100, 200)])
    assert len(got) == 100 and len(t.sent) == 1
    assert t.sent[0].argv[-1] == "--jobs=" + ",".join(str(i) for i in range(100, 200))


def test_ids_missing_from_sacct_are_asked_of_scontrol() -> None:
    sacct = CommandResult(0, b"6_0|b|COMPLETED|0:0|00:00:01||vm|\n", b"")
    t = Replay({"sacct": [sacct], "scontrol": [SCONTROL]})
    got = SlurmClient(t).status(["6_0", "6_1"])
    assert {k: v.state.base for k, v in got.items()} == {"6_0": "COMPLETED", "6_1": "FAILED"}
    assert [cmd.argv[0] for cmd in t.sent] == ["sacct", "scontrol"]


def test_other_sacct_errors_are_raised() -> None:
    t = Replay({"sacct": [CommandResult(1, b"", b"sacct: error: Problem talking to the database\n")]})
    with pytest.raises(SlurmCommandError, match="Problem talking to the database"):
        SlurmClient(t).status(["1"])


def test_submit_parses_id_and_reports_sbatch_errors() -> None:
    ok = CommandResult(0, b"4242;perlmutter\n", b"")
    bad = CommandResult(1, b"", b"sbatch: error: Invalid account or account/partition combination\n")
    t = Replay({"sbatch": [ok, bad]})
    c = SlurmClient(t)
    job = SlurmJob(script="true", name="x", account="m1727")
    assert c.submit(job) == "4242"
    assert t.sent[0].argv == ("sbatch", "--parsable") and t.sent[0].stdin == job.render().encode()
    with pytest.raises(SubmitError, match="Invalid account"):
        c.submit(job)


def test_hostile_ids_never_reach_a_command() -> None:
    t = Replay({})
    with pytest.raises(ValueError, match="job id"):
        SlurmClient(t).cancel(["1; rm -rf /"])
    with pytest.raises(ValueError, match="job id"):
        SlurmClient(t).status(["$(id)"])
    assert t.sent == []


def test_find_by_name_without_accounting_uses_squeue() -> None:
    squeue = CommandResult(0, b"7_0|n|RUNNING|dc2:try=3\n7_1|n|PENDING|dc2:try=3\n", b"")
    t = Replay({"sacct": [NO_ACCOUNTING], "squeue": [squeue]})
    found = SlurmClient(t).find_by_name("n")
    summary = [(f.job_id, f.state.base, f.comment, f.elements) for f in found]
    assert summary == [("7", "RUNNING", "dc2:try=3", 2)]


def test_find_by_name_trusts_slurmctld_over_a_lagging_sacct() -> None:
    """Captured on 22.05: right after sbatch, sacct had the job without its comment. Jobs slurmctld
    still holds come from squeue; sacct alone gives the ones it has forgotten."""
    sacct = CommandResult(0, b"189|n|PENDING|0:0|00:00:00||None assigned|\n"
                             b"150|n|COMPLETED|0:0|00:00:03||vm|dc2:try=1\n"
                             b"160_0|n|FAILED|3:0|00:00:01||vm|dc2:try=2\n"
                             b"160_1|n|COMPLETED|0:0|00:00:01||vm|dc2:try=2\n", b"")
    # array 160: element 0 already purged from slurmctld (sacct keeps its FAILED), element 2 not
    # in sacct yet
    squeue = CommandResult(0, b"189|n|PENDING|dc2:try=4\n160_1|n|COMPLETED|dc2:try=2\n"
                              b"160_2|n|RUNNING|dc2:try=2\n", b"")
    t = Replay({"sacct": [sacct], "squeue": [squeue]})
    found = SlurmClient(t).find_by_name("n")
    assert [(f.job_id, f.state.base, f.comment, f.elements) for f in found] == [
        ("150", "COMPLETED", "dc2:try=1", 1), ("160", "RUNNING", "dc2:try=2", 3),
        ("189", "PENDING", "dc2:try=4", 1)]


def test_read_log_keeps_whole_lines_and_characters() -> None:
    data = "é line one\nline two ends in é".encode()
    t = Replay({"dd": [CommandResult(0, data[:len(data) - 1], b""), CommandResult(1, b"", b"No such file")]})
    c = SlurmClient(t)
    text, offset = c.read_log("/logs/x.out", 0, limit=len(data) - 1)  # chunk cut mid-character
    assert (text, offset) == ("é line one\n", len("é line one\n".encode()))
    assert c.read_log("/logs/missing.out", 5) == ("", 5)


def test_async_client_drives_the_same_plans() -> None:
    t = Replay({"sacct": [NO_ACCOUNTING], "scontrol": [SCONTROL]})
    got = asyncio.run(AsyncSlurmClient(t).status(["5"]))
    assert got["5"].state.base == "RUNNING"


def test_dbd_placeholder_record_is_not_trusted() -> None:
    """Captured: a quick job first shows in sacct as `allocation` before its real record."""
    sacct = CommandResult(0, b"5|allocation|PENDING|0:0|00:00:00||vm|\n"
                             b"5.batch|batch|COMPLETED|0:0|00:00:00|3324K|vm|\n", b"")
    t = Replay({"sacct": [sacct], "scontrol": [SCONTROL]})
    got = SlurmClient(t).status(["5"])
    assert got["5"].name == "a" and got["5"].state.base == "RUNNING"
    assert [cmd.argv[0] for cmd in t.sent] == ["sacct", "scontrol"]
