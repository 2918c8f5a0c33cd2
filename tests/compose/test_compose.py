"""docker-compose.yaml and docker/: Docker cannot run here, so check the structure with PyYAML and
validate the file with the real Compose v2 binary (`config -q`), which exits non-zero on a bad file.
The secrets are required (the binary refuses the file without them) and the merged configuration it
prints is what the structure checks read where interpolation or merge keys matter."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from dc2tasks.runs import load_run_config
from dc2tasks.service.airflow_env import RECOVERY_SETTINGS
from dc2tasks.service.serve import serve_env

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
LONG_RUNNING = ("postgres", *AIRFLOW_SERVICES, "login-node", "login-ssh")
SECRET_VARS = ("DC2_FERNET_KEY", "DC2_API_SECRET_KEY", "DC2_JWT_SECRET", "DC2_POSTGRES_PASSWORD",
               "DC2_ADMIN_PASSWORD", "DC2_JOB_TOKEN")
# the values the file shipped with before its secrets were required: none may come back
OLD_SECRETS = ("dc2-local-compose-only", "dc2-local-only", "POSTGRES_PASSWORD: airflow",
               "airflow:airflow@", '{"admin": "')


def generated_secrets() -> dict[str, str]:
    """What README's .env command makes: a Fernet key and random hex strings."""
    values = {name: secrets.token_hex(32) for name in SECRET_VARS}
    values["DC2_FERNET_KEY"] = Fernet.generate_key().decode()
    return values


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


def compose_config(binary: str, path: Path, values: dict[str, str] | None = None,
                   *args: str) -> subprocess.CompletedProcess[str]:
    """`config` with exactly `values` as the variables: none of this shell's DC2_*, and an empty
    --env-file, so a developer's .env cannot make a missing secret look set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DC2_")}
    env.update(values or {})
    # one empty file per call: pytest-xdist workers call this at once
    with tempfile.NamedTemporaryFile(prefix="dc2-empty-env-", suffix=".env") as empty:
        return subprocess.run(
            [binary, "-f", str(path), "--env-file", empty.name, "config", *(args or ("-q",))],
            capture_output=True, text=True, timeout=60, cwd=path.parent, env=env,
        )


@pytest.fixture(scope="module")
def values() -> dict[str, str]:
    return generated_secrets()


@pytest.fixture(scope="module")
def merged(compose_bin, values) -> dict:
    """The configuration the real binary resolves (interpolated, merge keys applied)."""
    proc = compose_config(compose_bin, COMPOSE, values, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_real_compose_binary_accepts_the_file_with_the_secrets_set(compose_bin, values):
    proc = compose_config(compose_bin, COMPOSE, values)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_the_real_compose_binary_refuses_the_file_without_secrets(compose_bin):
    proc = compose_config(compose_bin, COMPOSE, {})
    assert proc.returncode != 0
    assert re.search(r"required variable DC2_\w+ is missing a value: .*make \.env as README\.md "
                     r"\(Docker\) says", proc.stderr), proc.stderr


@pytest.mark.parametrize("missing", SECRET_VARS)
def test_each_secret_is_required_and_named(compose_bin, values, missing):
    """Every other one set: still refused, naming the one that is missing (or empty)."""
    for value in (None, ""):
        given = {k: v for k, v in values.items() if k != missing}
        if value is not None:
            given[missing] = value
        proc = compose_config(compose_bin, COMPOSE, given)
        assert proc.returncode != 0, missing
        assert f"required variable {missing} is missing a value" in proc.stderr, proc.stderr


def test_no_default_secret(merged, values):
    """Every secret comes from its variable, none has a default, and no old value is left in the
    compose file or anything under docker/."""
    text = COMPOSE.read_text()
    for name in SECRET_VARS:
        uses = re.findall(r"\$\{" + name + r"(\W{1,2})", text)
        assert uses and set(uses) == {":?"}, (name, uses)
    assert not re.search(r"\$\{\w*(KEY|SECRET|PASS)\w*:?-", text)  # no `${...:-default}` secret
    tracked = subprocess.run(["git", "ls-files", "docker-compose.yaml", "docker"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    assert "docker/login-node/entrypoint.sh" in tracked
    for rel in tracked:
        content = (REPO / rel).read_text()
        for old in OLD_SECRETS:
            assert old not in content, (rel, old)
        assert not re.search(r"^StoragePass=", content, re.M), rel  # generated at start, not shipped
        assert not re.search(r"IDENTIFIED BY '[^$]", content), rel
    env = merged["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == values["DC2_FERNET_KEY"]
    assert env["AIRFLOW__API__SECRET_KEY"] == values["DC2_API_SECRET_KEY"]
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == values["DC2_JWT_SECRET"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == \
        f"postgresql+psycopg2://airflow:{values['DC2_POSTGRES_PASSWORD']}@postgres/airflow"
    postgres = merged["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] == values["DC2_POSTGRES_PASSWORD"]


def test_the_admin_password_reaches_airflow_init_only_and_never_a_command(merged, values):
    """By environment to the one service that writes the passwords file, never in a command,
    entrypoint or healthcheck string of any service (those show in `ps` and `docker inspect`)."""
    password = values["DC2_ADMIN_PASSWORD"]
    holders = [name for name, svc in merged["services"].items()
               if password in json.dumps(svc.get("environment", {}))]
    assert holders == ["airflow-init"]
    assert merged["services"]["airflow-init"]["environment"]["DC2_ADMIN_PASSWORD"] == password
    for name, svc in merged["services"].items():
        for key in ("command", "entrypoint", "healthcheck"):
            shown = json.dumps(svc.get(key))
            for secret in values.values():
                assert secret not in shown, (name, key)
    assert merged["services"]["airflow-init"]["entrypoint"] == ["python", "/opt/dc2/airflow-init.py"]
    assert merged["services"]["airflow-init"].get("command") is None


def test_the_job_token_reaches_only_the_services_that_submit_and_poll(merged, values):
    """The token that signs Slurm job comments is an Airflow Variable of the scheduler (tasks) and
    the triggerer (triggers) only, like the SSH keys; the api-server and dag-processor never hold it."""
    token = values["DC2_JOB_TOKEN"]
    holders = sorted(name for name, svc in merged["services"].items()
                     if token in json.dumps(svc.get("environment", {})))
    assert holders == ["airflow-scheduler", "airflow-triggerer"]
    for name in holders:
        assert merged["services"][name]["environment"]["AIRFLOW_VAR_DC2_JOB_TOKEN"] == token


def test_networks_isolate_the_login_node(merged):
    """Only login-ssh (a port-22 forwarder) shares a network with the login node; only the scheduler
    and the triggerer (which submit and poll jobs) reach login-ssh; the api-server reaches neither."""
    networks = {name: set(svc["networks"]) for name, svc in merged["services"].items()}
    assert networks == {
        "postgres": {"backend"},
        "airflow-init": {"backend"},
        "airflow-apiserver": {"backend", "frontend"},
        "airflow-scheduler": {"backend", "ssh"},
        "airflow-dag-processor": {"backend"},
        "airflow-triggerer": {"backend", "ssh"},
        "login-ssh": {"ssh", "login"},
        "login-node": {"login"},
    }
    internal = {name: bool(net.get("internal")) for name, net in merged["networks"].items()}
    assert internal == {"backend": True, "ssh": True, "login": True, "frontend": False}
    login_ssh = merged["services"]["login-ssh"]
    assert login_ssh["networks"]["ssh"]["aliases"] == ["login-node"]  # the SSH connections' host
    assert merged["services"]["login-node"]["networks"]["login"]["aliases"] == ["login-node-sshd"]
    assert login_ssh["entrypoint"] == ["/opt/dc2/venv/bin/python", "/usr/local/bin/dc2-ssh-gateway",
                                       "--listen", "0.0.0.0:22", "--to", "login-node-sshd:22"]
    assert login_ssh["user"] == "65534:65534" and login_ssh["cap_drop"] == ["ALL"]
    assert login_ssh["read_only"] is True


def test_only_the_api_server_publishes_a_port_and_on_loopback(merged):
    published = {name: svc["ports"] for name, svc in merged["services"].items() if svc.get("ports")}
    assert list(published) == ["airflow-apiserver"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in published["airflow-apiserver"]] == [
        ("127.0.0.1", "8080", 8080)
    ]


def test_the_real_compose_binary_rejects_a_broken_copy(compose_bin, values, tmp_path):
    """The validator validates: the same file with an unknown depends_on condition fails."""
    text = COMPOSE.read_text().replace("condition: service_completed_successfully", "condition: service_done")
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(text)
    proc = compose_config(compose_bin, broken, values)
    assert proc.returncode != 0
    assert "airflow-init.condition value must be one of" in proc.stderr


def test_services(compose):
    assert set(compose["services"]) == {"postgres", "airflow-init", *AIRFLOW_SERVICES, "login-node",
                                        "login-ssh"}
    commands = {s: compose["services"][s]["command"] for s in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    assert compose["services"]["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]  # loopback only


def test_every_long_running_service_is_healthchecked(compose):
    tests = {name: compose["services"][name]["healthcheck"]["test"] for name in LONG_RUNNING}
    assert tests["postgres"] == ["CMD", "pg_isready", "-U", "airflow", "-d", "airflow"]
    assert tests["airflow-apiserver"] == ["CMD", "curl", "--fail", "http://localhost:8080/api/v2/version"]
    assert tests["airflow-scheduler"] == ["CMD", "curl", "--fail", "http://localhost:8974/health"]
    assert "--job-type DagProcessorJob" in tests["airflow-dag-processor"][1]
    assert "--job-type TriggererJob" in tests["airflow-triggerer"][1]
    assert "sinfo" in tests["login-node"][1] and "sshd" in tests["login-node"][1]
    assert "create_connection(('127.0.0.1', 22)" in tests["login-ssh"][3]
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"  # else :8974/health is never served
    for name in LONG_RUNNING:
        assert compose["services"][name]["healthcheck"]["retries"] >= 5, name


def test_the_services_recover_as_every_deployment_does(compose, tmp_path):
    """A dead scheduler's tasks reset within a minute, in Compose as with `dc2 serve` (and the chaos
    test's services)."""
    (tmp_path / "airflow").mkdir(mode=0o700)
    env = serve_env(tmp_path, 8080)
    assert {k: env.get(k) for k in RECOVERY_SETTINGS} == RECOVERY_SETTINGS
    for name, service in compose["services"].items():
        if name.startswith("airflow-"):
            env = service["environment"]
            assert {k: env.get(k) for k in RECOVERY_SETTINGS} == RECOVERY_SETTINGS, name


def test_start_order(compose):
    services = compose["services"]
    assert services["airflow-init"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["airflow-init"] == {"condition": "service_completed_successfully"}, name
    for name in ("airflow-scheduler", "airflow-triggerer"):  # they submit and poll jobs on the login node
        assert services[name]["depends_on"]["login-node"] == {"condition": "service_healthy"}
        assert services[name]["depends_on"]["login-ssh"] == {"condition": "service_healthy"}
    assert services["login-ssh"]["depends_on"] == {"login-node": {"condition": "service_healthy"}}


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
        assert "airflow-logs:/opt/airflow/logs" in mounts, name
        # the passwords file: only the service that writes it and the one that reads it
        assert ("airflow-auth:/opt/airflow/auth" in mounts) == (name in ("airflow-init", "airflow-apiserver"))
        # the SSH client keys: only the services that submit and poll jobs
        assert ("ssh-shared:/ssh-shared:ro" in mounts) == (name in ("airflow-scheduler", "airflow-triggerer"))
        assert len(mounts) == (4 if name == "airflow-dag-processor" else 5), (name, mounts)
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


def readme_env_command() -> str:
    """The README's Docker section's command that makes .env (its shell block, less `docker ...`)."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Docker\n"):readme.index("## Benchmarks\n")]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    lines = [line for line in block[1].splitlines() if not line.startswith("docker ")]
    return "\n".join(lines) + "\n"


def test_the_readme_command_makes_a_private_env_that_compose_accepts(compose_bin, tmp_path):
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])  # the command uses .venv/bin/python
    script = readme_env_command()
    run = subprocess.run(["bash", "-euc", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    env_file = tmp_path / ".env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert sorted(values) == sorted(SECRET_VARS) and all(len(v) >= 32 for v in values.values())
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DC2_")}
    proc = subprocess.run([compose_bin, "-f", str(COMPOSE), "--env-file", str(env_file), "config", "-q"],
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=clean)
    assert proc.returncode == 0, proc.stderr
    before = env_file.read_text()
    again = subprocess.run(["bash", "-euc", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "cannot overwrite existing file" in again.stderr
    assert env_file.read_text() == before  # an existing .env (its Fernet key) is never replaced


def test_env_is_git_ignored():
    r = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO, check=False)
    assert r.returncode == 0
