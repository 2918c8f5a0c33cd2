"""What a try of a Slurm task does, decided from the jobs of its earlier tries: reattach, adopt, or
submit a changed job.

Why Slurm is the record a retry reads: Airflow clears a task's XComs when a new try starts, and a
try that crashed between `sbatch` and saving anything left nothing behind. The job name is
deterministic per task instance and each job carries its try in `--comment` (signed with the
deployment's job token: `dc2tasks.slurm.owner`), so `find_by_name` tells the next try everything:
a job still waiting (reattach, never submit twice), a TIMEOUT or OUT_OF_MEMORY (scale the limit),
a NODE_FAIL (exclude the node), failed array indices (resubmit only those). Only jobs of our
account whose comment carries our signature for this name count; any other job of the same name
is ignored, whatever its comment says.

Named `TryDecision`, not `RetryDecision`: since 3.3 `airflow.sdk.RetryDecision` is Airflow's own
answer of a retry policy (retry or fail, after a failure), a different thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from dc2tasks.slurm import FoundJob, JobInfo, Outcome, Owner, SlurmJob, comment_try


@dataclass(frozen=True)
class TryDecision:
    """What this try does: reattach to `reattach`, or submit `job`."""

    reattach: FoundJob | None
    job: SlurmJob
    reason: str


def decide_retry(
    base: SlurmJob,
    found: list[FoundJob],
    try_number: int,
    elements: dict[str, JobInfo] | None,
    time_scale: float,
    memory_scale: float,
    owner: Owner,
) -> TryDecision:
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
    ours = owner.keep(found, "retry decision")
    tries = {f.job_id: owner.verified_try(f.name, f.comment) for f in ours}
    mine = [f for f in ours if (t := tries[f.job_id]) is not None and t <= try_number]
    waiting = [f for f in mine if not f.outcome.final]
    if waiting:
        last = waiting[-1]
        return TryDecision(last, base, f"job {last.job_id} of try {comment_try(last.comment)} is still in "
                                       "Slurm: reattaching")
    same = [f for f in mine if tries[f.job_id] == try_number]
    if same:
        return TryDecision(same[-1], base, f"job {same[-1].job_id} of this try already ended: adopting it")
    job, why = _scaled(base, mine, time_scale, memory_scale)
    if mine and elements:
        job, why = _excluding_failed_nodes(job, why, mine[-1].job_id, elements)
        if base.array_spec is not None:
            job, why = _only_undone_indices(base, job, why, mine, elements)
    return TryDecision(None, job, "; ".join(why) or "new job")


def _scaled(base: SlurmJob, mine: list[FoundJob], time_scale: float,
            memory_scale: float) -> tuple[SlurmJob, list[str]]:
    """Time scaled per earlier TIMEOUT, memory per earlier OUT_OF_MEMORY."""
    timeouts = sum(f.outcome is Outcome.RETRY_MORE_TIME for f in mine)
    ooms = sum(f.outcome is Outcome.RETRY_MORE_MEMORY for f in mine)
    if not (timeouts or ooms):
        return base, []
    why = []
    if timeouts:
        why.append(f"time limit x{time_scale**timeouts:g} after {timeouts} TIMEOUT(s)")
    if ooms:
        why.append(f"memory x{memory_scale**ooms:g} after {ooms} OUT_OF_MEMORY(s)")
    return base.scaled(time_factor=time_scale**timeouts, mem_factor=memory_scale**ooms), why


def _excluding_failed_nodes(job: SlurmJob, why: list[str], newest: str,
                            elements: dict[str, JobInfo]) -> tuple[SlurmJob, list[str]]:
    """Without the nodes the newest job's NODE_FAILs ran on."""
    bad_nodes = [j.nodes for j in elements.values()
                 if j.array_job_id == newest and j.outcome is Outcome.RETRY_EXCLUDE_NODES]
    if not bad_nodes:
        return job, why
    return job.excluding(bad_nodes), [*why, f"excluding {','.join(bad_nodes)}"]


def _only_undone_indices(base: SlurmJob, job: SlurmJob, why: list[str], mine: list[FoundJob],
                         elements: dict[str, JobInfo]) -> tuple[SlurmJob, list[str]]:
    """An array job narrowed to the indices whose newest run did not complete."""
    assert base.array_spec is not None
    mine_ids = {f.job_id for f in mine}
    latest: dict[int, JobInfo] = {}
    for j in sorted(elements.values(), key=lambda e: int(e.array_job_id)):
        if j.array_job_id in mine_ids and j.array_task_id is not None:
            latest[j.array_task_id] = j
    done = {i for i, j in latest.items() if j.outcome is Outcome.SUCCESS}
    todo = [i for i in base.array_spec.indices if i not in done]
    if not (done and todo):
        return job, why
    by = ", ".join(f.job_id for f in mine)
    return job.with_array_indices(todo), [
        *why, f"only the {len(todo)} indices not completed by job(s) {by}: {','.join(map(str, todo))}"]
