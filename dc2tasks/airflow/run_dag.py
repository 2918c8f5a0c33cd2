"""One DAG per data run, built from its run file (dags/runs/<run>.yaml).

    plan ─┬─ object: merge_tract ─ trim ─ dpdd ─ merge_parquet ─┐
          │                          └──────── source ──────────┤
          ├─ forced_source ─────────────────────────────────────┤
          └─ dia_source ─ dia_object ───────────────────────────┴─ finalize ─ install

`plan` turns the trigger's params into a RunPlan (XCom) every later task reads; a step the plan does
not make is skipped, and skips do not stop the steps after it (trigger rule none_failed), so a run
of only `source` uses the Object tables an earlier run left. `finalize` writes each product's
GCRCatalogs configs, schema and manifest as the producer (with every job's sacct record for the
provenance); `install` copies them into the central directory as the collaboration account.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from airflow.sdk import DAG, Param, TaskGroup, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from dc2tasks.airflow.hooks import SlurmHook
from dc2tasks.airflow.operators.step import PLAN_TASK, RunStepOperator, dc2_argv
from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.loader import config_hash, load_run_config
from dc2tasks.runs.params import params_schema, validate_params
from dc2tasks.runs.steps import (
    RunPlan,
    finalize_commands,
    install_command,
    plan_run,
    rendered_catalog_configs,
)
from dc2tasks.slurm.commands import Command, CommandResult, make_log_dir
from dc2tasks.slurm.transports import SubprocessTransport

log = logging.getLogger(__name__)

STEP_PRODUCTS = {
    "merge_tract": "object",
    "trim": "trim_object",
    "dpdd": "dpdd_object",
    "merge_parquet": "merged_dpdd_object",
    "source": "source",
    "forced_source": "forced_source",
    "dia_source": "dia_source",
    "dia_object": "dia_object",
}


def dag_id_for(config: RunConfig) -> str:
    return f"dc2_{config.name}"


def _transport(config: RunConfig, conn_id: str | None) -> Any:
    """Where a run's plain commands go: local subprocesses, or the account's SSH connection."""
    if config.backend == "local" or conn_id is None:
        return SubprocessTransport()
    return SlurmHook(conn_id).client().transport


def _check(result: CommandResult, what: str) -> str:
    if result.returncode != 0:
        raise AirflowFailException(f"{what} failed (exit {result.returncode}):\n{result.err.strip()}")
    return result.out


def _plan(context: dict[str, Any]) -> RunPlan:
    return RunPlan.from_dict(context["ti"].xcom_pull(task_ids=PLAN_TASK))


def _job_records(config: RunConfig, context: dict[str, Any], task_ids: list[str]) -> list[dict[str, Any]]:
    """sacct's view of every job this run's steps submitted, for provenance.json."""
    ti = context["ti"]
    ids = [ti.xcom_pull(task_ids=task_id, key="slurm_job_id") for task_id in task_ids]
    ids = [str(i) for i in ids if i]
    if not ids:
        return []
    conn_id = config.connections.producer if config.backend == "slurm" else None
    infos = SlurmHook(conn_id).client().status(ids)
    records = []
    for info in infos.values():
        record = asdict(info)
        record["state"] = info.state.name if hasattr(info.state, "name") else str(info.state)
        records.append(record)
    return records


def build_dag(config: RunConfig, run_file: str | os.PathLike[str]) -> DAG:
    run_file = Path(run_file)
    local = config.backend == "local"
    params = {}
    for key, schema in params_schema(config).items():
        schema = dict(schema)
        default = schema.pop("default", None)
        params[key] = Param(default, **schema)
    doc = (
        f"**{config.name}**: {config.description or ''}\n\n"
        f"Run file `{run_file}`; repository `{config.repository}` rerun `{config.rerun}`; "
        f"tracts {', '.join(map(str, config.tracts))}; products {', '.join(config.products)}; backend "
        f"`{config.backend}`; installs into `{config.central.dir}`.\n\n" + (__doc__ or "")
    )
    dag = DAG(
        dag_id=dag_id_for(config),
        description=f"DC2 {config.name}: {', '.join(config.products)}",
        schedule=None,
        catchup=False,
        max_active_runs=1,
        params=params,
        tags=["dc2", config.backend, config.name],
        doc_md=doc,
        default_args={"retries": 2, "retry_delay": timedelta(seconds=5 if local else 60)},
    )
    step_ids: list[str] = []  # filled below, read when finalize runs
    with dag:

        @task(task_id=PLAN_TASK)
        def plan() -> dict[str, Any]:
            context = get_current_context()
            trigger = validate_params(dict(context["params"]), config)
            made = plan_run(config, trigger)
            if not made.dry_run:  # a dry run leaves the working directory as it is, too
                transport = _transport(config, config.connections.producer)
                logs = f"{made.work_dir}/logs"
                _check(transport.run(make_log_dir(logs)), f"making the log directory {logs}")
            log.info("plan: %s", json.dumps(made.to_dict(), indent=1))
            return made.to_dict()

        @task(task_id="finalize", trigger_rule="none_failed")
        def finalize() -> list[str] | dict[str, dict[str, Any]]:
            context = get_current_context()
            made = _plan(context)
            dc2 = dc2_argv(config)
            digest = config_hash(config)
            if made.dry_run:  # the configs as they would be installed, by catalog name (XCom too)
                rendered: dict[str, dict[str, Any]] = {}
                for directory in made.directories:
                    for argv in finalize_commands(config, made, directory, dc2, digest):
                        log.info("dry run: would run %s", shlex.join(argv))
                    for name, cfg in rendered_catalog_configs(config, made, directory).items():
                        log.info("dry run: catalog config %s.yaml\n%s", name, yaml.safe_dump(cfg))
                        rendered[name] = cfg
                return rendered
            jobs = json.dumps(_job_records(config, context, step_ids)).encode()
            transport = _transport(config, config.connections.producer)
            for directory in made.directories:
                for argv in finalize_commands(config, made, directory, dc2, digest):
                    step = argv[len(dc2)]  # the dc2 subcommand
                    stdin = jobs if step == "manifest" else None
                    out = _check(transport.run(Command(tuple(argv), stdin=stdin, timeout=3600)), step)
                    log.info("%s\n%s", " ".join(argv), out.strip())
            return made.directories

        @task(task_id="install", trigger_rule="none_failed")
        def install() -> dict[str, Any]:
            context = get_current_context()
            made = _plan(context)
            transport = _transport(config, config.connections.collaboration)
            results: dict[str, Any] = {}
            for directory in made.directories:
                argv = install_command(config, made, directory, dc2_argv(config))
                out = _check(transport.run(Command(tuple(argv), timeout=6 * 3600)), f"install {directory}")
                results[directory] = json.loads(out) if out.strip().startswith("{") else out
                log.info("install %s: %s", directory, results[directory])
            return results

        plan_task = plan()
        steps: dict[str, RunStepOperator] = {}

        def step(name: str) -> RunStepOperator:
            return RunStepOperator(
                task_id=name,
                config=config,
                step=name,
                trigger_rule="none_failed",
                poll_interval=float(config.slurm.poll_interval or (2 if local else 30)),
            )

        wanted = {s for s, p in STEP_PRODUCTS.items() if p in config.products}
        object_steps = [s for s in ("merge_tract", "trim", "dpdd", "merge_parquet") if s in wanted]
        if object_steps:
            with TaskGroup("object"):
                for name in object_steps:
                    steps[name] = step(name)
        for name in ("source", "forced_source", "dia_source", "dia_object"):
            if name in wanted:
                steps[name] = step(name)
        step_ids.extend(s.task_id for s in steps.values())  # "object.merge_tract" inside the group
        previous = None
        for name in object_steps:
            (previous or plan_task) >> steps[name]
            previous = steps[name]
        if "source" in steps:
            (steps.get("dpdd") or plan_task) >> steps["source"]
        for name in ("forced_source", "dia_source"):
            if name in steps:
                plan_task >> steps[name]
        if "dia_object" in steps:
            (steps.get("dia_source") or plan_task) >> steps["dia_object"]
        finalize_task = finalize()
        for s in steps.values():
            s >> finalize_task
        finalize_task >> install()
    return dag


def dag_from_run_file(path: str | os.PathLike[str]) -> DAG:
    """The DAG of one run file; an invalid file raises with the file and field named, which Airflow
    shows as this DAG file's import error (the other runs' DAG files are not affected)."""
    return build_dag(load_run_config(path), path)
