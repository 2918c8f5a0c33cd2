"""The scripts in docker/ that make or carry secrets, run for real here (not in Docker): the slurmdbd
configuration with its generated password, airflow-init's passwords file (with the real `airflow db
migrate` on SQLite), and the login node's SSH gateway forwarding real TCP connections."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOGIN = REPO / "docker" / "login-node"
INIT = REPO / "docker" / "airflow" / "init.py"
GATEWAY = LOGIN / "ssh-gateway.py"
VENV_BIN = Path(sys.executable).parent


def git_modes() -> dict[str, str]:
    out = subprocess.run(["git", "ls-files", "-s", "docker"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    return {line.split("\t")[1]: line.split()[0] for line in out.splitlines()}


def test_no_secret_is_shipped_so_no_file_in_docker_must_be_private():
    """Git keeps only 0644/0755: a script in the repository is readable by whoever has the checkout
    (or the image). So the slurmdbd password is not in one: the template has none, and the
    entrypoint has it generated at start (below)."""
    modes = git_modes()
    assert modes["docker/login-node/entrypoint.sh"] == "100755"
    assert modes["docker/login-node/slurmdbd-conf.sh"] == "100755"
    assert modes["docker/login-node/slurmdbd.conf"] == "100644"
    template = (LOGIN / "slurmdbd.conf").read_text()
    assert not re.search(r"^\s*StoragePass", template, re.M)
    entry = (LOGIN / "entrypoint.sh").read_text()
    assert "dc2-slurmdbd-conf /etc/slurm/slurmdbd.conf.template /etc/slurm/slurmdbd.conf slurm" in entry
    # the password reaches MariaDB on standard input only, never on a command line
    assert re.search(r"^mariadb <<SQL\n(?:.*\n)*?ALTER USER 'slurm'@'localhost' IDENTIFIED BY "
                     r"'\$storage_pass';\n(?:.*\n)*?SQL\n", entry, re.M)
    assert entry.count("IDENTIFIED BY") == 1
    docker = (LOGIN / "Dockerfile").read_text()
    assert "COPY docker/login-node/slurmdbd.conf /etc/slurm/slurmdbd.conf.template" in docker


def test_slurmdbd_conf_is_written_0600_with_a_fresh_password(tmp_path):
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path / "slurmdbd.conf"
    passwords = []
    for _ in range(2):
        r = subprocess.run(["bash", str(LOGIN / "slurmdbd-conf.sh"), str(LOGIN / "slurmdbd.conf"), str(out),
                            user], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "" and r.stderr == ""  # the password is never printed
        st = out.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
        text = out.read_text()
        found = re.findall(r"^StoragePass=([0-9a-f]+)$", text, re.M)
        assert len(found) == 1 and len(found[0]) == 64
        assert "StorageUser=slurm\n" in text and "StorageLoc=slurm_acct_db\n" in text
        passwords.append(found[0])
    assert passwords[0] != passwords[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slurmdbd.conf"]  # no temporary left


def init_env(home: Path, password: str | None, users: str = "admin:admin", **settings: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DC2_"))}
    env.update(
        AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode(),
        AIRFLOW__API__SECRET_KEY=secrets.token_hex(32),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
    )
    env.update(settings)
    env.update(
        PATH=os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=users,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "auth" / "passwords.json"),
    )
    if password is not None:
        env["DC2_ADMIN_PASSWORD"] = password
    return env


def test_airflow_init_writes_the_passwords_file_0600_and_never_prints_the_password(tmp_path):
    home = tmp_path / "airflow"
    (home / "auth").mkdir(parents=True)
    password = secrets.token_urlsafe(24)
    r = subprocess.run([sys.executable, str(INIT)], env=init_env(home, password), capture_output=True,
                       text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    path = home / "auth" / "passwords.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"admin": password}
    assert f"the password of 'admin' is in {path} (mode 0600)" in r.stdout
    assert password not in r.stdout + r.stderr
    assert sorted(p.name for p in (home / "auth").iterdir()) == ["passwords.json"]
    assert (home / "airflow.db").is_file()  # `airflow db migrate` ran
    for entry in home.rglob("*"):  # and the password is nowhere else airflow-init wrote
        if entry.is_file() and entry != path:
            assert password.encode() not in entry.read_bytes(), entry


@pytest.mark.parametrize(("password", "users", "settings", "message"), [
    (None, "admin:admin", {}, "DC2_ADMIN_PASSWORD is shorter than 12 characters"),
    ("  ", "admin:admin", {}, "DC2_ADMIN_PASSWORD is shorter than 12 characters"),
    ("x" * 20, "admin:admin,bob:viewer", {}, "must name exactly one user (it names ['admin', 'bob'])"),
    ("x" * 20, "admin:admin", {"AIRFLOW__API_AUTH__JWT_SECRET": "x"},
     "DC2_JWT_SECRET is shorter than 32 characters (openssl rand -hex 32)"),
    ("x" * 20, "admin:admin", {"AIRFLOW__API__SECRET_KEY": "y" * 31},
     "DC2_API_SECRET_KEY is shorter than 32 characters"),
    ("x" * 20, "admin:admin", {"AIRFLOW__CORE__FERNET_KEY": "z" * 44}, "DC2_FERNET_KEY is not a Fernet key"),
])
def test_airflow_init_refuses_before_migrating(tmp_path, password, users, settings, message):
    home = tmp_path / "airflow"
    (home / "auth").mkdir(parents=True)
    r = subprocess.run([sys.executable, str(INIT)], env=init_env(home, password, users, **settings),
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2
    assert message in r.stderr
    assert not (home / "airflow.db").exists() and not any((home / "auth").iterdir())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ssh_gateway_forwards_to_its_one_target(tmp_path):
    """Bytes both ways through the real gateway to a real server; SIGTERM stops it."""
    target = socket.create_server(("127.0.0.1", 0))
    target_port = target.getsockname()[1]

    def echo_once() -> None:
        conn, _ = target.accept()
        with conn:
            conn.sendall(b"SSH-2.0-test\r\n")
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    threading.Thread(target=echo_once, daemon=True).start()
    port = free_port()
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(GATEWAY), "--listen", f"127.0.0.1:{port}",
                                 "--to", f"127.0.0.1:{target_port}"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except ConnectionRefusedError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        with client:
            assert client.recv(100) == b"SSH-2.0-test\r\n"
            client.sendall(b"hello")
            assert client.recv(100) == b"HELLO"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert f"ssh-gateway: 127.0.0.1:{port} -> 127.0.0.1:{target_port}" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        target.close()


def test_ssh_gateway_refuses_a_bad_address():
    r = subprocess.run([sys.executable, str(GATEWAY), "--listen", "0.0.0.0", "--to", "login-node-sshd:22"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "expected HOST:PORT, not '0.0.0.0'" in r.stderr
