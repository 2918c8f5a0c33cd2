"""The bodies of a run DAG's own tasks (`inventory`, `plan`, `finalize`, `install`); the Slurm steps are
RunStepOperators. Module-level functions of the run and the task context, so each can be tested
without building a DAG, and `run_dag.build_dag` only wires them.
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import asdict
from typing import Any

import yaml
from airflow.sdk.exceptions import AirflowFailException

from dc2tasks.airflow.hooks import SlurmHook
from dc2tasks.airflow.job_name import JOB_ID_XCOM
from dc2tasks.airflow.operators.qa import APPROVE_TASK
from dc2tasks.airflow.operators.step import PLAN_TASK, dc2_argv
from dc2tasks.products.inventory import summary
from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.loader import config_hash
from dc2tasks.runs.params import validate_params
from dc2tasks.runs.steps import (
    FinishCommand,
    RunPlan,
    finalize_commands,
    install_command,
    inventory_command,
    inventory_skips,
    plan_run,
    rendered_catalog_configs,
)
from dc2tasks.slurm.commands import Command, CommandResult, make_log_dir
from dc2tasks.slurm.transports import SubprocessTransport

log = logging.getLogger(__name__)

INVENTORY_TASK = "inventory"


def transport_for(config: RunConfig, conn_id: str | None) -> Any:
    """Where a run's plain commands go: local subprocesses, or the account's SSH connection."""
    if config.backend == "local" or conn_id is None:
        return SubprocessTransport()
    return SlurmHook(conn_id).client().transport


def checked(result: CommandResult, what: str) -> str:
    if result.returncode != 0:
        raise AirflowFailException(f"{what} failed (exit {result.returncode}):\n{result.err.strip()}")
    return result.out


def pulled_plan(context: Any) -> RunPlan:
    return RunPlan.from_dict(context["ti"].xcom_pull(task_ids=PLAN_TASK))


def inventory_task(config: RunConfig, context: Any) -> dict[str, Any]:
    """`dc2 inventory` of the trigger's scope, run where the jobs read the repository: a local
    subprocess, or over the producer's SSH connection on the Slurm login node (no job: a listing is
    I/O on the shared file system, not compute). Its summary goes to the task log, its report to the
    work directory; the products whose inputs are absent (and those needing them) are returned as
    skipped, with the reason. When nothing the run asks for can be made, the task fails with the
    list, before any job is submitted."""
    plan = plan_run(config, validate_params(dict(context["params"]), config))
    argv = inventory_command(config, plan, dc2_argv(config))
    if argv is None:
        log.info("inventory: nothing to list, no product of this run reads the repository")
        return {"skipped": {}, "products": {}}
    result = transport_for(config, config.connections.producer).run(Command(tuple(argv), timeout=3600))
    out = checked(result, "inventory")
    if result.err.strip():
        log.info("%s", result.err.strip())  # the progress lines
    try:
        report = json.loads(out)
    except json.JSONDecodeError as err:
        raise AirflowFailException(f"inventory: not the JSON report expected ({err}):\n{out}") from None
    log.info("%s", summary(report))
    statuses = {p: {"status": r["status"], "reason": r["reason"]} for p, r in report["products"].items()}
    skipped = inventory_skips(plan.products, statuses)
    why = "; ".join(f"{p}: {reason}" for p, reason in skipped.items())
    if skipped and len(skipped) == len(plan.products):
        raise AirflowFailException(
            f"inventory: nothing this run asks for can be made from {report['repository']}: {why}"
        )
    if skipped:
        log.warning("inventory: skipping %s", why)
    return {"skipped": skipped, "products": statuses}


def plan_task(config: RunConfig, context: Any) -> dict[str, Any]:
    """The run's plan from the trigger's params (an XCom every later task reads), without the
    products the inventory skipped, and its log directory on the producer's side; a dry run leaves
    the working directory as it is."""
    ti = context.get("ti")
    found = ti.xcom_pull(task_ids=INVENTORY_TASK) if ti is not None else None
    plan = plan_run(config, validate_params(dict(context["params"]), config), (found or {}).get("skipped"))
    if not plan.dry_run:
        logs = f"{plan.work_dir}/logs"
        transport = transport_for(config, config.connections.producer)
        checked(transport.run(make_log_dir(logs)), f"making the log directory {logs}")
    log.info("plan: %s", json.dumps(plan.to_dict(), indent=1))
    return plan.to_dict()


def job_records(config: RunConfig, context: Any, task_ids: list[str]) -> list[dict[str, Any]]:
    """sacct's view of every job this run's steps submitted, for provenance.json."""
    ti = context["ti"]
    ids = [str(i) for i in (ti.xcom_pull(task_ids=t, key=JOB_ID_XCOM) for t in task_ids) if i]
    if not ids:
        return []
    conn_id = config.connections.producer if config.backend == "slurm" else None
    records = []
    for info in SlurmHook(conn_id).client().status(ids).values():
        record = asdict(info)
        record["state"] = info.state.name if hasattr(info.state, "name") else str(info.state)
        records.append(record)
    return records


def _finish_commands(config: RunConfig, plan: RunPlan) -> list[FinishCommand]:
    """finalize's commands for every product directory of the plan, in order."""
    dc2, digest = dc2_argv(config), config_hash(config)
    return [c for d in plan.directories for c in finalize_commands(config, plan, d, dc2, digest)]


def render_dry_run(config: RunConfig, plan: RunPlan) -> dict[str, dict[str, Any]]:
    """What finalize would run and the catalog configs it would write, by catalog name."""
    for command in _finish_commands(config, plan):
        log.info("dry run: would run %s", shlex.join(command.argv))
    rendered: dict[str, dict[str, Any]] = {}
    for directory in plan.directories:
        for name, cfg in rendered_catalog_configs(config, plan, directory).items():
            log.info("dry run: catalog config %s.yaml\n%s", name, yaml.safe_dump(cfg))
            rendered[name] = cfg
    return rendered


def finalize_task(
    config: RunConfig, context: Any, step_task_ids: list[str]
) -> list[str] | dict[str, dict[str, Any]]:
    """Each product directory's catalog configs, schema and manifest (with every step's sacct
    record), made as the producer; a dry run returns the configs it would write."""
    plan = pulled_plan(context)
    if plan.dry_run:
        return render_dry_run(config, plan)
    jobs = json.dumps(job_records(config, context, step_task_ids)).encode()
    transport = transport_for(config, config.connections.producer)
    for command in _finish_commands(config, plan):
        stdin = jobs if command.jobs_on_stdin else None
        run = Command(tuple(command.argv), stdin=stdin, timeout=3600)
        out = checked(transport.run(run), command.what)
        log.info("%s\n%s", shlex.join(command.argv), out.strip())
    return plan.directories


def approver(plan: RunPlan, context: Any) -> str | None:
    """Who approved the QA reports (the approval task's answer), in the gate's approve mode."""
    if plan.qa != "approve" or plan.dry_run:
        return None
    answer = context["ti"].xcom_pull(task_ids=APPROVE_TASK) or {}
    if not answer.get("approved_by"):
        raise AirflowFailException(f"qa mode approve: {APPROVE_TASK} recorded no approval; nothing installed")
    return str(answer["approved_by"])


def install_task(config: RunConfig, context: Any) -> dict[str, Any]:
    """Every product directory installed into the central directory as the collaboration account,
    through the run's quality gate; `dc2 install --json` answers with its result, by directory."""
    plan = pulled_plan(context)
    approved_by = approver(plan, context)
    transport = transport_for(config, config.connections.collaboration)
    results: dict[str, Any] = {}
    for directory in plan.directories:
        argv = install_command(config, plan, directory, dc2_argv(config), approved_by)
        out = checked(transport.run(Command(tuple(argv), timeout=6 * 3600)), f"install {directory}")
        try:
            results[directory] = json.loads(out)
        except json.JSONDecodeError as err:
            raise AirflowFailException(
                f"install {directory}: not the JSON result expected ({err}):\n{out}"
            ) from None
        log.info("install %s: %s", directory, results[directory])
    return results
