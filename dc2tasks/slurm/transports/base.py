"""What a transport is (the protocols the Slurm client and the rerun listing drive), the errors
the transports share, and a command counter (to measure commands per poll)."""

from __future__ import annotations

import threading
from typing import Protocol

from dc2tasks.slurm.commands import Command, CommandResult


class Transport(Protocol):
    """Runs one argv (never a shell string) where Slurm is: here, in the emulator or over SSH."""

    user: str
    """The account the commands run as (the SSH login, or this process's user)."""

    def run(self, cmd: Command) -> CommandResult: ...


class AsyncTransport(Protocol):
    """The same for an event loop (the Airflow triggerer)."""

    user: str

    async def arun(self, cmd: Command) -> CommandResult: ...


class TransportError(RuntimeError):
    """The command could not be run (connection refused or lost, host key mismatch...)."""


class TransportTimeout(TransportError):
    """The command did not finish within its timeout."""


class CommandCounter:
    """Counts commands a transport ran: the benchmark and tests assert polls cost one command."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def tick(self) -> None:
        with self._lock:
            self.count += 1
