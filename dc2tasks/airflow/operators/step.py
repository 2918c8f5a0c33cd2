"""`RunStepOperator`: one product step of a data run, as a Slurm job built when the task runs.

The job cannot be fixed when the DAG is parsed: which tracts and visits a run covers (and so the
array size) comes from the trigger's params, resolved once by the run's `plan` task. This operator
reads that plan, renders the step's script (dc2tasks.runs.steps), skips when the run does not make
the step's product, and otherwise hands the job to SlurmJobOperator (deterministic name, reattach,
deferral, retries). A dry run renders the job and asks Slurm (`sbatch --test-only`) whether it would
be accepted, and submits nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dc2tasks.airflow.hooks import SlurmHook
from dc2tasks.airflow.job_name import job_name_for
from dc2tasks.airflow.operators.slurm import SlurmJobOperator, output_pattern
from dc2tasks.catalogue import CATALOGUE
from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.steps import RunPlan, StepScript, step_script
from dc2tasks.slurm import SlurmJob
from dc2tasks.slurm.commands import Command

PLAN_TASK = "plan"
PLACEHOLDER = SlurmJob(script="true\n", name="dc2-step")


def job_for(config: RunConfig, step: StepScript) -> SlurmJob:
    """The run file's Slurm settings for this step around its script."""
    s = config.slurm
    array = f"0-{step.array_size - 1}%{s.array_throttle}" if step.array_size else None
    return SlurmJob(
        script="#!/bin/bash\n" + step.script,
        name="dc2-step",
        account=s.account,
        qos=s.qos,
        partition=s.partition,
        constraint=s.constraint,
        image=s.image,
        licenses=tuple(s.licenses),
        time_limit=s.time_for(step.step),
        memory=s.memory_for(step.step),
        array=array,
    )


def dc2_command(config: RunConfig) -> str:
    """How a job starts `dc2`: the Airflow environment's own for the local backend; on a cluster the
    run file's `slurm.dc2_command` (default: the one on PATH), inside the image when the run names
    one (NERSC shifter) and the command does not say `shifter` itself."""
    if config.backend == "local":
        import sys
        from pathlib import Path

        return str(Path(sys.executable).with_name("dc2"))
    command = config.slurm.dc2_command
    if config.slurm.image and not command.startswith("shifter "):
        return f"shifter {command}"
    return command


def dc2_argv(config: RunConfig) -> list[str]:
    """How a plain command (finalize, install: over SSH on a login node, not in a job) starts `dc2`:
    shifter needs the image named on its command line there."""
    if config.backend == "local":
        return [dc2_command(config)]
    command = config.slurm.dc2_command.removeprefix("shifter ").strip()
    if config.slurm.image:
        return ["shifter", f"--image={config.slurm.image}", command]
    return [command]


class RunStepOperator(SlurmJobOperator):
    """:param config: the run; :param step: a product's step (the catalogue's `step`), or another
    job of a product (`product` names it, e.g. its QA)."""

    def __init__(self, *, config: RunConfig, step: str, product: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("slurm_conn_id", config.connections.producer if config.backend == "slurm" else None)
        super().__init__(job=PLACEHOLDER, **kwargs)
        self.config = config
        self.step = step
        self.product = product or CATALOGUE.by_step(step).name

    def script_for(self, plan: RunPlan) -> StepScript:
        """The job this task runs for the plan (a product the plan makes)."""
        return step_script(CATALOGUE[self.product], self.config, plan, dc2_command(self.config))

    def execute(self, context: Context) -> Any:
        ti = context["ti"]
        plan = RunPlan.from_dict(ti.xcom_pull(task_ids=PLAN_TASK))
        if not plan.makes(self.product):
            made = ", ".join(plan.products)
            why = plan.skipped.get(self.product)
            reason = f"the inventory skips it: {why}" if why else f"products: {made}"
            raise AirflowSkipException(f"this run does not make {self.product} ({reason})")
        self.job = job_for(self.config, self.script_for(plan))
        self.log_dir = f"{plan.work_dir}/logs"
        if plan.dry_run:
            return self._dry_run(context)
        return super().execute(context)

    def _dry_run(self, context: Context) -> str:
        ti = context["ti"]
        name = job_name_for(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
        job = replace(self.job, name=name, output=output_pattern(self.job, self.log_dir))
        script = job.render()
        self.log.info("dry run: the job this step would submit:\n%s", script)
        hook = SlurmHook(self.slurm_conn_id)
        hook.owner()  # the real run would need the job token: say so now if it is missing
        transport = hook.client().transport
        result = transport.run(Command(("sbatch", "--test-only"), stdin=script.encode()))
        answer = (result.err + result.out).strip()
        if result.returncode != 0:
            raise AirflowFailException(f"sbatch --test-only refused the {self.step} job: {answer}")
        self.log.info("sbatch --test-only: %s", answer)
        return answer
