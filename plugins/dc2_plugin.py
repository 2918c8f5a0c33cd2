"""The dc2 Airflow plugin: extra links on the run DAGs' tasks (dc2tasks/airflow/links.py), and the QA
reports over HTTP (dc2tasks/airflow/reports_app.py) with a "QA report" view on each DAG run.

Why a plugin besides the operator's own `operator_extra_links`: the operator's links are resolved on
the worker when a try ends and stored in XCom, so they are fixed at that moment and exist only for
tasks that ran with this code. Registered here, the API server resolves them itself from the tasks'
XComs (`slurm_job_id`, `qa_report`, the install result) with the deployment's current URL templates,
and the install task, a plain `@task`, gets its links without a custom operator.

Airflow matches a plugin link to an operator by exact class, so each operator class is listed; the
"Installed products" and "QA report" links are offered to every `@task` (`compat.TASKFLOW_OPERATOR`)
and to the qa steps, and are empty (not shown) unless the task pushed what they read.

The view's `href` is relative to the UI's base URL; the UI fills `{DAG_ID}` and `{RUN_ID}` in it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from dc2tasks.airflow.compat import TASKFLOW_OPERATOR
from dc2tasks.airflow.links import (
    REPORTS_MOUNT,
    RUN_QA_PATH,
    InstalledProductsLink,
    QaReportLink,
    SlurmJobLink,
)
from dc2tasks.airflow.operators.qa import QaStepOperator
from dc2tasks.airflow.operators.slurm import SlurmJobOperator
from dc2tasks.airflow.operators.step import RunStepOperator
from dc2tasks.airflow.reports_app import create_app


class SlurmTaskJobLink(SlurmJobLink):
    operators: ClassVar[list[type[Any]]] = [SlurmJobOperator, RunStepOperator, QaStepOperator]


class InstallTaskProductsLink(InstalledProductsLink):
    operators: ClassVar[list[type[Any]]] = [TASKFLOW_OPERATOR]


class TaskQaReportLink(QaReportLink):
    operators: ClassVar[list[type[Any]]] = [QaStepOperator, TASKFLOW_OPERATOR]


class Dc2Plugin(AirflowPlugin):
    name = "dc2"
    operator_extra_links: ClassVar[list[Any]] = [
        SlurmTaskJobLink(), InstallTaskProductsLink(), TaskQaReportLink(),
    ]
    fastapi_apps: ClassVar[list[Any]] = [
        {"app": create_app(), "url_prefix": f"/{REPORTS_MOUNT}", "name": "dc2 QA reports"},
    ]
    external_views: ClassVar[list[Any]] = [
        {
            "name": "QA report",
            "href": f"{REPORTS_MOUNT}/" + RUN_QA_PATH.format(dag_id="{DAG_ID}", run_id="{RUN_ID}"),
            "destination": "dag_run",
            "url_route": "qa-report",
        },
    ]
