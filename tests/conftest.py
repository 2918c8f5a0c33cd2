"""Session-wide fixtures: the real afw fixture files, and the loopback Slurm clusters (here, not in
a sub-directory's conftest, so a session that runs tests/slurm and tests/airflow starts one)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dc2tasks.slurm.transports.ssh import SSHConfig

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.is_dir():  # CI clones main beside shared/; a work tree may sit one level deeper
    SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures" / "afw"
REAL_FIXTURES = SHARED / "fixtures" / "real"


@pytest.fixture(scope="session")
def afw_fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real afw fixtures are missing: expected them in {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """Files the LSST stack and Gen2 butlers wrote, quirks included (their README says which)."""
    if not REAL_FIXTURES.is_dir():
        pytest.fail(f"the real LSST fixtures are missing: expected them in {REAL_FIXTURES}")
    return REAL_FIXTURES


SCRIPT = Path(__file__).resolve().parent / "cluster" / "loopback_cluster.sh"
START_TIMEOUT_S = 900  # a fresh machine also runs apt-get here


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs the loopback Slurm + sshd of tests/cluster/loopback_cluster.sh"
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@contextmanager
def _cluster(**env: str) -> Iterator[dict[str, str]]:
    """Start a loopback cluster (settings from `env`), yield its settings, stop it by pid."""
    if os.geteuid() != 0 and not _in_ci():
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
        env_out = subprocess.run(
            ["bash", str(SCRIPT), "env", directory],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        ).stdout
        yield dict(line.split("=", 1) for line in env_out.splitlines() if "=" in line)
    finally:
        stopped = subprocess.run(
            ["bash", str(SCRIPT), "stop", directory],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **env},
        )
        if stopped.returncode != 0:
            print(f"loopback cluster stop failed:\n{stopped.stderr}")


@pytest.fixture(scope="session")
def loopback_cluster() -> Iterator[dict[str, str]]:
    """Slurm with slurmdbd accounting (sacct works), cgroup memory enforcement where possible."""
    with _cluster() as env:
        yield env


@pytest.fixture(scope="module")
def loopback_cluster_without_accounting() -> Iterator[dict[str, str]]:
    """A second cluster with no slurmdbd, its own user, and no cgroups (the first one owns them)."""
    with _cluster(DC2_LOOPBACK_ACCOUNTING="0", DC2_LOOPBACK_CGROUP="0", DC2_LOOPBACK_USER="dc2noacct") as env:
        yield env


@pytest.fixture(scope="session")
def sbatch_as_other(loopback_cluster: dict[str, str]) -> Iterator[Callable[..., str]]:
    """Submit a job as the cluster's second account (`dc2other`, no SSH login), as any other user of
    a shared cluster can: `submit(name, comment, script)` returns its job id. Cancelled at the end."""
    env = loopback_cluster
    slurm_env = {**os.environ, "SLURM_CONF": env["DC2_SLURM_CONF"]}
    ns = ["nsenter", "-t", env["DC2_SLURM_NETNS_PID"], "-n", "--"]
    submitted: list[str] = []

    def submit(name: str, comment: str, script: str) -> str:
        r = subprocess.run(
            [*ns, "runuser", "-u", env["DC2_SLURM_OTHER_USER"], "--", "sbatch", "--parsable",
             f"--job-name={name}", f"--comment={comment}", "--output=/dev/null", "--chdir=/tmp",
             "--time=15", f"--wrap={script}"],
            capture_output=True, text=True, env=slurm_env, timeout=60, check=False)
        assert r.returncode == 0, f"sbatch as {env['DC2_SLURM_OTHER_USER']}: {r.stderr}"
        submitted.append(r.stdout.strip().split(";")[0])
        return submitted[-1]

    yield submit
    if submitted:
        subprocess.run([*ns, "scancel", *submitted], env=slurm_env, capture_output=True, check=False)


def _ssh_config(env: dict[str, str], **overrides: object) -> SSHConfig:
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


@pytest.fixture(scope="session")
def ssh_config(loopback_cluster: dict[str, str]) -> Callable[..., SSHConfig]:
    """The cluster's SSH settings, with overrides (another key, a pinned host key...)."""
    return lambda **overrides: _ssh_config(loopback_cluster, **overrides)
