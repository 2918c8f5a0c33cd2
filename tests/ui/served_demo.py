"""`dc2 serve` itself as the system under test of the browser test.

Why `dc2 serve` and not tests/airflow/services.py: what a person runs (`make serve`) is what the
browser drives, with its real login (one simple-auth user and the password Airflow generated), and
the test also sees it stop every process it started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dc2tasks.service.netns import live_processes

# from ../shared/notes/airflow-local.md: what Debian's chromium needs headless, as root, offline
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


PAGE_TIMEOUT_MS = 60_000
"""How long a page action and an assertion on a page wait. Playwright's `expect` waits 5 s by default,
and on two cores busy with CI's other workers the UI took longer than that to fetch a task instance
and its log."""

HOST_LOG_PORTS = pytest.mark.xdist_group("host-log-ports")
"""For the tests that start Airflow's log servers on this machine's network (8793, 8794) and the
one that checks nothing does: on one pytest-xdist worker, one after another."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """What `dc2 serve` printed: where it listens, how to log in, which processes it started."""

    workdir: Path
    url: str
    user: str
    password: str
    group: int
    output: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    returncode: int | None = None
    leftover: list[int] = field(default_factory=list)

    def text(self) -> str:
        return self.output.read_text(errors="replace")


_URL = re.compile(r"Airflow is up after \d+ s: (http://127\.0\.0\.1:\d+)")
_USER = re.compile(r"^\s+user:\s+(\S+)$", re.M)
_PASSWORD = re.compile(r"^\s+password:\s+(\S+)$", re.M)
_GROUP = re.compile(r"^\s+process group (\d+)$", re.M)


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid` (standalone and every service it starts)."""
    return [pid for pid, (_, group) in live_processes().items() if group == pgid]


@contextmanager
def dc2_serve(workdir: Path, port: int, startup_timeout: float = 240,
              stop_signal: signal.Signals = signal.SIGINT) -> Iterator[Served]:
    """Run `dc2 serve` (the installed command) until it prints the login; stop it on exit with
    `stop_signal` (SIGINT is Ctrl-C; SIGTERM what a service manager sends) and record its exit code.
    Whatever it left running is killed by the process group it reported, so a failing test leaves
    nothing behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    output = workdir.parent / f"{workdir.name}-serve.out"
    dc2 = str(Path(sys.executable).with_name("dc2"))
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [dc2, "serve", "--workdir", str(workdir), "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    served: Served | None = None
    try:
        deadline = time.monotonic() + startup_timeout
        while served is None:
            text = output.read_text(errors="replace")
            if process.poll() is not None:
                raise AssertionError(f"dc2 serve exited {process.returncode} before it was up:\n"
                                     f"{text[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dc2 serve not up after {startup_timeout:.0f} s:\n{text[-4000:]}")
            url, user, password = _URL.search(text), _USER.search(text), _PASSWORD.search(text)
            group = _GROUP.search(text)
            if url and user and password and group and "Ctrl-C stops" in text:
                served = Served(workdir, url[1], user[1], password[1], int(group[1]), output, process)
            else:
                time.sleep(0.5)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(stop_signal)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if served is not None:
            served.returncode = process.returncode
            if members := group_members(served.group):
                served.leftover = members
                os.killpg(served.group, signal.SIGKILL)


def patient(page: Any, expect: Any) -> None:
    """Page actions and `expect` assertions wait PAGE_TIMEOUT_MS (the latter for this process)."""
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    expect.set_options(timeout=PAGE_TIMEOUT_MS)


class Steps:
    """Names each UI step; a failure inside one saves a screenshot and says where it is."""

    def __init__(self, page: Any, shots: Path) -> None:
        self.page = page
        self.shots = shots

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self.shots.mkdir(parents=True, exist_ok=True)
            shot = self.shots / f"{name.replace(' ', '_')}.png"
            try:
                self.page.screenshot(path=str(shot), full_page=True)
                where = f"screenshot: {shot}"
            except Exception as shot_error:
                where = f"no screenshot ({shot_error})"
            raise AssertionError(f"UI step '{name}' failed at {self.page.url}: {exc}\n{where}") from exc


def rest(base: str, path: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, None


def token(base: str, user: str, password: str) -> str:
    body = json.dumps({"username": user, "password": password}).encode()
    req = urllib.request.Request(base + "/auth/token", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(json.load(resp)["access_token"])
