"""Slurm client: job model, state table, client and transports. No Airflow import here.

Typical use::

    from dc2tasks.slurm import SlurmClient, SlurmJob, command_body
    from dc2tasks.slurm.transports import LocalTransport

    client = SlurmClient(LocalTransport("/tmp/dc2-local-slurm"))
    job_id = client.submit(SlurmJob(script=command_body(["dc2", "object", "--tract", "3828"]),
                                    name="dc2-object-3828", time_limit="30"))
    client.status([job_id])
"""

from dc2tasks.slurm.client import (
    AsyncSlurmClient,
    FoundJob,
    SlurmClient,
    SlurmCommandError,
    element_ids,
    summarise_found,
)
from dc2tasks.slurm.commands import JobInfo, SubmitError
from dc2tasks.slurm.job import ArraySpec, SlurmJob, command_body, expand_log_path
from dc2tasks.slurm.owner import Owner, comment_try
from dc2tasks.slurm.states import STATE_TABLE, Outcome, SlurmState, UnknownSlurmState

__all__ = [
    "STATE_TABLE",
    "ArraySpec",
    "AsyncSlurmClient",
    "FoundJob",
    "JobInfo",
    "Outcome",
    "Owner",
    "SlurmClient",
    "SlurmCommandError",
    "SlurmJob",
    "SlurmState",
    "SubmitError",
    "UnknownSlurmState",
    "command_body",
    "comment_try",
    "element_ids",
    "expand_log_path",
    "summarise_found",
]
