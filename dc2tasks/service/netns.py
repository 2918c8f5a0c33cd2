"""Run a command in a private network namespace, reachable only through one loopback port.

Why: `airflow standalone` starts two log servers that listen on every interface (8793, 8794) and
has no setting to change that. Inside a namespace of its own, "every interface" is that namespace's
loopback alone. The one port a person needs, the UI's, is forwarded from a socket the caller
opened on the host's 127.0.0.1 before the namespace was made: a socket keeps the namespace it was
created in, so the forwarder inside accepts host connections and dials 127.0.0.1 inside.

`python -m dc2tasks.service.netns --listen-fd FD --port PORT -- COMMAND...` is what runs inside (started
by `unshare`, see `isolation_prefix`). It brings up the namespace's loopback, starts COMMAND,
forwards, and on SIGTERM/SIGINT (or when its parent dies) stops COMMAND and every process under it,
reaping them itself (it is their subreaper), then exits with COMMAND's status (128 + N when
signal N ended it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import time

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_GRACE_S = 30.0


def isolation_prefix() -> tuple[list[str] | None, str]:
    """The `unshare` argv that gives a command its own network namespace here, or None and why not.

    Root makes one directly; anyone else through a user namespace of their own (where the kernel
    allows unprivileged user namespaces)."""
    prefix = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--net"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return None, "`unshare` (util-linux) is not installed"
    except subprocess.TimeoutExpired:
        return None, f"`{' '.join(prefix)} true` did not finish in 30 s"
    if probe.returncode != 0:
        return None, f"`{' '.join(prefix)} true` failed: {probe.stderr.strip() or probe.returncode}"
    return prefix, ""


def loopback_up() -> None:
    """`ip link set lo up`, without needing iproute2: a new namespace's loopback starts down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value})")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def forward(listener: socket.socket, port: int, stop: asyncio.Event, host: str = "127.0.0.1") -> None:
    """Each connection accepted on `listener` is joined to a new one to `host`:`port` (the
    namespace's own loopback here; the compose file's SSH gateway dials the login node with it)."""

    async def joined(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            inner_r, inner_w = await asyncio.open_connection(host, port)
        except OSError:  # not listening yet: the client sees the connection closed, as with no server
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, inner_w), _pipe(inner_r, client_w))

    server = await asyncio.start_server(joined, sock=listener)
    async with server:
        await stop.wait()


def _reap_all(command: subprocess.Popen[bytes], deadline: float) -> None:
    """Wait for every descendant (orphans come to us: we are their subreaper), until `deadline`;
    COMMAND's status lands in `command.returncode`."""
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == command.pid:
            command.returncode = os.waitstatus_to_exitcode(raw)
        elif pid == 0:
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)


def _signal_descendants(sig: signal.Signals) -> None:
    """`sig` to every process under us, wherever its group or session (orphans are ours too)."""
    for pid in descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def live_processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process that is not a zombie (from /proc)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table


def descendants(root: int) -> list[int]:
    """Every live descendant of `root`."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in live_processes().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dc2tasks.service.netns", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen-fd", type=int, required=True, help="listening socket opened outside")
    parser.add_argument("--port", type=int, required=True, help="the port to dial inside")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args(argv)
    command_argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command_argv:
        parser.error("no COMMAND after --")
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    loopback_up()
    listener = socket.socket(fileno=args.listen_fd)
    listener.setblocking(False)
    command = subprocess.Popen(command_argv)
    status = asyncio.run(_serve(listener, args.port, command))
    if status is None:
        return 1
    return status if status >= 0 else 128 - status  # killed by a signal: as a shell reports it


async def _serve(listener: socket.socket, port: int, command: subprocess.Popen[bytes]) -> int | None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    forwarding = asyncio.create_task(forward(listener, port, stop))
    while not stop.is_set() and command.poll() is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)
    stop.set()
    await forwarding
    if command.poll() is not None:
        print(f"netns: {command.args[0]} exited {command.returncode}; stopping what it left", file=sys.stderr)
    _signal_descendants(signal.SIGTERM)
    await asyncio.to_thread(_reap_all, command, time.monotonic() + STOP_GRACE_S)
    if descendants(os.getpid()):
        print(f"netns: processes left after {STOP_GRACE_S:.0f} s; killing them", file=sys.stderr)
        _signal_descendants(signal.SIGKILL)
        await asyncio.to_thread(_reap_all, command, time.monotonic() + 10)
    return command.returncode


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            print(f"netns: not permitted here: {exc}", file=sys.stderr)
            sys.exit(1)
        raise
