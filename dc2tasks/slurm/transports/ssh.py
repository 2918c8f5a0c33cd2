"""SSH transport: Slurm commands on a login node over ONE shared connection (asyncssh).

Why this shape:
- One connection, owned by a private event-loop thread, serves both blocking callers (`run`) and
  coroutines on any other loop (`arun`): a triggerer polling hundreds of jobs pays one SSH
  handshake, not one per task.
- Host key checking stays on: a pinned key (`host_key`), a trusted host CA (`host_ca`) or a
  known_hosts file is required. NERSC signs its login nodes' host keys with an SSH CA and publishes
  one `@cert-authority *.nersc.gov ...` line: with a CA, the server must present a host certificate
  signed by it whose principals name the host we dial; a plain host key is refused.
- `<key>-cert.pub` next to the key is used when present (NERSC sshproxy issues such certificates);
  `certificate_valid_before` lets a preflight warn before it expires.
- Every command has a timeout. A lost connection is re-established once and the command retried,
  except sbatch: re-running it could submit twice, so its failure is reported and the caller looks
  the job up by name instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh

from dc2tasks.slurm.commands import Command, CommandResult
from dc2tasks.slurm.transports.base import CommandCounter, TransportError, TransportTimeout

NOT_RETRIED = frozenset({"sbatch"})


@dataclass(frozen=True)
class SSHConfig:
    host: str
    username: str
    key_file: str
    port: int = 22
    known_hosts: str | None = None
    """Path to a known_hosts file that lists the login node's key."""
    host_key: str | None = None
    """The login node's public key, `ssh-ed25519 AAAA...` (pinned; an alternative to known_hosts)."""
    host_ca: str | None = None
    """A trusted host CA: `[@cert-authority] [PATTERN] KEYTYPE BASE64 [comment]` (NERSC's published
    line as is); PATTERN defaults to the host (`[host]:port` off port 22)."""
    connect_timeout: float = 20.0
    keepalive_interval: float = 30.0

    def __post_init__(self) -> None:
        given = [v for v in (self.known_hosts, self.host_key, self.host_ca) if v is not None]
        if len(given) != 1:
            raise ValueError("ssh: give exactly one of known_hosts or host_key or host_ca "
                             "(host keys are checked)")
        if self.host_ca is not None:
            if not isinstance(self.host_ca, str):
                raise ValueError(f"ssh: host_ca must be a string, got {self.host_ca!r}")
            ca_known_hosts_line(self.host_ca, self.host_pattern)

    @property
    def host_pattern(self) -> str:
        """The host as known_hosts names it: `[host]:port` off the default port."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def known_hosts_data(self) -> str | asyncssh.SSHKnownHosts:
        """What asyncssh checks the server's host key against."""
        if self.host_key is not None:
            return asyncssh.import_known_hosts(f"{self.host_pattern} {self.host_key}\n")
        if self.host_ca is not None:
            return asyncssh.import_known_hosts(ca_known_hosts_line(self.host_ca, self.host_pattern))
        assert self.known_hosts is not None
        return self.known_hosts

    def trusts_ca(self) -> bool:
        """Whether a host CA is trusted for this host (then certificates are checked, not keys)."""
        if self.host_ca is not None:
            return True
        if self.host_key is not None:
            return False
        assert self.known_hosts is not None
        port = None if self.port == 22 else self.port
        return bool(asyncssh.read_known_hosts(self.known_hosts).match(self.host, "", port)[1])

    @property
    def cert_file(self) -> Path | None:
        cert = Path(f"{self.key_file}-cert.pub")
        return cert if cert.exists() else None


def ca_known_hosts_line(host_ca: str, default_pattern: str) -> str:
    """The `@cert-authority` known_hosts line for `host_ca`; ValueError naming `host_ca` if bad."""
    words = host_ca.split()
    if words[:1] == ["@cert-authority"]:
        words = words[1:]
    pattern = default_pattern
    if len(words) >= 3 and not words[1].startswith("AAAA"):  # every key's base64 starts AAAA
        pattern, words = words[0], words[1:]
    if len(words) < 2 or pattern.startswith("@"):
        raise ValueError(f"ssh: host_ca must be '[@cert-authority] [PATTERN] KEYTYPE BASE64', "
                         f"got {host_ca!r}")
    try:
        asyncssh.import_public_key(f"{words[0]} {words[1]}")
    except (asyncssh.KeyImportError, ValueError) as e:
        raise ValueError(f"ssh: host_ca is not an SSH public key ({e}): {host_ca!r}") from None
    return f"@cert-authority {pattern} {words[0]} {words[1]}\n"


def certificate_valid_before(key_file: str) -> datetime | None:
    """Expiry of `<key_file>-cert.pub`, or None when there is no certificate."""
    cert = Path(f"{key_file}-cert.pub")
    if not cert.exists():
        return None
    parsed = asyncssh.read_certificate(str(cert))
    # asyncssh parses the validity window but keeps it in a private attribute (2.24).
    valid_before = int(getattr(parsed, "valid_before", None) or parsed._valid_before)
    return datetime.fromtimestamp(min(valid_before, 2**62 // 10**6), tz=UTC)


class SSHTransport:
    def __init__(self, config: SSHConfig) -> None:
        self.config = config
        self.user = config.username
        self.counter = CommandCounter()
        self.connects = 0
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock: asyncio.Lock | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dc2-ssh", daemon=True)
        self._thread.start()

    # -- public -----------------------------------------------------------------------------------

    def run(self, cmd: Command) -> CommandResult:
        return self._submit(cmd).result()

    async def arun(self, cmd: Command) -> CommandResult:
        return await asyncio.wrap_future(self._submit(cmd))

    def close(self) -> None:
        """Close the connection and stop the loop thread."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> SSHTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- on the private loop ----------------------------------------------------------------------

    def _submit(self, cmd: Command) -> Future[CommandResult]:
        if self._loop.is_closed():
            raise TransportError("ssh transport is closed")
        return asyncio.run_coroutine_threadsafe(self._run(cmd), self._loop)

    async def _connect(self) -> asyncssh.SSHClientConnection:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            c = self.config
            key = asyncssh.read_private_key(c.key_file)
            keys = [(key, asyncssh.read_certificate(str(c.cert_file)))] if c.cert_file else [key]
            try:
                # in an empty context: the connection's own callbacks (and what asyncssh logs from
                # them) serve every later caller, and would otherwise carry the context of the one
                # that connected, which a log router may key on (Airflow's triggerer: `trigger_id`)
                self._conn = await asyncio.get_running_loop().create_task(
                    self._open(keys), context=contextvars.Context())
            except asyncssh.HostKeyNotVerifiable as e:
                trust = "host CA" if c.trusts_ca() else "pinned host key"
                raise TransportError(
                    f"ssh {c.username}@{c.host}:{c.port}: cannot connect: the server's host key is not "
                    f"verified by the trusted {trust} ({e.reason})") from e
            except (OSError, asyncssh.Error) as e:
                raise TransportError(f"ssh {c.username}@{c.host}:{c.port}: cannot connect: {e}") from e
            self.connects += 1
            return self._conn

    async def _open(self, keys: list[Any]) -> asyncssh.SSHClientConnection:
        c = self.config
        # With a CA trusted, asyncssh would offer only certificate algorithms, and a server with a
        # plain key would fail key exchange with "no matching host key type". Offering the default
        # list (certificates first) lets a plain key arrive and be refused by name.
        return await asyncssh.connect(
            c.host, port=c.port, username=c.username, client_keys=keys,
            known_hosts=c.known_hosts_data(), server_host_key_algs="default" if c.trusts_ca() else (),
            agent_path=None, config=(), connect_timeout=c.connect_timeout,
            keepalive_interval=c.keepalive_interval, password=None, kbdint_auth=False,
        )

    async def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None

    async def _run(self, cmd: Command) -> CommandResult:
        self.counter.tick()
        attempts = 1 if cmd.argv[0] in NOT_RETRIED else 2
        for attempt in range(attempts):
            conn = await self._connect()
            try:
                p = await conn.run(cmd.shell(), input=cmd.stdin, encoding=None, check=False,
                                   timeout=cmd.timeout)
            except asyncssh.TimeoutError as e:
                raise TransportTimeout(f"{cmd.argv[0]} did not finish within {cmd.timeout} s") from e
            except (OSError, asyncssh.Error) as e:  # connection lost (sshd restarted, network)
                await self._disconnect()
                if attempt + 1 == attempts:
                    raise TransportError(f"ssh: {cmd.argv[0]} failed: {e}") from e
                continue
            code = p.exit_status if p.exit_status is not None else 255
            return CommandResult(code, bytes(p.stdout or b""), bytes(p.stderr or b""))
        raise AssertionError("unreachable")
