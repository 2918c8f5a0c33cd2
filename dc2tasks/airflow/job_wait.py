"""Wait for one Slurm job (or array) through the shared poller; stream its log; report its end.

Why one coroutine for both modes: the trigger (deferrable, in the triggerer) and the operator's
non-deferrable mode (`asyncio.run` on the worker) must behave the same, so both call `wait_for_job`.
The result is a JSON-able payload (a TriggerEvent travels through the metadata database).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from dc2tasks.airflow.poller import PollFailed, SharedPoller
from dc2tasks.slurm import JobInfo, Outcome
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


def element_record(info: JobInfo) -> dict[str, Any]:
    return {"state": info.state.raw, "exit_code": info.exit_code, "signal": info.signal,
            "nodes": info.nodes, "reason": info.reason, "comment": info.comment}


def state_counts(jobs: dict[str, JobInfo | None]) -> dict[str, int]:
    return dict(sorted(Counter(j.state.base if j else "UNKNOWN" for j in jobs.values()).items()))


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
    for line in text.splitlines():
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
        for line in text.splitlines():
            log.info("%s", line)
        offset = new_offset


async def wait_for_job(poller: SharedPoller, spec: JobWaitSpec, log: logging.Logger | Any) -> dict[str, Any]:
    # one element (a plain job, or an array of one such as a single visit stripe): its log is streamed;
    # log_paths is keyed by element id ("12" or "12_0"), not by the array's job id
    only = spec.element_ids[0] if len(spec.element_ids) == 1 else None
    stream_path = spec.log_paths.get(only) if spec.stream_log and only else None
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
