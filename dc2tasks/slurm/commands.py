"""Every command the client sends to Slurm, and the parsers for what comes back.

Why one module: the local emulator, a local shell and SSH all receive exactly these argv lists, so
quoting (`Command.shell`) and output formats are decided in one place. Job ids are validated
before they are put on a command line; everything else is quoted.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from dc2tasks.slurm import validate as v
from dc2tasks.slurm.job import ArraySpec
from dc2tasks.slurm.states import Outcome, SlurmState, parse_exit_code

SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "Elapsed", "MaxRSS", "NodeList", "User", "Comment")
"""Comment last: another user's comment may hold a `|`, which then stays inside the comment."""
SQUEUE_FORMAT = "%i|%j|%T|%u|%k"
LISTING_FORMAT = "%i|%j|%T|%V|%u|%k"
"""`squeue_listing`'s: SQUEUE_FORMAT with the submit time (%V, local time, ISO 8601) before the user."""
ACCOUNTING_DISABLED = ("accounting is disabled", "accounting storage is disabled")
DEFAULT_TIMEOUT = 60.0
DBD_PLACEHOLDER_NAME = "allocation"
"""slurmdbd's name for a job whose step records arrived before the job's own record."""
LOG_CHUNK = 1 << 20
LOG_DIR_MODE = "0750"


@dataclass(frozen=True)
class Command:
    """One remote command: argv (never a shell string), optional stdin, and a timeout in seconds."""

    argv: tuple[str, ...]
    stdin: bytes | None = None
    timeout: float = DEFAULT_TIMEOUT

    def shell(self) -> str:
        """The POSIX-shell-quoted command line, for transports that go through a shell (ssh)."""
        return shlex.join(self.argv)


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


@dataclass(frozen=True)
class JobInfo:
    """One job, or one array element (`job_id` = `<array id>_<index>`)."""

    job_id: str
    name: str
    state: SlurmState
    exit_code: int | None = None
    signal: int | None = None
    elapsed_s: int | None = None
    max_rss_bytes: int | None = None
    nodes: str = ""
    comment: str = ""
    reason: str = ""
    user: str = ""
    """The account the job belongs to (squeue %u, sacct User, scontrol UserId)."""
    submitted: float | None = None
    """When it was submitted (epoch seconds): only `squeue_listing` asks for it."""

    @property
    def outcome(self) -> Outcome:
        return self.state.outcome

    @property
    def array_job_id(self) -> str:
        return self.job_id.split("_")[0]

    @property
    def array_task_id(self) -> int | None:
        _, _, idx = self.job_id.partition("_")
        return int(idx) if idx else None


def job_ids(ids: Iterable[str | int]) -> list[str]:
    """Validate job ids (`123` or `123_4`) before they reach a command line."""
    out = [v.check("job id", str(i), v.JOB_ID_RE, "job id (N or N_i)") for i in ids]
    if not out:
        raise ValueError("job id: empty list")
    return out


def sbatch(script: str, timeout: float = DEFAULT_TIMEOUT) -> Command:
    """Submit a rendered script on stdin; all options are in its #SBATCH lines."""
    return Command(("sbatch", "--parsable"), stdin=script.encode(), timeout=timeout)


def _user(user: str) -> str:
    return f"--user={v.check('user', user, v.USER_RE, 'user name')}"


def _sacct(user: str, *select: str, timeout: float) -> Command:
    fmt = ",".join(SACCT_FIELDS)
    return Command(
        ("sacct", "--noheader", "--parsable2", f"--format={fmt}", _user(user), *select), timeout=timeout
    )


def sacct(ids: Iterable[str], user: str, timeout: float = DEFAULT_TIMEOUT) -> Command:
    return _sacct(user, f"--jobs={','.join(job_ids(ids))}", timeout=timeout)


def sacct_by_name(
    name: str, user: str, since: str = "now-7days", timeout: float = DEFAULT_TIMEOUT
) -> Command:
    """The jobs of `user` named `name`: never another account's job of the same name."""
    v.check("name", name, v.NAME_RE, "job name")
    return _sacct(user, f"--name={name}", f"--starttime={since}", timeout=timeout)


def scontrol_show_jobs(timeout: float = DEFAULT_TIMEOUT) -> Command:
    """All jobs slurmctld still holds (finished ones for MinJobAge): one command for any number."""
    return Command(("scontrol", "--oneliner", "show", "job"), timeout=timeout)


def squeue_by_name(name: str, user: str, timeout: float = DEFAULT_TIMEOUT) -> Command:
    v.check("name", name, v.NAME_RE, "job name")
    return Command(
        ("squeue", "--noheader", "--array", "--states=all", _user(user), f"--name={name}",
         f"--format={SQUEUE_FORMAT}"),
        timeout=timeout,
    )


def squeue_listing(user: str, timeout: float = DEFAULT_TIMEOUT) -> Command:
    """Every job of `user` slurmctld still holds that has not ended (squeue's default states), one
    line per array element. squeue's `--name` matches whole names only, so a listing by name prefix
    asks for all of the account's jobs and `parse_listing` keeps the prefix."""
    return Command(("squeue", "--noheader", "--array", _user(user), f"--format={LISTING_FORMAT}"),
                   timeout=timeout)


def scancel(ids: Iterable[str], timeout: float = DEFAULT_TIMEOUT) -> Command:
    return Command(("scancel", *job_ids(ids)), timeout=timeout)


def _file_path(path: str) -> str:
    if not isinstance(path, str) or "\0" in path or not path:
        raise ValueError(f"path: {path!r} is not a file path")
    return path


def read_bytes(path: str, offset: int, limit: int = LOG_CHUNK, timeout: float = DEFAULT_TIMEOUT) -> Command:
    """Bytes [offset, offset+limit) of a file, with GNU dd (one argv, no pipe, no shell needed).

    `nofollow`: a log path that is a symbolic link is not opened (ELOOP), so whoever can write in
    the log directory cannot make the service read, and show in a task log, another file."""
    _file_path(path)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset: expected an integer >= 0, got {offset!r}")
    return Command(
        ("dd", f"if={path}", "bs=65536", f"skip={offset}", f"count={limit}",
         "iflag=nofollow,skip_bytes,count_bytes", "status=none"),
        timeout=timeout,
    )


def file_size(path: str, timeout: float = DEFAULT_TIMEOUT) -> Command:
    """The size of `path` itself (lstat: a symbolic link is reported, not followed)."""
    return Command(("stat", "--format=%s", "--", _file_path(path)), timeout=timeout)


def make_log_dir(path: str, timeout: float = DEFAULT_TIMEOUT) -> Command:
    """Create a job log directory (and its parents), mode 0750 even when it already exists:
    logs say what the jobs read and where; other users of the cluster have no business there."""
    return Command(("install", "-d", "-m", LOG_DIR_MODE, "--", _file_path(path)), timeout=timeout)


def symlink_refused(result: CommandResult) -> bool:
    """dd iflag=nofollow (and O_NOFOLLOW) fail with ELOOP on a symbolic link."""
    return result.returncode != 0 and "Too many levels of symbolic links" in result.err


def accounting_disabled(result: CommandResult) -> bool:
    text = (result.err + result.out).lower()
    return result.returncode != 0 and any(s in text for s in ACCOUNTING_DISABLED)


def parse_sbatch(result: CommandResult) -> str:
    """`sbatch --parsable` prints `<id>` or `<id>;<cluster>`."""
    first = result.out.strip().splitlines()[0] if result.out.strip() else ""
    job_id = first.split(";")[0]
    if result.returncode != 0 or not re.fullmatch(r"\d+", job_id):
        raise SubmitError(f"sbatch failed (exit {result.returncode}): {result.err.strip() or first}")
    return job_id


class SubmitError(RuntimeError):
    """sbatch refused the job (the message is Slurm's)."""


_ELAPSED_RE = re.compile(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)")


def parse_elapsed(text: str) -> int | None:
    """A duration as sacct (Elapsed) and scontrol (RunTime) print it, `[D-][HH:]MM:SS[.mmm]` ->
    whole seconds; None for `INVALID`, `UNLIMITED`, an empty field or anything else."""
    m = _ELAPSED_RE.fullmatch(text.strip())
    if not m:
        return None
    days, hours, minutes = (int(g) if g else 0 for g in m.groups()[:3])
    return int(((days * 24 + hours) * 60 + minutes) * 60 + float(m[4]))


_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)", re.IGNORECASE)
_SIZE = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int | None:
    """A memory size as sacct prints it (MaxRSS `3276K`, `1.5G`, `0`) -> bytes; None if it is not one."""
    m = _SIZE_RE.fullmatch(text.strip())
    return int(float(m[1]) * _SIZE[m[2].upper()]) if m else None


def expand_array_ids(job_id: str) -> list[str]:
    """`12_[5-7,9%2]` (a pending array's remaining elements) -> 12_5, 12_6, 12_7, 12_9."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    return [f"{m[1]}_{i}" for i in ArraySpec.parse(m[2]).indices]


def parse_sacct(text: str) -> list[JobInfo]:
    """Parse `sacct --parsable2` lines: job/element lines become JobInfo; step lines (`.batch`,
    `.extern`, `.0`) only contribute their MaxRSS (which Slurm reports per step)."""
    jobs: dict[str, JobInfo] = {}
    rss: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        f = line.split("|", len(SACCT_FIELDS) - 1)
        if len(f) != len(SACCT_FIELDS):
            raise ValueError(f"sacct: expected {len(SACCT_FIELDS)} fields, got {line!r}")
        jid, name, state, code, elapsed, maxrss, nodes, user, comment = f
        if "." in jid:
            size = parse_size(maxrss)
            base = jid.split(".")[0]
            if size is not None:
                rss[base] = max(rss.get(base, 0), size)
            continue
        ec, sig = parse_exit_code(code)
        for one in expand_array_ids(jid):
            if "[" in jid and one in jobs:
                continue  # a stale pending-range record never hides an element's own record
            jobs[one] = JobInfo(
                job_id=one, name=name, state=SlurmState.parse(state), exit_code=ec, signal=sig,
                elapsed_s=parse_elapsed(elapsed), max_rss_bytes=parse_size(maxrss),
                nodes="" if nodes in ("None assigned", "(null)") else nodes, comment=comment, user=user,
            )
    for jid, size in rss.items():
        if jid in jobs:
            j = jobs[jid]
            jobs[jid] = JobInfo(**{**j.__dict__, "max_rss_bytes": max(size, j.max_rss_bytes or 0)})
    return list(jobs.values())


_KV_RE = re.compile(r"(\w+)=(\S*)")


def parse_scontrol(text: str) -> list[JobInfo]:
    """Parse `scontrol --oneliner show job`: one record per line, `Key=Value` tokens."""
    out: dict[str, JobInfo] = {}
    for line in text.splitlines():
        kv = dict(_KV_RE.findall(line))
        if "JobId" not in kv or "JobState" not in kv:
            continue
        array_id, task = kv.get("ArrayJobId"), kv.get("ArrayTaskId")
        ids, is_range = [kv["JobId"]], bool(task and not task.isdigit())
        if array_id and task:
            ids = expand_array_ids(f"{array_id}_[{task}]") if not task.isdigit() else [f"{array_id}_{task}"]
        ec, sig = parse_exit_code(kv.get("ExitCode", ""))
        for one in ids:
            if is_range and one in out:
                continue  # a pending-range record never hides an element's own record
            out[one] = (JobInfo(
                job_id=one, name=kv.get("JobName", ""), state=SlurmState.parse(kv["JobState"]),
                exit_code=ec, signal=sig, elapsed_s=parse_elapsed(kv.get("RunTime", "")),
                nodes="" if kv.get("NodeList", "(null)") == "(null)" else kv["NodeList"],
                comment="" if kv.get("Comment", "(null)") == "(null)" else kv["Comment"],
                reason="" if kv.get("Reason", "None") == "None" else kv["Reason"],
                user=kv.get("UserId", "").split("(")[0],
            ))
    return list(out.values())


def _squeue_lines(text: str, fmt: str) -> list[list[str]]:
    """The `|`-separated fields of each line of squeue's `--format=fmt` output (the comment, last,
    may itself hold a `|`)."""
    count = fmt.count("|") + 1
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        f = line.split("|", count - 1)
        if len(f) != count:
            raise ValueError(f"squeue: expected {count} fields ({fmt}), got {line!r}")
        rows.append(f)
    return rows


def _squeue_infos(jid: str, name: str, state: str, user: str, comment: str,
                  submitted: float | None = None) -> list[JobInfo]:
    """One JobInfo per element of a squeue line (a pending array's range expanded)."""
    return [JobInfo(job_id=one, name=name, state=SlurmState.parse(state), user=user.strip(),
                    comment="" if comment == "(null)" else comment, submitted=submitted)
            for one in expand_array_ids(jid.strip())]


def parse_squeue(text: str) -> list[JobInfo]:
    """Parse `squeue --format=%i|%j|%T|%u|%k` (no exit codes: squeue does not report them)."""
    return [j for f in _squeue_lines(text, SQUEUE_FORMAT) for j in _squeue_infos(*f)]


def parse_listing(text: str, prefix: str) -> list[JobInfo]:
    """Parse `squeue --format=LISTING_FORMAT`, keeping the jobs whose name starts with `prefix`."""
    out: list[JobInfo] = []
    for jid, name, state, submitted, user, comment in _squeue_lines(text, LISTING_FORMAT):
        if name.startswith(prefix):
            out += _squeue_infos(jid, name, state, user, comment, _submit_time(submitted))
    return out


def _submit_time(text: str) -> float | None:
    """squeue's %V (`2026-12-02T09:35:01`, the cluster's local time) -> epoch seconds; None if absent."""
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def select(infos: Iterable[JobInfo], wanted: Iterable[str]) -> dict[str, JobInfo]:
    """Keep the records asked for: an id `N` selects job N or all elements `N_i` of array N."""
    want = set(wanted)
    return {
        j.job_id: j for j in infos
        if j.job_id in want or j.array_job_id in want
    }
