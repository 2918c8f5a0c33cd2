"""One DAG per data run, built from its run file (dags/runs/<run>.yaml).

    inventory ─ plan ─┬─ object: merge_tract ─ trim ─ dpdd ─ merge_parquet ─┐
                      │                          └──────── source ──────────┤
                      ├─ forced_source ─────────────────────────────────────┤
                      └─ dia_source ─ dia_object ───────────────────────────┴─ finalize ─┐
                                                                                               │
                      ┌─ qa.<product> (one `dc2 qa` job per product) ─┬─ approve_qa ─ install ─┘

The steps and their edges come from the product catalogue (dc2tasks.catalogue): a step waits for
the steps of the products it needs or uses that the run makes. `inventory` lists what the repository
holds for the products' inputs (`dc2 inventory`): a product whose inputs are absent is skipped with
the reason, and a run of which nothing can be made fails there, before any job. `plan` turns the
trigger's params into a RunPlan (XCom) every later task reads; a step the plan does not make is
skipped, and skips do not stop the steps after it (trigger rule none_failed), so a run of only
`source` uses the Object tables an earlier run left. `finalize` writes each product's GCRCatalogs
configs, schema and manifest as the producer (with every job's sacct record for the provenance);
the `qa` group checks each product (`dc2 qa`), and the gate (trigger param `qa`) decides: `enforce`
fails a product's qa task on a failed check, so nothing is installed; `warn` installs anyway;
`approve` waits at `approve_qa` for a person's answer in the UI. `install` copies the products into
the central directory as the collaboration account, through the same gate (`dc2 install --qa-mode`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Param, TaskGroup, get_current_context, task

from dc2tasks.airflow import run_tasks
from dc2tasks.airflow.operators.qa import APPROVE_TASK, QA_GROUP, QaApprovalOperator, QaStepOperator
from dc2tasks.airflow.operators.step import PLAN_TASK, RunStepOperator
from dc2tasks.catalogue import CATALOGUE, Product
from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.loader import load_run_config
from dc2tasks.runs.params import params_schema


def dag_id_for(config: RunConfig) -> str:
    return f"dc2_{config.name}"


def _params(config: RunConfig) -> dict[str, Param]:
    params = {}
    for key, schema in params_schema(config).items():
        schema = dict(schema)
        default = schema.pop("default", None)
        params[key] = Param(default, **schema)
    return params


def _doc(config: RunConfig, run_file: Path) -> str:
    return (
        f"**{config.name}**: {config.description or ''}\n\n"
        f"Run file `{run_file}`; {', '.join(f'{k} `{v}`' for k, v in config.inputs(config.rerun).items())}; "
        f"tracts {', '.join(map(str, config.tracts))}; products {', '.join(config.products)}; backend "
        f"`{config.backend}`; installs into `{config.central.dir}`.\n\n" + (__doc__ or "")
    )


def _step_operators(config: RunConfig) -> dict[str, RunStepOperator]:
    """One operator per product the run file makes, inside its task group, by product name."""
    poll = float(config.slurm.poll_interval or (2 if config.backend == "local" else 30))
    groups: dict[str, TaskGroup] = {}
    ops: dict[str, RunStepOperator] = {}
    for product in CATALOGUE:
        if product.name not in config.products:
            continue
        op_args = dict(config=config, step=product.step, trigger_rule="none_failed", poll_interval=poll)
        if product.group is None:
            ops[product.name] = RunStepOperator(task_id=product.step, **op_args)
            continue
        if product.group not in groups:
            groups[product.group] = TaskGroup(product.group)
        with groups[product.group]:
            ops[product.name] = RunStepOperator(task_id=product.step, **op_args)
    return ops


def _qa_operators(config: RunConfig) -> list[QaStepOperator]:
    """One `dc2 qa` step per product the run file makes, in the `qa` group (`qa.<product>`)."""
    poll = float(config.slurm.poll_interval or (2 if config.backend == "local" else 30))
    with TaskGroup(QA_GROUP):
        return [
            QaStepOperator(task_id=p.name, config=config, product=p.name, poll_interval=poll)
            for p in CATALOGUE
            if p.name in config.products
        ]


def _upstream(config: RunConfig, product: Product) -> list[str]:
    return [p.name for p in CATALOGUE.upstream(product.name, config.products)]


def build_dag(config: RunConfig, run_file: str | os.PathLike[str]) -> DAG:
    """Wire the run's tasks: inventory, plan, one step per product (after the steps of the products
    it needs or uses, from the catalogue), finalize, install."""
    run_file = Path(run_file)
    dag = DAG(
        dag_id=dag_id_for(config),
        description=f"DC2 {config.name}: {', '.join(config.products)}",
        schedule=None,
        catchup=False,
        max_active_runs=1,
        params=_params(config),
        tags=["dc2", config.backend, config.name],
        doc_md=_doc(config, run_file),
        default_args={"retries": 2, "retry_delay": timedelta(seconds=5 if config.backend == "local" else 60)},
    )
    with dag:
        inventory = task(task_id=run_tasks.INVENTORY_TASK)(
            lambda: run_tasks.inventory_task(config, get_current_context())
        )()
        plan = task(task_id=PLAN_TASK)(lambda: run_tasks.plan_task(config, get_current_context()))()
        inventory >> plan
        steps = _step_operators(config)
        step_ids = [op.task_id for op in steps.values()]  # "object.merge_tract" inside the group
        finalize = task(task_id="finalize", trigger_rule="none_failed")(
            lambda: run_tasks.finalize_task(config, get_current_context(), step_ids)
        )()
        qa = _qa_operators(config)
        qa_ids = [o.task_id for o in qa]
        approve = QaApprovalOperator(
            task_id=APPROVE_TASK, config=config, qa_task_ids=qa_ids, trigger_rule="none_failed"
        )
        # none_failed: a product the plan skips skips its qa, which does not stop install; a failed
        # qa task (enforce) or a rejected approval does
        install = task(task_id="install", trigger_rule="none_failed")(
            lambda: run_tasks.install_task(config, get_current_context())
        )()
        for name, op in steps.items():
            upstream = [steps[u] for u in _upstream(config, CATALOGUE[name])]
            for before in upstream or [plan]:
                before >> op
            op >> finalize
        finalize >> qa
        qa >> approve >> install
    return dag


def dag_from_run_file(path: str | os.PathLike[str]) -> DAG:
    """The DAG of one run file; an invalid file raises with the file and field named, which Airflow
    shows as this DAG file's import error (the other runs' DAG files are not affected)."""
    return build_dag(load_run_config(path), path)
