"""The faults of the chaos run: one function per fault, each standing for one real event.

Every fault touches only what the chaos run started itself (the loopback cluster's daemons by the
pids its script recorded, the Airflow services by the process groups `services.py` started, jobs
inside the cluster's network namespace) and file systems it mounted (`Lab.work_fs`,
`Lab.central_fs`). A fault returns what it did, in one line, or raises `Skipped` when the moment
offered nothing to break (no deferred task to mark failed, say): the injector then tries another.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster_ops import netns_of, respawn_in_cluster, restart_sshd
from services import AirflowServices


class Skipped(Exception):
    """Nothing to act on right now."""


@dataclass
class Lab:
    """What the faults may touch."""

    cluster: dict[str, str]  # the loopback cluster's settings (tests/cluster/loopback_cluster.sh)
    services: AirflowServices
    work_fs: Path  # a small tmpfs holding every run's working directory
    central_fs: Path  # a tmpfs holding every run's central directory
    dag_ids: list[str]
    rng: random.Random
    triggerers: list[str] = field(default_factory=lambda: ["triggerer"])

    @property
    def cluster_dir(self) -> Path:
        return Path(self.cluster["DC2_LOOPBACK_DIR"])


Fault = Callable[[Lab], str]
FAULTS: dict[str, Fault] = {}


def fault(fn: Fault) -> Fault:
    FAULTS[fn.__name__] = fn
    return fn


def _slurm_conf(lab: Lab) -> str:
    return str(lab.cluster_dir / "etc" / "slurm.conf")


def _daemon_pid(lab: Lab, name: str) -> int:
    return int((lab.cluster_dir / "pids" / f"{name}.pid").read_text())


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _restart_daemon(lab: Lab, name: str, sig: signal.Signals, down_s: tuple[float, float]) -> int:
    """Signal one of the cluster's Slurm daemons, wait for it to go, start it again a moment later
    (as its service manager would); its old pid."""
    pid = _daemon_pid(lab, name)
    os.kill(pid, sig)
    _wait_gone(pid, 30)
    time.sleep(lab.rng.uniform(*down_s))
    respawn_in_cluster(lab.cluster, name, [name, "-D", "-f", _slurm_conf(lab)])
    return pid


@fault
def slurmd_killed(lab: Lab) -> str:
    """The compute node's slurmd dies (the OOM killer, a crash) and its service manager restarts it a
    few seconds later; the jobs' slurmstepd processes live on."""
    pid = _restart_daemon(lab, "slurmd", signal.SIGKILL, (1, 4))
    return f"killed slurmd {pid} and started it again"


@fault
def slurmctld_restarted(lab: Lab) -> str:
    """The controller restarts (an upgrade, a failover): squeue and sbatch fail until it is back,
    its saved state keeps the jobs."""
    pid = _restart_daemon(lab, "slurmctld", signal.SIGTERM, (1, 3))
    return f"restarted slurmctld (was {pid})"


@fault
def sshd_restarted(lab: Lab) -> str:
    """The login node's sshd restarts and drops every open session (a NERSC login node reboot)."""
    restart_sshd(lab.cluster, down_s=lab.rng.uniform(1, 4))
    return "restarted sshd, dropping its sessions"


@fault
def triggerer_killed(lab: Lab) -> str:
    """The triggerer's machine dies (kill -9, no shutdown) and another triggerer is started; the
    deferred tasks' triggers move to it once the dead one's heartbeat is old."""
    old = lab.triggerers.pop(0)
    os.killpg(lab.services.procs[old].pid, signal.SIGKILL)
    lab.services.procs[old].wait(timeout=30)
    new = f"triggerer-{len(lab.services.procs)}"
    lab.services.start(new, like="triggerer")
    lab.triggerers.append(new)
    return f"killed {old} (kill -9) and started {new}"


@fault
def scheduler_killed(lab: Lab) -> str:
    """The scheduler dies (kill -9) and is restarted: its running task processes go with it."""
    proc = lab.services.procs["scheduler"]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(lab.rng.uniform(1, 4))
    lab.services.start("scheduler")
    return "killed the scheduler (kill -9) and started it again"


def _job_processes(lab: Lab) -> list[int]:
    """The batch scripts running in the cluster's namespace (children of a slurmstepd)."""
    target = netns_of(int(lab.cluster["DC2_SLURM_NETNS_PID"]))
    stepds = set()
    procs: list[tuple[int, int]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if netns_of(int(entry.name)) != target:
                continue
        except (OSError, ValueError, IndexError):
            continue
        if comm == "slurmstepd":
            stepds.add(int(entry.name))
        else:
            procs.append((int(entry.name), ppid))
    return [pid for pid, ppid in procs if ppid in stepds]


@fault
def job_process_killed(lab: Lab) -> str:
    """A job's process dies on the node (kill -9: the node's OOM killer, a hardware fault): its
    array element ends FAILED and the next try redoes only that element."""
    pids = _job_processes(lab)
    if not pids:
        raise Skipped("no job running")
    pid = lab.rng.choice(pids)
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        raise Skipped("the job ended first") from None
    return f"kill -9 job process {pid} ({cmd[:80].strip()})"


@fault
def work_disk_full(lab: Lab) -> str:
    """The scratch file system fills up (another user's job writes until it is full) for a few
    seconds: jobs writing then fail with ENOSPC."""
    ballast = lab.work_fs / ".chaos-ballast"
    written = 0
    chunk = b"\0" * (1 << 20)
    with open(ballast, "wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
                written += len(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    try:
        time.sleep(lab.rng.uniform(3, 8))
    finally:
        ballast.unlink()
    return f"filled the work file system ({written >> 20} MiB) for a few seconds"


@fault
def central_read_only(lab: Lab) -> str:
    """The central file system goes read-only for a moment (a CFS incident): an install in
    progress fails and must leave nothing half-written."""
    ro = subprocess.run(["mount", "-o", "remount,ro", str(lab.central_fs)], capture_output=True, text=True,
                        check=False)
    if ro.returncode != 0:
        raise Skipped(f"remount ro refused: {ro.stderr.strip()}")  # a file open for writing
    try:
        time.sleep(lab.rng.uniform(3, 8))
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(lab.central_fs)], check=True)
    return "made the central file system read-only for a few seconds"


def _task_instances(lab: Lab, state: str) -> list[dict[str, Any]]:
    found = []
    for dag_id in lab.dag_ids:
        data = lab.services.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances?state={state}")
        found += data.get("task_instances", [])
    return found


@fault
def deferred_marked_failed(lab: Lab) -> str:
    """An operator marks a waiting task failed in the UI (the REST call the UI makes): its job must
    be cancelled, by its trigger or, if no trigger runs yet, by the next sweep."""
    tis = _task_instances(lab, "deferred")
    if not tis:
        raise Skipped("no deferred task")
    ti = lab.rng.choice(tis)
    lab.services.set_state(ti["dag_id"], ti["dag_run_id"], ti["task_id"], "failed")
    return f"marked {ti['dag_id']}/{ti['task_id']} (deferred, try {ti['try_number']}) failed"


@fault
def running_task_cleared(lab: Lab) -> str:
    """An operator clears a running or waiting task in the UI: the try's job is cancelled and a new
    try starts."""
    tis = _task_instances(lab, "deferred") + _task_instances(lab, "running")
    if not tis:
        raise Skipped("no running task")
    ti = lab.rng.choice(tis)
    lab.services.clear(ti["dag_id"], ti["dag_run_id"], [ti["task_id"]])
    return f"cleared {ti['dag_id']}/{ti['task_id']} ({ti['state']}, try {ti['try_number']})"
