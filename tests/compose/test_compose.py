"""docker-compose.yaml and docker/: Docker cannot run here, so check the structure with PyYAML and
validate the file with the real Compose v2 binary (`config -q`), which exits non-zero on a bad file."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from dc2tasks.runs import load_run_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
LONG_RUNNING = ("postgres", *AIRFLOW_SERVICES, "login-node")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose_bin() -> str:
    """The real binary; fails (never skips) when it cannot be installed: the check would be hollow."""
    proc = subprocess.run(
        ["bash", str(REPO / "tests" / "compose" / "compose-bin.sh")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"tests/compose/compose-bin.sh could not provide the compose binary:\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def compose_config(binary: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "-f", str(path), "config", "-q"], capture_output=True, text=True, timeout=60, cwd=path.parent
    )


def test_the_real_compose_binary_accepts_the_file(compose_bin):
    proc = compose_config(compose_bin, COMPOSE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_the_real_compose_binary_rejects_a_broken_copy(compose_bin, tmp_path):
    """The validator validates: the same file with an unknown depends_on condition fails."""
    text = COMPOSE.read_text().replace("condition: service_completed_successfully", "condition: service_done")
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(text)
    proc = compose_config(compose_bin, broken)
    assert proc.returncode != 0
    assert "airflow-init.condition value must be one of" in proc.stderr


def test_services(compose):
    assert set(compose["services"]) == {"postgres", "airflow-init", *AIRFLOW_SERVICES, "login-node"}
    commands = {s: compose["services"][s]["command"] for s in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    assert "airflow db migrate" in compose["services"]["airflow-init"]["command"][1]
    assert compose["services"]["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]  # loopback only


def test_every_long_running_service_is_healthchecked(compose):
    tests = {name: compose["services"][name]["healthcheck"]["test"] for name in LONG_RUNNING}
    assert tests["postgres"] == ["CMD", "pg_isready", "-U", "airflow", "-d", "airflow"]
    assert tests["airflow-apiserver"] == ["CMD", "curl", "--fail", "http://localhost:8080/api/v2/version"]
    assert tests["airflow-scheduler"] == ["CMD", "curl", "--fail", "http://localhost:8974/health"]
    assert "--job-type DagProcessorJob" in tests["airflow-dag-processor"][1]
    assert "--job-type TriggererJob" in tests["airflow-triggerer"][1]
    assert "sinfo" in tests["login-node"][1] and "sshd" in tests["login-node"][1]
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"  # else :8974/health is never served
    for name in LONG_RUNNING:
        assert compose["services"][name]["healthcheck"]["retries"] >= 5, name


def test_start_order(compose):
    services = compose["services"]
    assert services["airflow-init"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["airflow-init"] == {"condition": "service_completed_successfully"}, name
    for name in ("airflow-scheduler", "airflow-triggerer"):  # they submit and poll jobs on the login node
        assert services[name]["depends_on"]["login-node"] == {"condition": "service_healthy"}


def test_volumes_and_mounts(compose):
    assert set(compose["volumes"]) == {
        "postgres-db", "airflow-logs", "airflow-auth", "ssh-shared", "dc2-scratch", "dc2-central",
        "slurm-state", "slurm-db",
    }  # fmt: skip
    assert "postgres-db:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]
    for name in ("airflow-init", *AIRFLOW_SERVICES):
        mounts = compose["services"][name]["volumes"]
        assert "./dags:/opt/airflow/dags" in mounts, name
        assert "./plugins:/opt/airflow/plugins" in mounts, name
        assert "./docker/runs:/opt/airflow/dags/runs:ro" in mounts, name
        assert "ssh-shared:/ssh-shared:ro" in mounts, name
    login = compose["services"]["login-node"]["volumes"]
    assert {"dc2-scratch:/scratch", "dc2-central:/central", "ssh-shared:/ssh-shared"} <= set(login)


def test_airflow_image_installs_the_lock_then_the_package(compose):
    for name in ("airflow-init", *AIRFLOW_SERVICES):
        assert compose["services"][name]["build"] == {
            "context": ".",
            "dockerfile": "docker/airflow/Dockerfile",
        }
    text = (REPO / "docker" / "airflow" / "Dockerfile").read_text()
    base = re.search(r"^FROM apache/airflow:(\S+)-python3\.11$", text, re.M)
    lock = (REPO / "requirements" / "lock.txt").read_text()
    assert base is not None
    assert f"apache-airflow=={base[1]}\n" in lock  # the image's Airflow is the lock's
    steps = [line for line in text.splitlines() if line.startswith(("RUN", "COPY"))]
    lock_copy = steps.index("COPY --chown=airflow:0 requirements/lock.txt /opt/dc2/requirements/lock.txt")
    lock_install = next(i for i, s in enumerate(steps) if "-r /opt/dc2/requirements/lock.txt" in s)
    pkg_install = next(i for i, s in enumerate(steps) if "--no-deps /opt/dc2/src" in s)
    assert lock_copy < lock_install < pkg_install
    ignore = (REPO / "docker" / "airflow" / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[1:5] == ["*", "!requirements/lock.txt", "!pyproject.toml", "!README.md"]


def test_login_node_image_has_sshd_slurm_and_dc2tasks(compose):
    service = compose["services"]["login-node"]
    assert service["build"] == {"context": ".", "dockerfile": "docker/login-node/Dockerfile"}
    assert service["hostname"] == "login-node"
    docker = REPO / "docker" / "login-node"
    text = (docker / "Dockerfile").read_text()
    for package in ("openssh-server", "slurm-wlm", "slurmdbd", "munge", "mariadb-server", "python3-venv"):
        assert re.search(rf"\s{re.escape(package)}\s", text), package
    assert "-r /opt/dc2/requirements/lock.txt" in text and "--no-deps /opt/dc2/src" in text
    conf = (docker / "slurm.conf").read_text()
    assert "SlurmctldHost=login-node\n" in conf
    assert re.search(r"^NodeName=login-node ", conf, re.M)
    entry = docker / "entrypoint.sh"
    assert subprocess.run(["bash", "-n", str(entry)], capture_output=True).returncode == 0
    script = entry.read_text()
    for daemon in (
        "munged",
        "mariadbd",
        "slurmdbd\n",
        "slurmctld\n",
        "slurmd\n",
        "exec /usr/sbin/sshd -D -e",
    ):
        assert daemon in script, daemon


def test_ssh_connections_pin_the_host_key(compose):
    """The connections the Airflow services get are valid JSON our hook accepts (host key checked)."""
    env = compose["x-airflow-common"]["environment"]
    for conn_id, login in (("LOGIN_DC2PROD", "dc2prod"), ("LOGIN_DESC", "desc")):
        conn = json.loads(env[f"AIRFLOW_CONN_{conn_id}"])
        assert conn["conn_type"] == "ssh" and conn["host"] == "login-node" and conn["login"] == login
        assert conn["extra"] == {
            "key_file": f"/ssh-shared/id_{login}",
            "known_hosts": "/ssh-shared/known_hosts",
        }


def test_the_compose_run_file_is_valid_and_uses_those_connections(compose):
    config = load_run_config(REPO / "docker" / "runs" / "compose.yaml")
    assert config.backend == "slurm"
    assert config.connections.producer == "login_dc2prod"
    assert config.connections.collaboration == "login_desc"
    assert (config.central.dir, config.central.group) == ("/central", "lsst")
    assert config.repository == "/scratch/sample-repo"
