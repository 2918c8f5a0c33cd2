"""`make demo` then `make serve` (issue #14), as a new user runs them: `dc2 demo` (the demo DAG through
`airflow dags test`), then `dc2 serve` on the same work directory.

- no trigger row of the finished demo run is left, so the service's triggerer starts none for it and
  no `on_kill` issues a cancel;
- the demo run reads like any run: every task's log is there through the REST API's task-instance
  log endpoint (what the UI shows), a Slurm step's with its job's own output: streamed for a job of
  one element, each element's in a block of its own for an array.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from served_demo import dc2_serve, free_port
from test_ui_demo import rest, token

from dc2tasks.catalogue import CATALOGUE

DAG = "dc2_demo"
STEP = "object.trim"  # one job, one element: its output is streamed into the task log
ARRAY_STEP = "source"  # 3 visits, 2 per element: an array of 2, each element's log in one block
DEFERRED = 2 * len(CATALOGUE.names)  # the demo makes every product: its step and its qa step wait
SKIPPED = {"approve_qa"}  # the gate's approval: only in qa mode approve


def demo_run(workdir: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    dc2 = str(Path(sys.executable).with_name("dc2"))
    r = subprocess.run([dc2, "demo", "--workdir", str(workdir)], env=env, capture_output=True, text=True,
                       timeout=1200, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"{DEFERRED} trigger row(s) of finished tasks removed" in r.stdout, r.stdout[-3000:]
    with sqlite3.connect(workdir / "airflow" / "airflow.db") as db:
        (run_id,) = db.execute("select run_id from dag_run where dag_id = ?", (DAG,)).fetchone()
        assert db.execute("select count(*) from trigger").fetchone() == (0,)
        pointing = db.execute("select count(*) from task_instance where trigger_id is not null").fetchone()
        assert pointing == (0,)
    return str(run_id)


def task_log(base: str, bearer: str, run_id: str, task_id: str, try_number: int) -> str:
    path = (f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/logs/{try_number}?full_content=true")
    code, body = rest(base, path, bearer)
    assert code == 200, f"GET {path} -> {code}"
    content = body["content"]
    return "\n".join(c.get("event", "") if isinstance(c, dict) else str(c) for c in content)


def test_demo_then_serve_starts_no_trigger_cancels_nothing_and_shows_every_task_log(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    run_id = demo_run(workdir)
    with dc2_serve(workdir, free_port()) as served:
        bearer = token(served.url, served.user, served.password)
        path = f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
        code, body = rest(served.url, path, bearer)
        assert code == 200
        tis = {ti["task_id"]: ti for ti in body["task_instances"]}
        assert len(tis) == DEFERRED + 5  # with inventory, plan, finalize, approve_qa, install
        assert {t: ti["state"] for t, ti in tis.items()} == {
            t: "skipped" if t in SKIPPED else "success" for t in tis}
        for task_id, ti in tis.items():
            if task_id in SKIPPED:
                continue
            text = task_log(served.url, bearer, run_id, task_id, ti["try_number"])
            assert f"[DAG TEST] starting task_id={task_id} " in text, (task_id, text[:2000])
            assert f"[DAG TEST] end task task_id={task_id} " in text, (task_id, text[-2000:])
        step = task_log(served.url, bearer, run_id, STEP, 1)
        # the job's own stdout, streamed by the trigger
        assert "Slurm job" in step and "trim_object_tract_4850.hdf5: " in step, step[-3000:]
        array = task_log(served.url, bearer, run_id, ARRAY_STEP, 1)
        for i in (0, 1):  # each element's own stdout, once, its lines prefixed with its index
            assert len(re.findall(rf"^\[element {i}\] \d+_{i} COMPLETED: its log ", array, re.M)) == 1, array
            assert re.search(rf"^\[element {i}\] visit \d+: \w+: \d+ rows", array, re.M), array[-3000:]
        time.sleep(20)  # the triggerer has long been up: anything it would start and cancel, it has
        standalone = (workdir / "airflow" / "services" / "standalone.log").read_text(errors="replace")
        with sqlite3.connect(workdir / "airflow" / "airflow.db") as db:
            assert db.execute("select count(*) from trigger").fetchone() == (0,)
    logs = [p.read_text(errors="replace") for p in (workdir / "airflow" / "logs").rglob("*.log")]
    for text in (standalone, *logs):
        assert "cancelling Slurm job" not in text
        assert "Trigger cancelled by user action" not in text
    assert served.returncode == 0 and served.leftover == []
