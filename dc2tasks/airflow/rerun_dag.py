"""The rerun watcher: a scheduled DAG that triggers a run's DAG once for each complete new rerun.

Per run file with `watch_reruns: true`, three tasks:

    find__<run> ──> trigger__<run>  (TriggerDagRunOperator, one mapped instance per rerun handed out)
                └─> changed__<run>  (fails while a rerun handed out before has changed since)

`find__<run>` gathers the facts of `<repository>/rerun/*` without following links (in this process
for the `local` backend; for `slurm` by running `dc2 reruns REPO --facts ...` over the producer's SSH
connection, whose JSON is parsed strictly), applies the run file's `reruns` rule (complete by a
marker or a quiet period, owned by an allowed account, not a symlink, the run's products present
for every tract and visit: dc2tasks.runs.reruns) and claims the ready new reruns in the rerun
memory (a JSON file, `$DC2_RERUN_STATE` or `$AIRFLOW_HOME/dc2-rerun-state.json`) with a fingerprint
of their content, before anything is triggered: a rerun is handed out once, ever, even if two
watcher runs overlap. A rerun that is not ready is logged with the reason on every pass and not
remembered. Each mapped trigger starts `dc2_<run>` with conf `{"rerun": <rerun>}` under the run id
`rerun__<rerun>`; a run id that exists already is a skip, so a failed trigger can be cleared and
retried without duplicates. A rerun handed out before whose content differs from its fingerprint is
logged and fails `changed__<run>` naming it, on every pass until it is accepted (`dc2 reruns
--accept`); it is never triggered again by the watcher.

Not triggered (never claimed, so never remembered): the run's own configured rerun (the run file
processes it; the watcher is for the reruns that come after) and every rerun it is built on, read from
the `_parents` of the reruns' `repositoryCfg.yaml` (e.g. `coadd`, holding coadds but no catalogs).
A parent given by a path that does not spell `<repository>/rerun/<name>` (through another symlink)
is not recognised and would be triggered.

Why separate tasks per run, fixed when the file is parsed: a run whose repository cannot be listed
(SSH down, a path typo) fails its own task, visible in the grid, while the other runs go on. Invalid
run files are logged and left out; their own DAG files show the import error.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from dc2tasks.airflow.hooks import SlurmHook
from dc2tasks.airflow.operators.step import dc2_argv
from dc2tasks.airflow.run_dag import dag_id_for
from dc2tasks.products.errors import InputError
from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.loader import load_run_dir
from dc2tasks.runs.reruns import (
    JsonRerunStore,
    WatchReport,
    facts_request,
    list_facts,
    watch_reruns,
)
from dc2tasks.slurm.transports.base import Transport

log = logging.getLogger(__name__)

WATCHER_DAG_ID = "dc2_rerun_watcher"
SCHEDULE_ENV = "DC2_RERUN_WATCH_SCHEDULE"
DEFAULT_SCHEDULE = "@hourly"
STATE_ENV = "DC2_RERUN_STATE"
STATE_FILE = "dc2-rerun-state.json"
RUN_ID_PREFIX = "rerun__"
CHANGED_KEY = "changed"


def rerun_run_id(rerun: str) -> str:
    """The triggered DAG run's id: deterministic, so the same rerun can never start two runs."""
    return f"{RUN_ID_PREFIX}{rerun}"


def state_path() -> Path:
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))) / STATE_FILE


def watch_run(
    config: RunConfig, store: Any, runner: Transport | None = None, info: dict[str, Any] | None = None
) -> WatchReport:
    """One pass over a run's repository: claim the ready reruns in `store`, report the changed ones."""
    rule = config.reruns
    if rule is None:  # the run file model requires it with watch_reruns
        raise InputError(f"run {config.name}: no `reruns` rule in its run file")
    argv = tuple(dc2_argv(config)) if runner is not None else ("dc2",)
    listing = list_facts(config.repository, facts_request(config, rule), runner, argv)
    report = watch_reruns(config.name, listing, rule, store, info=info)
    log.info(
        "run %s: repository %s (listed as %s), not watched: %s; new ready reruns: %s",
        config.name,
        config.repository,
        listing.account,
        ", ".join(listing.ignored) or "-",
        ", ".join(report.triggered) or "none",
    )
    return report


def trigger_kwargs(reruns: list[str]) -> list[dict[str, Any]]:
    """TriggerDagRunOperator kwargs, one per rerun handed out."""
    return [{"trigger_run_id": rerun_run_id(r), "conf": {"rerun": r}} for r in reruns]


def _find_task(config: RunConfig) -> Any:
    @task(task_id=f"find__{config.name}", retries=2, retry_delay=timedelta(minutes=1))
    def find() -> list[dict[str, Any]]:
        context = get_current_context()
        info = {"dag_id": dag_id_for(config), "watcher_run_id": context["run_id"]}
        store = JsonRerunStore(state_path())
        if config.backend == "local" or config.connections.producer is None:
            report = watch_run(config, store, None, info)
        else:
            hook = SlurmHook(config.connections.producer)
            try:
                report = watch_run(config, store, hook.client().transport, info)
            finally:
                hook.close()
        context["ti"].xcom_push(key=CHANGED_KEY, value=report.changed)
        return trigger_kwargs(report.triggered)

    return find()


def changed_failure(config: RunConfig, changed: dict[str, str]) -> None:
    """Raise naming every rerun that changed after it was handed out (nothing when none did)."""
    if changed:
        lines = "; ".join(f"{name}: {why}" for name, why in sorted(changed.items()))
        raise AirflowFailException(
            f"run {config.name}: reruns changed after they were processed (not triggered again): "
            f"{lines}. Reprocess by hand if needed, then `dc2 reruns --state {state_path()} "
            f"--run {config.name} --accept RERUN`."
        )


def _changed_task(config: RunConfig) -> Any:
    @task(task_id=f"changed__{config.name}")
    def check() -> None:
        """Fails while a rerun handed out before differs from what was handed out. It runs beside
        the triggers, after find__<run> has claimed the ready ones: this failure holds nothing back."""
        ti = get_current_context()["ti"]
        changed = ti.xcom_pull(task_ids=f"find__{config.name}", key=CHANGED_KEY)
        changed_failure(config, changed or {})

    return check()


def build_watcher_dag(runs_dir: str | os.PathLike[str]) -> DAG:
    configs, errors = load_run_dir(runs_dir)
    for path, error in errors.items():
        log.warning("rerun watcher: run file %s left out:\n%s", path, error)
    watched = [c for _, c in sorted(configs.items()) if c.watch_reruns]
    doc = (
        f"Watches the repositories of {', '.join(c.name for c in watched) or 'no run'} "
        f"(run files in `{runs_dir}` with `watch_reruns: true`).\n\n" + (__doc__ or "")
    )
    dag = DAG(
        dag_id=WATCHER_DAG_ID,
        description="Trigger each data run's DAG once per new rerun of its repository",
        schedule=os.environ.get(SCHEDULE_ENV) or DEFAULT_SCHEDULE,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["dc2", "reruns"],
        doc_md=doc,
    )
    with dag:
        for config in watched:
            found = _find_task(config)
            found >> _changed_task(config)
            TriggerDagRunOperator.partial(
                task_id=f"trigger__{config.name}",
                trigger_dag_id=dag_id_for(config),
                logical_date=None,  # the run DAGs are unscheduled; several reruns may start at once
                skip_when_already_exists=True,
                openlineage_inject_parent_info=False,  # conf is exactly {"rerun": ...}
                retries=2,
                retry_delay=timedelta(minutes=1),
            ).expand_kwargs(found)
    return dag
