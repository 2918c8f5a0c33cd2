"""Extra links in the task view: a Slurm task's job page, a run's QA reports and installed products.

Why each link reads XCom in two ways: Airflow 3 resolves a link in two places. On the worker, at the
end of a try, the Task SDK calls `get_link` of every link the operator declares and stores the URL as
the XCom `_link_<class>`; there XComs come through the SDK (a worker has no database). On the API
server a link registered by a plugin is called directly, with the metadata database and no task
context. Reading the same XComs both ways gives the same URL in both places.

The URL templates come from the environment of the process that resolves the link (so a site sets them
once for its deployment): `DC2_SLURM_JOB_URL` (placeholders `{job_id}`, `{cluster}`) and
`DC2_PRODUCTS_URL` (`{central_dir}`, `{dag_id}`, `{run_id}`). No value, no link: an empty string,
which the UI does not show. The Airflow 3.3 UI shows only http(s) and mailto links and links of its
own origin; a relative URL is resolved against the UI's base URL (its pages have a `<base>`), so the
default of DC2_PRODUCTS_URL and the "QA report" link name pages of the reports app
(reports_app.py, mounted by the plugin at `REPORTS_MOUNT`) relative to it.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

from dc2tasks.airflow.compat import TaskInstanceKeyLike, in_task_process, stored_xcoms, task_xcom
from dc2tasks.airflow.job_name import JOB_ID_XCOM, JOB_XCOM

log = logging.getLogger(__name__)

SLURM_JOB_URL_ENV = "DC2_SLURM_JOB_URL"
DEFAULT_SLURM_JOB_URL = "https://my.nersc.gov/jobinfo.php?jid={job_id}"
SLURM_CLUSTER_ENV = "DC2_SLURM_CLUSTER"
PRODUCTS_URL_ENV = "DC2_PRODUCTS_URL"
REPORTS_MOUNT = "dc2"
"""Where the plugin mounts the reports app, under the API server's base URL; its routes:"""
RUN_QA_PATH = "dags/{dag_id}/runs/{run_id}/qa"
INSTALLED_PATH = "dags/{dag_id}/installed"
FILES_PATH = "dags/{dag_id}/files"
DEFAULT_PRODUCTS_URL = f"{REPORTS_MOUNT}/{INSTALLED_PATH}"
QA_REPORT_KEY = "qa_report"
"""The XCom of a qa task: {"product", "verdict", "report_dir", "failures"}."""
INSTALLED_STATES = ("installed", "unchanged")  # a dry run installs nothing: no link


def read_xcom(ti_key: TaskInstanceKeyLike, key: str) -> Any:
    """The XCom `key` of a task instance, or None; through the Task SDK in a task, else the database.

    On the server the stored JSON is returned as it is, with no Airflow deserialization (which could
    build arbitrary classes from what a task wrote); a custom XCom backend that stores references
    elsewhere is not supported there."""
    if not in_task_process():
        stored = stored_xcoms(ti_key.dag_id, ti_key.run_id, key, ti_key.task_id, ti_key.map_index)
        return stored.get(ti_key.task_id)
    try:
        return task_xcom(ti_key, key)
    except Exception:  # e.g. a skipped task that never pushed it: no link, not an error in its log
        return None


def fill_template(template: str, env_name: str, values: Mapping[str, str]) -> str:
    """`template` with `values` (URL-quoted); a template naming an unknown placeholder is logged and
    gives no link, rather than an error page in the UI."""
    try:
        return template.format_map({k: quote(v, safe="/:") for k, v in values.items()})
    except (KeyError, IndexError, ValueError) as exc:
        log.error("%s=%r: cannot fill it (%s); placeholders: %s", env_name, template, exc, ", ".join(values))
        return ""


class SlurmJobLink(BaseOperatorLink):
    """The site's page of the Slurm job this try submitted or reattached to."""

    name = "Slurm job"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKeyLike) -> str:  # type: ignore[override]
        job_id = read_xcom(ti_key, JOB_ID_XCOM)
        if not job_id:
            return ""
        job = read_xcom(ti_key, JOB_XCOM)
        job = job if isinstance(job, dict) else {}
        try_number = getattr(ti_key, "try_number", None)
        if job.get("try") is not None and try_number is not None and int(job["try"]) != int(try_number):
            return ""  # XCom holds only the latest try's job: an earlier try gets no link, not a wrong one
        cluster = os.environ.get(SLURM_CLUSTER_ENV) or job.get("conn_id") or "local"
        template = os.environ.get(SLURM_JOB_URL_ENV) or DEFAULT_SLURM_JOB_URL
        return fill_template(template, SLURM_JOB_URL_ENV, {"job_id": str(job_id), "cluster": str(cluster)})


def central_dir_of(install_results: object) -> str | None:
    """The central directory the products of one `install` task went into, or None when nothing was
    installed (a dry run, a run without products, a task that returned something else)."""
    if not isinstance(install_results, dict):
        return None
    product_dirs = [
        str(r["product_dir"])
        for r in install_results.values()
        if isinstance(r, dict) and r.get("status") in INSTALLED_STATES and r.get("product_dir")
    ]
    if not product_dirs:
        return None
    return posixpath.commonpath([posixpath.dirname(d.rstrip("/")) for d in product_dirs])


class InstalledProductsLink(BaseOperatorLink):
    """Where a finished run's products were installed, from its `install` task's return value."""

    name = "Installed products"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKeyLike) -> str:  # type: ignore[override]
        central_dir = central_dir_of(read_xcom(ti_key, "return_value"))
        if central_dir is None:
            return ""
        template = os.environ.get(PRODUCTS_URL_ENV) or DEFAULT_PRODUCTS_URL
        values = {"central_dir": central_dir, "dag_id": ti_key.dag_id, "run_id": ti_key.run_id}
        return fill_template(template, PRODUCTS_URL_ENV, values)


def run_qa_url(dag_id: str, run_id: str) -> str:
    """The reports app's page of one DAG run, relative to the UI's base URL."""
    path = RUN_QA_PATH.format(dag_id=quote(dag_id, safe=""), run_id=quote(run_id, safe=""))
    return f"{REPORTS_MOUNT}/{path}"


class QaReportLink(BaseOperatorLink):
    """A run's QA reports: on a qa task (its XCom `qa_report`, the page's row of its product) and on
    the install task (when it installed something)."""

    name = "QA report"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKeyLike) -> str:  # type: ignore[override]
        report = read_xcom(ti_key, QA_REPORT_KEY)
        if isinstance(report, dict) and isinstance(report.get("product"), str):
            return f"{run_qa_url(ti_key.dag_id, ti_key.run_id)}#{quote(report['product'], safe='')}"
        if central_dir_of(read_xcom(ti_key, "return_value")) is not None:
            return run_qa_url(ti_key.dag_id, ti_key.run_id)
        return ""
