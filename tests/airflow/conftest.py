"""Fixtures for the Airflow tests: a throw-away AIRFLOW_HOME with a migrated SQLite database (set
before Airflow is first imported), the loopback Slurm cluster, and an Airflow SSH connection to it.

The cluster is tests/conftest.py's `loopback_cluster` (one per session, shared with tests/slurm).
Same rules: not root and not CI -> skipped; CI=true -> a cluster
that cannot start FAILS the tests.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

if "airflow" not in sys.modules:  # must precede the first `import airflow` of the session
    _HOME = tempfile.mkdtemp(prefix="dc2-airflow-test-")
    atexit.register(shutil.rmtree, _HOME, True)
    os.environ["AIRFLOW_HOME"] = _HOME
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(_HOME) / "dags")
    os.environ["DC2_LOCAL_SLURM_DIR"] = str(Path(_HOME) / "local-slurm")
    # dag.test() runs triggers inline (no executor race to wait out); tests/airflow/services.py sets
    # its own value for the real triggerer
    os.environ.setdefault("DC2_TRIGGER_MIN_WAIT_S", "0")

SLURM_CONN_ID = "dc2_test_slurm"
TEST_JOB_TOKEN = "loopback-test-deployment-job-token"
"""The job token of the tests' SSH connections (extra `job_token`), as a deployment sets it."""


def signed(name: str, try_number: int) -> str:
    """The comment the operator gives try `try_number` of job `name` under the tests' token."""
    from dc2tasks.slurm.owner import job_comment

    return job_comment(name, try_number, TEST_JOB_TOKEN)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs the loopback Slurm + sshd of tests/cluster/loopback_cluster.sh"
    )


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Migrate the session's SQLite metadata database once (~3 s)."""
    home = os.environ["AIRFLOW_HOME"]
    r = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                       check=False, env=os.environ.copy())
    if r.returncode != 0:
        pytest.fail(f"airflow db migrate failed in {home}:\n{r.stderr[-3000:]}")
    return home


def pinned_host_key(env: dict[str, str]) -> str:
    parts = Path(env["DC2_SLURM_SSH_KNOWN_HOSTS"]).read_text().split()
    return f"{parts[1]} {parts[2]}"


def ssh_connection_json(env: dict[str, str], **extra: object) -> str:
    """The cluster as an Airflow SSH connection (the form a deployment would use); an extra given
    as None is left out (e.g. `job_token=None`)."""
    extras = {"key_file": env["DC2_SLURM_SSH_KEY"], "host_key": pinned_host_key(env),
              "conn_timeout": 10, "cmd_timeout": 30, "job_token": TEST_JOB_TOKEN, **extra}
    return json.dumps({
        "conn_type": "ssh", "host": env["DC2_SLURM_SSH_HOST"], "port": int(env["DC2_SLURM_SSH_PORT"]),
        "login": env["DC2_SLURM_SSH_USER"],
        "extra": {k: v for k, v in extras.items() if v is not None},
    })


@pytest.fixture(scope="session")
def slurm_conn(loopback_cluster: dict[str, str]) -> Iterator[str]:
    """Registers the connection as AIRFLOW_CONN_<ID> for this process and its children."""
    var = f"AIRFLOW_CONN_{SLURM_CONN_ID.upper()}"
    os.environ[var] = ssh_connection_json(loopback_cluster)
    yield SLURM_CONN_ID
    os.environ.pop(var, None)


@pytest.fixture(scope="session")
def remote(ssh_config: Callable[..., object]) -> Iterator[Callable[..., str]]:
    """Run a command on the login node (for checks straight from sacct), with its own connection."""
    from dc2tasks.slurm.commands import Command
    from dc2tasks.slurm.transports.ssh import SSHTransport

    transport = SSHTransport(ssh_config())

    def run(*argv: str) -> str:
        r = transport.run(Command(tuple(argv), timeout=30))
        assert r.returncode == 0, f"{argv}: {r.err}"
        return r.out

    yield run
    transport.close()


CENTRE = tuple(f"{x},{y}" for x in (2, 3, 4) for y in (2, 3, 4))
DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def demo_dags(tmp_path, monkeypatch, airflow_db):
    """The demo run's sample repository, and the DAG files where `dag.test()` looks for them; the
    qa jobs run `dc2 qa` (its test double until the real command is merged: qa_double.py)."""
    from qa_double import use_qa_double

    from dc2tasks.sample import SampleConfig, make_sample_repo

    demo = tmp_path / "demo"
    monkeypatch.setenv("DC2_DEMO_DIR", str(demo))
    sample = make_sample_repo(
        demo / "sample-repo", SampleConfig(patches=CENTRE, objects_per_patch=80, visits=3)
    )
    sample.write_visit_list(demo / "sample-repo" / "visits.txt")
    (demo / "central").mkdir()
    folder = Path(airflow_db) / "dags"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(DAGS, folder)
    use_qa_double(monkeypatch, tmp_path)
    return sample, demo, folder
