"""The `host_ca` connection extra, read by the Airflow hook, against the loopback sshd (which
presents a host certificate signed by the cluster's test CA)."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from dc2tasks.airflow.hooks import backend_from_connection, make_transport
from dc2tasks.slurm import commands as c
from dc2tasks.slurm.transports import TransportError

OTHER_CA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _conn(env: dict[str, str], **extra: object) -> Connection:
    return Connection(conn_id="perlmutter", conn_type="ssh", host=env["DC2_SLURM_SSH_HOST"],
                      port=int(env["DC2_SLURM_SSH_PORT"]), login=env["DC2_SLURM_SSH_USER"],
                      extra=json.dumps({"key_file": env["DC2_SLURM_SSH_KEY"], **extra}))


def test_bad_host_ca_extra_names_the_connection_and_extra() -> None:
    conn = Connection(conn_id="perlmutter", conn_type="ssh", host="h", login="u",
                      extra=json.dumps({"key_file": "k", "host_ca": "*.nersc.gov ssh-rsa"}))
    with pytest.raises(ValueError, match=r"connection 'perlmutter': ssh: host_ca .*'\*\.nersc\.gov ssh-rsa'"):
        backend_from_connection(conn)


@pytest.mark.cluster
def test_host_ca_extra_connects_and_another_ca_is_refused(loopback_cluster: dict[str, str]) -> None:
    published = f"@cert-authority 127.0.0.1 {loopback_cluster['DC2_SLURM_SSH_HOST_CA']} test-ca"
    with make_transport(backend_from_connection(_conn(loopback_cluster, host_ca=published))) as t:
        r = t.run(c.Command(("sacct", "-n", "-X", "-o", "JobID", "-S", "now-1minutes"), timeout=20))
        assert r.returncode == 0, r.err
    with make_transport(backend_from_connection(_conn(loopback_cluster, host_ca=OTHER_CA))) as t:
        with pytest.raises(TransportError, match="not verified by the trusted host CA"):
            t.run(c.Command(("true",), timeout=20))
