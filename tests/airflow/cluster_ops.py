"""Helpers for the cluster tests: sacct rows straight from Slurm, and an sshd restart."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "TimelimitRaw", "ReqMem", "Comment")


def sacct_rows(remote: Callable[..., str], name: str) -> list[dict[str, str]]:
    """Job and element lines (no steps) of every job with `name`, from sacct itself."""
    out = remote("sacct", "--noheader", "--parsable2", "--starttime=now-1days", f"--name={name}",
                 f"--format={','.join(ACCT_FIELDS)}")
    rows = [dict(zip(ACCT_FIELDS, line.split("|"), strict=True)) for line in out.splitlines() if line]
    return [r for r in rows if "." not in r["JobID"]]


def wait_sacct(remote: Callable[..., str], name: str, ok: Callable[[list[dict[str, str]]], bool],
               timeout: float = 150) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = sacct_rows(remote, name)
        if ok(rows):
            return rows
        assert time.monotonic() < deadline, f"sacct never showed what was expected for {name}: {rows}"
        time.sleep(0.5)


def netns_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def respawn_in_cluster(env: dict[str, str], name: str, argv: list[str]) -> int:
    """Start one of the cluster's daemons again, in its network namespace and its own session, as
    loopback_cluster.sh does; its pid goes to DIR/pids/<name>.pid so `loopback_cluster.sh stop`
    stops it."""
    directory = Path(env["DC2_LOOPBACK_DIR"])
    with open(directory / "log" / f"{name}.out", "ab") as log:
        p = subprocess.Popen(
            ["setsid", "nsenter", "-t", env["DC2_SLURM_NETNS_PID"], "-n", "--", *argv],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env={**os.environ, "SLURM_CONF": env["DC2_SLURM_CONF"]})
    (directory / "pids" / f"{name}.pid").write_text(f"{p.pid}\n")
    return p.pid


def restart_sshd(env: dict[str, str], down_s: float = 3.0) -> None:
    """Kill the cluster's sshd and every session it serves, wait, start it again (same config).

    The new pid replaces the old one in DIR/pids so loopback_cluster.sh stop still stops it."""
    directory = Path(env["DC2_LOOPBACK_DIR"])
    holder = int(env["DC2_SLURM_NETNS_PID"])
    target = netns_of(holder)
    pid_file = directory / "pids" / "sshd.pid"
    main = int(pid_file.read_text())
    os.killpg(main, signal.SIGTERM)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() == "sshd" and netns_of(int(proc.name)) == target:
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue
    time.sleep(down_s)
    respawn_in_cluster(env, "sshd", ["/usr/sbin/sshd", "-D", "-f", str(directory / "etc" / "sshd_config"),
                                     "-E", str(directory / "log" / "sshd.log")])
