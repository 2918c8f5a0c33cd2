"""Trusting a host CA (as NERSC publishes one): real sshds, real asyncssh connections.

The loopback sshd presents a host certificate signed by the cluster's test CA (principals
127.0.0.1, localhost). The refusals use a second, throw-away sshd on 127.0.0.1 of the host: the
client refuses it during key exchange, before any login, so it needs no Slurm and no account.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dc2tasks.slurm import Outcome, SlurmClient, SlurmJob
from dc2tasks.slurm import commands as c
from dc2tasks.slurm.transports import TransportError
from dc2tasks.slurm.transports.ssh import SSHConfig, SSHTransport, ca_known_hosts_line

SSHConfigFactory = Callable[..., SSHConfig]
CA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _keygen(*args: str) -> None:
    subprocess.run(["ssh-keygen", "-q", *args], check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def other_sshd(tmp_path: Path, loopback_cluster: dict[str, str]) -> Iterator[Callable[..., int]]:
    """`start(principals)`: an sshd on 127.0.0.1 with a fresh host key, certified by the cluster's
    host CA for `principals` (None: no certificate, a plain host key). Returns its port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(principals: str | None) -> int:
        d = tmp_path / f"sshd{len(started)}"
        d.mkdir()
        _keygen("-t", "ed25519", "-N", "", "-f", str(d / "host"))
        lines = [f"HostKey {d / 'host'}"]
        if principals is not None:
            _keygen("-s", loopback_cluster["DC2_SLURM_SSH_HOST_CA_KEY"], "-I", "other", "-h",
                    "-n", principals, str(d / "host.pub"))
            lines.append(f"HostCertificate {d / 'host-cert.pub'}")
        port = _free_port()
        lines += [f"Port {port}", "ListenAddress 127.0.0.1", f"PidFile {d / 'pid'}", "UsePAM no",
                  "AuthorizedKeysFile none", "PasswordAuthentication no"]
        (d / "sshd_config").write_text("\n".join(lines) + "\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        started.append(subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e",
                                         "-f", str(d / "sshd_config")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return port
            time.sleep(0.1)
        raise AssertionError(f"sshd on port {port} did not start")

    yield start
    for p in started:
        p.terminate()
        p.wait(timeout=10)


def _sacct_ok(config: SSHConfig) -> None:
    with SSHTransport(config) as t:
        r = t.run(c.Command(("sacct", "-n", "-X", "-o", "JobID", "-S", "now-1minutes"), timeout=20))
        assert r.returncode == 0, r.err


def _refused(config: SSHConfig) -> str:
    with SSHTransport(config) as t, pytest.raises(TransportError) as e:
        t.run(c.Command(("true",), timeout=20))
    return str(e.value)


# -- the extra's validation (no cluster) ----------------------------------------------------------


def test_host_ca_line_forms() -> None:
    assert ca_known_hosts_line(CA, "[h]:2222") == f"@cert-authority [h]:2222 {CA}\n"
    assert ca_known_hosts_line(f"@cert-authority *.nersc.gov {CA} nersc", "h") == (
        f"@cert-authority *.nersc.gov {CA}\n")
    assert ca_known_hosts_line(f"*.nersc.gov {CA}", "h") == f"@cert-authority *.nersc.gov {CA}\n"
    assert ca_known_hosts_line(f"{CA} a comment", "h") == f"@cert-authority h {CA}\n"


@pytest.mark.parametrize("bad", ["", "ssh-ed25519", "*.nersc.gov ssh-ed25519", "ssh-ed25519 AAAAnotakey",
                                 "@cert-authority @revoked " + CA])
def test_bad_host_ca_is_refused_naming_the_extra(bad: str) -> None:
    with pytest.raises(ValueError, match="ssh: host_ca "):
        SSHConfig(host="h", username="u", key_file="k", host_ca=bad)


def test_host_ca_is_one_of_the_three_trust_forms() -> None:
    with pytest.raises(ValueError, match="exactly one of known_hosts or host_key or host_ca"):
        SSHConfig(host="h", username="u", key_file="k", host_ca=CA, host_key=CA)
    with pytest.raises(ValueError, match="host_ca must be a string"):
        SSHConfig(host="h", username="u", key_file="k", host_ca=["x"])  # type: ignore[arg-type]
    assert SSHConfig(host="h", username="u", key_file="k", host_ca=CA, port=2222).trusts_ca()


# -- against real sshds ---------------------------------------------------------------------------


@pytest.mark.cluster
def test_ca_known_hosts_file_connects_and_runs_a_job(
    ssh_config: SSHConfigFactory, loopback_cluster: dict[str, str]
) -> None:
    config = ssh_config(known_hosts=loopback_cluster["DC2_SLURM_SSH_CA_KNOWN_HOSTS"])
    assert config.trusts_ca()
    assert "@cert-authority" in Path(config.known_hosts or "").read_text()
    _sacct_ok(config)
    with SSHTransport(config) as t:
        client = SlurmClient(t, command_timeout=30)
        workdir = loopback_cluster["DC2_SLURM_WORKDIR"]
        jid = client.submit(SlurmJob(script="echo via-host-ca\n", name="dc2-hostca", time_limit="5",
                                     output=f"{workdir}/hostca.%j.out"))
        info = client.wait([jid], 60, interval=0.5)[jid]
        assert (info.state.base, info.outcome) == ("COMPLETED", Outcome.SUCCESS)
        assert client.read_log(f"{workdir}/hostca.{jid}.out")[0] == "via-host-ca\n"


@pytest.mark.cluster
def test_inline_host_ca_connects(ssh_config: SSHConfigFactory, loopback_cluster: dict[str, str]) -> None:
    ca = loopback_cluster["DC2_SLURM_SSH_HOST_CA"]
    _sacct_ok(ssh_config(known_hosts=None, host_ca=ca))  # pattern: [127.0.0.1]:port
    _sacct_ok(ssh_config(known_hosts=None, host_ca=f"@cert-authority 127.0.0.1 {ca} published"))


@pytest.mark.cluster
def test_another_ca_is_refused(ssh_config: SSHConfigFactory, loopback_cluster: dict[str, str]) -> None:
    msg = _refused(ssh_config(known_hosts=None, host_ca=CA))
    where = f"ssh {loopback_cluster['DC2_SLURM_SSH_USER']}@127.0.0.1:{loopback_cluster['DC2_SLURM_SSH_PORT']}"
    assert msg.startswith(f"{where}: cannot connect: the server's host key is not verified by the trusted "
                          "host CA (Host CA key is not trusted for host 127.0.0.1)"), msg


@pytest.mark.cluster
@pytest.mark.parametrize("form", ["inline", "file"])
def test_plain_host_key_is_refused(form: str, other_sshd: Callable[..., int], tmp_path: Path,
                                   ssh_config: SSHConfigFactory, loopback_cluster: dict[str, str]) -> None:
    port = other_sshd(None)
    ca = loopback_cluster["DC2_SLURM_SSH_HOST_CA"]
    trust: dict[str, object] = {"known_hosts": None, "host_ca": ca}
    if form == "file":
        (tmp_path / "kh").write_text(f"@cert-authority 127.0.0.1 {ca}\n")
        trust = {"known_hosts": str(tmp_path / "kh")}
    msg = _refused(ssh_config(port=port, **trust))
    assert (f"127.0.0.1:{port}: cannot connect: the server's host key is not verified by the "
            "trusted host CA") in msg
    assert "Host key is not trusted" in msg


@pytest.mark.cluster
@pytest.mark.parametrize("form", ["inline", "file"])
def test_certificate_for_another_host_is_refused(
    form: str, other_sshd: Callable[..., int], tmp_path: Path,
    ssh_config: SSHConfigFactory, loopback_cluster: dict[str, str],
) -> None:
    port = other_sshd("login.other.example")
    ca = loopback_cluster["DC2_SLURM_SSH_HOST_CA"]
    trust: dict[str, object] = {"known_hosts": None, "host_ca": f"127.0.0.1 {ca}"}
    if form == "file":
        (tmp_path / "kh").write_text(f"@cert-authority [127.0.0.1]:{port} {ca}\n")
        trust = {"known_hosts": str(tmp_path / "kh")}
    msg = _refused(ssh_config(port=port, **trust))
    assert "not verified by the trusted host CA" in msg
    assert "principal" in msg.lower(), msg


@pytest.mark.cluster
def test_the_same_sshd_certified_for_our_name_passes_key_exchange(
    other_sshd: Callable[..., int], ssh_config: SSHConfigFactory, loopback_cluster: dict[str, str]
) -> None:
    """The control for the two refusals above: the same kind of sshd, certified for 127.0.0.1, gets
    past the host check and fails only at login (it knows no user certificate authority)."""
    port = other_sshd("127.0.0.1")
    msg = _refused(ssh_config(port=port, known_hosts=None, host_ca=loopback_cluster["DC2_SLURM_SSH_HOST_CA"]))
    assert "cannot connect" in msg and "not verified" not in msg
