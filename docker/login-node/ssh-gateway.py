"""The login node's only way in from Airflow: TCP port 22, forwarded to the login node's sshd.

Why: the Airflow containers that submit jobs must reach sshd and nothing else of the login node
(slurmctld, slurmd and slurmdbd listen on every interface of the container, with no setting to
bind them to one address). So the login node is alone on an internal network with this gateway,
and the Airflow services reach only this gateway's port 22 (as `login-node`, on their own network).
Runs with the login-node image's Python, which has dc2tasks (dc2tasks.service.netns.forward).

    python dc2-ssh-gateway --listen HOST:PORT --to HOST:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket

from dc2tasks.service.netns import forward


def address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


async def serve(listen: tuple[str, int], to: tuple[str, int]) -> None:
    listener = socket.create_server(listen, reuse_port=False)
    listener.setblocking(False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ssh-gateway: {listen[0]}:{listen[1]} -> {to[0]}:{to[1]}", flush=True)
    await forward(listener, to[1], stop, host=to[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dc2-ssh-gateway", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=address, required=True, help="HOST:PORT to accept on")
    parser.add_argument("--to", type=address, required=True, help="HOST:PORT of the login node's sshd")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, args.to))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
