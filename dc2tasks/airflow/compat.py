"""Everything dc2tasks relies on that Airflow does not promise, and every workaround for an Airflow bug.

The rest of dc2tasks, plugins/ and dags/ import Airflow only from its public interface: `airflow.sdk`
(the Task SDK, Airflow 3's interface for DAG authors and task code), the providers' operators,
and the two documented extension points outside the SDK, `airflow.triggers.base` (BaseTrigger,
TriggerEvent) and `airflow.plugins_manager.AirflowPlugin` (docs: "Public Interface for Airflow
3.0+", "Using Public Interface to extend Airflow capabilities"). Anything else is here, each item
with the Airflow version it was checked on and the upstream issue or pull request it exists for.

`CHECKED_AIRFLOW_VERSION` is the version every item was checked on (and
`CHECKED_STANDARD_PROVIDER_VERSION` the standard provider's); tests/airflow/test_compat.py fails on
any other, and tests each item against the installed Airflow. Whoever changes the pin
re-reads every item below (is the internal still there and still doing the same? is the bug fixed,
so the workaround can go?) and then moves the constant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

CHECKED_AIRFLOW_VERSION = "3.3.2"
CHECKED_STANDARD_PROVIDER_VERSION = "1.21.0"  # apache-airflow-providers-standard: TASKFLOW_OPERATOR

log = logging.getLogger(__name__)


class TaskInstanceKeyLike(Protocol):
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int


# -- extra links ---------------------------------------------------------------------------------

TASKFLOW_OPERATOR: type[Any] = _PythonDecoratedOperator
"""The operator class behind every `@task` (checked on 3.3.2, providers-standard 1.21.0).

A plugin's extra link names the operators it applies to, and Airflow matches them by exact class
name and module against the serialized task (`task_type`, `_task_module`), so a link for `@task`
tasks must name this private class. No public way exists: apache/airflow#54527 (extra links for
TaskFlow tasks; pull request #69426, open, would add `@task(extra_links=...)`)."""


def in_task_process() -> bool:
    """True in a task's (or the triggerer's) process: the Task SDK's supervisor channel is set.

    Checked on 3.3.2: `airflow.sdk.execution_time.task_runner.SUPERVISOR_COMMS` is declared but only
    assigned by a supervisor, the same test airflow-core makes. Why: an extra link is resolved both
    on the worker (Task SDK, no database) and on the API server (database, no SDK channel), and has
    no public way to tell which (links.py). No upstream issue found."""
    return hasattr(sys.modules.get("airflow.sdk.execution_time.task_runner"), "SUPERVISOR_COMMS")


def task_xcom(ti_key: TaskInstanceKeyLike, key: str) -> Any:
    """An XCom read through the Task SDK with the configured XCom backend (in a task process).

    Checked on 3.3.2: `airflow.sdk.execution_time.xcom.XCom` is the resolved backend class; its
    `get_value(ti_key=..., key=...)` is what the SDK's own link code uses. A link's `get_link` gets
    only a key, not a task instance, so `ti.xcom_pull` is not available. No upstream issue found."""
    from airflow.sdk.execution_time.xcom import XCom

    return XCom.get_value(ti_key=ti_key, key=key)


def stored_xcoms(dag_id: str, run_id: str, key: str, task_id: str | None = None,
                 map_index: int = -1) -> dict[str, Any]:
    """The XCom `key` of one DAG run's task instances of map index `map_index` (of `task_id` only,
    when given) that pushed it, by task id, as stored in the metadata database (on the API server).

    Checked on 3.3.2: `airflow.models.xcom.XComModel.get_many` and `airflow.utils.session.
    create_session`. A plugin's link runs in the API server with no task context (AIP-72, pull
    request apache/airflow#46613), where the database is the only source; Airflow's own extra-links
    route reads `XComModel` the same way (#55194); the reports app (reports_app.py) lists a run's
    `qa_report` XComs without knowing its task ids. The value is returned as stored: a task's XComs
    arrive through the Execution API as plain JSON, and decoding again would turn the job id "1"
    into the number 1. Imported here, not at the top: workers never need airflow-core's models."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            XComModel.get_many(key=key, run_id=run_id, dag_ids=dag_id, task_ids=task_id,
                               map_indexes=map_index).with_only_columns(XComModel.task_id, XComModel.value)
        ).all()
    return {str(task): value for task, value in rows}


# -- the reports app on the API server -----------------------------------------------------------


async def require_dag_run_read(request: Any) -> None:
    """Refuse (401 / 403) a request to a plugin route unless its user may read the runs of the DAG
    named by the route's `dag_id`: the same login and permission as the Airflow UI's own pages.

    Checked on 3.3.2: a plugin's `fastapi_apps` get no authentication from Airflow (docs: "Plugins",
    FastAPI apps) and there is no public dependency for it. `airflow.api_fastapi.core_api.security`'s
    `get_user` (an `Authorization: Bearer` token, else the `_token` cookie the UI's login sets, so a
    browser following a link is logged in) and `requires_access_dag("GET", DagAccessEntity.RUN)`
    are what the core API's run routes depend on; they are called here with the request rather
    than declared as FastAPI dependencies because importing that module takes seconds, and plugins
    are imported by every task process too. No upstream issue found."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_dag
    from starlette.concurrency import run_in_threadpool

    user = await get_user(request, None, await bearer_scheme(request))
    await run_in_threadpool(requires_access_dag("GET", DagAccessEntity.RUN), request, user)


def configured_dags_folder() -> str:
    """`[core] dags_folder` of this deployment (checked on 3.3.2: `airflow.configuration.conf`; the
    Task SDK's configuration is not the API server's)."""
    from airflow.configuration import conf

    return str(conf.get("core", "dags_folder"))


# -- the triggerer -------------------------------------------------------------------------------

_DETACHED: set[asyncio.Task[None]] = set()  # tasks started by `detached`, held until they end
STATE_TIMEOUT_S = 5.0  # how long a trigger waits to learn whether its task is still deferred


def detached(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A task of its own on the running loop, referenced until it ends (asyncio keeps only weak ones)."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)
    return task


async def run_to_end(coro: Coroutine[Any, Any, None], name: str) -> None:
    """Run a trigger's `on_kill` work to its end although the triggerer cancels the caller again.

    Checked on 3.3.2 (airflow/jobs/triggerer_job_runner.py): the supervisor keeps a trigger in
    `cancelling_triggers` and sends it in every state sync (about once a second) until the
    trigger has ended, and each sync cancels the trigger's asyncio task again, cutting an `on_kill`
    that takes longer than a second short (e.g. an scancel over SSH). The work runs in a task of its
    own, which such a cancel does not reach. What that work logs after the trigger has ended (about
    two state syncs after the first cancel) no longer reaches the task's log: the supervisor closes
    a trigger's log file once the trigger is reported finished, and later lines of that trigger go
    to the triggerer's own log, still carrying the task's ids. No upstream issue found."""
    await asyncio.shield(detached(coro, name))


def ti_count(ti: TaskInstanceKeyLike, states: list[str]) -> int:
    """How many task instances with the keys of `ti` are in one of `states` (0 or 1). Blocking.

    Checked on 3.3.2: `RuntimeTaskInstance.get_ti_count` (airflow.sdk.execution_time.task_runner)
    sends the Task SDK's `GetTICount` through `SUPERVISOR_COMMS`, which the triggerer sets too. A
    trigger has no public way to read its task's state (pull request apache/airflow#65590 considered
    a `get_task_state` and dropped it); the first trigger of a triggerer asks it
    (`warm_up_state_queries`)."""
    return int(RuntimeTaskInstance.get_ti_count(
        dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index, states=states,
    ))


def handed_to_another_triggerer(state: str | None) -> bool:
    """True when a trigger's `on_kill` was called although no user acted: its task, in `state` as
    `read_task_state` read it during that `on_kill`, is still DEFERRED.

    Checked on 3.3.2: a trigger the scheduler hands to another triggerer (this one missed its
    heartbeats: paused, overloaded, a network split; or HA rebalancing) is cancelled here with the
    user-action message, so `on_kill` runs although the other triggerer's copy is waiting on the
    same job: apache/airflow pull request #73454 (open; the bug is present since `on_kill` shipped
    in 3.3.0 with #65590). A user action always changes the task's state first, so a task still
    DEFERRED means a hand-over. A state that could not be read (None) is no hand-over, since
    cancelling is what a user action means."""
    return state == "deferred"


def in_triggerer_process() -> bool:
    """True in the triggerer's trigger runner (not in `airflow dags test`, which runs triggers inline).

    Checked on 3.3.2: `TriggerRunner.init_comms` sets `task_runner.SUPERVISOR_COMMS` to a
    `TriggerCommsDecoder` (airflow.jobs.triggerer_job_runner). No public way to ask; no upstream
    issue found. The import is here, not at the top: it loads airflow-core's scheduler side (1.5 s),
    which is loaded already wherever this can be true."""
    from airflow.jobs.triggerer_job_runner import TriggerCommsDecoder
    from airflow.sdk.execution_time import task_runner

    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), TriggerCommsDecoder)


_warmed_up = False  # one warm-up per triggerer process


def warm_up_state_queries(ti: TaskInstanceKeyLike | None) -> None:
    """Ask one state query in the background when the first trigger of a triggerer process starts.

    Checked on 3.3.2: the triggerer's supervisor builds its in-process Execution API on the first
    query a trigger makes (7 s on a busy 2-core machine, its heartbeat stalled meanwhile). Paid in
    `read_task_state` during an `on_kill`, it would delay the cancel a user's clear asks
    for, and the clear's next try could reattach to the job about to be cancelled. No upstream issue
    found (related: apache/airflow#65945, the in-process API's start-up; pull request #67919, open,
    moves the triggerer to the API server over HTTP). Only in a real triggerer."""
    global _warmed_up
    if _warmed_up or ti is None or not in_triggerer_process():
        return
    _warmed_up = True

    async def query() -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(ti_count, ti, ["deferred"])

    detached(query(), name="dc2-state-query-warm-up")


MIN_WAIT_ENV = "DC2_TRIGGER_MIN_WAIT_S"
DEFAULT_MIN_WAIT_S = 10.0


def trigger_min_wait_s() -> float:
    """How long after it starts a trigger may fire at the earliest (`$DC2_TRIGGER_MIN_WAIT_S`, default 10).

    Checked on 3.3.2: a job that ends within seconds of sbatch makes the trigger fire before the
    scheduler has processed the executor's report of the deferring process; when the resumed try is
    already QUEUED or RUNNING, the scheduler takes that stale report as a state mismatch and fails
    the try (it goes up_for_retry). 3.3.2 guards only the SCHEDULED case (#66374, fixed by #66431):
    QUEUED is apache/airflow#67287 (fixed by #68741, which 3.3.2 does not contain), RUNNING is
    #71580 and #72716 (open; pull requests #71579, #72767). Firing no sooner avoids the race;
    `airflow dags test` (no executor, no race) sets it to 0."""
    try:
        return max(0.0, float(os.environ.get(MIN_WAIT_ENV, DEFAULT_MIN_WAIT_S)))
    except ValueError:
        return DEFAULT_MIN_WAIT_S


async def wait_out_defer_race(started: float) -> None:
    """Sleep until `trigger_min_wait_s()` after `started` (the running loop's time)."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, trigger_min_wait_s() - (loop.time() - started)))


# -- a task's state, from a trigger or a task --------------------------------------------------

def task_state(ti: TaskInstanceKeyLike) -> str | None:
    """The current state of the task instance `ti` (None: cleared, or not found). Blocking.

    Checked on 3.3.2: `RuntimeTaskInstance.get_task_states` sends the Task SDK's `GetTaskStates`
    through `SUPERVISOR_COMMS` (a task's or the triggerer's) and answers {run_id: {task_id: state}}
    (mapped tasks as `task_id_<map index>`). A trigger has no public way to read its task's state
    (pull request apache/airflow#65590 considered a `get_task_state` and dropped it); `on_kill` asks
    it to tell a hand-over from a user action (orphans.kill_verdict)."""
    states = RuntimeTaskInstance.get_task_states(
        dag_id=ti.dag_id, map_index=ti.map_index if ti.map_index >= 0 else None,
        task_ids=[ti.task_id], run_ids=[ti.run_id])
    by_task = states.get(ti.run_id, {})
    key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
    return by_task.get(key, by_task.get(ti.task_id))


async def read_task_state(ti: TaskInstanceKeyLike, trigger_log: Any = log) -> str | None:
    """`task_state` from a trigger, within STATE_TIMEOUT_S; None (and a warning) when it cannot be read."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(task_state, ti), timeout=STATE_TIMEOUT_S)
    except Exception as e:  # the supervisor link is all there is to ask
        trigger_log.warning("could not read the state of task %s (%s)", ti.task_id, e or type(e).__name__)
        return None


# -- the metadata database, outside any task (the sweep, the demo) ------------------------------

def task_instances(dag_ids: list[str], xcom_key: str) -> list[dict[str, Any]]:
    """Every task instance of `dag_ids`: its keys, state, try, its run's state and its XCom `xcom_key`.

    Checked on 3.3.2: `airflow.models.taskinstance.TaskInstance`, `airflow.models.dagrun.DagRun`,
    `airflow.models.xcom.XComModel` (value as stored: JSON) and `airflow.utils.session.
    create_session`. The orphan sweep must see every task instance, whatever its state, to match
    each running Slurm job to the task it was submitted for; the REST API would need a user and a
    page per run. No upstream issue: the ORM is Airflow's, not a public interface."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import and_, select

    ti, dr, xc = TaskInstance, DagRun, XComModel
    query = (
        select(ti.dag_id, ti.task_id, ti.run_id, ti.map_index, ti.state, ti.try_number, dr.state, xc.value)
        .join(dr, and_(dr.dag_id == ti.dag_id, dr.run_id == ti.run_id))
        .outerjoin(xc, and_(xc.dag_id == ti.dag_id, xc.run_id == ti.run_id, xc.task_id == ti.task_id,
                            xc.map_index == ti.map_index, xc.key == xcom_key))
        .where(ti.dag_id.in_(dag_ids))
    )
    fields = ("dag_id", "task_id", "run_id", "map_index", "state", "try_number", "run_state", "xcom")
    with create_session() as session:
        return [dict(zip(fields, (str(v) if hasattr(v, "value") else v for v in row), strict=True))
                for row in session.execute(query)]


def dag_ids_known() -> list[str]:
    """Every DAG id the metadata database knows (checked on 3.3.2: `airflow.models.dag.DagModel`).

    The sweep asks it for the DAGs whose job-name prefix a listed job's name starts with; a job of a
    DAG no longer known has no task instance either. No upstream issue: the ORM is Airflow's."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(select(DagModel.dag_id)))


FINISHED_TI_STATES = ("success", "failed", "skipped", "upstream_failed", "removed")


def delete_finished_triggers(dag_id: str, run_id: str) -> int:
    """Delete the trigger rows of the finished task instances of one DAG run; how many.

    Checked on 3.3.2: `airflow dags test` (`DAG.test`, airflow/sdk/definitions/dag.py) runs each
    deferred task's trigger inline and resumes the task, but leaves the `trigger` row and the task
    instance's `trigger_id`; only a triggerer's `Trigger.clean_unused` removes them, and a triggerer
    started later (`dc2 serve`) first runs those triggers, then cancels them as a user action, which
    calls `on_kill` for a task that ended long ago (issue #14). Deleting them as `clean_unused` would
    (`airflow.models.trigger.Trigger`, `TaskInstance.trigger_id`) leaves nothing for it to start.
    No upstream issue found."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select, update

    ti = TaskInstance
    with create_session() as session:
        ids = list(session.scalars(select(ti.trigger_id).where(
            ti.dag_id == dag_id, ti.run_id == run_id, ti.trigger_id.is_not(None),
            ti.state.in_(FINISHED_TI_STATES))))
        if not ids:
            return 0
        session.execute(update(ti).where(ti.trigger_id.in_(ids)).values(trigger_id=None))
        session.execute(delete(Trigger).where(Trigger.id.in_(ids)))
    return len(ids)


def task_log_folder() -> Path:
    """Where task logs go on this machine (`[logging] base_log_folder`)."""
    from airflow.configuration import conf

    return Path(conf.get("logging", "base_log_folder")).expanduser()


def task_log_path(dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> Path:
    """The file Airflow's task log reader reads for one try of a task instance.

    Checked on 3.3.2: `FileTaskHandler._render_filename(ti, try_number)` (airflow/utils/log/
    file_task_handler.py) renders the DAG run's own log template (`log_template` table, by default
    `dag_id=/run_id=/task_id=/[map_index=/]attempt=N.log`) under base_log_folder, and the API
    server's log endpoint reads that file first. `airflow dags test` never writes it (its tasks log
    to the console), so the demo writes it (dags_test.py). No public way to ask for the path; no
    upstream issue found."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.log.file_task_handler import FileTaskHandler
    from airflow.utils.session import create_session
    from sqlalchemy import select

    folder = task_log_folder()
    with create_session() as session:
        ti = session.scalars(select(TaskInstance).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id,
            TaskInstance.map_index == map_index)).one()
        relative = FileTaskHandler(str(folder))._render_filename(ti, try_number, session=session)
    return folder / relative
