"""The operator with the local backend (the embedded default) and its pure parts; no cluster."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException
from dagrun import run_dag

from dc2tasks.airflow.hooks import (
    backend_from_connection,
    check_certificate,
    configured_token,
    local_job_token,
)
from dc2tasks.airflow.job_name import job_name_for
from dc2tasks.airflow.job_wait import JobWaitSpec, log_lines, wait_for_job
from dc2tasks.airflow.operators.slurm import output_pattern
from dc2tasks.airflow.outcome import JobReport, SlurmJobCancelled, SlurmJobFailed
from dc2tasks.airflow.poller import SharedPoller
from dc2tasks.airflow.retry import decide_retry
from dc2tasks.slurm import AsyncSlurmClient, FoundJob, Owner, SlurmJob, SlurmState, element_ids
from dc2tasks.slurm.commands import Command, CommandResult, JobInfo
from dc2tasks.slurm.transports import LocalTransport

OWNER = Owner("dc2test", "a-test-deployment-token")


@pytest.fixture
def db(airflow_db: str) -> str:
    return airflow_db


@pytest.mark.parametrize("deferrable", [True, False])
def test_local_backend_runs_the_job_and_logs_its_stdout(
    db: str, deferrable: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    r = run_dag(f"local_hello_{deferrable}", dict(script="echo local says hi\n", name="x"),
                poll_interval=0.3, deferrable=deferrable)
    assert (r.state, r.try_number) == ("success", 1)
    out = capfd.readouterr().out
    assert "local says hi" in out
    assert ("Pausing task as DEFERRED" in out) is deferrable


def test_local_backend_array_logs_each_elements_output_and_exit_3_fails(
    db: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Through the trigger as `dag.test()` runs it: each element's output in the task log once, with
    its index; the failed element's tail in the failure message."""
    script = ('if [ "$SLURM_ARRAY_TASK_ID" = 1 ]; then echo doomed; exit 3; fi\n'
              'echo "fine $SLURM_ARRAY_TASK_ID"\n')
    r = run_dag("local_exit3", dict(script=script, name="x", array="0-2"), poll_interval=0.3)
    assert r.state == "failed"
    out = capfd.readouterr().out
    assert ": FAILED (exit code 3)" in out and "doomed\n---" in out
    lines = ("[element 0] fine 0", "[element 1] doomed", "[element 2] fine 2")
    assert [out.count(line) for line in lines] == [1, 1, 1]
    assert "failed indices (1): 1" in out


class CountingTransport(LocalTransport):
    """The local backend, counting the commands it runs by program."""

    def __init__(self, state_dir: Path, cwd: Path) -> None:
        super().__init__(state_dir, cwd=cwd)
        self.programs: Counter[str] = Counter()

    def run(self, cmd: Command) -> CommandResult:
        self.programs[cmd.argv[0]] += 1
        return super().run(cmd)


ELEMENTS = """\
i=$SLURM_ARRAY_TASK_ID
case $i in
  0) sleep 2; echo "zero 1"; echo "zero 2";;
  1) printf 'progress 10%%\\rprogress 100%%\\n'; echo "one done";;
  2) echo "two"; printf "no newline at the end"; date +%s.%N > end.2; exit 1;;
  3) seq -f 'big %05g' 1 4000;;
esac
date +%s.%N > end.$i
"""


def test_an_arrays_elements_reach_the_task_log_once_each_prefixed_and_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each element's log in one block when it ends (in order of completion), every line prefixed
    with its index, a progress bar's carriage returns resolved, the middle of a big log skipped
    (saying how much); each ended element's log read once, one status command per poll."""
    work = tmp_path / "work"
    work.mkdir()
    transport = CountingTransport(tmp_path / "state", work)
    job = SlurmJob(script=ELEMENTS, name="arr", array="0-3%2", output="arr.%A_%a.out")
    poller = SharedPoller(AsyncSlurmClient(transport))
    jid = asyncio.run(poller.client.submit(job))
    ids = element_ids(jid, job)
    spec = JobWaitSpec(job_id=jid, element_ids=tuple(ids), log_paths={e: f"arr.{e}.out" for e in ids},
                       poll_interval=0.1, element_log_bytes=1000)
    log = logging.getLogger("test.element_logs")
    caplog.set_level(logging.INFO, logger=log.name)
    payload = asyncio.run(wait_for_job(poller, spec, log))
    assert {e: r["state"] for e, r in payload["elements"].items()} == {
        f"{jid}_{i}": "FAILED" if i == 2 else "COMPLETED" for i in range(4)}
    assert payload["tails"] == {f"{jid}_2": "two\nno newline at the end"}  # as before
    blocks = [r.getMessage().split("\n") for r in caplog.records if r.getMessage().startswith("[element ")]
    ended = sorted(range(4), key=lambda i: float((work / f"end.{i}").read_text()))
    state = {i: "FAILED" if i == 2 else "COMPLETED" for i in range(4)}
    assert [b[0] for b in blocks] == [f"[element {i}] {jid}_{i} {state[i]}: its log arr.{jid}_{i}.out"
                                      for i in ended]
    lines = [line for b in blocks for line in b[1:]]
    big = [f"[element 3] big {n:05d}" for n in (*range(1, 101), *range(3901, 4001))]
    skipped = f"[element 3] ... {40_000 - 2000} bytes skipped (the whole log: arr.{jid}_3.out) ..."
    assert sorted(lines) == sorted([
        "[element 0] zero 1", "[element 0] zero 2", "[element 1] progress 100%", "[element 1] one done",
        "[element 2] two", "[element 2] no newline at the end", *big, skipped])
    assert lines.index(skipped) == lines.index("[element 3] big 00100") + 1
    # reads: stat + dd per element, one dd more for the big one, stat + dd for the failed one's tail
    assert (transport.programs["stat"], transport.programs["dd"]) == (5, 6)
    assert transport.programs["sacct"] == poller.polls


def test_log_lines_are_plain() -> None:
    assert log_lines("a\r\nb\n") == ["a", "b"]
    assert log_lines("10%\r50%\r100%\nend") == ["100%", "end"]
    assert log_lines("") == []


def test_job_name_is_deterministic_safe_and_distinct() -> None:
    a = job_name_for("dag", "task", "manual__2026-01-01T00:00:00+00:00", -1)
    assert a == job_name_for("dag", "task", "manual__2026-01-01T00:00:00+00:00", -1)
    assert a.startswith("dag.task.manual__2026-01-01T00:00:00+00:00-")
    assert job_name_for("dag", "task", "r", 3).startswith("dag.task.3.r-")
    hostile = job_name_for("d; rm -rf /", "t$(x)", "run 1,2|3\n", 0)
    SlurmJob(script="true", name=hostile)  # accepted by the job model's validator
    assert " " not in hostile and "," not in hostile and "|" not in hostile
    assert job_name_for("d_x", "t", "r", -1) != job_name_for("d x", "t", "r", -1)  # same readable part
    assert len(job_name_for("d" * 300, "t", "r", -1)) <= 161


def test_output_pattern_for_arrays_rejects_percent_j() -> None:
    assert output_pattern(SlurmJob(script="true", name="n", array="0-3"), "/logs") == "/logs/slurm-%A_%a.out"
    assert output_pattern(SlurmJob(script="true", name="n"), None) == "slurm-%j.out"
    with pytest.raises(ValueError, match=r"job.output .*%A"):
        output_pattern(SlurmJob(script="true", name="n", array="0-3", output="x.%j"), None)


def _found(jid: str, state: str, try_number: int, user: str = "dc2test", signed: bool = True) -> FoundJob:
    comment = OWNER.comment("n", try_number) if signed else f"dc2:try={try_number}"
    return FoundJob(jid, "n", SlurmState.parse(state), comment, 1, user)


def _el(jid: str, state: str, nodes: str = "n1") -> JobInfo:
    return JobInfo(jid, "n", SlurmState.parse(state), nodes=nodes)


def test_plan_reattaches_adopts_and_scales() -> None:
    base = SlurmJob(script="true", name="n", time_limit="10", memory="1G", array="0-9%2")
    assert decide_retry(base, [_found("5", "RUNNING", 1)], 2, None, 2, 2, OWNER).reattach.job_id == "5"  # type: ignore[union-attr]
    assert decide_retry(base, [_found("5", "FAILED", 2)], 2, None, 2, 2, OWNER).reattach.job_id == "5"  # type: ignore[union-attr]
    history = [_found("5", "TIMEOUT", 1), _found("6", "OUT_OF_MEMORY", 2), _found("7", "TIMEOUT", 3)]
    last = {f"7_{i}": _el(f"7_{i}", "TIMEOUT" if i in (2, 4) else "COMPLETED") for i in range(10)}
    p = decide_retry(base, history, 4, last, 3, 2, OWNER)
    assert p.reattach is None
    assert (p.job.time_limit, p.job.memory, p.job.array_spec.indices) == (  # type: ignore[union-attr]
        timedelta(minutes=90), 2048, (2, 4))
    assert p.job.array_spec.throttle == 2  # type: ignore[union-attr]
    nf = decide_retry(SlurmJob(script="true", name="n"), [_found("8", "NODE_FAIL", 1)], 2,
                  {"8": _el("8", "NODE_FAIL", "nid0042")}, 2, 2, OWNER)
    assert nf.job.exclude == ("nid0042",)
    done = {f"9_{i}": _el(f"9_{i}", "COMPLETED") for i in range(10)}
    fresh = decide_retry(base, [_found("9", "COMPLETED", 1)], 2, done, 2, 2, OWNER)
    assert fresh.job == base and fresh.reason == "new job"  # a cleared success re-runs everything


def test_plan_ignores_jobs_of_other_users_and_unsigned_jobs(caplog: pytest.LogCaptureFixture) -> None:
    """Names are predictable: another user's job under the task's name and a `dc2:try=N` comment
    (or one copied whole from a job of ours, tag included) is never reattached to nor adopted, and
    neither is a job of our account that this deployment's token did not sign."""
    base = SlurmJob(script="true", name="n", array="0-3")
    copied = _found("777", "RUNNING", 1, user="eve")  # the tag of our try 1, copied
    plain = _found("778", "PENDING", 1, user="eve", signed=False)
    finished = _found("779", "COMPLETED", 2, user="eve")
    caplog.set_level("WARNING")
    for try_number, planted in ((1, [copied, plain]), (2, [finished])):
        p = decide_retry(base, planted, try_number, None, 2, 2, OWNER)
        assert (p.reattach, p.job, p.reason) == (None, base, "new job")
    for jid in ("777", "778", "779"):
        assert f"ignoring Slurm job {jid} (name n): of user 'eve', not 'dc2test'" in caplog.text
    # a foreign job's elements never count as done: the whole array runs
    done = {f"779_{i}": _el(f"779_{i}", "COMPLETED") for i in range(4)}
    assert decide_retry(base, [_found("5", "FAILED", 1), finished], 3, done, 2, 2, OWNER).job == base
    # ours, unsigned (a person using the account by hand, another deployment): not adopted either
    caplog.clear()
    unsigned = _found("780", "RUNNING", 1, signed=False)
    other_token = FoundJob("781", "n", SlurmState.parse("COMPLETED"),
                           Owner("dc2test", "another-deployment-token").comment("n", 1), 1, "dc2test")
    p = decide_retry(base, [unsigned, other_token], 1, None, 2, 2, OWNER)
    assert (p.reattach, p.job) == (None, base)
    assert "ignoring Slurm job 780 (name n): its comment 'dc2:try=1' does not carry" in caplog.text
    assert "ignoring Slurm job 781 (name n)" in caplog.text
    # a signed comment is bound to its name: ours for "n" does not vouch for a job named "m"
    renamed = FoundJob("782", "m", SlurmState.parse("RUNNING"), OWNER.comment("n", 1), 1, "dc2test")
    assert decide_retry(base, [renamed], 1, None, 2, 2, OWNER).reattach is None
    # ours, signed: reattached / adopted as before
    running = decide_retry(base, [copied, _found("9", "RUNNING", 1)], 1, None, 2, 2, OWNER)
    assert running.reattach is not None and running.reattach.job_id == "9"
    adopted = decide_retry(base, [finished, _found("9", "FAILED", 2)], 2, None, 2, 2, OWNER)
    assert adopted.reattach is not None and adopted.reattach.job_id == "9"


def test_array_retry_redoes_every_index_not_seen_completed() -> None:
    """Accounting lags: a finished array's failed elements were seen missing from sacct (3 and 8
    here, 19 FAILED). Missing indices are redone; an index is done when the newest job that ran it
    says COMPLETED, across every earlier try's job."""
    base = SlurmJob(script="true", name="n", array="0-19%8")
    lagging = {f"5_{i}": _el(f"5_{i}", "FAILED" if i == 19 else "COMPLETED")
               for i in range(20) if i not in (3, 8)}
    p = decide_retry(base, [_found("5", "FAILED", 1)], 2, lagging, 2, 2, OWNER)
    assert p.job.array_spec.indices == (3, 8, 19)  # type: ignore[union-attr]
    assert p.reason == "only the 3 indices not completed by job(s) 5: 3,8,19"
    # try 3 after job 25 (try 2) redid 3, 8, 19 and 19 failed again; 5_3 and 5_8 FAILED in job 5
    both = {**lagging, "5_3": _el("5_3", "FAILED"), "5_8": _el("5_8", "FAILED"),
            "25_3": _el("25_3", "COMPLETED"), "25_8": _el("25_8", "COMPLETED"),
            "25_19": _el("25_19", "FAILED")}
    p3 = decide_retry(base, [_found("5", "FAILED", 1), _found("25", "FAILED", 2)], 3, both, 2, 2, OWNER)
    assert p3.job.array_spec.indices == (19,)  # type: ignore[union-attr]
    # nothing completed at all: the whole array again
    failed = {f"5_{i}": _el(f"5_{i}", "FAILED") for i in range(20)}
    assert decide_retry(base, [_found("5", "FAILED", 1)], 2, failed, 2, 2, OWNER).job == base


def test_report_maps_outcomes_to_typed_exceptions() -> None:
    event = {"status": "final", "job_id": "4", "tails": {"4_1": "boom\n"}, "elements": {
        "4_0": {"state": "COMPLETED", "exit_code": 0, "signal": 0, "nodes": "a"},
        "4_1": {"state": "FAILED", "exit_code": 2, "signal": 0, "nodes": "a"}}}
    report = JobReport.from_event(event)
    assert report.counts == {"COMPLETED": 1, "FAILED": 1}
    expected = r"(?s)failed indices \(1\): 1.*4_1: FAILED \(exit code 2\).*boom"
    with pytest.raises(SlurmJobFailed, match=expected):
        report.raise_for_outcome()
    event["elements"]["4_0"]["state"] = "CANCELLED by 1000"
    with pytest.raises(SlurmJobCancelled):  # someone else cancelled: no retry (AirflowFailException)
        JobReport.from_event(event).raise_for_outcome()
    assert issubclass(SlurmJobCancelled, AirflowFailException)
    with pytest.raises(SlurmJobFailed, match="not known"):
        JobReport.from_event({"status": "error", "job_id": "4", "message": "not known"})


class _Conn:
    def __init__(self, conn_type: str, extra: dict[str, object], host: str = "h", login: str = "u") -> None:
        self.conn_id, self.conn_type, self.host, self.login, self.port = "c1", conn_type, host, login, 2222
        self.extra_dejson = extra


def test_connection_errors_name_the_connection_and_field() -> None:
    with pytest.raises(ValueError, match="connection 'c1': extra key_file is required"):
        backend_from_connection(_Conn("ssh", {"host_key": "ssh-ed25519 AAAA"}))
    with pytest.raises(ValueError, match="no_host_key_check is refused"):
        backend_from_connection(_Conn("ssh", {"key_file": "k", "no_host_key_check": True}))
    with pytest.raises(ValueError, match="connection 'c1': ssh: give exactly one of known_hosts or host_key"):
        backend_from_connection(_Conn("ssh", {"key_file": "k"}))
    with pytest.raises(ValueError, match="extra 'cmd_timeout' must be a number"):
        backend_from_connection(_Conn("ssh", {"key_file": "k", "host_key": "x", "cmd_timeout": "soon"}))
    b = backend_from_connection(_Conn("ssh", {"key_file": "k", "host_key": "x", "cmd_timeout": 7}))
    assert (b.kind, b.command_timeout, b.ssh.port, b.ssh.username) == ("ssh", 7.0, 2222, "u")  # type: ignore[union-attr]
    assert backend_from_connection(_Conn("dc2_local", {"state_dir": "/s"})).local_dir == "/s"


def test_certificate_preflight_warns_then_fails(tmp_path: Path) -> None:
    for name in ("ca", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)],
                       check=True)
    subprocess.run(["ssh-keygen", "-q", "-s", str(tmp_path / "ca"), "-I", "u", "-n", "u", "-V", "-1h:+2h",
                    str(tmp_path / "user.pub")], check=True)
    b = backend_from_connection(_Conn("ssh", {"key_file": str(tmp_path / "user"), "host_key": "x"}))
    now = datetime.now(UTC)
    assert check_certificate(b, warn_hours=1, now=now) is None
    warning = check_certificate(b, warn_hours=24, now=now)
    assert warning is not None and "expires in 2.0 h" in warning and "less than 24 h" in warning
    with pytest.raises(AirflowFailException, match="expired"):
        check_certificate(b, warn_hours=24, now=now + timedelta(hours=3))




def test_an_ssh_connection_without_a_job_token_is_refused_naming_both_places(
    db: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """No token, no lookup and no sbatch: the failure says where to set one (before any SSH)."""
    conn = {"conn_type": "ssh", "host": "127.0.0.1", "port": 9, "login": "dc2test",
            "extra": {"key_file": "/nonexistent/key", "host_key": "ssh-ed25519 AAAA"}}
    monkeypatch.setenv("AIRFLOW_CONN_DC2_NO_TOKEN", json.dumps(conn))
    r = run_dag("local_no_token", dict(script="true\n", name="x"), slurm_conn_id="dc2_no_token")
    assert (r.state, r.job_id) == ("failed", None)
    out = capfd.readouterr().out
    assert ("no job token for Slurm connection 'dc2_no_token': set its extra 'job_token', or the "
            "Airflow Variable 'dc2_job_token'") in out


def test_the_job_token_comes_from_the_connection_else_the_variable(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert configured_token("c1", {"job_token": " from-the-connection-extra "}) == "from-the-connection-extra"
    monkeypatch.setenv("AIRFLOW_VAR_DC2_JOB_TOKEN", "from-the-airflow-variable")
    assert configured_token("c1", {}) == "from-the-airflow-variable"
    assert configured_token(None, {"job_token": "not-without-a-connection"}) == "from-the-airflow-variable"
    with pytest.raises(AirflowFailException, match=r"connection 'c1' extra 'job_token': .* at least 16"):
        configured_token("c1", {"job_token": "short"})
    monkeypatch.delenv("AIRFLOW_VAR_DC2_JOB_TOKEN")
    assert configured_token("c1", {}) is None


def test_the_local_backend_makes_its_token_once_and_keeps_it_private(tmp_path: Path) -> None:
    path = tmp_path / "home" / "dc2-job-token"
    token = local_job_token(path)
    assert len(token) == 64 and local_job_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o640)
    with pytest.raises(AirflowFailException, match=r"dc2-job-token: must be a regular file .* mode 0600"):
        local_job_token(path)
    path.chmod(0o600)
    path.rename(tmp_path / "elsewhere")
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AirflowFailException, match="cannot open it"):
        local_job_token(path)


def test_trigger_classpath_is_the_stored_one() -> None:
    """Deferred tasks are stored in the metadata database by the trigger's classpath and kwargs: the
    path must stay the one rows already hold, and lead back to the class."""
    import importlib

    from dc2tasks.airflow.triggers.slurm import SlurmJobTrigger

    trigger = SlurmJobTrigger(job_id="7", element_ids=["7"], log_paths={"7": "slurm-7.out"}, try_number=2)
    classpath, kwargs = trigger.serialize()
    assert classpath == "dc2tasks.airflow.triggers.slurm.SlurmJobTrigger"
    module, _, name = classpath.rpartition(".")
    assert getattr(importlib.import_module(module), name) is SlurmJobTrigger
    assert SlurmJobTrigger(**kwargs).serialize() == (classpath, kwargs)
