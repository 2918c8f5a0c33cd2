"""`airflow standalone` as `dc2 serve` runs it: one process group (in a private network namespace
unless told otherwise), health-checked through the forwarded port, its output copied to a log with
the UI password taken out, and stopped with everything it started.

Why a process group and a log copier: standalone starts api-server, scheduler, dag-processor,
triggerer and two log servers as children, and prints a generated password when it makes one; a
stop must reach all of them, and no password may reach a file others could be shown.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from dc2tasks.private import PRIVATE_UMASK
from dc2tasks.service import netns
from dc2tasks.service.airflow_env import airflow_command

HEALTHY = ("metadatabase", "scheduler", "triggerer", "dag_processor")
REDACTED = "<password redacted by dc2 serve>"
# what the simple auth manager prints when it generates a password (it must not: ours is there)
_GENERATED = re.compile(rb"(Password for user '[^']*': )\S+")


class ServeError(RuntimeError):
    """A service that did not start or become healthy; the message says which and where its log is."""


class Standalone:
    """`airflow standalone` in its own session (and network namespace unless `isolate` is None);
    its output, less the password, in AIRFLOW_HOME/services/standalone.log."""

    def __init__(self, env: dict[str, str], port: int, isolate: list[str] | None, password: str) -> None:
        self.env = env
        self.port = port
        self.isolate = isolate
        self.password = password
        self.home = Path(env["AIRFLOW_HOME"])
        self.logs = self.home / "services"
        self.log = self.logs / "standalone.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.copier: threading.Thread | None = None
        self.airflow = airflow_command()

    def start(self) -> None:
        self.logs.mkdir(mode=0o700, exist_ok=True)
        # standalone starts each service as `airflow ...` from PATH: this environment's first
        env = dict(self.env, PATH=os.pathsep.join([str(Path(self.airflow).parent), self.env.get("PATH", "")]))
        argv = [self.airflow, "standalone"]
        pass_fds: tuple[int, ...] = ()
        listener = None
        if self.isolate is not None:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            pass_fds = (listener.fileno(),)
            argv = [*self.isolate, sys.executable, "-m", netns.__name__,
                    "--listen-fd", str(listener.fileno()), "--port", str(self.port), "--", *argv]
        try:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                pass_fds=pass_fds, start_new_session=True, umask=PRIVATE_UMASK,
            )
        finally:
            if listener is not None:
                listener.close()  # the namespace's forwarder holds it now
        assert self.proc.stdout is not None
        self.copier = threading.Thread(target=copy_redacted, args=(self.proc.stdout, self.log, self.password),
                                       name="standalone-log", daemon=True)
        self.copier.start()

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.exited():
                assert self.proc is not None
                raise ServeError(f"airflow standalone exited {self.proc.returncode}; see {self.log}:\n"
                                 + log_tail(self.log))
            try:
                url = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
                with urllib.request.urlopen(url, timeout=5) as resp:
                    health = json.load(resp)
                last = json.dumps(health)
                if all(health.get(c, {}).get("status") == "healthy" for c in HEALTHY):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
                last = str(exc)
            time.sleep(1)
        raise ServeError(
            f"Airflow was not healthy after {timeout:.0f} s (last: {last}); its log: {self.log}"
        )

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to the group (every service shuts down in parallel; in a namespace, its first
        process also waits for and reaps them), then SIGKILL whatever is left in the group."""
        if self.proc is None:
            return
        _signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 30
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal_group(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        # SIGKILL is delivered, not yet acted on: wait until the group is empty before saying so
        deadline = time.monotonic() + 10
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.copier is not None:
            self.copier.join(timeout=10)  # every writer is gone: the copier reads to the end


def copy_redacted(source: IO[bytes], log: Path, password: str) -> None:
    """Standalone's output, line by line, into `log` (0600, appended), with the password, and any
    password the simple auth manager says it generated, replaced by a marker."""
    secret = password.encode()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # one an earlier version left wider
    with os.fdopen(fd, "ab") as out, source:
        for line in iter(source.readline, b""):
            line = _GENERATED.sub(rb"\1" + REDACTED.encode(), line.replace(secret, REDACTED.encode()))
            out.write(line)
            out.flush()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
