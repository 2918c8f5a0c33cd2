"""From a finished job's report to the task's fate, and from earlier tries' jobs to the next job.

Why Slurm is the record a retry reads: Airflow clears a task's XComs when a new try starts, and a
try that crashed between `sbatch` and saving anything left nothing behind. The job name is
deterministic per task instance and each job carries its try in `--comment` (signed with the
deployment's job token: `dc2tasks.slurm.owner`), so `find_by_name` tells the next try everything:
a job still waiting (reattach, never submit twice), a TIMEOUT or OUT_OF_MEMORY (scale the limit),
a NODE_FAIL (exclude the node), failed array indices (resubmit only those). Only jobs of our
account whose comment carries our signature for this name count; any other job of the same name
is ignored, whatever its comment says.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dc2tasks.slurm import FoundJob, JobInfo, Outcome, Owner, SlurmJob, SlurmState, comment_try

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


@dataclass(frozen=True)
class Plan:
    """What this try does: reattach to `reattach`, or submit `job`."""

    reattach: FoundJob | None
    job: SlurmJob
    reason: str


def plan_try(
    base: SlurmJob,
    found: list[FoundJob],
    try_number: int,
    elements: dict[str, JobInfo] | None,
    time_scale: float,
    memory_scale: float,
    owner: Owner,
) -> Plan:
    """Decide from the jobs of earlier tries (`found`, by name) and their elements.

    Only `owner`'s jobs count: its account, and a comment its token signed for this name (a job of
    another user, or one without the signature, is logged and ignored: never reattached, adopted
    or counted as done).

    - A job still waiting (any try <= this one) is reattached: either it is this try's own (a crash
      after sbatch) or an earlier try died without its on_kill running; a second job would duplicate
      the work.
    - A finished job of THIS try is adopted (its end is reported, nothing is submitted).
    - Otherwise a new job, with time scaled per earlier TIMEOUT and memory per OUT_OF_MEMORY, nodes
      of the newest job's NODE_FAILs excluded, and for an array only the indices not yet completed.

    `elements` holds the elements of the earlier tries' jobs as Slurm reports them now. An index is
    done when the newest job that ran it says COMPLETED; an index with no record in any job is
    redone, since accounting can lag (seen: a finished array's failed elements missing from sacct
    for minutes): a redone index costs a little time, a skipped one would lose data.
    """
    ours = owner.keep(found, "plan")
    tries = {f.job_id: owner.verified_try(f.name, f.comment) for f in ours}
    mine = [f for f in ours if (t := tries[f.job_id]) is not None and t <= try_number]
    waiting = [f for f in mine if not f.outcome.final]
    if waiting:
        return Plan(waiting[-1], base, f"job {waiting[-1].job_id} of try {comment_try(waiting[-1].comment)} "
                                       "is still in Slurm: reattaching")
    same = [f for f in mine if tries[f.job_id] == try_number]
    if same:
        return Plan(same[-1], base, f"job {same[-1].job_id} of this try already ended: adopting it")
    job, why = base, []
    timeouts = sum(f.outcome is Outcome.RETRY_MORE_TIME for f in mine)
    ooms = sum(f.outcome is Outcome.RETRY_MORE_MEMORY for f in mine)
    if timeouts or ooms:
        job = job.scaled(time_factor=time_scale**timeouts, mem_factor=memory_scale**ooms)
        if timeouts:
            why.append(f"time limit x{time_scale**timeouts:g} after {timeouts} TIMEOUT(s)")
        if ooms:
            why.append(f"memory x{memory_scale**ooms:g} after {ooms} OUT_OF_MEMORY(s)")
    if mine and elements:
        newest = mine[-1].job_id
        bad_nodes = [j.nodes for j in elements.values()
                     if j.array_job_id == newest and j.outcome is Outcome.RETRY_EXCLUDE_NODES]
        if bad_nodes:
            job = job.excluding(bad_nodes)
            why.append(f"excluding {','.join(bad_nodes)}")
        if base.array_spec is not None:
            mine_ids = {f.job_id for f in mine}
            latest: dict[int, JobInfo] = {}
            for j in sorted(elements.values(), key=lambda e: int(e.array_job_id)):
                if j.array_job_id in mine_ids and j.array_task_id is not None:
                    latest[j.array_task_id] = j
            done = {i for i, j in latest.items() if j.outcome is Outcome.SUCCESS}
            todo = [i for i in base.array_spec.indices if i not in done]
            if done and todo:
                job = job.with_array_indices(todo)
                by = ", ".join(f.job_id for f in mine)
                why.append(f"only the {len(todo)} indices not completed by job(s) {by}: "
                           f"{','.join(map(str, todo))}")
    return Plan(None, job, "; ".join(why) or "new job")
