"""Against a real Slurm without accounting: sacct refuses, the client falls back to
`scontrol --oneliner show job` (status) and `squeue` (find_by_name), and remembers that."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dc2tasks.slurm import JobInfo, Outcome, SlurmClient, SlurmJob, element_ids
from dc2tasks.slurm.transports.ssh import SSHConfig, SSHTransport

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def env(loopback_cluster_without_accounting: dict[str, str]) -> dict[str, str]:
    return loopback_cluster_without_accounting


@pytest.fixture(scope="module")
def transport(env: dict[str, str]) -> Iterator[SSHTransport]:
    t = SSHTransport(SSHConfig(host=env["DC2_SLURM_SSH_HOST"], port=int(env["DC2_SLURM_SSH_PORT"]),
                               username=env["DC2_SLURM_SSH_USER"], key_file=env["DC2_SLURM_SSH_KEY"],
                               known_hosts=env["DC2_SLURM_SSH_KNOWN_HOSTS"]))
    yield t
    t.close()


def wait_final(client: SlurmClient, ids: list[str], timeout: float = 60) -> dict[str, JobInfo]:
    return client.wait(ids, timeout, interval=0.5)


def test_status_and_find_without_accounting(transport: SSHTransport, env: dict[str, str]) -> None:
    assert env["DC2_SLURM_ACCOUNTING"] == "0"
    client = SlurmClient(transport)
    work = env["DC2_SLURM_WORKDIR"]
    ok = client.submit(SlurmJob(script="echo fine\n", name="na-ok", output=f"{work}/ok.%j.out",
                                comment="dc2:try=1"))
    bad = client.submit(SlurmJob(script="exit 3\n", name="na-bad", output=f"{work}/bad.%j.out"))
    arr_job = SlurmJob(script="[ $SLURM_ARRAY_TASK_ID -ne 1 ]\n", name="na-arr", array="0-3%2",
                       output=f"{work}/arr.%A_%a.out")
    arr = client.submit(arr_job)
    ids = [ok, bad, *element_ids(arr, arr_job)]
    got = wait_final(client, ids)
    assert client._exchanges.accounting is False
    assert (got[ok].state.base, got[ok].exit_code, got[ok].comment) == ("COMPLETED", 0, "dc2:try=1")
    assert (got[bad].state.base, got[bad].exit_code, got[bad].outcome) == ("FAILED", 3, Outcome.FAIL)
    assert {i: got[f"{arr}_{i}"].state.base for i in range(4)} == \
        {0: "COMPLETED", 1: "FAILED", 2: "COMPLETED", 3: "COMPLETED"}
    before = transport.counter.count
    client.status(ids)
    assert transport.counter.count - before == 1  # scontrol only: sacct is not asked again
    found = client.find_by_name("na-ok")
    assert [(f.job_id, f.state.base, f.comment) for f in found] == [(ok, "COMPLETED", "dc2:try=1")]
    assert client.read_log(f"{work}/ok.{ok}.out")[0] == "fine\n"
