"""Real Airflow services on 127.0.0.1 for tests that need a scheduler and a triggerer.

Reusable (DAG and UI tests): `airflow_services(dags_dir, extra_env)` starts, in a throw-away
AIRFLOW_HOME with SQLite and the LocalExecutor (parallelism 4), the api-server (on a free port),
scheduler (--skip-serve-logs), dag-processor and triggerer (--skip-serve-logs); waits until the
health endpoint says all are healthy; yields an `AirflowServices` with a small REST API v2 client;
and stops every process by the pid it started (process groups), whatever happened.
Auth: `simple_auth_manager_all_admins` (development only: no token needed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AirflowServices:
    def __init__(self, home: Path, dags_dir: Path, env: dict[str, str], port: int) -> None:
        self.home = home
        self.dags_dir = dags_dir
        self.env = env
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- processes ------------------------------------------------------------------------------------

    def airflow(self, *args: str, timeout: float = 120) -> str:
        r = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True,
                           text=True, timeout=timeout, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{r.stderr[-3000:]}")
        return r.stdout

    def start(self, component: str, like: str | None = None) -> None:
        """Start `component` (or a second copy of `like`, e.g. another triggerer, under this name)."""
        argv = [a.format(port=self.port) for a in COMPONENTS[like or component]]
        log = open(self.home / f"{component}.log", "ab")
        self.procs[component] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *argv], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def stop(self, component: str, timeout: float = 30) -> None:
        """SIGTERM the process group we started (what a deployment's restart does), then SIGKILL."""
        p = self.procs.pop(component, None)
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        try:  # children left in the group (LocalExecutor workers)
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def pause(self, component: str) -> None:
        """SIGSTOP its process group: alive but silent, as a hung or overloaded host looks."""
        os.killpg(self.procs[component].pid, signal.SIGSTOP)

    def resume(self, component: str) -> None:
        os.killpg(self.procs[component].pid, signal.SIGCONT)

    def stop_all(self) -> None:
        for component in list(self.procs):
            self.stop(component)

    def log_of(self, component: str) -> str:
        return (self.home / f"{component}.log").read_text(errors="replace")

    def wait_healthy(self, timeout: float = 120, components: tuple[str, ...] = ("scheduler", "triggerer",
                                                                                  "dag_processor")) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited {p.returncode}:\n{self.log_of(name)[-3000:]}")
            try:
                last = health = self.api("GET", "/api/v2/monitor/health")
                if all(health.get(c, {}).get("status") == "healthy" for c in components):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                last = e
            time.sleep(1)
        raise TimeoutError(f"Airflow services not healthy after {timeout} s: {last}")

    # -- REST API v2 ----------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call. A GET left unanswered for API_TIMEOUT_S is asked again (it changes nothing;
        on a loaded 2-core CI machine the SQLite-backed api-server has once stalled past 30 s), up
        to API_GET_TRIES times; then the error quotes the end of the api-server's log."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        tries = API_GET_TRIES if method == "GET" else 1
        for attempt in range(1, tries + 1):
            try:
                with urllib.request.urlopen(req, timeout=API_TIMEOUT_S) as resp:
                    text = resp.read().decode()
                return json.loads(text) if text else None
            except urllib.error.HTTPError as e:
                raise RuntimeError(f"{method} {path} -> {e.code}: {e.read().decode()[:2000]}") from None
            except (TimeoutError, urllib.error.URLError) as e:
                if not _timed_out(e):
                    raise
                print(f"{method} {path}: no answer in {API_TIMEOUT_S} s (try {attempt} of {tries})",
                      file=sys.stderr)
        raise TimeoutError(f"{method} {path}: no answer in {API_TIMEOUT_S} s, {tries} times; the "
                           f"api-server log ends:\n{self.log_of('api-server')[-3000:]}")

    def wait_dag(self, dag_id: str, timeout: float = 120) -> None:
        self.wait(lambda: self._dag_known(dag_id), timeout, f"DAG {dag_id} never parsed")

    def _dag_known(self, dag_id: str) -> bool:
        try:
            return bool(self.api("GET", f"/api/v2/dags/{dag_id}"))
        except RuntimeError:
            return False

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])

    def ti(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}"
        return self.api("GET", path if map_index < 0 else f"{path}/{map_index}")

    def task_instances(self, dag_id: str, run_id: str, state: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances?state={state}"
        return list(self.api("GET", path)["task_instances"])

    def wait_ti(self, dag_id: str, run_id: str, task_id: str, state: str, try_number: int | None = None,
                timeout: float = 120) -> dict[str, Any]:
        got: dict[str, Any] = {}

        def ok() -> bool:
            got.update(self.ti(dag_id, run_id, task_id))
            return got.get("state") == state and (try_number is None or got.get("try_number") == try_number)

        self.wait(ok, timeout, lambda: f"{dag_id}.{task_id} never {state} (try {try_number}): {got}")
        return got

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.api("GET", path)["value"]

    def clear(self, dag_id: str, run_id: str, task_ids: list[str]) -> Any:
        return self.api("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances",
                        {"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "only_failed": False})

    def set_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> Any:
        return self.api("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}",
                        {"new_state": state})

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        data = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}"
                               f"/logs/{try_number}?full_content=true")
        content = data.get("content", "")
        if isinstance(content, list):
            return "\n".join(c.get("event", "") if isinstance(c, dict) else str(c) for c in content)
        return str(content)

    def kill_logged(self, dag_id: str, run_id: str, task_id: str, try_number: int, text: str) -> bool:
        """Whether a trigger's `on_kill` logged `text`: in the task's log, or, when the line came after
        Airflow had ended the trigger, in a triggerer's own log (`compat.run_to_end`)."""
        return text in self.task_log(dag_id, run_id, task_id, try_number) or any(
            text in path.read_text(errors="replace") for path in self.home.glob("triggerer*.log"))

    def create_pool(self, name: str, slots: int) -> None:
        self.api("POST", "/api/v2/pools", {"name": name, "slots": slots, "include_deferred": False})

    @staticmethod
    def wait(ok: Callable[[], bool], timeout: float, message: str | Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise TimeoutError(message() if callable(message) else message)
            time.sleep(0.5)


API_TIMEOUT_S = 30
API_GET_TRIES = 3


def _timed_out(e: Exception) -> bool:
    """urllib raises a read timeout as is and a connect timeout wrapped in a URLError."""
    return isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError)


def _q(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def airflow_home_env(home: Path, dags_dir: Path) -> dict[str, str]:
    """This process's environment without its Airflow settings (its connections kept), for an
    Airflow of its own: home, SQLite database and DAGs folder there, no examples."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    })
    return env


@contextmanager
def airflow_services(dags_dir: Path, extra_env: dict[str, str] | None = None,
                     parallelism: int = 4) -> Iterator[AirflowServices]:
    home = Path(tempfile.mkdtemp(prefix="dc2-airflow-services-"))
    port = free_port()
    env = airflow_home_env(home, dags_dir)
    env.update({
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "DC2_TRIGGER_MIN_WAIT_S": "10",  # the real triggerer: wait out apache/airflow#71580
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": "dc2-test-secret-not-for-production",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        **(extra_env or {}),
    })
    services = AirflowServices(home, dags_dir, env, port)
    try:
        services.airflow("db", "migrate")
        for component in COMPONENTS:
            services.start(component)
        services.wait_healthy()
        yield services
    finally:
        services.stop_all()
        if os.environ.get("DC2_KEEP_AIRFLOW_HOME") != "1":
            shutil.rmtree(home, ignore_errors=True)
