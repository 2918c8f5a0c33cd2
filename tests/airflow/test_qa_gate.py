"""The quality gate in a real run of the demo DAG (`dag.test()`, local backend): a failed QA check
stops the run at `qa` with nothing installed (enforce), installs with the overridden failures in the
provenance (warn), or waits for a person's answer given through the REST API of an api-server on the
same database (approve): an approval installs, a rejection installs nothing.

The failure is forced through the run file: `qa.thresholds.max_missing_units: -1` (no product can
have fewer than 0 missing units)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from dagrun import load_dag, task_instances, xcom_value

from dc2tasks.install.manifest import build_manifest, read_manifest

PRODUCT = "forced_source"  # needs no other product: the quickest run that installs something
FORCED_FAILURE = {"max_missing_units": -1}


def _with_qa(folder: Path, **qa: object) -> Path:
    run_file = folder / "runs" / "demo.yaml"
    data = yaml.safe_load(run_file.read_text())
    data["qa"] = {**data.get("qa", {}), **qa}
    run_file.write_text(yaml.safe_dump(data))
    return folder / "dc2_demo.py"


def _states(dr) -> dict[str, str]:
    return {task_id: str(ti.state) for task_id, ti in task_instances(dr).items()}


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _failed_checks(report_dir: Path) -> list[dict]:
    qa = json.loads((report_dir / "qa.json").read_text())
    return [c for c in qa["checks"] if c["verdict"] == "fail"]


def test_a_failed_check_stops_the_run_at_qa_and_installs_nothing(demo_dags, capfd) -> None:
    _, demo, folder = demo_dags
    dag = load_dag(_with_qa(folder, thresholds=FORCED_FAILURE))
    central = demo / "central"
    before = _tree(central)
    dr = dag.test(run_conf={"products": [PRODUCT]})
    states = _states(dr)
    assert str(dr.state) == "failed", states
    assert states[f"qa.{PRODUCT}"] == "failed"
    assert states["approve_qa"] == "upstream_failed" and states["install"] == "upstream_failed", states
    assert {states[f"qa.{p}"] for p in ("object", "source", "dia_object")} == {"skipped"}
    assert _tree(central) == before == []
    report = xcom_value(dr, f"qa.{PRODUCT}", "qa_report")
    report_dir = demo / "work" / PRODUCT / "qa" / PRODUCT
    failed = _failed_checks(report_dir)
    assert report == {"product": PRODUCT, "verdict": "fail", "report_dir": str(report_dir),
                      "failures": [c["name"] for c in failed]}
    # the task log names each failed check with its numbers, and the failure is final (one try)
    log = capfd.readouterr().out
    assert f"QA of {PRODUCT} failed (qa mode enforce): nothing is installed" in log
    for check in failed:
        assert f"{check['name']} = {check['value']} (threshold {check['threshold']})" in log
    assert task_instances(dr)[f"qa.{PRODUCT}"].try_number == 1


def test_warn_installs_and_the_provenance_lists_the_overridden_failures(demo_dags) -> None:
    _, demo, folder = demo_dags
    dag = load_dag(_with_qa(folder, thresholds=FORCED_FAILURE))
    dr = dag.test(run_conf={"products": [PRODUCT], "qa": "warn"})
    states = _states(dr)
    assert str(dr.state) == "success", states
    assert states[f"qa.{PRODUCT}"] == "success" and states["install"] == "success"
    assert states["approve_qa"] == "skipped"
    assert xcom_value(dr, f"qa.{PRODUCT}", "qa_report")["verdict"] == "fail"
    current = demo / "central" / PRODUCT / "current"
    provenance = json.loads((current / "provenance.json").read_text())
    failed = _failed_checks(current / "qa" / PRODUCT)
    assert failed, "the forced failure is in the installed report"
    assert provenance["qa"] == {
        "mode": "warn",
        "verdicts": {PRODUCT: "fail"},
        "overridden": [{"product": PRODUCT, "check": c["name"], "value": c["value"],
                        "threshold": c["threshold"]} for c in failed],
        "approved_by": None,
    }
    # the installed report says so itself: its override record, a banner atop its page, and the
    # installed manifest still verifies (it lists the rewritten files)
    override = json.loads((current / "qa" / PRODUCT / "qa.json").read_text())["override"]
    assert (override["mode"], override["approved_by"]) == ("warn", None)
    keys = ("name", "value", "threshold", "detail")
    assert override["failures"] == [{k: c[k] for k in keys} for c in failed]
    n = len(failed)
    assert f"Installed despite {n} failed check{'s' if n > 1 else ''} (qa mode warn)</h2>" in (
        current / "qa" / PRODUCT / "index.html").read_text()
    manifest = read_manifest(current / "manifest.json")
    assert sorted(build_manifest(current).files, key=str) == sorted(manifest.files, key=str)
    assert manifest.produced_as == read_manifest(demo / "work" / PRODUCT / "manifest.json").content_sha256


@pytest.fixture
def api_server(airflow_db, tmp_path):
    """An api-server on this test's Airflow database: the REST API the UI's Required actions page
    calls to answer a human-in-the-loop task (the tasks themselves run in `dag.test()`)."""
    import os

    from services import AirflowServices, free_port

    port = free_port()
    env = dict(os.environ)
    env.update({
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": "dc2-test-secret-not-for-production",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    })
    home = tmp_path / "api-server"
    home.mkdir()
    services = AirflowServices(home, Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]), env, port)
    try:
        services.start("api-server")
        services.wait_healthy(components=("metadatabase",))
        yield services
    finally:
        services.stop_all()


def _run_ids(services, dag_id: str) -> list[str]:
    try:
        return [r["dag_run_id"] for r in services.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]]
    except RuntimeError:  # 404 until dag.test() has written the DAG and its run
        return []


def _answer_when_asked(services, dag_id: str, option: str, answers: dict) -> threading.Thread:
    """In the background: wait until the approval task of the DAG's next run awaits input, then
    answer it as the UI does (PATCH .../taskInstances/approve_qa/-1/hitlDetails). On any error the
    run is marked failed, so dag.test() returns instead of waiting for an answer that never comes."""
    earlier = set(_run_ids(services, dag_id))  # the session's database holds other tests' runs

    def new_runs() -> list[str]:
        return [r for r in _run_ids(services, dag_id) if r not in earlier]

    def run() -> None:
        run_id = None
        try:
            services.wait(lambda: bool(new_runs()), 600, "no new run of the DAG")
            (run_id,) = new_runs()
            services.wait_ti(dag_id, run_id, "approve_qa", "awaiting_input", timeout=900)
            run = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
            path = f"{run}/taskInstances/approve_qa/-1/hitlDetails"
            answers["body"] = services.api("GET", path).get("body")
            answer = {"chosen_options": [option], "params_input": {}}
            answers["response"] = services.api("PATCH", path, answer)
        except Exception as exc:  # reported by the test, not lost in the thread
            answers["error"] = repr(exc)
            if run_id is not None:
                run = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
                services.api("PATCH", run, {"state": "failed"})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("option", ["Approve", "Reject"])
def test_approve_waits_for_an_answer_through_the_rest_api(demo_dags, api_server, option) -> None:
    _, demo, folder = demo_dags
    dag = load_dag(_with_qa(folder, thresholds=FORCED_FAILURE, mode="approve"))
    answers: dict = {}
    thread = _answer_when_asked(api_server, dag.dag_id, option, answers)
    dr = dag.test(run_conf={"products": [PRODUCT]})  # the run file's mode: approve
    thread.join(timeout=60)
    assert "error" not in answers, answers
    states = _states(dr)
    report_dir = demo / "work" / PRODUCT / "qa" / PRODUCT
    # what the person read: the verdict, the failed checks and where the report is
    assert f"| {PRODUCT} | **fail** |" in answers["body"] and f"`{report_dir}/index.html`" in answers["body"]
    who = answers["response"]["responded_by"]["name"]
    central = demo / "central"
    if option == "Reject":
        assert str(dr.state) == "failed", states
        assert states["approve_qa"] == "failed" and states["install"] == "upstream_failed", states
        assert _tree(central) == []
        return
    assert str(dr.state) == "success", states
    assert xcom_value(dr, "approve_qa") == {"approved_by": who}
    provenance = json.loads((central / PRODUCT / "current" / "provenance.json").read_text())
    assert provenance["qa"]["mode"] == "approve" and provenance["qa"]["approved_by"] == who
    overridden = provenance["qa"]["overridden"]
    assert [o["product"] for o in overridden] == [PRODUCT] * len(_failed_checks(report_dir))
    installed = central / PRODUCT / "current" / "qa" / PRODUCT
    override = json.loads((installed / "qa.json").read_text())["override"]
    assert (override["mode"], override["approved_by"]) == ("approve", who)
    assert f"(qa mode approve), approved by {who}</h2>" in (installed / "index.html").read_text()


@pytest.fixture
def sweep(airflow_db):
    """The scheduler's timeout sweep of tasks awaiting input, once a second in the background:
    `dag.test()` runs no scheduler, and in a deployment the scheduler is what ends the wait."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    runner = SchedulerJobRunner(job=Job())
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(1):
            runner.check_awaiting_input_timeouts()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=30)


def test_an_unanswered_approval_times_out_and_installs_nothing(demo_folders, sweep, capfd) -> None:
    """`qa.approve_timeout: "0:03"` and nobody answers: the sweep takes the default answer, Reject.
    No product is made: the steps before the approval are marked success without running
    (`mark_success_pattern`), only `plan` and `approve_qa` run (about 15 s here)."""
    demo, folder = demo_folders
    run_file = _with_qa(folder, mode="approve", approve_timeout="0:03")
    data = yaml.safe_load((folder / "runs" / "demo.yaml").read_text())
    (folder / "runs" / "demo.yaml").write_text(yaml.safe_dump({**data, "visits": [1]}))
    dag = load_dag(run_file)
    dr = dag.test(run_conf={"products": [PRODUCT]}, mark_success_pattern=r"(?!plan$|approve_qa$|install$).*")
    states = _states(dr)
    assert str(dr.state) == "failed", states
    assert states["plan"] == "success" and states[f"qa.{PRODUCT}"] == "success", states
    assert states["approve_qa"] == "failed" and states["install"] == "upstream_failed", states
    assert _tree(demo / "central") == []
    log = capfd.readouterr().out
    assert "waiting for approval (at most 0:00:03, qa.approve_timeout 0:03; then rejected)" in log
    assert ("no answer within 0:00:03 (run file qa.approve_timeout 0:03): rejected, nothing is installed. "
            "To be asked again, clear approve_qa with its downstream tasks") in log
