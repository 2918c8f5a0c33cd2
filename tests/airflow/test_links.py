"""Extra links (dc2tasks/airflow/links.py) on real XCom rows from a `dag.test()` run: a Slurm task's job
page (worker side: the URL the Task SDK stored when the try ended; server side: the link resolved from
the database), the install task's "Installed products", and the plugin (plugins/dc2_plugin.py) as
Airflow's plugin manager and the API server's deserialized DAG see it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from dagrun import DC2_IN_DAG

from dc2tasks.airflow.links import InstalledProductsLink, SlurmJobLink, central_dir_of, read_xcom

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
DAG_ID = "dc2_links_test"

DAG_FILE = DC2_IN_DAG + """
from airflow.sdk import DAG, task

from dc2tasks.airflow.operators.slurm import SlurmJobOperator
from dc2tasks.slurm import SlurmJob

WORK = {work!r}
CENTRAL = {central!r}


def install_product(product, *flags):
    dc2("manifest", f"{{WORK}}/{{product}}")
    out = dc2("install", f"{{WORK}}/{{product}}", "--central", CENTRAL, "--product", product, "--json",
              "--no-check", *flags)
    return {{product: json.loads(out)}}


with DAG({dag_id!r}, schedule=None, catchup=False) as dag:
    SlurmJobOperator(task_id="slurm", job=SlurmJob(script="echo linked\\n", name="x"), poll_interval=0.3)

    @task
    def install():
        return install_product("object")

    @task
    def install_dry_run():
        return install_product("source", "--dry-run")

    install()
    install_dry_run()
"""


@pytest.fixture(scope="module")
def finished_run(airflow_db: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One dag.test() run of a Slurm task (local backend) and two real installs (one a dry run)."""
    base = tmp_path_factory.mktemp("links")
    for product in ("object", "source"):
        (base / "work" / product).mkdir(parents=True)
        (base / "work" / product / f"{product}_tract_4850.parquet").write_bytes(b"not really parquet\n")
    (base / "central").mkdir()
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / f"{DAG_ID}.py"
    path.write_text(
        DAG_FILE.format(work=str(base / "work"), central=str(base / "central"), dag_id=DAG_ID)
    )
    from airflow.utils.session import create_session
    from dagrun import load_dag

    dr = load_dag(path).test()
    with create_session() as session:
        tis = {ti.task_id: ti for ti in dr.get_task_instances(session=session)}
        for ti in tis.values():
            session.expunge(ti)
    assert str(dr.state) == "success", {k: str(t.state) for k, t in tis.items()}
    return {"tis": tis, "central": base / "central", "run_id": dr.run_id}


@pytest.fixture
def no_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DC2_SLURM_JOB_URL", "DC2_SLURM_CLUSTER", "DC2_PRODUCTS_URL"):
        monkeypatch.delenv(name, raising=False)


def test_slurm_job_link(finished_run: dict[str, Any], no_templates: None, monkeypatch, caplog) -> None:
    slurm = finished_run["tis"]["slurm"]
    job_id = read_xcom(slurm, "slurm_job_id")
    assert isinstance(job_id, str) and job_id.isdigit()
    # the worker resolved the operator's declared link when the try ended, through the Task SDK
    assert read_xcom(slurm, "_link_SlurmJobLink") == f"https://my.nersc.gov/jobinfo.php?jid={job_id}"
    # the server side, from the database
    link = SlurmJobLink()
    assert link.get_link(None, ti_key=slurm) == f"https://my.nersc.gov/jobinfo.php?jid={job_id}"

    monkeypatch.setenv("DC2_SLURM_JOB_URL", "https://ood.example.org/jobs?cluster={cluster}&id={job_id}")
    assert link.get_link(None, ti_key=slurm) == f"https://ood.example.org/jobs?cluster=local&id={job_id}"
    monkeypatch.setenv("DC2_SLURM_CLUSTER", "perlmutter")
    assert link.get_link(None, ti_key=slurm) == f"https://ood.example.org/jobs?cluster=perlmutter&id={job_id}"

    from airflow.models.taskinstancekey import TaskInstanceKey

    other_try = TaskInstanceKey(DAG_ID, "slurm", slurm.run_id, try_number=slurm.try_number + 1)
    assert link.get_link(None, ti_key=other_try) == ""  # XCom holds another try's job: no link
    assert link.get_link(None, ti_key=finished_run["tis"]["install"]) == ""  # no job id, no link

    monkeypatch.setenv("DC2_SLURM_JOB_URL", "https://x.example/{jobid}")
    assert link.get_link(None, ti_key=slurm) == ""
    assert "DC2_SLURM_JOB_URL='https://x.example/{jobid}': cannot fill it" in caplog.text


def test_installed_products_link(finished_run: dict[str, Any], no_templates: None, monkeypatch) -> None:
    tis, central = finished_run["tis"], finished_run["central"]
    result = read_xcom(tis["install"], "return_value")
    assert result["object"]["status"] == "installed"
    assert result["object"]["product_dir"] == str(central / "object")
    assert (central / "object" / "current").is_symlink()
    link = InstalledProductsLink()
    # the reports app's page, relative to the UI's base URL (the UI opens only http(s) and its own origin)
    assert link.get_link(None, ti_key=tis["install"]) == f"dc2/dags/{DAG_ID}/installed"

    run_id = finished_run["run_id"]
    monkeypatch.setenv("DC2_PRODUCTS_URL", "https://portal.example.org{central_dir}/?dag={dag_id}&run={run_id}")
    assert link.get_link(None, ti_key=tis["install"]) == (
        f"https://portal.example.org{central}/?dag={DAG_ID}&run={quote(run_id, safe='/:')}"
    )
    assert read_xcom(tis["install_dry_run"], "return_value")["source"]["status"] == "dry-run"
    assert link.get_link(None, ti_key=tis["install_dry_run"]) == ""  # nothing installed
    assert link.get_link(None, ti_key=tis["slurm"]) == ""  # returns a job id, not install results


def test_central_dir_of_several_products() -> None:
    results = {
        "object": {"status": "installed", "product_dir": "/c/dc2/object"},
        "source": {"status": "unchanged", "product_dir": "/c/dc2/source"},
        "dia": {"status": "dry-run", "product_dir": "/elsewhere/dia"},
    }
    assert central_dir_of(results) == "/c/dc2"
    assert central_dir_of({}) is None
    assert central_dir_of(["object"]) is None


SERVER_SIDE = textwrap.dedent(
    """\
    import json, sys
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag_id, run_id = sys.argv[1], sys.argv[2]
    out = {}
    with create_session() as session:
        dag = SerializedDagModel.get_dag(dag_id, session=session)
        for task in dag.tasks:
            ti = session.scalar(select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id,
                TaskInstance.task_id == task.task_id))
            out[task.task_id] = {
                name: [type(l).__name__ for l in task.operator_extra_links if l.name == name]
                + [task.get_extra_links(ti, name)]
                for name in sorted(task.extra_links)
            }
    print(json.dumps(out))
    """
)


def test_plugin_is_discovered_and_serves_the_links(finished_run: dict[str, Any], no_templates: None) -> None:
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS)}
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "plugins", "--output", "json"],
        capture_output=True, text=True, env=env, check=True, timeout=300,
    )
    plugins = json.loads(listed.stdout[listed.stdout.index("[") :])
    (dc2,) = [p for p in plugins if p["name"] == "dc2"]
    assert dc2["source"] == "$PLUGINS_FOLDER/dc2_plugin.py"
    assert dc2["operator_extra_links"] == [
        "<dc2_plugin.SlurmTaskJobLink object>",
        "<dc2_plugin.InstallTaskProductsLink object>",
        "<dc2_plugin.TaskQaReportLink object>",
    ]

    # what the API server does for GET .../taskInstances/{task}/links: the DAG as serialized, its
    # operators' links (the plugin's take precedence), each resolved for the task instance
    served = subprocess.run(
        [sys.executable, "-c", SERVER_SIDE, DAG_ID, finished_run["run_id"]],
        capture_output=True, text=True, env=env, check=True, timeout=300,
    )
    links = json.loads(served.stdout.strip().splitlines()[-1])
    job_id = read_xcom(finished_run["tis"]["slurm"], "slurm_job_id")
    run_id = finished_run["run_id"]
    assert links == {
        "slurm": {"Slurm job": ["SlurmTaskJobLink", f"https://my.nersc.gov/jobinfo.php?jid={job_id}"]},
        "install": {
            "Installed products": ["InstallTaskProductsLink", f"dc2/dags/{DAG_ID}/installed"],
            "QA report": ["TaskQaReportLink", f"dc2/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/qa"],
        },
        "install_dry_run": {
            "Installed products": ["InstallTaskProductsLink", ""], "QA report": ["TaskQaReportLink", ""],
        },
    }
