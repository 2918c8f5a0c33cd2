"""The Slurm client: submit, find_by_name, list_by_prefix, status, cancel, read_log.

Why exchanges: each operation is written once, as an `Exchange`, a generator that yields `Command`s
and receives `CommandResult`s (no I/O inside). `SlurmClient` drives an exchange with a blocking
transport (an Airflow worker, the CLI); `AsyncSlurmClient` drives the same exchange with `await` (a
triggerer). The narrow
surface follows Parsl's ExecutionProvider: submit / status / cancel, with explicit state translation
(`states.STATE_TABLE`).

Status is one remote command for any number of jobs: `sacct` when accounting is on, otherwise
`scontrol --oneliner show job` (the decision is remembered per client). A job that sbatch accepted
a moment ago may not be in sacct yet; for ids sacct does not know, one `scontrol` call follows.

Ask for array elements by their ids (`element_ids`): slurmdbd lags slurmctld, and for a second or
two sacct can list an array's last element as finished while elements that are still running are
missing from its output (seen on Slurm 22.05). Likewise a job that ends quickly can first appear
as a placeholder record named "allocation", written before its real record. Asked-for elements
that sacct omits or only has a placeholder for are looked up with scontrol, so a poll never
mistakes "not in sacct yet" for "done".

Every record the client returns is the account's own: lookups by name ask Slurm for that user's
jobs only (`--user`), and each record's user (and, when the client has a job token, its comment) is
checked again by `Owner.keep` (scontrol has no user filter; a Slurm that ignored the option must
not matter). Anything else is logged and dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TypeVar

from dc2tasks.slurm import commands as c
from dc2tasks.slurm.commands import Command, CommandResult, JobInfo
from dc2tasks.slurm.job import SlurmJob
from dc2tasks.slurm.owner import Owner
from dc2tasks.slurm.states import Outcome, SlurmState
from dc2tasks.slurm.transports.base import AsyncTransport, Transport

T = TypeVar("T")
Exchange = Generator[Command, CommandResult, T]
"""One operation's commands, each sent once the previous one's result is in; returns a T."""
log = logging.getLogger(__name__)


class SlurmCommandError(RuntimeError):
    """A Slurm command failed for a reason other than the ones the client handles."""


@dataclass(frozen=True)
class FoundJob:
    """A job found by name: its (array) job id, a summary state, and the comment (the try)."""

    job_id: str
    name: str
    state: SlurmState
    comment: str
    elements: int
    user: str = ""

    @property
    def outcome(self) -> Outcome:
        return self.state.outcome


def summarise_found(infos: list[JobInfo]) -> list[FoundJob]:
    """One FoundJob per job id: waiting if any element waits, else the first non-COMPLETED state."""
    groups: dict[str, list[JobInfo]] = {}
    for j in infos:
        groups.setdefault(j.array_job_id, []).append(j)
    found = []
    for jid, els in groups.items():
        waiting = [e for e in els if not e.outcome.final]
        bad = [e for e in els if e.outcome is not Outcome.SUCCESS]
        rep = (waiting or bad or els)[0]
        found.append(FoundJob(jid, rep.name, rep.state, rep.comment, len(els), rep.user))
    return sorted(found, key=lambda f: int(f.job_id))


def element_ids(job_id: str, job: SlurmJob) -> list[str]:
    """The ids to poll for a submitted job: `<id>_<i>` for each array index, else the id."""
    spec = job.array_spec
    return [f"{job_id}_{i}" for i in spec.indices] if spec else [job_id]


class _Exchanges:
    """The operations, as exchanges. Holds the accounting on/off memory."""

    def __init__(self, owner: Owner, command_timeout: float = c.DEFAULT_TIMEOUT) -> None:
        self.accounting: bool | None = None
        self.timeout = command_timeout
        self.owner = owner
        self.user = owner.user

    def _check(self, what: str, r: CommandResult) -> None:
        if r.returncode != 0:
            raise SlurmCommandError(f"{what} failed (exit {r.returncode}): {r.err.strip()}")

    def submit(self, job: SlurmJob) -> Exchange[str]:
        r = yield c.sbatch(job.render(), self.timeout)
        return c.parse_sbatch(r)

    def _scontrol(self, ids: list[str]) -> Exchange[dict[str, JobInfo]]:
        r = yield c.scontrol_show_jobs(self.timeout)
        self._check("scontrol show job", r)
        return self._mine(c.select(c.parse_scontrol(r.out), ids), "scontrol")

    def _mine(self, found: dict[str, JobInfo], what: str) -> dict[str, JobInfo]:
        """Status by id: the ids are ours, so only the account is checked (not the comment)."""
        kept = Owner(self.user).keep(list(found.values()), what)
        return {j.job_id: j for j in kept}

    def status(self, ids: Iterable[str | int]) -> Exchange[dict[str, JobInfo]]:
        wanted = c.job_ids(ids)
        if self.accounting is not False:
            r = yield c.sacct(wanted, self.user, self.timeout)
            if c.accounting_disabled(r):
                self.accounting = False
            else:
                self._check("sacct", r)
                self.accounting = True
                found = {k: j for k, j in c.select(c.parse_sacct(r.out), wanted).items()
                         if j.name != c.DBD_PLACEHOLDER_NAME}
                found = self._mine(found, "sacct")
                seen = {j.array_job_id for j in found.values()} | set(found)
                missing = [i for i in wanted if i not in seen]
                if missing:
                    found.update((yield from self._scontrol(missing)))
                return found
        return (yield from self._scontrol(wanted))

    def find_by_name(self, name: str) -> Exchange[list[FoundJob]]:
        return summarise_found((yield from self.elements_by_name(name)))

    def elements_by_name(self, name: str) -> Exchange[list[JobInfo]]:
        """Every job and array element of that name that is ours (`Owner`), from slurmctld and
        accounting together."""
        infos = yield from self._elements_by_name(name)
        return self.owner.keep(infos, f"jobs named {name}")

    def _elements_by_name(self, name: str) -> Exchange[list[JobInfo]]:
        if self.accounting is not False:
            r = yield c.sacct_by_name(name, self.user, timeout=self.timeout)
            if c.accounting_disabled(r):
                self.accounting = False
            else:
                self._check("sacct", r)
                self.accounting = True
                infos = [j for j in c.parse_sacct(r.out) if j.name == name]
                r2 = yield c.squeue_by_name(name, self.user, self.timeout)
                self._check("squeue", r2)
                # slurmctld is authoritative for the jobs it still holds; sacct lags it: a job just
                # submitted may be missing there, or recorded without its comment (seen on 22.05),
                # or an array without some elements. sacct alone tells of the jobs (and array
                # elements) slurmctld has forgotten.
                merged = {j.job_id: j for j in infos}
                merged.update((j.job_id, j) for j in c.parse_squeue(r2.out) if j.name == name)
                return list(merged.values())
        r = yield c.squeue_by_name(name, self.user, self.timeout)
        self._check("squeue", r)
        return [j for j in c.parse_squeue(r.out) if j.name == name]

    def list_by_prefix(self, prefix: str) -> Exchange[list[JobInfo]]:
        """Every job (array element) not yet ended whose name starts with `prefix` and that is ours
        (`Owner`): one squeue, whatever the number of jobs."""
        r = yield c.squeue_listing(self.user, self.timeout)
        self._check("squeue", r)
        return self.owner.keep(c.parse_listing(r.out, prefix), f"jobs named {prefix}*")

    def cancel(self, ids: Iterable[str | int]) -> Exchange[None]:
        r = yield c.scancel(c.job_ids(ids), self.timeout)
        self._check("scancel", r)

    def read_log(
        self, path: str, offset: int, limit: int
    ) -> Exchange[tuple[str, int]]:
        r = yield c.read_bytes(path, offset, limit, self.timeout)
        if c.symlink_refused(r):
            log.warning("job log %s is a symbolic link: not read", path)
        if r.returncode != 0:
            return "", offset  # not there yet (the job has not started): nothing new
        data = r.stdout
        if len(data) == limit and b"\n" in data:
            data = data[: data.rindex(b"\n") + 1]  # whole lines when the chunk was cut
        for cut in range(4):  # never split a UTF-8 character between two reads
            try:
                text = data[: len(data) - cut].decode("utf-8")
                return text, offset + len(data) - cut
            except UnicodeDecodeError:
                continue
        return data.decode("utf-8", "replace"), offset + len(data)

    def log_size(self, path: str) -> Exchange[int | None]:
        """The size of a log (lstat: a link's own, never its target's); None when it is not there."""
        r = yield c.file_size(path, self.timeout)
        return int(r.out.strip()) if r.returncode == 0 and r.out.strip().isdigit() else None

    def tail_log(self, path: str, nbytes: int) -> Exchange[str]:
        """The last `nbytes` of a log, read no-follow like `read_log` (the size comes from lstat;
        if the path is swapped for a link in between, the read refuses it)."""
        size = yield from self.log_size(path)
        if size is None:
            return ""
        r = yield c.read_bytes(path, max(0, size - int(nbytes)), int(nbytes), self.timeout)
        if c.symlink_refused(r):
            return f"(job log {path} is a symbolic link: not read)\n"
        return r.stdout.decode("utf-8", "replace") if r.returncode == 0 else ""


class SlurmClient:
    """Blocking client. `transport` is a LocalTransport, SubprocessTransport or SSHTransport.

    `owner`: whose jobs it acts on; default: the transport's account, no job token."""

    def __init__(self, transport: Transport, command_timeout: float = c.DEFAULT_TIMEOUT,
                 owner: Owner | None = None) -> None:
        self.transport = transport
        self._exchanges = _Exchanges(owner or Owner(transport.user), command_timeout)

    def _drive(self, exchange: Exchange[T]) -> T:
        try:
            cmd = next(exchange)
            while True:
                cmd = exchange.send(self.transport.run(cmd))
        except StopIteration as stop:
            return stop.value

    def submit(self, job: SlurmJob) -> str:
        """Submit and return the job id (the array job id for arrays)."""
        return self._drive(self._exchanges.submit(job))

    def status(self, ids: Iterable[str | int]) -> dict[str, JobInfo]:
        """State of many jobs in one command; array elements are reported as `<id>_<i>`."""
        return self._drive(self._exchanges.status(ids))

    def find_by_name(self, name: str) -> list[FoundJob]:
        return self._drive(self._exchanges.find_by_name(name))

    def elements_by_name(self, name: str) -> list[JobInfo]:
        return self._drive(self._exchanges.elements_by_name(name))

    def list_by_prefix(self, prefix: str) -> list[JobInfo]:
        return self._drive(self._exchanges.list_by_prefix(prefix))

    def cancel(self, ids: Iterable[str | int]) -> None:
        self._drive(self._exchanges.cancel(ids))

    def read_log(self, path: str, offset: int = 0, limit: int = c.LOG_CHUNK) -> tuple[str, int]:
        """New text of a log file from `offset`, and the offset to read from next time."""
        return self._drive(self._exchanges.read_log(path, offset, limit))

    def log_size(self, path: str) -> int | None:
        return self._drive(self._exchanges.log_size(path))

    def tail_log(self, path: str, nbytes: int = 4000) -> str:
        return self._drive(self._exchanges.tail_log(path, nbytes))

    def wait(self, ids: Iterable[str | int], timeout: float, interval: float = 0.5) -> dict[str, JobInfo]:
        """Block until every job is in a final state (the local backend and tests; the Airflow
        trigger polls instead). Raises TimeoutError with the last states seen."""
        wanted = [str(i) for i in ids]
        deadline = time.monotonic() + timeout
        while True:
            got = self.status(wanted)
            if set(got) >= set(wanted) and all(got[i].outcome.final for i in wanted):
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs {wanted} not final after {timeout} s: {got}")
            time.sleep(interval)


class AsyncSlurmClient:
    """The same operations for an event loop (the Airflow triggerer)."""

    def __init__(self, transport: AsyncTransport, command_timeout: float = c.DEFAULT_TIMEOUT,
                 owner: Owner | None = None) -> None:
        self.transport = transport
        self._exchanges = _Exchanges(owner or Owner(transport.user), command_timeout)

    async def _drive(self, exchange: Exchange[T]) -> T:
        try:
            cmd = next(exchange)
            while True:
                cmd = exchange.send(await self.transport.arun(cmd))
        except StopIteration as stop:
            return stop.value

    async def submit(self, job: SlurmJob) -> str:
        return await self._drive(self._exchanges.submit(job))

    async def status(self, ids: Iterable[str | int]) -> dict[str, JobInfo]:
        return await self._drive(self._exchanges.status(ids))

    async def find_by_name(self, name: str) -> list[FoundJob]:
        return await self._drive(self._exchanges.find_by_name(name))

    async def elements_by_name(self, name: str) -> list[JobInfo]:
        return await self._drive(self._exchanges.elements_by_name(name))

    async def list_by_prefix(self, prefix: str) -> list[JobInfo]:
        return await self._drive(self._exchanges.list_by_prefix(prefix))

    async def cancel(self, ids: Iterable[str | int]) -> None:
        await self._drive(self._exchanges.cancel(ids))

    async def read_log(self, path: str, offset: int = 0, limit: int = c.LOG_CHUNK) -> tuple[str, int]:
        return await self._drive(self._exchanges.read_log(path, offset, limit))

    async def log_size(self, path: str) -> int | None:
        return await self._drive(self._exchanges.log_size(path))

    async def tail_log(self, path: str, nbytes: int = 4000) -> str:
        return await self._drive(self._exchanges.tail_log(path, nbytes))
