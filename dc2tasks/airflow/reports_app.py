"""The QA reports over HTTP, served by the Airflow API server (the dc2 plugin's `fastapi_apps`).

    <prefix>/dags/<dag_id>/runs/<run_id>/qa        a run's QA verdicts, linking each product's report
    <prefix>/dags/<dag_id>/installed               the installed versions in the run's central directory
    <prefix>/dags/<dag_id>/files/<area>/<path>     a report's files (area: work or central)

Every route asks for the Airflow UI's own login and the permission to read the DAG's runs
(`compat.require_dag_run_read`): Airflow protects nothing a plugin mounts. The DAG must be a
deployed run's (a run file the API server reads, reports.deployed_runs), and files come only from
that run's work and central directories (reports.read_served_file).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from dc2tasks.airflow import reports, reports_html
from dc2tasks.airflow.compat import require_dag_run_read, stored_xcoms
from dc2tasks.airflow.links import FILES_PATH, INSTALLED_PATH, QA_REPORT_KEY, REPORTS_MOUNT, RUN_QA_PATH

URL_PREFIX = f"/{REPORTS_MOUNT}"
INSTALL_TASK = "install"
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # a report is data: no script runs, nothing loads from elsewhere; the UI may show it in its frame
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'none'; "
    "frame-ancestors 'self'",
}


async def logged_in(request: Request) -> None:
    await require_dag_run_read(request)


def run_of(dag_id: str) -> reports.RunAreas:
    run = reports.deployed_runs().get(dag_id)
    if run is None:
        raise HTTPException(404, f"{dag_id} is not the DAG of a deployed run file")
    return run


def run_page(dag_id: str, run_id: str) -> HTMLResponse:
    run = run_of(dag_id)
    xcoms = stored_xcoms(dag_id, run_id, QA_REPORT_KEY)
    qa = {task: value for task, value in xcoms.items() if task.startswith("qa.")}
    installed = stored_xcoms(dag_id, run_id, "return_value").get(INSTALL_TASK)
    rows = reports.run_reports(run, qa, installed)
    return HTMLResponse(reports_html.run_page(dag_id, run_id, rows, to_files="../../files/"), headers=HEADERS)


def installed_page(dag_id: str) -> HTMLResponse:
    run = run_of(dag_id)
    rows = reports.installed_products(run)
    central = str(run.areas[reports.CENTRAL])
    html = reports_html.installed_page(dag_id, central, rows, to_files="files/")
    return HTMLResponse(html, headers=HEADERS)


def report_file(dag_id: str, area: str, path: str) -> Response:
    try:
        content, content_type = reports.read_served_file(run_of(dag_id), area, path)
    except reports.NotServed as exc:
        raise HTTPException(exc.status, "not served") from None
    return Response(content, media_type=content_type, headers=HEADERS)


def create_app() -> FastAPI:
    app = FastAPI(title="dc2 QA reports", dependencies=[Depends(logged_in)], docs_url=None, redoc_url=None,
                  openapi_url=None)
    # plain `def` routes: FastAPI runs them in its thread pool (they read files and the database)
    app.add_api_route(f"/{RUN_QA_PATH}", run_page, methods=["GET"])
    app.add_api_route(f"/{INSTALLED_PATH}", installed_page, methods=["GET"])
    app.add_api_route(f"/{FILES_PATH}/{{area}}/{{path:path}}", report_file, methods=["GET"])
    return app
