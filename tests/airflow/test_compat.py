"""dc2tasks/airflow/compat.py against the installed Airflow: the version every item was checked on,
and each item still doing what dc2tasks relies on, with real Airflow (a `dag.test()` run for what
only works inside a task's or a trigger's process)."""

from __future__ import annotations

import asyncio
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from dagrun import TaskKey

from dc2tasks.airflow import compat

HERE = Path(__file__).resolve().parent
DAG_ID = "dc2_compat_test"
DAG_FILE = textwrap.dedent(
    """\
    import sys
    sys.path.insert(0, {here!r})
    from airflow.sdk import DAG, task
    from compat_probe import ProbeOperator

    with DAG({dag_id!r}, schedule=None, catchup=False) as dag:
        @task
        def push():
            return "1"  # a JSON string: decoded once more it would become the number 1

        push() >> ProbeOperator(task_id="probe")
    """
)


def test_installed_airflow_is_the_one_compat_was_checked_on() -> None:
    import airflow

    assert airflow.__version__ == compat.CHECKED_AIRFLOW_VERSION, (
        f"Airflow {airflow.__version__} is installed, but dc2tasks/airflow/compat.py was checked on "
        f"{compat.CHECKED_AIRFLOW_VERSION}. Whoever bumps the pin: re-check EVERY item of compat.py "
        "against the new version (each docstring says what it relies on and the upstream issue it exists "
        "for; drop a workaround whose bug is fixed), run tests/airflow (the cluster tests too), and only "
        "then set CHECKED_AIRFLOW_VERSION."
    )


def test_installed_standard_provider_is_the_one_compat_was_checked_on() -> None:
    from importlib.metadata import version

    installed = version("apache-airflow-providers-standard")
    assert installed == compat.CHECKED_STANDARD_PROVIDER_VERSION, (
        f"apache-airflow-providers-standard {installed} is installed, but compat.TASKFLOW_OPERATOR was "
        f"checked on {compat.CHECKED_STANDARD_PROVIDER_VERSION}: re-check it (and the plugin's links, "
        "tests/airflow/test_links.py), then set CHECKED_STANDARD_PROVIDER_VERSION."
    )


def test_taskflow_operator_is_what_task_builds_and_what_serialization_names() -> None:
    from airflow.sdk import DAG, task
    from airflow.serialization.serialized_objects import OperatorSerialization

    with DAG("dc2_compat_taskflow", schedule=None) as dag:

        @task
        def install() -> None: ...

        install()
    (op,) = dag.tasks
    assert type(op) is compat.TASKFLOW_OPERATOR
    # what a plugin link's `operators` is matched against on the API server
    encoded = OperatorSerialization.serialize_operator(op)
    assert (encoded["task_type"], encoded["_task_module"]) == (
        compat.TASKFLOW_OPERATOR.__name__, compat.TASKFLOW_OPERATOR.__module__)


def test_min_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compat.MIN_WAIT_ENV, raising=False)
    assert compat.trigger_min_wait_s() == compat.DEFAULT_MIN_WAIT_S == 10.0
    for raw, expected in (("0", 0.0), ("2.5", 2.5), ("-3", 0.0), ("soon", 10.0)):
        monkeypatch.setenv(compat.MIN_WAIT_ENV, raw)
        assert compat.trigger_min_wait_s() == expected, raw

    monkeypatch.setenv(compat.MIN_WAIT_ENV, "0.3")

    async def waited() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await compat.wait_out_defer_race(started - 0.1)  # already 0.1 s since the trigger started
        return loop.time() - started

    assert 0.15 <= asyncio.run(waited()) < 0.3


def test_run_to_end_survives_a_repeated_cancel() -> None:
    """As the triggerer does: the caller of on_kill is cancelled again while the work still runs."""
    done: list[str] = []

    async def slow_cancel() -> None:
        await asyncio.sleep(0.3)
        done.append("scancel")

    async def main() -> None:
        caller = asyncio.get_running_loop().create_task(compat.run_to_end(slow_cancel(), "probe"))
        await asyncio.sleep(0.05)
        caller.cancel("__airflow_user_action__")
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.sleep(0.4)

    asyncio.run(main())
    assert done == ["scancel"]


def test_outside_any_task_nothing_is_claimed() -> None:
    assert compat.in_triggerer_process() is False
    # no supervisor to ask: no state, which is no hand-over (on_kill then acts as for a user's action)
    assert asyncio.run(compat.read_task_state(TaskKey("d", "t", "r"))) is None
    assert compat.handed_to_another_triggerer(None) is False
    assert compat.handed_to_another_triggerer("deferred") is True
    assert compat.handed_to_another_triggerer("failed") is False

    async def warm_up() -> set[str]:
        compat.warm_up_state_queries(TaskKey("d", "t", "r"))  # not in a triggerer: nothing to warm up
        return {t.get_name() for t in asyncio.all_tasks()} - {asyncio.current_task().get_name()}  # type: ignore[union-attr]

    assert asyncio.run(warm_up()) == set()
    assert compat._warmed_up is False


def test_the_triggerer_is_told_by_its_comms(monkeypatch: pytest.MonkeyPatch) -> None:
    """The triggerer's runner sets the Task SDK's channel to its own decoder class at start-up."""
    import inspect
    import socket

    from airflow.jobs.triggerer_job_runner import TriggerCommsDecoder, TriggerRunner
    from airflow.sdk.execution_time import task_runner

    assert "task_runner.SUPERVISOR_COMMS = self.comms_decoder" in inspect.getsource(TriggerRunner.init_comms)

    async def with_real_decoder() -> bool:
        left, right = socket.socketpair()
        with left, right:
            reader, writer = await asyncio.open_connection(sock=left)
            monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS",
                                TriggerCommsDecoder(async_writer=writer, async_reader=reader, socket=right),
                                raising=False)
            try:
                return compat.in_triggerer_process() and compat.in_task_process()
            finally:
                writer.close()

    assert asyncio.run(with_real_decoder()) is True


@pytest.fixture(scope="module")
def probe_run(airflow_db: str) -> dict[str, Any]:
    """One `dag.test()` run: `push` returns "1", `probe` reports from its task, defers, and its trigger
    reports from the trigger."""
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / f"{DAG_ID}.py"
    path.write_text(DAG_FILE.format(here=str(HERE), dag_id=DAG_ID))
    from dagrun import load_dag, task_instances

    dr = load_dag(path).test()
    tis = task_instances(dr)
    assert str(dr.state) == "success", {k: str(t.state) for k, t in tis.items()}
    return {"tis": tis}


def stored(ti: Any, key: str) -> Any:
    return compat.stored_xcoms(ti.dag_id, ti.run_id, key, ti.task_id).get(ti.task_id)


def test_inside_a_task(probe_run: dict[str, Any]) -> None:
    report = stored(probe_run["tis"]["probe"], "in_task")
    assert report == {
        "in_task": True,
        "in_triggerer": False,  # dag.test() runs the task and its trigger without the triggerer
        "xcom": "1",  # through the Task SDK: the value push returned
        "running": 1,  # GetTICount through the supervisor: the probe itself is running...
        "deferred": 0,  # ...and not deferred
        "push_succeeded": 1,
        "state": "running",  # GetTaskStates through the supervisor (what on_kill asks)
        "push_state": "success",
    }


def test_inside_a_trigger(probe_run: dict[str, Any]) -> None:
    report = stored(probe_run["tis"]["probe"], "return_value")
    # A trigger can read its task's state through the supervisor (what handed_to_another_triggerer
    # does). dag.test() parks the task in QUEUED while it runs the trigger inline (airflow/sdk/
    # definitions/dag.py), so here it reads QUEUED and a kill would count as a user action; that a
    # real triggerer's trigger reads DEFERRED and leaves the job alone is tests/airflow/
    # test_services_cluster.py::test_a_trigger_handed_to_another_triggerer_leaves_its_job_running.
    assert report == {"deferred": 0, "queued": 1, "handed_over": False, "in_triggerer": False,
                      "state": "queued"}


def test_stored_xcom_is_the_value_as_stored(probe_run: dict[str, Any]) -> None:
    push = probe_run["tis"]["push"]
    assert stored(push, "return_value") == "1"  # a string, not decoded into 1
    assert stored(push, "no_such_key") is None
    # a run's XComs by task id (what the reports app lists), of unmapped tasks by default
    assert compat.stored_xcoms(push.dag_id, push.run_id, "return_value") == {
        "push": "1", "probe": stored(probe_run["tis"]["probe"], "return_value")}
    assert compat.stored_xcoms(push.dag_id, push.run_id, "return_value", map_index=0) == {}


def test_the_database_side_items(probe_run: dict[str, Any]) -> None:
    """What the sweep and the demo read and change in the metadata database, on a real dag.test() run:
    every task instance with its run's state and an XCom; `dag.test()`'s leftover trigger row, which
    the demo deletes; and the task log path the UI reads."""
    probe = probe_run["tis"]["probe"]
    rows = {r["task_id"]: r for r in compat.task_instances([DAG_ID], "in_task")}
    assert set(rows) == {"push", "probe"}
    assert {k: rows["probe"][k] for k in ("state", "try_number", "run_state", "map_index")} == {
        "state": "success", "try_number": 1, "run_state": "success", "map_index": -1}
    assert isinstance(rows["probe"]["xcom"], dict) and rows["push"]["xcom"] is None
    assert DAG_ID in compat.dag_ids_known()
    assert compat.delete_finished_triggers(DAG_ID, probe.run_id) == 1  # what `dag.test()` left behind
    assert compat.delete_finished_triggers(DAG_ID, probe.run_id) == 0
    path = compat.task_log_path(DAG_ID, probe.run_id, "probe", -1, 1)
    run = f"run_id={probe.run_id}"
    assert path == compat.task_log_folder() / f"dag_id={DAG_ID}" / run / "task_id=probe" / "attempt=1.log"
