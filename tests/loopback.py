"""The loopback Slurm clusters of tests/cluster/loopback_cluster.sh, started and stopped by pid, and
how the tests reach them (tests/conftest.py's fixtures, and modules that need a cluster of their own)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dc2tasks.slurm.transports.ssh import SSHConfig

SCRIPT = Path(__file__).resolve().parent / "cluster" / "loopback_cluster.sh"
START_TIMEOUT_S = 900  # a fresh machine also runs apt-get here


def _script(*args: str, env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, check=check,
                          env={**os.environ, **env})


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@contextmanager
def loopback(**env: str) -> Iterator[dict[str, str]]:
    """Start a loopback cluster (settings from `env`), yield its settings, stop it by pid."""
    if os.geteuid() != 0 and not in_ci():
        pytest.skip("the loopback Slurm cluster needs root (run the tests as root, or in CI)")
    try:
        started = subprocess.run(
            ["bash", str(SCRIPT), "start"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
            env={**os.environ, **env},
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"loopback cluster did not start within {START_TIMEOUT_S} s: {e.stderr}")
    if started.returncode != 0:
        pytest.fail(f"loopback cluster failed to start (exit {started.returncode}):\n{started.stderr}")
    directory = started.stdout.strip().splitlines()[-1]
    try:
        env_out = _script("env", directory, env=env, check=True).stdout
        yield dict(line.split("=", 1) for line in env_out.splitlines() if "=" in line)
    finally:
        stopped = _script("stop", directory, env=env)
        if stopped.returncode != 0:
            print(f"loopback cluster stop failed:\n{stopped.stderr}")


def ssh_config_of(env: dict[str, str], **overrides: object) -> SSHConfig:
    base: dict[str, object] = dict(
        host=env["DC2_SLURM_SSH_HOST"],
        port=int(env["DC2_SLURM_SSH_PORT"]),
        username=env["DC2_SLURM_SSH_USER"],
        key_file=env["DC2_SLURM_SSH_KEY"],
        known_hosts=env["DC2_SLURM_SSH_KNOWN_HOSTS"],
        connect_timeout=10.0,
    )
    base.update(overrides)
    return SSHConfig(**base)  # type: ignore[arg-type]


@contextmanager
def remote_runner(env: dict[str, str]) -> Iterator[Callable[..., str]]:
    """`run(*argv)` on the cluster's login node over its own SSH connection (for checks straight
    from sacct); asserts the command succeeded and returns its output."""
    from dc2tasks.slurm.commands import Command
    from dc2tasks.slurm.transports.ssh import SSHTransport

    transport = SSHTransport(ssh_config_of(env))

    def run(*argv: str) -> str:
        r = transport.run(Command(tuple(argv), timeout=30))
        assert r.returncode == 0, f"{argv}: {r.err}"
        return r.out

    try:
        yield run
    finally:
        transport.close()
