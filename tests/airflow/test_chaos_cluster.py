"""Whole data runs under faults (chaos.py): the CI version, and `make chaos` with more runs.

Settings from the environment (the CI version's defaults): DC2_CHAOS_RUNS (2), DC2_CHAOS_CONCURRENCY
(2), DC2_CHAOS_WINDOW_S (seconds of faults, 60), DC2_CHAOS_GAP_S (mean seconds between faults, 5),
DC2_CHAOS_SEED (1), DC2_CHAOS_TALLY (where the tally JSON goes; default in the test's tmp dir),
DC2_CHAOS_TIMEOUT_S (the test's own timeout, 2400).

What must hold whatever the faults did: no Slurm job left running or pending without a task waiting
for it (after the sweep), no duplicate submission of one task try, every installed data file equal to
the fault-free reference run's (the same run file on the local backend, run beside the faulted runs
by `airflow dags test` in an Airflow home of its own, out of every fault's reach), no partial or
temporary file in a central directory, `current` always naming a complete version.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from chaos import (
    FINAL,
    Injector,
    Tally,
    count_jobs,
    data_checksums,
    half_switched,
    job_rows,
    live_jobs,
    partial_files,
    wrong_files,
)
from chaos_faults import FAULTS, Lab
from conftest import SLURM_CONN_ID, ssh_connection_json
from loopback import loopback, remote_runner
from services import AirflowServices, airflow_home_env, airflow_services

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.service.airflow_env import RECOVERY_SETTINGS

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("chaos-cluster")]
CHAOS_CLUSTER = {"DC2_LOOPBACK_USER": "dc2chaos", "DC2_LOOPBACK_OTHER_USER": "dc2chaosother",
                 "DC2_LOOPBACK_CGROUP": "0"}
"""This module's own loopback cluster (its own accounts; the session's cluster owns the cgroups)."""


@pytest.fixture(scope="module")
def loopback_cluster() -> Iterator[dict[str, str]]:
    """The faults restart this cluster's slurmctld, slurmd and sshd and kill its jobs: on a cluster
    of its own, the other cluster tests (on another pytest-xdist worker, at the same time) see none
    of it, and the module's fixtures (run_base, cluster_user, ...) use this one."""
    with loopback(**CHAOS_CLUSTER) as env:
        yield env


@pytest.fixture(scope="module")
def remote(loopback_cluster: dict[str, str]) -> Iterator[Callable[..., str]]:
    with remote_runner(loopback_cluster) as run:
        yield run


Remote = Callable[..., str]

PREFIX = "dc2_chaos"
PRODUCTS = ["object", "trim_object", "dpdd_object", "merged_dpdd_object", "source", "forced_source",
            "dia_source", "dia_object"]


def setting(name: str, default: float) -> float:
    return float(os.environ.get(f"DC2_CHAOS_{name}", default))


def _mount_tmpfs(path: Path, size: str, owner: pwd.struct_passwd, group: grp.struct_group) -> None:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    os.chown(path, owner.pw_uid, group.gr_gid)


@pytest.fixture(scope="module")
def file_systems(run_base: Path, cluster_user: pwd.struct_passwd, central_group: grp.struct_group
                 ) -> Iterator[tuple[Path, Path]]:
    """Two small file systems this test makes and removes: the runs' work and central directories."""
    work, central = run_base / "work-fs", run_base / "central-fs"
    made = []
    try:
        for path, size in ((work, "384m"), (central, "384m")):
            _mount_tmpfs(path, size, cluster_user, central_group)
            made.append(path)
        yield work, central
    finally:
        for path in made:
            subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def chaos_sample(run_base: Path) -> Any:
    from dc2tasks.sample import SampleConfig, make_sample_repo

    made = make_sample_repo(run_base / "sample-repo", SampleConfig(
        tracts=(4850,), patches=("3,3", "3,4", "4,3", "4,4"), objects_per_patch=30, visits=4))
    made.write_visit_list(run_base / "sample-repo" / "visits.txt")
    return made


def write_run(name: str, dags: Path, base: Path, fs: tuple[Path, Path], sample: Any, dc2: str,
              user: pwd.struct_passwd, group: grp.struct_group, backend: str = "slurm") -> Path:
    """A demo-shaped run file (Slurm backend over SSH, or `backend` local; tract and visit arrays)
    and its DAG file; the central directory under fs[1], the work directory under fs[0]."""
    central = fs[1] / name
    central.mkdir()
    os.chown(central, user.pw_uid, group.gr_gid)
    central.chmod(0o3775)
    run = {
        "name": name, "description": "chaos run", "backend": backend, "repository": str(sample.root),
        "rerun": sample.rerun, "tracts": [4850], "visits": str(sample.root / "visits.txt"),
        "pixel_scale": 0.2, "products": PRODUCTS, "working_dir": str(fs[0] / name),
        "central": {"dir": str(central), "group": group.gr_name, "group_managed": True},
        "slurm": {"account": "dc2", "dc2_command": dc2, "poll_interval": 2,
                  "time": dict.fromkeys(CATALOGUE.steps, "0:10:00"),
                  "memory": dict.fromkeys(CATALOGUE.steps, "500M"),
                  "array_throttle": 2, "visits_per_array_element": 2},
        "connections": {"producer": SLURM_CONN_ID, "collaboration": SLURM_CONN_ID},
    }
    run_file = base / f"{name}.yaml"
    run_file.write_text(yaml.safe_dump(run, sort_keys=False))
    (dags / f"dc2_{name}.py").write_text("from dc2tasks.airflow.run_dag import dag_from_run_file\n\n"
                                         f"dag = dag_from_run_file({str(run_file)!r})\n")
    return central


# -- driving the runs -----------------------------------------------------------------------------------


def run_name(dag_id: str) -> str:
    return dag_id.removeprefix("dc2_")


def slurm_steps(s: AirflowServices, dag_id: str) -> int:
    """The run's tasks that submit a Slurm job (one each when nothing goes wrong)."""
    tasks = s.api("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]
    return sum(str(t.get("operator_name", "")).endswith("StepOperator") for t in tasks)  # qa steps too


def run_state(s: AirflowServices, dag_id: str, run_id: str) -> str:
    return str(s.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])


def failed_tasks(s: AirflowServices, dag_id: str, run_id: str, lines: int = 12) -> list[str]:
    """Each failed task instance of a run (not those failed upstream), with its try and the last
    lines of that try's log: why a run failed, for the tally."""
    out = []
    for ti in s.task_instances(dag_id, run_id, "failed"):
        text = s.task_log(dag_id, run_id, ti["task_id"], int(ti["try_number"]))
        tail = " | ".join([x.strip() for x in text.splitlines() if x.strip()][-lines:])
        out.append(f"{dag_id}/{ti['task_id']} try {ti['try_number']}: {tail}")
    return out


def successes(s: AirflowServices) -> int:
    data = s.api("GET", "/api/v2/dags/~/dagRuns/~/taskInstances?state=success&limit=1")
    return int(data["total_entries"])


def drive(s: AirflowServices, dag_ids: list[str], concurrency: int, until: float,
          retried: set[str]) -> dict[str, str]:
    """Trigger every DAG's run, at most `concurrency` unfinished at once, and wait until all are
    final. A run that fails gets one operator retry at once (its failed tasks cleared, as an
    operator would), so it goes on while the faults do; `retried` collects those runs."""
    runs: dict[str, str] = {}
    waiting = list(dag_ids)
    while time.monotonic() < until:
        states = {d: run_state(s, d, r) for d, r in runs.items()}
        for dag_id in [d for d, state in states.items() if state == "failed" and d not in retried]:
            clear_failed(s, dag_id, runs[dag_id])
            retried.add(dag_id)
            states[dag_id] = "queued"
        active = [d for d, state in states.items() if state not in FINAL]
        while waiting and len(active) < concurrency:
            dag_id = waiting.pop(0)
            runs[dag_id] = s.trigger(dag_id)
            active.append(dag_id)
        if not waiting and not active:
            return runs
        time.sleep(3)
    raise TimeoutError(f"runs not finished: { {d: run_state(s, d, r) for d, r in runs.items()} }")


def clear_failed(s: AirflowServices, dag_id: str, run_id: str) -> None:
    """The operator's retry: clear the run's failed tasks (and what follows them)."""
    s.api("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances",
          {"dry_run": False, "dag_run_id": run_id, "only_failed": True, "reset_dag_runs": True,
           "include_downstream": True})


def sweep(s: AirflowServices) -> list[str]:
    """The deployment's orphan sweep (`dc2-sweep`, where the scheduler runs), with no grace: every
    run has ended, so any job still alive is one nobody waits for. The jobs it cancelled, with why."""
    argv = [sys.executable, "-m", "dc2tasks.airflow.sweep", "--conn", SLURM_CONN_ID, "--grace", "0", "--json"]
    r = subprocess.run(argv, env=s.env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, f"dc2-sweep failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    print(r.stderr[-3000:])
    last = [line for line in r.stdout.splitlines() if line.strip()][-1]  # Airflow may print before it
    return [f"{a['job_id']} {a['task']} (try {a['try_number']}): {a['reason']}" for a in json.loads(last)]


def healthy(s: AirflowServices, remote: Remote) -> Callable[[str], bool]:
    def probe(kind: str) -> bool:
        if kind.startswith(("slurm", "sshd", "job")):
            states = remote("sinfo", "--noheader", "--format=%T").split()
            return bool(states) and all(x in ("idle", "mixed", "allocated") for x in states)
        if kind.startswith(("triggerer", "scheduler")):
            health = s.api("GET", "/api/v2/monitor/health")
            return all(health[c]["status"] == "healthy" for c in ("scheduler", "triggerer"))
        return True

    return probe


# -- the test --------------------------------------------------------------------------------------------


REF_RUN = "chaos_ref"


@dataclass
class Reference:
    """The fault-free reference run, running beside the faulted ones."""

    process: subprocess.Popen[bytes]
    central: Path
    log: Path

    def checksums(self, timeout: float) -> dict[str, str]:
        """Wait for it; the values' checksum of each data file it installed."""
        from dc2tasks.service.demo import task_states

        code = self.process.wait(timeout=timeout)
        text = self.log.read_text(errors="replace")
        states = task_states(text)
        assert code == 0 and set(states.values()) <= {"success", "skipped"}, (
            f"the reference run failed (exit {code}): {states}; the end of its log:\n{text[-4000:]}")
        return data_checksums(self.central, REF_RUN)


LabParts = tuple[AirflowServices, dict[str, Path], Reference]
"""The services, the faulted runs' central directories by DAG id, the reference."""


def start_reference(base: Path, sample: Any, dc2: str) -> Reference:
    """The same run file on the local backend, run by `airflow dags test` in an Airflow home of its
    own, started beside the faulted runs rather than before them (it is a whole run's time). No
    fault reaches it: its jobs are processes outside the cluster's network namespace, its work and
    central directories are not the file systems the faults fill or remount, and it has no
    scheduler or triggerer to kill."""
    home = base / "ref-airflow"
    (home / "dags").mkdir(parents=True)
    dirs = (base / "ref-work", base / "ref-central")
    dirs[1].mkdir()
    me = (pwd.getpwuid(os.getuid()), grp.getgrgid(os.getgid()))  # who installs it: this process
    central = write_run(REF_RUN, home / "dags", base, dirs, sample, dc2, *me, backend="local")
    env = airflow_home_env(home, home / "dags")
    env.update({"DC2_LOCAL_SLURM_DIR": str(home / "local-slurm"), "DC2_TRIGGER_MIN_WAIT_S": "0"})
    migrated = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
    assert migrated.returncode == 0, f"the reference's airflow db migrate failed: {migrated.stderr[-3000:]}"
    log = home / "dags-test.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "airflow", "dags", "test", f"dc2_{REF_RUN}"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home,
                                   start_new_session=True)  # its local jobs too, for a kill
    return Reference(process, central, log)


@pytest.fixture(scope="module")
def lab_parts(loopback_cluster: dict[str, str], run_base: Path, file_systems: tuple[Path, Path],
              chaos_sample: Any, cluster_dc2: str, cluster_user: pwd.struct_passwd,
              central_group: grp.struct_group) -> Iterator[LabParts]:
    dags = run_base / "dags"
    dags.mkdir()
    names = [f"{i:02d}" for i in range(int(setting("RUNS", 2)))]
    centrals = {f"{PREFIX}_{n}": write_run(f"chaos_{n}", dags, run_base, file_systems, chaos_sample,
                                                cluster_dc2, cluster_user, central_group) for n in names}
    reference = start_reference(run_base, chaos_sample, cluster_dc2)
    env = {f"AIRFLOW_CONN_{SLURM_CONN_ID.upper()}": ssh_connection_json(loopback_cluster),
           "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15", **RECOVERY_SETTINGS}
    try:
        with airflow_services(dags, env, parallelism=8) as s:
            for dag_id in centrals:
                s.wait_dag(dag_id, timeout=300)
            yield s, centrals, reference
    finally:
        if reference.process.poll() is None:
            os.killpg(reference.process.pid, signal.SIGKILL)
            reference.process.wait(timeout=60)


@pytest.mark.timeout(int(setting("TIMEOUT_S", 2400)))  # the suite's 900 s is for one ordinary test
def test_data_runs_under_faults(lab_parts: LabParts,
                                loopback_cluster: dict[str, str], file_systems: tuple[Path, Path],
                                remote: Remote, tmp_path: Path) -> None:
    s, centrals, ref = lab_parts
    seed = int(setting("SEED", 1))
    window, concurrency = setting("WINDOW_S", 60), int(setting("CONCURRENCY", 2))
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    started = time.monotonic()
    dag_ids = list(centrals)

    lab = Lab(loopback_cluster, s, file_systems[0], file_systems[1], dag_ids, random.Random(seed))
    injector = Injector(lab, window, setting("GAP_S", 5), lambda: successes(s), healthy(s, remote), print)
    injector.start()
    retried: set[str] = set()
    runs = drive(s, dag_ids, concurrency, time.monotonic() + window + 1800, retried)
    injector.stop_event.set()
    injector.join(timeout=120)
    swept = sweep(s)
    time.sleep(5)  # a cancel issued by the sweep or a trigger reaches squeue
    reference = ref.checksums(timeout=900)  # fault-free: the values every run's files must have
    assert reference, "the reference run installed no data file"

    tally = Tally(date=datetime.now(UTC).strftime("%Y-%m-%d"), seed=seed, runs=len(dag_ids),
                  concurrency=concurrency, fault_window_s=window, faults=injector.records)
    final = {d: run_state(s, d, r) for d, r in runs.items()}
    succeeded = {d for d in dag_ids if final[d] == "success"}
    tally.runs_succeeded_first = len(succeeded - retried)
    tally.runs_succeeded_after_retry = len(succeeded & retried)
    tally.runs_failed = [d for d in dag_ids if d not in succeeded]
    tally.failures = [f for d in tally.runs_failed for f in failed_tasks(s, d, runs[d])]
    rows = job_rows(remote, PREFIX, since)
    tally.jobs_needed = slurm_steps(s, dag_ids[0]) * len(dag_ids)
    tally.jobs_submitted, tally.jobs_resubmitted, tally.duplicate_submissions = count_jobs(rows)
    tally.swept = swept
    tally.orphans = live_jobs(remote, PREFIX)
    done = {d: centrals[d] for d in dag_ids if d in succeeded}
    tally.wrong_installed_files = wrong_files({run_name(d): c for d, c in done.items()}, reference)
    tally.partial_files = [p for d in dag_ids for p in partial_files(centrals[d])]
    tally.half_switched = [h for d in dag_ids for h in half_switched(centrals[d])]
    tally.wall_s = round(time.monotonic() - started, 1)
    out = Path(os.environ.get("DC2_CHAOS_TALLY") or tmp_path / "chaos-tally.json")
    out.write_text(json.dumps(tally.to_json(), indent=1) + "\n")
    print(tally.summary(), f"\ntally: {out}")

    assert not injector.errors, injector.errors
    assert {f.kind for f in tally.faults} == set(FAULTS), "every fault kind at least once"
    assert tally.orphans == []
    assert tally.duplicate_submissions == 0
    assert tally.wrong_installed_files == []
    assert tally.partial_files == []
    assert tally.half_switched == []
