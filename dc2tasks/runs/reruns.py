"""Which reruns a repository has, and which of them were already handed to processing.

The watcher DAG lists `<repo>/rerun/*` that hold a `repositoryCfg.yaml` (what makes a directory a
Gen2 rerun), locally or through a command runner (the Slurm transports: local subprocess or SSH),
and asks the store which (run, rerun) pairs are new. The store is a JSON file replaced atomically
under a lock, so a rerun is handed out once even when two watcher runs overlap, and is still
remembered after a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError
from dc2tasks.runs.config import RERUN_RE
from dc2tasks.slurm.commands import Command, CommandResult

log = logging.getLogger(__name__)
REPOSITORY_CFG = "repositoryCfg.yaml"


class CommandRunner(Protocol):
    """What the Slurm transports offer: run one argv (never a shell string) and return its result."""

    def run(self, cmd: Command) -> CommandResult: ...


@dataclass(frozen=True)
class RerunListing:
    reruns: list[str]
    skipped: list[str] = field(default_factory=list)  # directories whose names we will not pass on


def _is_rerun_name(name: str) -> bool:
    return bool(RERUN_RE.fullmatch(name)) and name not in (".", "..")


def _split(names: Iterable[str]) -> RerunListing:
    good, bad = [], []
    for name in sorted(set(names)):
        (good if _is_rerun_name(name) else bad).append(name)
    for name in bad:
        log.warning("rerun %r skipped: its name has characters a rerun name may not have", name)
    return RerunListing(good, bad)


def list_reruns(repository: str | os.PathLike[str], runner: CommandRunner | None = None) -> RerunListing:
    """Reruns of a Gen2 repository, sorted; with `runner`, listed where the runner runs commands.

    A repository without a `rerun` directory has no reruns; a repository that does not exist is an
    error (a typo in the run file must not look like "nothing new").
    """
    repo = os.fspath(repository)
    if runner is None:
        root = Path(repo)
        if not root.is_dir():
            raise InputError(f"{repo}: repository not found (not a directory)")
        rerun_dir = root / "rerun"
        if not rerun_dir.is_dir():
            return RerunListing([])
        return _split(p.name for p in rerun_dir.iterdir() if (p / REPOSITORY_CFG).is_file())
    if not os.path.isabs(repo) or "\n" in repo:
        raise InputError(f"{repo}: a remote repository path must be absolute")
    rerun_dir = repo.rstrip("/") + "/rerun"
    # -L: a rerun may be a symlink to a directory elsewhere; the cfg itself must be a regular file
    result = runner.run(
        Command(
            (
                "find",
                "-L",
                rerun_dir,
                "-mindepth",
                "2",
                "-maxdepth",
                "2",
                "-name",
                REPOSITORY_CFG,
                "-type",
                "f",
            )
        )
    )
    if result.returncode != 0:
        probe = runner.run(Command(("test", "-d", repo)))
        if probe.returncode != 0:
            raise InputError(f"{repo}: repository not found on the remote host (not a directory)")
        probe = runner.run(Command(("test", "-e", rerun_dir)))
        if probe.returncode != 0:
            return RerunListing([])
        raise InputError(f"{rerun_dir}: cannot list reruns: {result.err.strip() or result.returncode}")
    names = []
    for line in result.out.splitlines():
        if line.startswith(rerun_dir + "/") and line.endswith("/" + REPOSITORY_CFG):
            names.append(line[len(rerun_dir) + 1 : -len(REPOSITORY_CFG) - 1])
    return _split(n for n in names if "/" not in n)


class RerunStore(Protocol):
    """Remembers which (run, rerun) pairs were triggered; a caller may bring its own (e.g. a database)."""

    def claim(self, run: str, reruns: Iterable[str], info: Mapping[str, Any] | None = None) -> list[str]:
        """Record the reruns not seen before and return them, in one atomic step."""
        ...

    def seen(self, run: str) -> set[str]: ...


class JsonRerunStore:
    """A JSON file `{"runs": {run: {rerun: {"at": ..., ...}}}}`, replaced atomically under a lock file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            # refusing is safer than starting empty, which would trigger every rerun again
            raise InputError(
                f"{self.path}: not a rerun store (invalid JSON: {exc}); fix or remove it"
            ) from None
        runs = data.get("runs") if isinstance(data, dict) else None
        if not isinstance(runs, dict):
            raise InputError(f"{self.path}: not a rerun store (no 'runs' mapping)")
        return runs

    def seen(self, run: str) -> set[str]:
        with self._locked():
            return set(self._read().get(run, {}))

    def claim(self, run: str, reruns: Iterable[str], info: Mapping[str, Any] | None = None) -> list[str]:
        with self._locked():
            runs = self._read()
            known = runs.setdefault(run, {})
            new = [r for r in dict.fromkeys(reruns) if r not in known]
            if not new:
                return []
            at = datetime.now(UTC).isoformat(timespec="seconds")
            for rerun in new:
                known[rerun] = {"at": at, **dict(info or {})}
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps({"runs": runs}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            return new


class MemoryRerunStore:
    """The same contract in memory (for a caller that persists elsewhere, and for tests)."""

    def __init__(self, seen: Mapping[str, Iterable[str]] | None = None) -> None:
        self._runs: dict[str, dict[str, dict[str, Any]]] = {
            run: {r: {} for r in reruns} for run, reruns in (seen or {}).items()
        }

    def seen(self, run: str) -> set[str]:
        return set(self._runs.get(run, {}))

    def claim(self, run: str, reruns: Iterable[str], info: Mapping[str, Any] | None = None) -> list[str]:
        known = self._runs.setdefault(run, {})
        new = [r for r in dict.fromkeys(reruns) if r not in known]
        for rerun in new:
            known[rerun] = dict(info or {})
        return new


def new_reruns(
    run: str,
    repository: str | os.PathLike[str],
    store: RerunStore,
    runner: CommandRunner | None = None,
    info: Mapping[str, Any] | None = None,
    ignore: Iterable[str] = (),
) -> list[str]:
    """The reruns of `repository` not yet handed out for `run`; each is returned once, ever.

    Claim-then-trigger: a rerun is recorded before the caller triggers it, so a crash between the
    two loses that trigger rather than repeating it. Give the triggered DAG run a deterministic run
    id (e.g. `rerun__<rerun>`) and a failed trigger can be retried by hand without duplicates.
    `ignore`: reruns never to hand out (e.g. a parent rerun holding only coadds).
    """
    listing = list_reruns(repository, runner)
    skip = set(ignore)
    return store.claim(run, [r for r in listing.reruns if r not in skip], info)
