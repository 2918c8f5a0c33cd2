"""On-disk state of the local Slurm emulator.

Why files: the submitting process (an Airflow worker, the CLI) and the polling process (the
triggerer) are different processes, and the job must outlive both. Layout under the state dir:

    next_id                      the next job id (updated under flock)
    jobs/<id>/meta.json          what sbatch was given (parsed #SBATCH options, indices, raw ids)
    jobs/<id>/script             the rendered script
    jobs/<id>/elements/<i>.json  one element's state, written atomically by the supervisor
    jobs/<id>/cancel/<i>|all     cancel requests (file content: the uid that asked)
    jobs/<id>/supervisor.lock    flock held by the live supervisor; free means it is gone
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

FINAL = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY"}


@dataclass
class Meta:
    job_id: int
    name: str
    comment: str
    indices: list[int] | None  # None: not an array
    throttle: int | None
    time_limit_s: int | None
    output: str
    error: str | None
    workdir: str
    dependencies: list[str]
    cpus_per_task: int
    submit_time: float
    uid: int
    raw_ids: dict[str, int] = field(default_factory=dict)  # str(index) -> raw job id (%j)

    def elements(self) -> list[int | None]:
        return list(self.indices) if self.indices is not None else [None]

    def element_id(self, index: int | None) -> str:
        return f"{self.job_id}_{index}" if index is not None else str(self.job_id)

    def raw_id(self, index: int | None) -> int:
        return self.raw_ids[str(index)] if index is not None else self.job_id


@dataclass
class Element:
    state: str = "PENDING"
    exit_code: int = 0
    signal: int = 0
    start: float | None = None
    end: float | None = None
    max_rss_kb: int | None = None
    reason: str = ""
    cancelled_by: int | None = None
    pgid: int | None = None  # the element's process group, so an orphan can still be cancelled


def _key(index: int | None) -> str:
    return "batch" if index is None else str(index)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "jobs").mkdir(parents=True, exist_ok=True)

    def allocate_ids(self, count: int) -> int:
        """Reserve `count` consecutive ids (an array's elements get their own raw ids, like Slurm)."""
        with open(self.root / "next_id.lock", "a+") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            path = self.root / "next_id"
            first = int(path.read_text()) if path.exists() else 1
            atomic_write(path, str(first + count))
            return first

    def job_dir(self, job_id: int | str) -> Path:
        return self.root / "jobs" / str(job_id)

    def job_ids(self) -> list[int]:
        return sorted(int(p.name) for p in (self.root / "jobs").iterdir() if p.name.isdigit())

    def meta(self, job_id: int | str) -> Meta | None:
        path = self.job_dir(job_id) / "meta.json"
        if not path.exists():
            return None
        return Meta(**json.loads(path.read_text()))

    def write_meta(self, meta: Meta) -> None:
        atomic_write(self.job_dir(meta.job_id) / "meta.json", json.dumps(asdict(meta)))

    def element(self, job_id: int, index: int | None) -> Element:
        path = self.job_dir(job_id) / "elements" / f"{_key(index)}.json"
        return Element(**json.loads(path.read_text())) if path.exists() else Element()

    def write_element(self, job_id: int, index: int | None, el: Element) -> None:
        atomic_write(self.job_dir(job_id) / "elements" / f"{_key(index)}.json", json.dumps(asdict(el)))

    def request_cancel(self, job_id: int, index: int | None, uid: int) -> None:
        atomic_write(self.job_dir(job_id) / "cancel" / ("all" if index is None else str(index)), str(uid))

    def cancel_requests(self, job_id: int) -> dict[str, int]:
        d = self.job_dir(job_id) / "cancel"
        return {p.name: int(p.read_text() or 0) for p in d.iterdir()} if d.exists() else {}

    def supervisor_alive(self, job_id: int) -> bool:
        """The supervisor holds an exclusive flock for its whole life; if we can take it, it is gone."""
        path = self.job_dir(job_id) / "supervisor.lock"
        if not path.exists():
            return False
        with open(path, "a+") as lk:
            try:
                fcntl.flock(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lk, fcntl.LOCK_UN)
            return False

    def observed(self, meta: Meta, index: int | None) -> Element:
        """An element's state as a status query should report it: a non-final element whose
        supervisor died (machine rebooted, process killed) is NODE_FAIL, as on a real cluster."""
        el = self.element(meta.job_id, index)
        if el.state not in FINAL and not self.supervisor_alive(meta.job_id):
            el.state, el.reason, el.end = "NODE_FAIL", "supervisor gone", el.end or time.time()
        return el


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
