"""Slurm job states and what each one means for the task that waits on it.

Why an explicit table: the integrations this project replaces fail every end state the same way.
Here each state Slurm can report maps to one `Outcome`, and a state not in the table is an error
(`UnknownSlurmState`), never a silent default: a new Slurm version must be looked at, not guessed.
States are those of sacct/squeue/scontrol (Slurm 22.05-24.x job_state_string()).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    """What the waiting side should do."""

    WAIT = "wait"
    """Not finished (pending, running, requeued, suspended...): poll again."""
    SUCCESS = "success"
    FAIL = "fail"
    """Ended badly (non-zero exit): fail; the normal retry policy applies."""
    FAIL_NO_RETRY = "fail_no_retry"
    """Ended by a person or a policy (cancelled, deadline): retrying would override a decision."""
    RETRY_MORE_TIME = "retry_more_time"
    """TIMEOUT: retry with the time limit scaled up."""
    RETRY_MORE_MEMORY = "retry_more_memory"
    """OUT_OF_MEMORY: retry with the memory scaled up."""
    RETRY_EXCLUDE_NODES = "retry_exclude_nodes"
    """The node failed, not the job: retry, excluding the node(s) it ran on."""

    @property
    def final(self) -> bool:
        return self is not Outcome.WAIT

    @property
    def retryable(self) -> bool:
        return self in (Outcome.FAIL, Outcome.RETRY_MORE_TIME, Outcome.RETRY_MORE_MEMORY,
                        Outcome.RETRY_EXCLUDE_NODES)


STATE_TABLE: dict[str, Outcome] = {
    # still in the system
    "PENDING": Outcome.WAIT,
    "CONFIGURING": Outcome.WAIT,
    "RUNNING": Outcome.WAIT,
    "COMPLETING": Outcome.WAIT,
    "REQUEUED": Outcome.WAIT,
    "REQUEUE_FED": Outcome.WAIT,
    "REQUEUE_HOLD": Outcome.WAIT,  # held after a requeue: waits for a release, like a held PENDING
    "RESV_DEL_HOLD": Outcome.WAIT,  # held because its reservation was deleted
    "RESIZING": Outcome.WAIT,
    "SUSPENDED": Outcome.WAIT,
    "STOPPED": Outcome.WAIT,  # SIGSTOPped; resumes with SIGCONT
    "SIGNALING": Outcome.WAIT,
    "STAGE_OUT": Outcome.WAIT,  # burst buffer stage-out after the script ended
    # PREEMPTED is reported while a preempted job is requeued (PreemptMode=REQUEUE, NERSC's
    # preemptible QOS); the requeued job then shows PENDING again. Keep waiting.
    "PREEMPTED": Outcome.WAIT,
    # ended
    "COMPLETED": Outcome.SUCCESS,
    "FAILED": Outcome.FAIL,
    "SPECIAL_EXIT": Outcome.FAIL,  # a site EpilogSlurmctld flagged the exit: a failure of the job
    "LAUNCH_FAILED": Outcome.FAIL,  # the batch step could not start (bad workdir, missing image)
    "TIMEOUT": Outcome.RETRY_MORE_TIME,
    "OUT_OF_MEMORY": Outcome.RETRY_MORE_MEMORY,
    "NODE_FAIL": Outcome.RETRY_EXCLUDE_NODES,
    "BOOT_FAIL": Outcome.RETRY_EXCLUDE_NODES,
    "CANCELLED": Outcome.FAIL_NO_RETRY,
    "DEADLINE": Outcome.FAIL_NO_RETRY,  # --deadline passed: a new try has the same deadline
    "REVOKED": Outcome.FAIL_NO_RETRY,  # federation sibling revoked; this client does not follow it
}

_STATE_RE = re.compile(r"(?P<base>[A-Z_]+)(?P<plus>\+)?(?: by (?P<by>\d+))?")


class UnknownSlurmState(ValueError):
    """Slurm reported a state this table does not know."""


@dataclass(frozen=True)
class SlurmState:
    """A parsed state: `CANCELLED by 1001` -> base CANCELLED, cancelled_by 1001.

    `CANCELLED+` is sacct's truncated form (the ` by <uid>` did not fit the column).
    """

    base: str
    raw: str
    cancelled_by: int | None = None

    @classmethod
    def parse(cls, text: str) -> SlurmState:
        raw = text.strip()
        m = _STATE_RE.fullmatch(raw)
        if not m or m["base"] not in STATE_TABLE:
            raise UnknownSlurmState(
                f"unknown Slurm job state {text!r}: add it to dc2tasks.slurm.states.STATE_TABLE"
            )
        by = int(m["by"]) if m["by"] else None
        if by is not None and m["base"] != "CANCELLED":
            raise UnknownSlurmState(f"unexpected 'by <uid>' in Slurm state {text!r}")
        return cls(base=m["base"], raw=raw, cancelled_by=by)

    @property
    def outcome(self) -> Outcome:
        return STATE_TABLE[self.base]

    def __str__(self) -> str:
        return self.raw


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """sacct/scontrol `ExitCode` `3:0` -> (exit status 3, signal 0); empty -> (None, None)."""
    text = text.strip()
    if not text:
        return None, None
    code, _, sig = text.partition(":")
    try:
        return int(code), int(sig) if sig else 0
    except ValueError:
        raise ValueError(f"bad Slurm exit code {text!r} (expected N:M)") from None
