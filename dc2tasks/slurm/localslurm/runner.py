"""The supervisor of one local job: `python -m dc2tasks.slurm.localslurm.runner JOB_DIR`.

Why a detached process per job: the job must outlive the process that submitted it (an Airflow
worker slot is given back while the job runs), exactly as with sbatch. It runs the elements with
the `%` throttle, enforces the time limit (TIMEOUT), acts on cancel requests, and writes each
element's state atomically. Each element runs in its own session so it can be killed as a group.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dc2tasks.slurm.job import expand_log_path
from dc2tasks.slurm.localslurm.store import FINAL, Element, Meta, Store
from dc2tasks.slurm.owner import account_name

KILL_WAIT_S = 2.0
TICK_S = 0.05


@dataclass
class Running:
    index: int | None
    proc: subprocess.Popen[bytes]
    started: float
    el: Element
    kill_state: str | None = None  # TIMEOUT or CANCELLED once we decided to end it
    kill_sent: float | None = None


class Supervisor:
    def __init__(self, job_dir: Path) -> None:
        self.dir = job_dir
        self.store = Store(job_dir.parent.parent)
        meta = self.store.meta(job_dir.name)
        if meta is None:
            raise SystemExit(f"no meta.json in {job_dir}")
        self.meta: Meta = meta
        self.pending: list[int | None] = meta.elements()
        self.running: list[Running] = []
        cpus = max(1, (os.cpu_count() or 1) // max(1, meta.cpus_per_task))
        self.parallel = min(meta.throttle or cpus, cpus)

    def set(self, index: int | None, el: Element) -> None:
        self.store.write_element(self.meta.job_id, index, el)

    def deps_verdict(self) -> str:
        """'ok' when dependencies allow starting, 'wait' while they are unresolved, 'never'."""
        for dep in self.meta.dependencies:
            kind, *ids = dep.split(":")
            for jid in ids:
                m = self.store.meta(jid.split("_")[0])
                if m is None:
                    return "never"
                states = [self.store.observed(m, i).state for i in m.elements()]
                if any(s not in FINAL for s in states):
                    return "wait"
                ok = all(s == "COMPLETED" for s in states)
                if (kind == "afterok" and not ok) or (kind == "afternotok" and ok):
                    return "never"
        return "ok"

    def start(self, index: int | None) -> None:
        m = self.meta
        raw = str(m.raw_id(index))
        env = dict(os.environ, SLURM_JOB_ID=raw, SLURM_JOBID=raw, SLURM_JOB_NAME=m.name,
                   SLURM_SUBMIT_DIR=m.workdir, SLURM_CPUS_PER_TASK=str(m.cpus_per_task),
                   SLURM_CLUSTER_NAME="local", SLURMD_NODENAME="localhost")
        if index is not None and m.indices is not None:
            env.update(SLURM_ARRAY_JOB_ID=str(m.job_id), SLURM_ARRAY_TASK_ID=str(index),
                       SLURM_ARRAY_TASK_COUNT=str(len(m.indices)),
                       SLURM_ARRAY_TASK_MIN=str(m.indices[0]), SLURM_ARRAY_TASK_MAX=str(m.indices[-1]))

        def path(p: str) -> Path:
            expanded = expand_log_path(p, job_id=raw, array_job_id=str(m.job_id), array_task_id=index,
                                       name=m.name, user=account_name(m.uid))
            return Path(m.workdir, expanded)

        out = open(path(m.output), "ab")
        err = open(path(m.error), "ab") if m.error else None
        now = time.time()
        el = Element(state="RUNNING", start=now)
        try:
            proc = subprocess.Popen(
                ["/bin/bash", str(self.dir / "script")], cwd=m.workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err or subprocess.STDOUT, start_new_session=True,
            )
        except OSError as e:  # bad workdir, no bash: the launch failed, as Slurm would say
            out.write(f"slurmstepd: error: {e}\n".encode())
            el = Element(state="FAILED", exit_code=1, start=now, end=now, reason="JobLaunchFailure")
            self.set(index, el)
            return
        finally:
            out.close()
            if err:
                err.close()
        el.pgid = proc.pid
        self.set(index, el)
        self.running.append(Running(index, proc, now, el))

    def reap(self, r: Running) -> bool:
        """Collect a finished element (with its max RSS); True if it has ended."""
        pid, status, usage = os.wait4(r.proc.pid, os.WNOHANG)
        if pid == 0:
            return False
        r.proc.returncode = code = os.waitstatus_to_exitcode(status)
        el = r.el
        el.end, el.max_rss_kb, el.pgid = time.time(), int(usage.ru_maxrss), None
        if r.kill_state:
            el.state, el.exit_code, el.signal = r.kill_state, 0, signal.SIGTERM
        elif code == 0:
            el.state, el.exit_code, el.signal = "COMPLETED", 0, 0
        elif code > 0:
            el.state, el.exit_code, el.signal = "FAILED", code, 0
        else:
            el.state, el.exit_code, el.signal = "FAILED", 0, -code
        self.set(r.index, el)
        return True

    def end(self, r: Running, state: str, by: int | None = None) -> None:
        """Ask an element to stop: SIGTERM to its group now, SIGKILL after KILL_WAIT_S."""
        if r.kill_state is None:
            r.kill_state, r.kill_sent, r.el.cancelled_by = state, time.monotonic(), by
            _signal_group(r.proc.pid, signal.SIGTERM)
        elif time.monotonic() - (r.kill_sent or 0) > KILL_WAIT_S:
            _signal_group(r.proc.pid, signal.SIGKILL)

    def cancel_pending(self, indices: list[int | None], by: int, reason: str = "") -> None:
        for i in indices:
            self.pending.remove(i)
            self.set(i, Element(state="CANCELLED", cancelled_by=by, end=time.time(), reason=reason))

    def step(self) -> None:
        cancels = self.store.cancel_requests(self.meta.job_id)
        limit = self.meta.time_limit_s
        for r in list(self.running):
            key = "batch" if r.index is None else str(r.index)
            who = cancels.get("all", cancels.get(key))
            if who is not None:
                self.end(r, "CANCELLED", who)
            elif limit is not None and time.time() - r.started > limit:
                self.end(r, "TIMEOUT")
            elif r.kill_state:
                self.end(r, r.kill_state)
            if self.reap(r):
                self.running.remove(r)
        if "all" in cancels:
            self.cancel_pending(list(self.pending), cancels["all"])
        else:
            self.cancel_pending([i for i in self.pending if str(i) in cancels],
                                next(iter(cancels.values()), 0))
        if not self.pending:
            return
        verdict = self.deps_verdict()
        if verdict == "never":
            self.cancel_pending(list(self.pending), self.meta.uid, "DependencyNeverSatisfied")
        elif verdict == "ok":
            while self.pending and len(self.running) < self.parallel:
                self.start(self.pending.pop(0))

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.store.request_cancel(self.meta.job_id, None, 0))
        while self.pending or self.running:
            self.step()
            time.sleep(TICK_S)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> int:
    job_dir = Path(argv[1])
    lock = open(job_dir / "supervisor.lock", "a+")
    fcntl.flock(lock, fcntl.LOCK_EX)
    (job_dir / "supervisor.pid").write_text(str(os.getpid()))
    (job_dir / "supervisor.started").touch()
    Supervisor(job_dir).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
