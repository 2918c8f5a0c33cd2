"""After `airflow dags test`: leave its DAG run as a run made by the service would be.

Why: `make demo` runs the demo DAG with `airflow dags test` (one process, no scheduler, triggers
run inline), which leaves two differences a later `dc2 serve` shows (issue #14):
- every task's log went to the one console stream, so the UI finds no task log file;
- each deferred task's trigger row is left, and a triggerer started later runs it for a task that
  ended long ago, then cancels it as a user action (`compat.delete_finished_triggers`).
This splits the console log at `dags test`'s own task markers into one log file per task try,
where Airflow's task log reader looks (`compat.task_log_path`: base_log_folder and the run's
log_filename_template), as JSON lines like a task's own log, and deletes those trigger rows.

`python -m dc2tasks.airflow.dags_test DAG_ID CONSOLE_LOG` (the demo runs it after `dags test`, in
the same Airflow environment).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from dc2tasks.airflow import compat
from dc2tasks.private import write_private

_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")
_RECORD = re.compile(r"(\d{4}-\d\d-\d\dT[\d:.]+Z) \[(\w+)\s*\] (.*)")


@dataclass
class TaskLog:
    """One task try's share of the console log, as structured records."""

    task_id: str
    map_index: int
    attempt: int
    run_id: str = ""
    records: list[dict[str, str]] = field(default_factory=list)

    def add(self, line: str) -> None:
        m = _RECORD.fullmatch(line)
        if m:
            self.records.append({"timestamp": m[1], "level": m[2], "event": m[3]})
        elif self.records:  # a record's continuation lines (a job script, a traceback)
            self.records[-1]["event"] += "\n" + line
        else:
            self.records.append({"event": line})

    def text(self) -> str:
        return "".join(json.dumps(r) + "\n" for r in self.records)


def split_task_logs(text: str, dag_id: str) -> list[TaskLog]:
    """The task tries of `dags test`'s console log, in order; a task's n-th start is its try n."""
    running = re.compile(rf"\[DAG TEST\] running task <TaskInstance: {re.escape(dag_id)}\.(\S+) (\S+) ")
    logs: list[TaskLog] = []
    starts: dict[tuple[str, int], int] = {}
    current: TaskLog | None = None
    for line in text.splitlines():
        if m := _START.search(line):
            key = (m[1], int(m[2]))
            starts[key] = starts.get(key, 0) + 1
            current = TaskLog(m[1], int(m[2]), starts[key])
            logs.append(current)
        if current is None:
            continue
        if not current.run_id and (r := running.search(line)):
            current.run_id = r[2]
        current.add(line)
        if _END.search(line):
            current = None
    return [t for t in logs if t.run_id]


def finish(dag_id: str, console_log: Path) -> str:
    """Write the task logs and drop the finished tasks' trigger rows; a one-line summary."""
    tasks = split_task_logs(console_log.read_text(errors="replace"), dag_id)
    written = []
    for t in tasks:
        path = compat.task_log_path(dag_id, t.run_id, t.task_id, t.map_index, t.attempt)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, t.text())
        written.append(path)
    runs = sorted({t.run_id for t in tasks})
    dropped = sum(compat.delete_finished_triggers(dag_id, run) for run in runs)
    where = f" under {compat.task_log_folder()}" if written else ""
    return (f"{len(written)} task log(s) of run(s) {', '.join(runs) or '-'}{where}; "
            f"{dropped} trigger row(s) of finished tasks removed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dc2tasks.airflow.dags_test", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dag_id")
    p.add_argument("console_log", type=Path, help="what `airflow dags test` printed")
    args = p.parse_args(argv)
    print(finish(args.dag_id, args.console_log))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
