"""From a finished job's report to the task's fate: success, or a typed exception per outcome.

Each exception carries the `Outcome` it stands for, so the task's failure says why in Airflow's
terms (a cancelled job fails without retry; a TIMEOUT, OUT_OF_MEMORY or NODE_FAIL is retried, and
the next try reads from Slurm how to change the job: `dc2tasks.airflow.retry`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dc2tasks.slurm import Outcome, SlurmState

_SEVERITY = [Outcome.FAIL_NO_RETRY, Outcome.FAIL, Outcome.RETRY_EXCLUDE_NODES, Outcome.RETRY_MORE_MEMORY,
             Outcome.RETRY_MORE_TIME]


class SlurmJobFailed(AirflowException):
    """The job ended badly; the task's retries apply (the next try reads why from Slurm)."""

    outcome = Outcome.FAIL


class SlurmJobTimedOut(SlurmJobFailed):
    outcome = Outcome.RETRY_MORE_TIME


class SlurmJobOutOfMemory(SlurmJobFailed):
    outcome = Outcome.RETRY_MORE_MEMORY


class SlurmNodeFailed(SlurmJobFailed):
    outcome = Outcome.RETRY_EXCLUDE_NODES


class SlurmJobCancelled(AirflowFailException):
    """Cancelled (or stopped by a deadline) by someone else: retrying would override a decision."""

    outcome = Outcome.FAIL_NO_RETRY


EXCEPTIONS: dict[Outcome, type[Exception]] = {
    Outcome.FAIL: SlurmJobFailed, Outcome.RETRY_MORE_TIME: SlurmJobTimedOut,
    Outcome.RETRY_MORE_MEMORY: SlurmJobOutOfMemory, Outcome.RETRY_EXCLUDE_NODES: SlurmNodeFailed,
    Outcome.FAIL_NO_RETRY: SlurmJobCancelled,
}


def worst(outcomes: list[Outcome]) -> Outcome:
    for o in _SEVERITY:
        if o in outcomes:
            return o
    return Outcome.SUCCESS


@dataclass(frozen=True)
class JobReport:
    """A finished job as the trigger reported it."""

    job_id: str
    elements: dict[str, dict[str, Any]]
    tails: dict[str, str]

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> JobReport:
        if event.get("status") != "final":
            raise SlurmJobFailed(f"Slurm job {event.get('job_id')}: {event.get('message', event)}")
        return cls(event["job_id"], event["elements"], event.get("tails", {}))

    def outcome_of(self, eid: str) -> Outcome:
        return SlurmState.parse(self.elements[eid]["state"]).outcome

    @property
    def counts(self) -> dict[str, int]:
        bases = Counter(SlurmState.parse(e["state"]).base for e in self.elements.values())
        return dict(sorted(bases.items()))

    @property
    def failed(self) -> list[str]:
        return [i for i in self.elements if self.outcome_of(i) is not Outcome.SUCCESS]

    @property
    def outcome(self) -> Outcome:
        return worst([self.outcome_of(i) for i in self.elements])

    def describe(self, eid: str) -> str:
        e = self.elements[eid]
        code = f"exit code {e['exit_code']}" if e.get("exit_code") is not None else "no exit code"
        sig = f", signal {e['signal']}" if e.get("signal") else ""
        where = f" on {e['nodes']}" if e.get("nodes") else ""
        return f"{eid}: {e['state']} ({code}{sig}){where}"

    def failure_message(self) -> str:
        failed = self.failed
        is_array = any("_" in i for i in self.elements)
        lines = [f"Slurm job {self.job_id} {self.outcome.value}: " +
                 ", ".join(f"{k} {v}" for k, v in self.counts.items())]
        if is_array:
            idx = sorted(int(i.split("_")[1]) for i in failed)
            lines.append(f"failed indices ({len(idx)}): {','.join(map(str, idx))}")
        for eid in failed:
            lines.append(self.describe(eid))
            if eid in self.tails:
                tail = self.tails[eid].rstrip("\n")
                lines.append(f"--- last lines of the log of {eid} ---\n{tail}\n---")
        return "\n".join(lines)

    def raise_for_outcome(self) -> None:
        outcome = self.outcome
        if outcome is Outcome.SUCCESS:
            return
        raise EXCEPTIONS[outcome](self.failure_message())
