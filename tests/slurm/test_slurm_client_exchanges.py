"""The client's command logic: which commands it sends, and how it falls back.

The transport here replays responses captured from Slurm 22.05 (the accounting-disabled message is
the one `sacct` prints on a cluster with AccountingStorageType=accounting_storage/none) and records
every command, so the tests assert the exact command sequence.
"""

from __future__ import annotations

import asyncio

import pytest

from dc2tasks.slurm import AsyncSlurmClient, Owner, SlurmClient, SlurmCommandError, SlurmJob, SubmitError
from dc2tasks.slurm.commands import Command, CommandResult

NO_ACCOUNTING = CommandResult(
    1, b"", b"sacct: error: Slurm accounting storage is disabled\n"
)
SCONTROL = CommandResult(0, (
    b"JobId=5 JobName=a UserId=dc2test(1001) JobState=RUNNING Reason=None ExitCode=0:0 RunTime=00:00:07 "
    b"NodeList=vm\n"
    b"JobId=6 ArrayJobId=6 ArrayTaskId=1 JobName=b UserId=dc2test(1001) JobState=FAILED "
    b"Reason=NonZeroExitCode ExitCode=3:0 RunTime=00:00:01 NodeList=vm\n"
    b"JobId=9 JobName=other UserId=dc2test(1001) JobState=RUNNING Reason=None ExitCode=0:0 "
    b"RunTime=00:00:07 NodeList=vm\n"
), b"")
USER = "dc2test"


class Replay:
    """Answers by command name from a script of responses; records what was asked."""

    user = USER

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
    lines = "".join(f"{i}|j{i}|RUNNING|0:0|00:00:01||vm|dc2test|\n" for i in range(100, 200))
    t = Replay({"sacct": [CommandResult(0, lines.encode(), b"")]})
    got = SlurmClient(t).status([str(i) for i in range(100, 200)])
    assert len(got) == 100 and len(t.sent) == 1
    assert t.sent[0].argv[-2:] == ("--user=dc2test", "--jobs=" + ",".join(str(i) for i in range(100, 200)))


def test_ids_missing_from_sacct_are_asked_of_scontrol() -> None:
    sacct = CommandResult(0, b"6_0|b|COMPLETED|0:0|00:00:01||vm|dc2test|\n", b"")
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
    squeue = CommandResult(0, b"7_0|n|RUNNING|dc2test|dc2:try=3\n7_1|n|PENDING|dc2test|dc2:try=3\n", b"")
    t = Replay({"sacct": [NO_ACCOUNTING], "squeue": [squeue]})
    found = SlurmClient(t).find_by_name("n")
    summary = [(f.job_id, f.state.base, f.comment, f.elements) for f in found]
    assert summary == [("7", "RUNNING", "dc2:try=3", 2)]


def test_find_by_name_trusts_slurmctld_over_a_lagging_sacct() -> None:
    """Captured on 22.05: right after sbatch, sacct had the job without its comment. Jobs slurmctld
    still holds come from squeue; sacct alone gives the ones it has forgotten."""
    sacct = CommandResult(0, b"189|n|PENDING|0:0|00:00:00||None assigned|dc2test|\n"
                             b"150|n|COMPLETED|0:0|00:00:03||vm|dc2test|dc2:try=1\n"
                             b"160_0|n|FAILED|3:0|00:00:01||vm|dc2test|dc2:try=2\n"
                             b"160_1|n|COMPLETED|0:0|00:00:01||vm|dc2test|dc2:try=2\n", b"")
    # array 160: element 0 already purged from slurmctld (sacct keeps its FAILED), element 2 not
    # in sacct yet
    squeue = CommandResult(0, b"189|n|PENDING|dc2test|dc2:try=4\n160_1|n|COMPLETED|dc2test|dc2:try=2\n"
                              b"160_2|n|RUNNING|dc2test|dc2:try=2\n", b"")
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


def test_async_client_drives_the_same_exchanges() -> None:
    t = Replay({"sacct": [NO_ACCOUNTING], "scontrol": [SCONTROL]})
    got = asyncio.run(AsyncSlurmClient(t).status(["5"]))
    assert got["5"].state.base == "RUNNING"


def test_dbd_placeholder_record_is_not_trusted() -> None:
    """Captured: a quick job first shows in sacct as `allocation` before its real record."""
    sacct = CommandResult(0, b"5|allocation|PENDING|0:0|00:00:00||vm|dc2test|\n"
                             b"5.batch|batch|COMPLETED|0:0|00:00:00|3324K|vm||\n", b"")
    t = Replay({"sacct": [sacct], "scontrol": [SCONTROL]})
    got = SlurmClient(t).status(["5"])
    assert got["5"].name == "a" and got["5"].state.base == "RUNNING"
    assert [cmd.argv[0] for cmd in t.sent] == ["sacct", "scontrol"]


TOKEN = "a-test-deployment-token"
OURS = Owner(USER, TOKEN)
SIGNED_1 = OURS.comment("n", 1).encode()


def test_lookups_by_name_ask_for_our_user_only() -> None:
    t = Replay({"sacct": [CommandResult(0, b"", b"")], "squeue": [CommandResult(0, b"", b"")]})
    assert SlurmClient(t, owner=OURS).find_by_name("n") == []
    assert [cmd.argv[0] for cmd in t.sent] == ["sacct", "squeue"]
    assert all("--user=dc2test" in cmd.argv and "--name=n" in cmd.argv for cmd in t.sent)
    with pytest.raises(ValueError, match="user: '-a' is not a valid user name"):
        Owner("-a")


def test_foreign_jobs_under_our_name_are_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Another user pre-submits jobs with the task's name and `dc2:try=1`, with and without a tag
    copied from one of our jobs (comments are public). Slurm should have filtered them (--user);
    if a line gets through anyway, the client drops it, saying which job, name and user."""
    sacct = CommandResult(0, b"777|n|COMPLETED|0:0|00:00:03||vm|eve|" + SIGNED_1 + b"\n"
                             b"777.batch|batch|COMPLETED|0:0|00:00:03|3324K|vm||\n"
                             b"150|n|COMPLETED|0:0|00:00:03||vm|dc2test|" + SIGNED_1 + b"\n", b"")
    squeue = CommandResult(0, b"778|n|RUNNING|eve|dc2:try=1\n779_0|n|PENDING|eve|" + SIGNED_1 + b"\n"
                              b"779_1|n|PENDING|eve|" + SIGNED_1 + b"\n", b"")
    t = Replay({"sacct": [sacct], "squeue": [squeue]})
    caplog.set_level("WARNING", logger="dc2tasks.slurm.owner")
    found = SlurmClient(t, owner=OURS).find_by_name("n")
    assert [(f.job_id, f.user, f.state.base) for f in found] == [("150", "dc2test", "COMPLETED")]
    ignored = [r.getMessage() for r in caplog.records]
    assert ignored == [f"jobs named n: ignoring Slurm job {j} (name n): of user 'eve', not 'dc2test'"
                       for j in ("777", "778", "779")]  # an array once, not per element


def test_our_jobs_without_the_token_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """A job of our account that this deployment did not sign (a person using the account by hand,
    a deployment with another token, a job from before tokens) is not ours to adopt."""
    other = Owner(USER, "another-deployment-token").comment("n", 1).encode()
    sacct = CommandResult(0, b"150|n|COMPLETED|0:0|00:00:03||vm|dc2test|dc2:try=1\n"
                             b"151|n|COMPLETED|0:0|00:00:03||vm|dc2test|" + other + b"\n"
                             b"152|n|FAILED|1:0|00:00:03||vm|dc2test|" + SIGNED_1 + b"\n", b"")
    squeue = CommandResult(0, b"153|n|RUNNING|dc2test|(null)\n", b"")
    t = Replay({"sacct": [sacct, sacct], "squeue": [squeue, squeue]})
    caplog.set_level("WARNING", logger="dc2tasks.slurm.owner")
    found = SlurmClient(t, owner=OURS).find_by_name("n")
    assert [(f.job_id, f.comment) for f in found] == [("152", SIGNED_1.decode())]
    assert "ignoring Slurm job 150 (name n): its comment 'dc2:try=1' does not carry" in caplog.text
    assert "ignoring Slurm job 151 (name n)" in caplog.text and "ignoring Slurm job 153" in caplog.text
    # a client without a token (the CLI, status) checks the account only
    assert [f.job_id for f in SlurmClient(t).find_by_name("n")] == ["150", "151", "152", "153"]


def test_status_drops_records_of_another_user(caplog: pytest.LogCaptureFixture) -> None:
    sacct = CommandResult(0, b"5|a|RUNNING|0:0|00:00:01||vm|eve|\n", b"")
    scontrol = CommandResult(0, b"JobId=5 JobName=a UserId=eve(1002) JobState=RUNNING Reason=None "
                                b"ExitCode=0:0 RunTime=00:00:07 NodeList=vm\n", b"")
    t = Replay({"sacct": [sacct], "scontrol": [scontrol]})
    caplog.set_level("WARNING", logger="dc2tasks.slurm.owner")
    assert SlurmClient(t).status(["5"]) == {}
    assert "sacct: ignoring Slurm job 5 (name a): of user 'eve'" in caplog.text
    assert "scontrol: ignoring Slurm job 5 (name a): of user 'eve'" in caplog.text


def test_a_signed_comment_is_bound_to_its_name_and_try() -> None:
    assert OURS.verified_try("n", SIGNED_1.decode()) == 1
    assert OURS.verified_try("m", SIGNED_1.decode()) is None  # copied onto another name
    assert OURS.verified_try("n", SIGNED_1.decode().replace("try=1", "try=2")) is None
    assert Owner(USER, "another-deployment-token").verified_try("n", SIGNED_1.decode()) is None
    assert OURS.verified_try("n", "dc2:try=1") is None
    assert TOKEN not in SIGNED_1.decode() and TOKEN not in repr(OURS)


def test_logs_are_read_without_following_links(caplog: pytest.LogCaptureFixture) -> None:
    """GNU dd's message for iflag=nofollow on a symbolic link (coreutils 9.1)."""
    eloop = CommandResult(1, b"", b"dd: failed to open '/logs/x.out': Too many levels of symbolic links\n")
    t = Replay({"dd": [eloop, eloop], "stat": [CommandResult(0, b"36\n", b"")]})
    c = SlurmClient(t)
    caplog.set_level("WARNING", logger="dc2tasks.slurm.client")
    assert c.read_log("/logs/x.out", 0) == ("", 0)
    assert "job log /logs/x.out is a symbolic link: not read" in caplog.text
    assert c.tail_log("/logs/x.out", 10) == "(job log /logs/x.out is a symbolic link: not read)\n"
    assert [cmd.argv for cmd in t.sent][1:] == [("stat", "--format=%s", "--", "/logs/x.out"), (
        "dd", "if=/logs/x.out", "bs=65536", "skip=26", "count=10", "iflag=nofollow,skip_bytes,count_bytes",
        "status=none")]
    assert "iflag=nofollow,skip_bytes,count_bytes" in t.sent[0].argv


def test_the_listing_expands_pending_ranges_keeps_the_prefix_and_reads_submit_times() -> None:
    from datetime import datetime

    from dc2tasks.slurm.commands import LISTING_FORMAT, parse_listing, squeue_listing

    cmd = squeue_listing("dc2test")
    assert cmd.argv == ("squeue", "--noheader", "--array", "--user=dc2test", f"--format={LISTING_FORMAT}")
    out = ("12_[3-4]|dc2_demo.source.r-1|PENDING|2026-12-02T09:35:01|dc2test|dc2:try=1:x|y\n"
           "13|other.job|RUNNING|2026-12-02T09:35:02|dc2test|(null)\n"
           "14|dc2_demo.trim.r-2|RUNNING|N/A|dc2test|(null)\n")
    listed = parse_listing(out, "dc2_")
    assert [(j.job_id, j.state.base, j.comment) for j in listed] == [
        ("12_3", "PENDING", "dc2:try=1:x|y"), ("12_4", "PENDING", "dc2:try=1:x|y"), ("14", "RUNNING", "")]
    assert listed[0].submitted == datetime(2026, 12, 2, 9, 35, 1).timestamp()
    assert listed[2].submitted is None
    with pytest.raises(ValueError, match="expected 6 fields"):
        parse_listing("12|dc2_x|RUNNING\n", "dc2_")
