"""Wait for one Slurm job (or array) through the shared poller; put its output in the task log;
report its end.

Why one coroutine for both modes: the trigger (deferrable, in the triggerer) and the operator's
non-deferrable mode (`asyncio.run` on the worker) must behave the same, so both call `wait_for_job`.
The result is a JSON-able payload (a TriggerEvent travels through the metadata database).

The output: a job of one element is streamed as it runs (new whole lines at each poll). An array's
elements run side by side, and their lines interleaved would say nothing, so each element's log goes
to the task log in one block when the element ends (in order of completion), every line prefixed
with the element's index (`[element 3] ...`), and bounded: the first and last `element_log_bytes`
of a longer log, with a line saying how much lies between. That costs reads of each ended element's
log once, never a command per element per poll.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from dc2tasks.airflow.poller import PollFailed, SharedPoller
from dc2tasks.slurm import AsyncSlurmClient, JobInfo, Outcome
from dc2tasks.slurm.transports import TransportError

MAX_LOG_LINE = 10_000


@dataclass(frozen=True)
class JobWaitSpec:
    job_id: str
    element_ids: tuple[str, ...]
    log_paths: dict[str, str]
    """Element id -> its log file on the cluster (stdout, with stderr unless --error was given)."""
    stream_log: bool = True
    poll_interval: float = 30.0
    tail_bytes: int = 3000
    max_failed_tails: int = 10
    missing_limit: int = 20
    """Polls in a row in which Slurm knows none of the ids before giving up on the job."""
    element_log_bytes: int = 32_768
    """An array element's log in the task log: its first and last this many bytes."""


def element_record(info: JobInfo) -> dict[str, Any]:
    return {"state": info.state.raw, "exit_code": info.exit_code, "signal": info.signal,
            "nodes": info.nodes, "reason": info.reason, "comment": info.comment}


def state_counts(jobs: dict[str, JobInfo | None]) -> dict[str, int]:
    return dict(sorted(Counter(j.state.base if j else "UNKNOWN" for j in jobs.values()).items()))


def log_lines(text: str) -> list[str]:
    """A job's output as plain lines: split at newlines, each line what a terminal leaves of it (the
    text after its last carriage return: a progress bar's final state, not every redraw)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r").rpartition("\r")[2] for line in lines]


async def _stream(poller: SharedPoller, path: str, offset: int, log: logging.Logger | Any) -> int:
    """Log the new lines of `path` (whole lines; a partial last line waits for the next poll)."""
    try:
        text, new_offset = await poller.client.read_log(path, offset)
    except TransportError as e:
        log.warning("could not read %s: %s", path, e)
        return offset
    if not text:
        return offset
    if not text.endswith("\n"):
        cut = text.rfind("\n") + 1
        if cut == 0 and len(text) < MAX_LOG_LINE:
            return offset
        if cut:
            new_offset -= len(text[cut:].encode())
            text = text[:cut]
    for line in log_lines(text):
        log.info("%s", line)
    return new_offset


async def _drain(poller: SharedPoller, path: str, offset: int, log: logging.Logger | Any) -> None:
    for _ in range(100):  # after the end: read everything left, a final line without newline too
        try:
            text, new_offset = await poller.client.read_log(path, offset)
        except TransportError as e:
            log.warning("could not read %s: %s", path, e)
            return
        if not text:
            return
        for line in log_lines(text):
            log.info("%s", line)
        offset = new_offset


async def read_bounded(client: AsyncSlurmClient, path: str, nbytes: int) -> tuple[str, int, str] | None:
    """A finished log's first and last `nbytes` (whole lines) and how many bytes lie between them
    (0: the whole log is in the first part); None when there is no log. Two or three commands."""
    size = await client.log_size(path)
    if size is None:
        return None
    if size <= 2 * nbytes:  # one read; a limit above the size keeps a last line without newline
        text, _ = await client.read_log(path, 0, size + 1)
        return text, 0, ""
    head, head_end = await client.read_log(path, 0, nbytes)  # cut after its last newline
    # from one byte earlier: the tail's whole lines start after the first newline of this read
    tail, _ = await client.read_log(path, size - nbytes - 1, nbytes + 2)
    first = tail.find("\n") + 1
    if 0 < first < len(tail):
        tail = tail[first:]
    return head, size - len(tail.encode()) - head_end, tail


class ElementLogs:
    """The logs of an array's elements, each put in the task log once, when its element has ended."""

    def __init__(self, poller: SharedPoller, spec: JobWaitSpec, log: logging.Logger | Any) -> None:
        self.client = poller.client
        self.spec = spec
        self.log = log
        self.done: set[str] = set()

    async def log_ended(self, jobs: dict[str, JobInfo | None]) -> None:
        """Log the elements that have ended since the last poll (in index order within one poll)."""
        for eid in self.spec.element_ids:
            info = jobs.get(eid)
            if eid not in self.done and info is not None and info.outcome.final:
                self.done.add(eid)
                await self._log_element(eid, info)

    async def _log_element(self, eid: str, info: JobInfo) -> None:
        path = self.spec.log_paths.get(eid)
        if path is None:
            return
        prefix = f"[element {eid.partition('_')[2] or eid}]"
        try:
            read = await read_bounded(self.client, path, self.spec.element_log_bytes)
        except TransportError as e:
            self.log.warning("%s could not read %s: %s", prefix, path, e)
            return
        if read is None:
            self.log.info("%s %s %s: no log at %s", prefix, eid, info.state.raw, path)
            return
        head, skipped, tail = read
        lines = [f"{prefix} {eid} {info.state.raw}: its log {path}"]
        lines += [f"{prefix} {line}" for line in log_lines(head)]
        if skipped:
            lines.append(f"{prefix} ... {skipped} bytes skipped (the whole log: {path}) ...")
            lines += [f"{prefix} {line}" for line in log_lines(tail)]
        self.log.info("%s", "\n".join(lines))


async def wait_for_job(poller: SharedPoller, spec: JobWaitSpec, log: logging.Logger | Any) -> dict[str, Any]:
    # one element (a plain job, or an array of one such as a single visit stripe): its log is streamed;
    # log_paths is keyed by element id ("12" or "12_0"), not by the array's job id
    only = spec.element_ids[0] if len(spec.element_ids) == 1 else None
    stream_path = spec.log_paths.get(only) if spec.stream_log and only else None
    elements = ElementLogs(poller, spec, log) if spec.stream_log and not only else None
    offset = 0
    missing = 0
    last_counts: dict[str, int] | None = None
    async with poller.subscribe(list(spec.element_ids), spec.poll_interval) as sub:
        while True:
            item = await sub.next()
            if isinstance(item, PollFailed):
                log.warning("Slurm status poll failed (%d in a row; retrying in %.0f s): %s",
                            item.consecutive, item.retry_in_s, item.error)
                continue
            jobs = item.jobs
            if all(j is None for j in jobs.values()):
                missing += 1
                if missing >= spec.missing_limit:
                    return {"status": "error", "job_id": spec.job_id,
                            "message": f"Slurm has not known job {spec.job_id} for {missing} polls"}
                continue
            missing = 0
            counts = state_counts(jobs)
            if counts != last_counts:
                log.info("Slurm job %s: %s", spec.job_id, ", ".join(f"{k} {v}" for k, v in counts.items()))
                last_counts = counts
            started = any(j is not None and j.state.base not in ("PENDING",) for j in jobs.values())
            if stream_path and started:
                offset = await _stream(poller, stream_path, offset, log)
            if elements is not None:
                await elements.log_ended(jobs)
            if any(j is None or not j.outcome.final for j in jobs.values()):
                continue
            if stream_path:
                await _drain(poller, stream_path, offset, log)
            return await _final_payload(poller, spec, jobs)  # type: ignore[arg-type]


async def _final_payload(poller: SharedPoller, spec: JobWaitSpec, jobs: dict[str, JobInfo]) -> dict[str, Any]:
    failed = [i for i, j in jobs.items() if j.outcome is not Outcome.SUCCESS]
    tails: dict[str, str] = {}
    for eid in failed[: spec.max_failed_tails]:
        path = spec.log_paths.get(eid)
        if path:
            try:
                tails[eid] = await poller.client.tail_log(path, spec.tail_bytes)
            except TransportError as e:
                tails[eid] = f"(could not read {path}: {e})"
    return {"status": "final", "job_id": spec.job_id,
            "elements": {i: element_record(j) for i, j in jobs.items()}, "tails": tails}
