"""The dc2 Airflow plugin: extra links on the run DAGs' tasks (dc2tasks/airflow/links.py).

Why a plugin besides the operator's own `operator_extra_links`: the operator's links are resolved on
the worker when a try ends and stored in XCom, so they are fixed at that moment and exist only for
tasks that ran with this code. Registered here, the API server resolves them itself from the tasks'
XComs (`slurm_job_id`, the install result) with the deployment's current URL templates, and the
install task, a plain `@task`, gets its link without a custom operator.

Airflow matches a plugin link to an operator by exact class, so each Slurm operator class is listed;
the "Installed products" link is offered to every `@task` (`compat.TASKFLOW_OPERATOR`) and is empty
(not shown) unless the task returned install results.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from dc2tasks.airflow.compat import TASKFLOW_OPERATOR
from dc2tasks.airflow.links import InstalledProductsLink, SlurmJobLink
from dc2tasks.airflow.operators.slurm import SlurmJobOperator
from dc2tasks.airflow.operators.step import RunStepOperator


class SlurmTaskJobLink(SlurmJobLink):
    operators: ClassVar[list[type[Any]]] = [SlurmJobOperator, RunStepOperator]


class InstallTaskProductsLink(InstalledProductsLink):
    operators: ClassVar[list[type[Any]]] = [TASKFLOW_OPERATOR]


class Dc2Plugin(AirflowPlugin):
    name = "dc2"
    operator_extra_links: ClassVar[list[Any]] = [SlurmTaskJobLink(), InstallTaskProductsLink()]
