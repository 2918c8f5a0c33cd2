"""dc2tasks.service.netns, what `dc2 serve` runs `airflow standalone` in: a server that binds every interface
inside is reachable only through the one forwarded 127.0.0.1 port, and a stop leaves no process.

Both ways in are run: `unshare --net` (root) and `unshare --user --map-root-user --net` (anyone, where
the kernel allows unprivileged user namespaces; root can use it too, so CI runs both)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from dc2tasks.service.netns import descendants, isolation_prefix, live_processes

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PREFIXES = {
    "netns": ["unshare", "--net"],
    "userns": ["unshare", "--user", "--map-root-user", "--net"],
}

# Inside: one HTTP server on every interface of two ports (as standalone's log servers), one
# process that leaves the group and session (setsid), then wait; its exit status is the helper's.
INNER = """
import subprocess, sys, time
a = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "0.0.0.0", sys.argv[1]])
b = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "::", sys.argv[2]])
subprocess.Popen(["setsid", "sleep", "1000"])
time.sleep(float(sys.argv[3]))
sys.exit(7)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def usable(prefix: list[str]) -> None:
    r = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        if CI:
            pytest.fail(f"CI: `{' '.join(prefix)} true` failed ({r.stderr.strip()}); CI runs as root")
        pytest.skip(f"`{' '.join(prefix)}` is not permitted here: {r.stderr.strip()}")


def start(prefix: list[str], port: int, inner_port: int, inner_port6: int, seconds: float,
          ) -> subprocess.Popen[bytes]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    try:
        return subprocess.Popen(
            [*prefix, sys.executable, "-m", "dc2tasks.service.netns", "--listen-fd", str(listener.fileno()),
             "--port", str(port), "--", sys.executable, "-c", INNER, str(port), str(inner_port6),
             str(seconds)],
            pass_fds=(listener.fileno(),), start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finally:
        listener.close()


def get(url: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize("way", sorted(PREFIXES))
def test_only_the_forwarded_port_is_reachable_and_a_stop_leaves_nothing(way: str) -> None:
    prefix = PREFIXES[way]
    usable(prefix)
    port, port6 = free_port(), free_port()
    helper = start(prefix, port, port, port6, seconds=600)
    try:
        # the inner server on 0.0.0.0:port answers through the forwarder on the host's 127.0.0.1
        assert get(f"http://127.0.0.1:{port}/") == 200
        # the one on [::]:port6 listens inside only: nothing here has that port open
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port6)) != 0
        inside = descendants(helper.pid)
        assert len(inside) >= 4  # python -c, two http.server, setsid sleep
    finally:
        helper.send_signal(signal.SIGTERM)
        out = helper.communicate(timeout=60)[0].decode(errors="replace")
    # the command was killed by the SIGTERM the helper passed on, and nothing it started is left
    assert helper.returncode == 128 + signal.SIGTERM, out
    left = sorted(set(inside) & set(live_processes()))
    assert left == [], f"left running: {left}\n{out}"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_commands_own_exit_ends_the_helper_with_its_status() -> None:
    prefix, why_not = isolation_prefix()
    if prefix is None:
        usable(PREFIXES["netns"] if os.geteuid() == 0 else PREFIXES["userns"])
        pytest.fail(f"isolation_prefix() refused although unshare works: {why_not}")
    port, port6 = free_port(), free_port()
    helper = start(prefix, port, port, port6, seconds=3)
    out = helper.communicate(timeout=90)[0].decode(errors="replace")
    assert helper.returncode == 7, out
    assert "exited 7; stopping what it left" in out
