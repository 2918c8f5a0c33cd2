"""`SlurmJobOperator`: run one `SlurmJob` (or one array job) on Slurm and wait without a worker slot.

Each try: read the certificate's validity (preflight); look the task instance's deterministic job
name up in Slurm (only the account's own jobs, signed with the deployment's job token: see
`dc2tasks.slurm.owner`) and let `retry.decide_retry` decide (reattach to a waiting job, adopt this try's
finished job, or submit with scaled limits / only the failed array indices); record the job id in
XCom (`slurm_job_id`, and `slurm_job` with name, try and log paths); defer to `SlurmJobTrigger`
(or, with `deferrable=False`, run the same wait coroutine on the worker); map the end through
`dc2tasks.slurm.states` into success or a typed exception (`dc2tasks.airflow.outcome`).
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from dataclasses import replace
from typing import Any

from airflow.sdk import BaseOperator, Context

from dc2tasks.airflow.compat import task_state
from dc2tasks.airflow.hooks import SlurmHook
from dc2tasks.airflow.job_name import JOB_ID_XCOM, JOB_XCOM, job_name_for
from dc2tasks.airflow.job_wait import JobWaitSpec, wait_for_job
from dc2tasks.airflow.links import SlurmJobLink
from dc2tasks.airflow.orphans import kill_verdict, stale_message
from dc2tasks.airflow.outcome import JobReport
from dc2tasks.airflow.poller import get_poller
from dc2tasks.airflow.retry import TryDecision, decide_retry
from dc2tasks.airflow.triggers.slurm import KILL_BOUND_S, SlurmJobTrigger
from dc2tasks.slurm import (
    JobInfo,
    Owner,
    SlurmClient,
    SlurmJob,
    SubmitError,
    comment_try,
    element_ids,
    expand_log_path,
    summarise_found,
)
from dc2tasks.slurm.transports import TransportError

# An earlier try's job alive at a try's start: a crash left it (reattach), or a user's clear is
# cancelling it from the triggerer (submit anew once it is gone). Look again every
# REATTACH_RECHECK_S for as long as that cancel may take (the trigger's KILL_BOUND_S).
REATTACH_RECHECK_S = 5.0


def _earlier_try_alive(decision: TryDecision, try_number: int) -> bool:
    return decision.reattach is not None and (comment_try(decision.reattach.comment) or 0) < try_number


def output_pattern(job: SlurmJob, log_dir: str | None) -> str:
    """The job's stdout path pattern: the job's own, else one in `log_dir`, else Slurm's default."""
    is_array = job.array_spec is not None
    if job.output:
        if is_array and "%j" in job.output:
            raise ValueError(f"job.output {job.output!r}: an array element's %j is unknown before it runs; "
                             "use %A (array job id) and %a (index)")
        return job.output
    name = "slurm-%A_%a.out" if is_array else "slurm-%j.out"
    return posixpath.join(log_dir, name) if log_dir else name


class SlurmJobOperator(BaseOperator):
    """Run `job` on the Slurm cluster of `slurm_conn_id` (None: the local emulator).

    :param job: the job; its name and comment are replaced (deterministic name, try in comment).
    :param slurm_conn_id: an `ssh` connection to a login node, or a `dc2_local` one; None = local.
        An ssh connection needs a job token (its extra `job_token`, or the Airflow Variable
        `dc2_job_token`: see `dc2tasks.airflow.hooks`); without one the task fails before any lookup.
    :param log_dir: directory on the cluster for the job's stdout when `job.output` is not set
        (must exist; Slurm does not create it). Neither given: Slurm's default in the workdir.
    :param deferrable: wait in the triggerer (default) or poll on the worker.
    :param poll_interval: seconds between status polls (one command per cluster per interval).
    :param time_scale: the time limit's factor per earlier TIMEOUT of this task instance.
    :param memory_scale: the memory's factor per earlier OUT_OF_MEMORY.
    :param cert_warn_hours: warn when the SSH certificate expires within this many hours.
    :param tail_bytes: how much of a failed job's log to put in the failure message.
    :param max_failed_tails: at most this many failed array elements get their log tail shown.
    :param element_log_bytes: an array element's log goes to the task log when it ends: its first and
        last this many bytes.
    """

    ui_color = "#c9e4f6"
    # resolved on the worker when a try ends (stored as XCom); plugins/dc2_plugin.py adds the server side
    operator_extra_links = (SlurmJobLink(),)

    def __init__(
        self,
        *,
        job: SlurmJob,
        slurm_conn_id: str | None = None,
        log_dir: str | None = None,
        deferrable: bool = True,
        poll_interval: float = 30.0,
        time_scale: float = 2.0,
        memory_scale: float = 2.0,
        cert_warn_hours: float = 24.0,
        tail_bytes: int = 3000,
        max_failed_tails: int = 10,
        element_log_bytes: int = JobWaitSpec.element_log_bytes,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(job, SlurmJob):
            raise ValueError(f"{self.task_id}: job must be a dc2tasks.slurm.SlurmJob, "
                             f"got {type(job).__name__}")
        output_pattern(job, log_dir)  # a bad pattern fails when the DAG is parsed, not at run time
        for pname, value in (("poll_interval", poll_interval), ("time_scale", time_scale),
                             ("memory_scale", memory_scale)):
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{self.task_id}: {pname} must be a positive number, got {value!r}")
        self.job = job
        self.slurm_conn_id = slurm_conn_id
        self.log_dir = log_dir
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.time_scale = time_scale
        self.memory_scale = memory_scale
        self.cert_warn_hours = cert_warn_hours
        self.tail_bytes = tail_bytes
        self.max_failed_tails = max_failed_tails
        self.element_log_bytes = element_log_bytes
        self._hook: SlurmHook | None = None
        self._job_id: str | None = None
        self._ti: Any = None

    # -- the try --------------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        ti = self._ti = context["ti"]
        try_number = int(ti.try_number)
        name = job_name_for(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
        self._hook = hook = SlurmHook(self.slurm_conn_id)
        hook.preflight(self.cert_warn_hours)
        owner = hook.owner()
        client = hook.client(owner)
        decision, seen = self._settled_decision(client, owner, name, try_number)
        self.log.info("Slurm job name %s, try %d: %s", name, try_number, decision.reason)
        job = replace(decision.job, name=name, comment=owner.comment(name, try_number),
                      output=output_pattern(decision.job, self.log_dir))
        if decision.reattach is not None:
            job_id = decision.reattach.job_id
            elements = _elements_seen(seen, job_id, job)
        else:
            job_id = self._submit(client, owner, job, try_number)
            elements = element_ids(job_id, job)
            self.log.info("submitted Slurm job %s:\n%s", job_id, job.render())
        self._after_submit(job_id)
        self._job_id = job_id
        spec = self._spec(job_id, job, elements)
        ti.xcom_push(key=JOB_ID_XCOM, value=job_id)
        ti.xcom_push(key=JOB_XCOM, value={
            "job_id": job_id, "name": name, "try": try_number, "conn_id": self.slurm_conn_id,
            "log_paths": spec.log_paths, "elements": len(elements)})
        if not self.deferrable:
            return self.execute_complete(context, asyncio.run(self._wait_here(spec)))
        self.defer(
            trigger=SlurmJobTrigger(
                job_id=job_id, element_ids=list(elements), log_paths=spec.log_paths,
                slurm_conn_id=self.slurm_conn_id, poll_interval=self.poll_interval,
                tail_bytes=self.tail_bytes, max_failed_tails=self.max_failed_tails, try_number=try_number,
                element_log_bytes=self.element_log_bytes),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        report = JobReport.from_event(event)
        self._job_id = None  # ended: nothing left for on_kill to cancel
        if report.failed:
            self.log.error("%s", report.failure_message())
        else:
            self.log.info("Slurm job %s completed: %s", report.job_id,
                          ", ".join(f"{k} {v}" for k, v in report.counts.items()))
        report.raise_for_outcome()
        return report.job_id

    def on_kill(self) -> None:
        """Killed on the worker (before deferring, or in non-deferrable mode): cancel this try's job,
        if it is still alive, this task instance's and signed for this try (`orphans.kill_verdict`)."""
        if not (self._job_id and self._hook is not None and self._ti is not None):
            return
        ti, job_id = self._ti, self._job_id
        name = job_name_for(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
        owner = self._hook.owner()
        try:
            state = task_state(ti)
        except Exception as e:  # the supervisor link is all there is to ask
            self.log.warning("could not read the state of task %s (%s)", ti.task_id, e or type(e).__name__)
            state = None
        try_number = int(ti.try_number)
        why = kill_verdict(self._hook.client(owner).elements_by_name(name), job_id, name, try_number,
                           owner.verified_try, state)
        if why is not None:
            self.log.warning("%s", stale_message(ti, state, try_number, job_id, why))
            return
        self.log.info("task killed: cancelling Slurm job %s (try %s)", job_id, try_number)
        self._hook.client().cancel([job_id])
        self._job_id = None

    # -- helpers --------------------------------------------------------------------------------------

    def _settled_decision(self, client: SlurmClient, owner: Owner, name: str,
                          try_number: int) -> tuple[TryDecision, dict[str, JobInfo]]:
        """`_decide`, looked at again while it would reattach to an earlier try's job, up to
        KILL_BOUND_S: a user's clear cancels that job from the triggerer, and a busy triggerer
        or a lagging accounting may take that long to show it. Once it has ended: COMPLETED, it is
        reattached all the same, as it would have been at once (a crash left it; its work is done);
        otherwise (cancelled, or it had ended already and squeue still listed it) the decision
        stands as Slurm now shows it: a new job, with the usual scaling."""
        decision, seen = self._decide(client, owner, name, try_number)
        if not _earlier_try_alive(decision, try_number):
            return decision, seen
        earlier = decision.reattach
        assert earlier is not None
        self.log.info("job %s of an earlier try looks alive (a crash left it, or a clear is cancelling it): "
                      "checking every %.0f s for up to %.0f s before reattaching",
                      earlier.job_id, REATTACH_RECHECK_S, KILL_BOUND_S)
        deadline = time.monotonic() + KILL_BOUND_S
        while _earlier_try_alive(decision, try_number) and time.monotonic() < deadline:
            time.sleep(REATTACH_RECHECK_S)
            decision, seen = self._decide(client, owner, name, try_number)
        states = {info.state.base for info in seen.values() if info.array_job_id == earlier.job_id}
        if decision.reattach is None and states == {"COMPLETED"}:
            return TryDecision(earlier, self.job, f"job {earlier.job_id} of an earlier try completed "
                                                  "while this try looked: reattaching"), seen
        return decision, seen

    def _decide(self, client: SlurmClient, owner: Owner, name: str,
                try_number: int) -> tuple[TryDecision, dict[str, JobInfo]]:
        """The decision and the elements it was made from (by id). Both come from the same two commands
        (sacct and squeue by name): a status query of the array ids alone got a lagging sacct's
        partial view after a fast array."""
        infos = client.elements_by_name(name)
        seen = {j.job_id: j for j in infos}
        decision = decide_retry(self.job, summarise_found(infos), try_number, seen, self.time_scale,
                              self.memory_scale, owner)
        return decision, seen

    def _after_submit(self, job_id: str) -> None:
        """Called between sbatch and recording the job id (a seam for crash tests)."""

    def _submit(self, client: SlurmClient, owner: Owner, job: SlurmJob, try_number: int) -> str:
        try:
            return client.submit(job)
        except (SubmitError, TransportError) as e:
            # The connection may have dropped after sbatch accepted the job: look before failing.
            again = [f for f in client.find_by_name(job.name)
                     if owner.verified_try(f.name, f.comment) == try_number]
            if again:
                self.log.warning("sbatch reported %s, but job %s of this try exists: using it", e,
                                 again[-1].job_id)
                return again[-1].job_id
            raise

    def _spec(self, job_id: str, job: SlurmJob, elements: list[str]) -> JobWaitSpec:
        assert job.output is not None
        user = self._hook.backend.remote_user if self._hook else ""
        paths = {}
        for eid in elements:
            jid, _, idx = eid.partition("_")
            path = expand_log_path(job.output, job_id=jid, array_job_id=jid,
                                   array_task_id=int(idx) if idx else None, name=job.name, user=user)
            paths[eid] = posixpath.join(job.workdir, path) if job.workdir else path
        return JobWaitSpec(job_id=job_id, element_ids=tuple(elements), log_paths=paths,
                         poll_interval=self.poll_interval, tail_bytes=self.tail_bytes,
                         max_failed_tails=self.max_failed_tails, element_log_bytes=self.element_log_bytes)

    async def _wait_here(self, spec: JobWaitSpec) -> dict[str, Any]:
        assert self._hook is not None
        return await wait_for_job(get_poller(self._hook.backend), spec, self.log)


def _elements_seen(seen: dict[str, JobInfo], job_id: str, job: SlurmJob) -> list[str]:
    """The elements of a job to reattach to, as the decision saw them (slurmctld and sacct by name:
    sacct alone may lack some, which the trigger would then never wait for)."""
    if job.array_spec is None:
        return [job_id]
    ids = [e for e, j in seen.items() if j.array_job_id == job_id and j.array_task_id is not None]
    return sorted(ids, key=lambda i: int(i.split("_")[1])) or element_ids(job_id, job)
