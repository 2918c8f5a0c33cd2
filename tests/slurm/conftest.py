"""Fixtures for the Slurm tests (the clusters themselves are in tests/conftest.py, so one session
starts one cluster whichever directories it runs).

The `loopback_cluster` fixture starts a real Slurm (with slurmdbd) and sshd on this machine with
tests/cluster/loopback_cluster.sh, once per session, and stops them by pid at the end. It needs
root (it installs Debian packages when missing and makes a network namespace):
- not root and not CI: the cluster tests are skipped (a developer's laptop);
- CI=true, or root: a cluster that cannot start FAILS the tests that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from dc2tasks.slurm import SlurmClient
from dc2tasks.slurm.transports.ssh import SSHConfig, SSHTransport


@pytest.fixture(scope="session")
def ssh_transport(ssh_config: Callable[..., SSHConfig]) -> Iterator[SSHTransport]:
    transport = SSHTransport(ssh_config())
    yield transport
    transport.close()


@pytest.fixture(scope="session")
def cluster_client(ssh_transport: SSHTransport) -> SlurmClient:
    return SlurmClient(ssh_transport, command_timeout=30)
