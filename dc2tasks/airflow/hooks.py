"""Airflow connection -> a `dc2tasks.slurm` transport, and the certificate preflight.

Why a plain settings object (`SlurmBackend`) between the connection and the transport: the worker
reads the connection through the Task SDK (blocking), the triggerer through its async API; both end
up with the same frozen settings, which also key the shared poller (one SSH connection per cluster).

Connection forms:
- `conn_type` `ssh` (the SSH provider's form): host, port, login, extra `key_file` (its
  `<key_file>-cert.pub` certificate is used when present), `host_key` (pinned), `host_ca` (a
  trusted host CA: NERSC's published `@cert-authority *.nersc.gov ssh-rsa ...` line as is, or just
  its key; the login node must then present a host certificate signed by it) or `known_hosts`
  (a file, which may hold `@cert-authority` lines), `conn_timeout` (connect) and `cmd_timeout`
  (every remote command). Turning host key checking off (`no_host_key_check`) is refused.
- `conn_type` `dc2_local` (or no connection at all): the local Slurm emulator, state in extra
  `state_dir` (default `$DC2_LOCAL_SLURM_DIR`, else `$AIRFLOW_HOME/dc2-local-slurm`).

The job token (`dc2tasks.slurm.owner`: the secret that signs each job's comment, so a retry only
ever reattaches to or adopts jobs this deployment submitted) comes from the connection's extra
`job_token`, else the Airflow Variable `dc2_job_token`; never from DAG code or a run file, which
every DAG author and reader sees. Without either, an ssh connection is refused when a task looks
up or submits a job (the error names both places). The local emulator instead makes one on first
use, `$AIRFLOW_HOME/dc2-job-token` (mode 0600): `make demo` and `dag.test()` need no set-up, and
the local backend runs the same signed-comment code as a cluster.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook, Variable
from airflow.sdk.exceptions import AirflowFailException

from dc2tasks.private import NotPrivateError, read_private, write_private
from dc2tasks.slurm import AsyncSlurmClient, Owner, SlurmClient
from dc2tasks.slurm.commands import DEFAULT_TIMEOUT
from dc2tasks.slurm.owner import MIN_TOKEN_CHARS, account_name
from dc2tasks.slurm.transports import LocalTransport
from dc2tasks.slurm.transports.ssh import SSHConfig, SSHTransport, certificate_valid_before

LOCAL_CONN_TYPE = "dc2_local"
TOKEN_EXTRA = "job_token"
TOKEN_VARIABLE = "dc2_job_token"
LOCAL_TOKEN_FILE = "dc2-job-token"


@dataclass(frozen=True)
class SlurmBackend:
    """Where Slurm is and how to reach it: the resolved content of a connection."""

    kind: str  # "ssh" or "local"
    command_timeout: float = DEFAULT_TIMEOUT
    ssh: SSHConfig | None = None
    local_dir: str | None = None

    @property
    def remote_user(self) -> str:
        """The account jobs are submitted as, and the only one whose jobs are acted on."""
        return self.ssh.username if self.ssh else account_name(os.geteuid())


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow")))


def default_local_dir() -> str:
    explicit = os.environ.get("DC2_LOCAL_SLURM_DIR")
    if explicit:
        return explicit
    return str(airflow_home() / "dc2-local-slurm")


def local_job_token(path: Path | None = None) -> str:
    """The local backend's job token: made once (0600, created whole or not at all, so two tasks
    starting together agree on it), then read back. Refused when another account could read or
    replace it."""
    path = path or airflow_home() / LOCAL_TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, secrets.token_hex(32) + "\n", replace=False)  # another task's first one wins
    try:
        token = read_private(path).strip()
    except OSError as e:
        raise AirflowFailException(f"job token file {path}: cannot open it ({e.strerror})") from None
    except NotPrivateError as e:
        raise AirflowFailException(f"job token file {path}: {e}; remove it to make a new one") from None
    if len(token) < MIN_TOKEN_CHARS:
        raise AirflowFailException(f"job token file {path}: too short; remove it to make a new one")
    return token


def _float(conn_id: str, extra: dict[str, Any], key: str, default: float) -> float:
    value = extra.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"connection {conn_id!r}: extra {key!r} must be a number, got {value!r}") from None


def backend_from_connection(conn: Any) -> SlurmBackend:
    """Build settings from an Airflow `Connection`; errors name the connection and the field."""
    conn_id = conn.conn_id
    extra: dict[str, Any] = dict(conn.extra_dejson or {})
    timeout = _float(conn_id, extra, "cmd_timeout", DEFAULT_TIMEOUT)
    if conn.conn_type == LOCAL_CONN_TYPE:
        return SlurmBackend("local", timeout, local_dir=str(extra.get("state_dir") or default_local_dir()))
    if conn.conn_type != "ssh":
        raise ValueError(f"connection {conn_id!r}: conn_type {conn.conn_type!r} is not 'ssh' or "
                         f"{LOCAL_CONN_TYPE!r}")
    if str(extra.get("no_host_key_check", "false")).lower() == "true":
        raise ValueError(f"connection {conn_id!r}: no_host_key_check is refused; set extra 'host_key' "
                         "or 'host_ca'")
    required = (("host", conn.host), ("login", conn.login), ("extra key_file", extra.get("key_file")))
    for field, value in required:
        if not value:
            raise ValueError(f"connection {conn_id!r}: {field} is required")
    try:
        config = SSHConfig(
            host=conn.host, port=int(conn.port or 22), username=conn.login, key_file=str(extra["key_file"]),
            host_key=extra.get("host_key"), known_hosts=extra.get("known_hosts"),
            host_ca=extra.get("host_ca"),
            connect_timeout=_float(conn_id, extra, "conn_timeout", 20.0),
        )
    except ValueError as e:
        raise ValueError(f"connection {conn_id!r}: {e}") from None
    return SlurmBackend("ssh", timeout, ssh=config)


def local_backend() -> SlurmBackend:
    return SlurmBackend("local", local_dir=default_local_dir())


def make_transport(backend: SlurmBackend) -> LocalTransport | SSHTransport:
    if backend.kind == "local":
        assert backend.local_dir is not None
        Path(backend.local_dir).mkdir(parents=True, exist_ok=True)
        return LocalTransport(backend.local_dir, cwd=backend.local_dir)
    assert backend.ssh is not None
    return SSHTransport(backend.ssh)


def check_certificate(backend: SlurmBackend, warn_hours: float, now: datetime | None = None) -> str | None:
    """Fail when the login certificate has expired; return a warning when it expires within
    `warn_hours` (NERSC sshproxy certificates last 24 h: a run must not die half-way)."""
    if backend.ssh is None:
        return None
    valid_before = certificate_valid_before(backend.ssh.key_file)
    if valid_before is None:
        return None
    now = now or datetime.now(UTC)
    left = valid_before - now
    cert = f"{backend.ssh.key_file}-cert.pub"
    if left <= timedelta(0):
        raise AirflowFailException(f"SSH certificate {cert} expired at {valid_before:%Y-%m-%d %H:%M} UTC; "
                                   "renew it (e.g. sshproxy) and clear the task")
    if left < timedelta(hours=warn_hours):
        return (f"SSH certificate {cert} expires in {left.total_seconds() / 3600:.1f} h "
                f"({valid_before:%Y-%m-%d %H:%M} UTC), less than {warn_hours:g} h")
    return None


def configured_token(conn_id: str | None, extra: dict[str, Any]) -> str | None:
    """The job token of a connection's extra, else of the Airflow Variable; None if neither."""
    token = extra.get(TOKEN_EXTRA) if conn_id else None
    where = f"connection {conn_id!r} extra {TOKEN_EXTRA!r}"
    if not token:
        token = Variable.get(TOKEN_VARIABLE, default=None)
        where = f"Airflow Variable {TOKEN_VARIABLE!r}"
    if not token:
        return None
    if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN_CHARS:
        raise AirflowFailException(f"{where}: the job token must be a secret string of at least "
                                   f"{MIN_TOKEN_CHARS} characters")
    return token.strip()


def missing_token_message(conn_id: str | None) -> str:
    return (f"no job token for Slurm connection {conn_id!r}: set its extra {TOKEN_EXTRA!r}, or the "
            f"Airflow Variable {TOKEN_VARIABLE!r}, to a random secret (e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`). It signs each job's comment "
            "so that a retry never reattaches to, or adopts, a job this deployment did not submit.")


class SlurmHook(BaseHook):
    """Blocking access for the worker: `owner()`, `client()` and `preflight()`."""

    conn_name_attr = "slurm_conn_id"
    hook_name = "dc2 Slurm"

    def __init__(self, slurm_conn_id: str | None = None) -> None:
        super().__init__()
        self.slurm_conn_id = slurm_conn_id
        self._transport: LocalTransport | SSHTransport | None = None
        self._backend: SlurmBackend | None = None
        self._extra: dict[str, Any] = {}

    @property
    def backend(self) -> SlurmBackend:
        if self._backend is None:
            if self.slurm_conn_id:
                conn = self.get_connection(self.slurm_conn_id)
                self._extra = dict(conn.extra_dejson or {})
                self._backend = backend_from_connection(conn)
            else:
                self._backend = local_backend()
        return self._backend

    def owner(self) -> Owner:
        """Whose jobs this deployment acts on: the backend's account, and the job token."""
        backend = self.backend
        token = configured_token(self.slurm_conn_id, self._extra)
        if token is None and backend.kind == "local":
            token = local_job_token()
        if token is None:
            raise AirflowFailException(missing_token_message(self.slurm_conn_id))
        return Owner(backend.remote_user, token)

    def client(self, owner: Owner | None = None) -> SlurmClient:
        """A client for `owner` (lookups by name need one with the token); by default one that
        checks the account only, enough for status by id, cancel and plain commands."""
        if self._transport is None:
            self._transport = make_transport(self.backend)
        return SlurmClient(self._transport, command_timeout=self.backend.command_timeout,
                           owner=owner or Owner(self.backend.remote_user))

    def preflight(self, warn_hours: float) -> None:
        warning = check_certificate(self.backend, warn_hours)
        if warning:
            self.log.warning("%s", warning)

    def close(self) -> None:
        if isinstance(self._transport, SSHTransport):
            self._transport.close()
        self._transport = None


async def abackend(slurm_conn_id: str | None) -> SlurmBackend:
    """The triggerer's way to read the connection (never block its event loop)."""
    if not slurm_conn_id:
        return local_backend()
    return backend_from_connection(await BaseHook.aget_connection(slurm_conn_id))


def async_client(transport: LocalTransport | SSHTransport, backend: SlurmBackend) -> AsyncSlurmClient:
    return AsyncSlurmClient(transport, command_timeout=backend.command_timeout)
