"""Transports that run commands on this machine."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from dc2tasks.slurm.commands import Command, CommandResult
from dc2tasks.slurm.localslurm.emulator import Emulator
from dc2tasks.slurm.owner import account_name
from dc2tasks.slurm.transports.base import CommandCounter, TransportError, TransportTimeout

SLURM_COMMANDS = frozenset({"sbatch", "sacct", "squeue", "scontrol", "scancel"})


class SubprocessTransport:
    """Run argv directly (no shell) on this machine, with a timeout."""

    def __init__(self, cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.env = env
        self.counter = CommandCounter()
        self.user = account_name(os.geteuid())

    def run(self, cmd: Command) -> CommandResult:
        self.counter.tick()
        try:
            p = subprocess.run(
                cmd.argv, input=cmd.stdin if cmd.stdin is not None else b"", capture_output=True,
                timeout=cmd.timeout, cwd=self.cwd, env=self.env, check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise TransportTimeout(f"{cmd.argv[0]} did not finish within {cmd.timeout} s") from e
        except OSError as e:
            raise TransportError(f"cannot run {cmd.argv[0]}: {e}") from e
        return CommandResult(p.returncode, p.stdout, p.stderr)

    async def arun(self, cmd: Command) -> CommandResult:
        return await asyncio.to_thread(self.run, cmd)


class LocalTransport(SubprocessTransport):
    """No Slurm: sbatch/sacct/squeue/scontrol/scancel are served by the local emulator, whose state
    (job ids, element states, supervisors) lives in `state_dir` so separate processes share it.
    Other commands (dd, tail for logs) run as ordinary subprocesses."""

    def __init__(self, state_dir: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None) -> None:
        super().__init__(cwd=cwd)
        self.emulator = Emulator(Path(state_dir), cwd=Path(cwd) if cwd else None)

    def run(self, cmd: Command) -> CommandResult:
        if cmd.argv and cmd.argv[0] in SLURM_COMMANDS:
            self.counter.tick()
            code, out, err = self.emulator.run(list(cmd.argv), cmd.stdin or b"")
            return CommandResult(code, out.encode(), err.encode())
        if cmd.argv and cmd.argv[0] in ("dd", "stat"):
            self.counter.tick()
            return _read_file(cmd.argv, self.cwd)
        return super().run(cmd)


def _read_file(argv: tuple[str, ...], cwd: str | os.PathLike[str] | None) -> CommandResult:
    """The log readers of `commands` (GNU dd byte ranges with nofollow, `stat --format=%s`) done in
    Python, so the local backend also works where dd and stat lack GNU flags (macOS). Like them,
    it never follows a symbolic link: the open is O_NOFOLLOW, the size an lstat."""
    path = argv[-1] if argv[0] == "stat" else dict(a.split("=", 1) for a in argv[1:])["if"]
    full = Path(cwd or ".", path)
    try:
        if argv[0] == "stat":
            return CommandResult(0, f"{os.lstat(full).st_size}\n".encode(), b"")
        opts = dict(a.split("=", 1) for a in argv[1:])
        if "nofollow" not in opts["iflag"].split(","):
            raise ValueError(f"dd: the local backend reads logs with iflag=nofollow only: {argv}")
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            f.seek(int(opts["skip"]))
            return CommandResult(0, f.read(int(opts["count"])), b"")
    except OSError as e:
        return CommandResult(1, b"", f"{argv[0]}: {path}: {e.strerror}\n".encode())
