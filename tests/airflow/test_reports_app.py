"""The reports app (dc2tasks/airflow/reports_app.py) inside Airflow's own API server app, with its real
login (the simple auth manager's password, a JWT as header or as the UI's `_token` cookie), against a
real `dag.test()` run whose qa task pushed its `qa_report` and whose install task ran `dc2 install` of
a product directory holding a QA report (qa.json, index.html and a PNG drawn with matplotlib).

The app is mounted the way the API server mounts a plugin's `fastapi_apps` (before its catch-all
route); that the plugin declares it, and the "QA report" view, is checked with `airflow plugins`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import pytest
from dagrun import DC2_IN_DAG, TaskKey, load_dag

from dc2tasks.airflow.links import QaReportLink, read_xcom

REPO = Path(__file__).resolve().parents[2]
RUN = "reports_test"
DAG_ID = f"dc2_{RUN}"
ROWS = 1234
EVIL = '<img src=x onerror="alert(1)">'

DAG_FILE = DC2_IN_DAG + """
from airflow.sdk import DAG, TaskGroup, get_current_context, task

WORK = {work!r}
CENTRAL = {central!r}


with DAG({dag_id!r}, schedule=None, catchup=False) as dag:
    with TaskGroup("qa"):
        @task(task_id="object")
        def qa_object():
            get_current_context()["ti"].xcom_push("qa_report", {{
                "product": "object", "verdict": "warn", "report_dir": f"{{WORK}}/object/qa/object",
                "failures": [{evil!r}]}})

        qa = qa_object()

    @task
    def install():
        dc2("manifest", f"{{WORK}}/object")
        out = dc2("install", f"{{WORK}}/object", "--central", CENTRAL, "--product", "object", "--json",
                  "--no-check")
        return {{"object": json.loads(out)}}

    qa >> install()
"""


def write_report(report_dir: Path) -> bytes:
    """A product's report as `dc2 qa` writes one: qa.json, index.html and one plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (report_dir / "plots").mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    ax.plot([1, 2, 3], [3, 1, 2])
    fig.savefig(report_dir / "plots" / "density.png")
    plt.close(fig)
    checks = [{"name": "ids_unique", "verdict": "pass", "value": 0, "threshold": "<= 0", "detail": ""},
              {"name": "mag_range", "verdict": "warn", "value": 0.02, "threshold": "<= 0.01", "detail": ""}]
    (report_dir / "qa.json").write_text(json.dumps({
        "product": "object", "directory": "object", "verdict": "warn", "checks": checks,
        "plots": [{"name": "density", "file": "plots/density.png", "caption": "density"}],
        "facts": {"rows": ROWS},
    }))
    (report_dir / "index.html").write_text(
        '<html><body><table><tr><td>ids_unique</td></tr></table><img src="plots/density.png"></body></html>'
    )
    return (report_dir / "plots" / "density.png").read_bytes()


@pytest.fixture(scope="module")
def deployed(airflow_db: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run file, its work directory with a product and its report, a finished run that installed it,
    and a secret outside both directories with links to it planted inside."""
    base = tmp_path_factory.mktemp("reports")
    work, central, runs = base / "work", base / "central", base / "runs"
    product = work / "object"
    product.mkdir(parents=True)
    (product / "object_tract_4850.hdf5").write_bytes(b"x" * 5000)
    png = write_report(product / "qa" / "object")
    central.mkdir()
    runs.mkdir()
    (runs / f"{RUN}.yaml").write_text(
        f"name: {RUN}\nbackend: local\nrepository: {base}/repo\ntracts: [4850]\nproducts: [object]\n"
        f"working_dir: {work}\ncentral: {{dir: {central}, gcr_base_dir: {{style: absolute}}}}\n"
    )
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.html").write_text("secret")
    (outside / "secret.png").write_bytes(png)
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{DAG_ID}.py"
    path.write_text(DAG_FILE.format(work=str(work), central=str(central), dag_id=DAG_ID, evil=EVIL))
    dr = load_dag(path).test()
    assert str(dr.state) == "success"
    # planted after the install (which refuses symlinks): a link to a file and one to a directory
    (product / "qa" / "object" / "leak.html").symlink_to(outside / "secret.html")
    (product / "qa" / "linked").symlink_to(outside)
    return {"work": work, "central": central, "runs": runs, "run_id": dr.run_id, "png": png}


@pytest.fixture(scope="module")
def client(deployed: dict[str, Any]) -> Any:
    """Airflow's API server app with the reports app mounted at /dc2, as the plugin has it mounted."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient
    from starlette.routing import Mount

    from dc2tasks.airflow.reports_app import URL_PREFIX
    from dc2tasks.airflow.reports_app import create_app as reports_app

    mp = pytest.MonkeyPatch()
    mp.setenv("DC2_RUNS_DIR", str(deployed["runs"]))
    mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "reports-test-secret-" + "x" * 32)  # as a deployment sets it
    app = create_app()
    app.router.routes.insert(0, Mount(URL_PREFIX, app=reports_app()))
    with TestClient(app) as test_client:
        yield test_client
    mp.undo()


@pytest.fixture(scope="module")
def token(client: Any) -> str:
    passwords = Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text())["admin"]
    r = client.post("/auth/token", json={"username": "admin", "password": password})
    assert r.status_code == 201, r.text
    return str(r.json()["access_token"])


def run_page(deployed: dict[str, Any]) -> str:
    return f"/dc2/dags/{DAG_ID}/runs/{quote(deployed['run_id'], safe='')}/qa"


def test_every_page_and_file_refuses_a_request_without_login(client: Any, deployed: dict[str, Any]) -> None:
    for path in (run_page(deployed), f"/dc2/dags/{DAG_ID}/installed",
                 f"/dc2/dags/{DAG_ID}/files/work/object/qa/object/index.html",
                 "/dc2/dags/no_such_dag/installed"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403, path
        assert client.get(path, cookies={"_token": "not-a-jwt"}).status_code == 403, path


def test_run_page_lists_the_verdict_and_links_the_reports(client: Any, deployed: dict[str, Any],
                                                          token: str) -> None:
    page = run_page(deployed)
    r = client.get(page, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    html = r.text
    assert '<tr id="object"><td>object</td><td class="warn">warn</td>' in html
    assert EVIL not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert 'href="../../files/work/object/qa/object/index.html"' in html
    result = read_xcom_install(deployed)
    installed = f"../../files/central/object/versions/{result['version']}/qa/object/index.html"
    assert f'href="{installed}"' in html
    # a browser following the links: the UI's login cookie is enough
    for href in ("../../files/work/object/qa/object/index.html", installed):
        report = client.get(urljoin(page, href), cookies={"_token": token})
        assert report.status_code == 200 and report.headers["content-type"] == "text/html; charset=utf-8"
        assert '<img src="plots/density.png">' in report.text
        plot = client.get(urljoin(urljoin(page, href), "plots/density.png"), cookies={"_token": token})
        assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
        assert plot.content == deployed["png"]
        assert plot.headers["x-content-type-options"] == "nosniff"
    qa_json = client.get(urljoin(page, "../../files/work/object/qa/object/qa.json"),
                         cookies={"_token": token})
    assert qa_json.headers["content-type"] == "application/json" and qa_json.json()["facts"] == {"rows": ROWS}


def read_xcom_install(deployed: dict[str, Any]) -> dict[str, Any]:
    from dc2tasks.airflow.compat import stored_xcoms

    return stored_xcoms(DAG_ID, deployed["run_id"], "return_value")["install"]["object"]


def test_installed_page_lists_each_version_with_its_verdict_rows_and_size(
    client: Any, deployed: dict[str, Any], token: str
) -> None:
    r = client.get(f"/dc2/dags/{DAG_ID}/installed", cookies={"_token": token})
    assert r.status_code == 200
    version = read_xcom_install(deployed)["version"]
    assert f"<td>{version} (current)</td>" in r.text
    assert '<td class="warn">warn</td>' in r.text
    assert f'<td class="num">{ROWS:,}</td><td>5.0 kB</td>' in r.text
    href = f"files/central/object/versions/{version}/qa/object/index.html"
    assert f'href="{href}"' in r.text
    assert client.get(f"/dc2/dags/{DAG_ID}/{href}", cookies={"_token": token}).status_code == 200
    assert client.get("/dc2/dags/dc2_not_deployed/installed", cookies={"_token": token}).status_code == 404


@pytest.mark.parametrize("path", [
    "work/..%2F..%2Foutside%2Fsecret.html",  # '..' in the request
    "work/object/%2E%2E/%2E%2E/outside/secret.html",
    "work/%2F{outside}/secret.html",  # an absolute path
    "work//{outside}/secret.html",
    "work/object/qa/object/leak.html",  # a symlink to a file outside
    "work/object/qa/linked/secret.png",  # through a symlinked directory
    "work/object/object_tract_4850.hdf5",  # not a report file
    "work/object/qa/object/missing.html",
    "work/object/qa/object",
    "home/secret.html",  # no such area
])
def test_only_report_files_under_the_run_directories_are_served(
    client: Any, deployed: dict[str, Any], token: str, path: str
) -> None:
    outside = quote(str(deployed["work"].parent / "outside").lstrip("/"))
    r = client.get(f"/dc2/dags/{DAG_ID}/files/" + path.format(outside=outside), cookies={"_token": token})
    assert r.status_code in (400, 404), r.text
    assert "secret" not in r.text and r.content != deployed["png"]


def test_links_to_the_run_page(deployed: dict[str, Any]) -> None:
    run_id = deployed["run_id"]
    url = f"dc2/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/qa"
    link = QaReportLink()
    assert read_xcom(TaskKey(DAG_ID, "qa.object", run_id), "qa_report")["verdict"] == "warn"
    assert link.get_link(None, ti_key=TaskKey(DAG_ID, "qa.object", run_id)) == f"{url}#object"
    assert link.get_link(None, ti_key=TaskKey(DAG_ID, "install", run_id)) == url
    assert link.get_link(None, ti_key=TaskKey(DAG_ID, "qa.object", "no_such_run")) == ""


def test_plugin_mounts_the_app_and_adds_the_run_view() -> None:
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins")}
    listed = subprocess.run([sys.executable, "-m", "airflow", "plugins", "--output", "json"],
                            capture_output=True, text=True, env=env, check=True, timeout=300)
    (dc2,) = [p for p in json.loads(listed.stdout[listed.stdout.index("["):]) if p["name"] == "dc2"]
    assert dc2["fastapi_apps"] == [{"app": "fastapi.applications.FastAPI", "url_prefix": "/dc2",
                                    "name": "dc2 QA reports"}]
    assert dc2["external_views"] == [{"name": "QA report", "href": "dc2/dags/{DAG_ID}/runs/{RUN_ID}/qa",
                                      "destination": "dag_run", "url_route": "qa-report"}]
