"""Session-wide fixtures: the real afw fixture files, and the loopback Slurm clusters (here, not in
a sub-directory's conftest, so a session that runs tests/slurm and tests/airflow starts one)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loopback import loopback, ssh_config_of

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs the loopback Slurm + sshd of tests/cluster/loopback_cluster.sh"
    )


CLUSTER_FIXTURES = ("loopback_cluster", "loopback_cluster_without_accounting")
CLUSTER_GROUP = "loopback-cluster"


def pytest_itemcollected(item: pytest.Item) -> None:
    """`make test` runs the suite on several pytest-xdist workers (`--dist loadgroup`); every test
    that uses a loopback cluster goes to one of them, so the session starts one cluster (its
    session fixture) and its tests never race each other's slurmctld, groups or faults. (Marked
    here, as each test is collected: pytest-xdist reads the groups in its own
    `pytest_collection_modifyitems`, which may run before a conftest's.)"""
    if item.get_closest_marker("xdist_group"):  # a module with a cluster of its own says so
        return
    if set(CLUSTER_FIXTURES) & set(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.xdist_group(CLUSTER_GROUP))


@pytest.fixture(scope="session")
def loopback_cluster() -> Iterator[dict[str, str]]:
    """Slurm with slurmdbd accounting (sacct works), cgroup memory enforcement where possible."""
    with loopback() as env:
        yield env


@pytest.fixture(scope="module")
def loopback_cluster_without_accounting() -> Iterator[dict[str, str]]:
    """A second cluster with no slurmdbd, its own user, and no cgroups (the first one owns them)."""
    with loopback(DC2_LOOPBACK_ACCOUNTING="0", DC2_LOOPBACK_CGROUP="0", DC2_LOOPBACK_USER="dc2noacct") as env:
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


@pytest.fixture(scope="session")
def ssh_config(loopback_cluster: dict[str, str]) -> Callable[..., SSHConfig]:
    """The cluster's SSH settings, with overrides (another key, a pinned host key...)."""
    return lambda **overrides: ssh_config_of(loopback_cluster, **overrides)
