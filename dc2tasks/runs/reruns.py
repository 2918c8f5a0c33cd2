"""Which reruns are ready to be processed, which were handed out before, and which of those changed.

A Gen2 rerun exists from the moment the pipelines start writing it, so the watcher hands one out
only when the run file's rule (`reruns:` in the run file, `RerunRule`) says it is complete, judged
from the facts dc2tasks.runs.rerun_facts gathers (here or on the login node): a directory, not a
link, owned (with everything in it) by an allowed account, with its repositoryCfg.yaml, with the
completion marker or quiet for the quiet period, holding the run's products for every tract and
visit. A rerun that is not ready is logged with the reason and neither handed out nor remembered.

The store remembers each handed-out rerun with a fingerprint of what it was (entry count, newest
mtime, digest of the sorted listing). A remembered rerun whose facts no longer match is reported as
changed; it is never handed out again by the watcher (reprocess it by hand, then `dc2 reruns --state
S --run R --accept RERUN`, which makes the next ready listing its new fingerprint). The store is a
JSON file replaced atomically under a lock, so overlapping watchers hand each rerun out once.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError
from dc2tasks.runs.config import RerunRule, RunConfig
from dc2tasks.runs.rerun_facts import (
    FACTS_TIMEOUT_S,
    REPOSITORY_CFG,
    Entry,
    FactsRequest,
    Listing,
    gather,
    parse_listing,
)
from dc2tasks.slurm.commands import Command
from dc2tasks.slurm.transports.base import Transport

log = logging.getLogger(__name__)

__all__ = ["REPOSITORY_CFG", "JsonRerunStore", "MemoryRerunStore", "WatchReport", "facts_request",
           "list_facts", "watch_reruns"]


def facts_request(config: RunConfig, rule: RerunRule) -> FactsRequest:
    """What the listing must look at for this run: its rule, its own rerun, products, tracts, visits."""
    return FactsRequest(
        marker=rule.marker, quiet_hours=rule.quiet_hours, owners=tuple(rule.owners),
        max_entries=rule.max_entries, own_rerun=config.rerun, products=tuple(config.products),
        tracts=tuple(config.tracts), visits=tuple(config.visits) if isinstance(config.visits, list) else (),
        visit_file=config.visit_file,
    )


def list_facts(repository: str, request: FactsRequest, runner: Transport | None = None,
               dc2_argv: tuple[str, ...] = ("dc2",)) -> Listing:
    """The facts, here, or where `runner` runs commands (`dc2 reruns REPO --facts`, parsed strictly)."""
    if runner is None:
        return gather(repository, request)
    if not os.path.isabs(repository) or "\n" in repository:
        raise InputError(f"{repository}: a remote repository path must be absolute")
    argv = (*dc2_argv, "reruns", repository, "--facts", *request.argv())
    result = runner.run(Command(argv, timeout=FACTS_TIMEOUT_S))
    if result.returncode != 0:
        raise InputError(
            f"{repository}: listing its reruns on the remote host failed (exit {result.returncode}): "
            f"{result.err.strip()[-2000:] or '(no message)'}"
        )
    return parse_listing(result.out, f"{' '.join(dc2_argv)} reruns {repository} --facts")


# ---- the rule ------------------------------------------------------------------------------------


def _hours(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds")


def allowed(rule: RerunRule, listing: Listing) -> tuple[str, ...]:
    return tuple(rule.owners) or (listing.account,)


def not_ready(entry: Entry, rule: RerunRule, listing: Listing) -> str:
    """Why `entry` is not a complete rerun by `rule`; "" when it is."""
    owners = allowed(rule, listing)
    if entry.kind == "link":
        return "a symlink (never followed)"
    if entry.kind != "dir":
        return "not a directory"
    if entry.owner not in owners:
        return f"owned by {entry.owner}, not by {' or '.join(owners)}"
    if not entry.cfg:
        return f"no {REPOSITORY_CFG} (a regular file) in it yet"
    if rule.ready == "marker" and entry.marker != "file":
        shown = {"link": "is a symlink", "other": "is not a regular file"}.get(entry.marker or "", "absent")
        return f"completion marker {rule.marker}: {shown}"
    walk = entry.walk
    if walk is None:
        return entry.not_walked or "not examined"
    if walk.stopped == "recent" or (rule.quiet_hours and walk.newest_mtime_ns > listing.now_ns
                                     - rule.quiet_hours * 3_600_000_000_000):
        return (f"{walk.detail or walk.newest} changed at {_hours(walk.newest_mtime_ns)}, within the quiet "
                f"period of {rule.quiet_hours} h")
    if walk.stopped == "too_many":
        return f"{walk.detail}: raise reruns.max_entries to examine it"
    if walk.stopped is not None:
        return f"could not be read: {walk.detail}"
    foreign = {o: n for o, n in walk.owners.items() if o not in owners}
    if foreign:
        return "entries owned by other accounts: " + ", ".join(f"{o} ({n})" for o, n in foreign.items())
    if walk.missing_count:
        more = walk.missing_count - len(walk.missing)
        return "missing " + ", ".join(walk.missing) + (f" and {more} more" if more > 0 else "")
    return ""


def fingerprint(entry: Entry) -> dict[str, Any]:
    walk = entry.walk
    assert walk is not None and walk.digest is not None
    return {"entries": walk.entries, "newest_mtime_ns": walk.newest_mtime_ns, "newest": walk.newest,
            "digest": walk.digest, "owner": entry.owner}


def changes(recorded: Mapping[str, Any], entry: Entry, rule: RerunRule, listing: Listing) -> str:
    """How a handed-out rerun differs from the fingerprint recorded then; "" when it does not."""
    if entry.kind != "dir":
        return "now a symlink" if entry.kind == "link" else "no longer a directory"
    if entry.owner != recorded.get("owner", entry.owner):
        return f"now owned by {entry.owner} (was {recorded['owner']})"
    if rule.ready == "marker" and entry.marker != "file":
        return f"completion marker {rule.marker} removed"
    walk = entry.walk
    if walk is None:
        return f"cannot be examined: {entry.not_walked}"
    was_newest = int(recorded["newest_mtime_ns"])
    if walk.digest is None:
        if walk.newest_mtime_ns > was_newest:
            return f"{walk.newest} changed at {_hours(walk.newest_mtime_ns)}, after it was processed"
        if walk.stopped == "too_many":
            return f"now {walk.detail} (was {recorded['entries']})"
        return f"cannot be examined: {walk.detail}"
    diffs = []
    if walk.entries != recorded["entries"]:
        diffs.append(f"{recorded['entries']} -> {walk.entries} entries")
    if walk.newest_mtime_ns != was_newest:
        diffs.append(f"newest change {_hours(was_newest)} -> {_hours(walk.newest_mtime_ns)} ({walk.newest})")
    if walk.digest != recorded["digest"]:
        diffs.append("listing (names, sizes or times) differs")
    return "; ".join(diffs)


# ---- the memory ----------------------------------------------------------------------------------

Runs = dict[str, dict[str, dict[str, Any]]]


class _Memory:
    """`{run: {rerun: {"at": ..., "fingerprint": {...}, ...}}}`, changed only in `_change`."""

    def _change(self, mutate: Callable[[Runs], Any]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def processed(self, run: str) -> dict[str, dict[str, Any]]:
        return self._change(lambda runs: copy.deepcopy(runs.get(run, {})))

    def seen(self, run: str) -> set[str]:
        return set(self.processed(run))

    def claim(self, run: str, reruns: Iterable[str], info: Mapping[str, Any] | None = None,
              fingerprints: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
        """Record the reruns not seen before (with their fingerprints) and return them, atomically."""

        def mutate(runs: Runs) -> list[str]:
            known = runs.setdefault(run, {})
            new = [r for r in dict.fromkeys(reruns) if r not in known]
            at = datetime.now(UTC).isoformat(timespec="seconds")
            for rerun in new:
                known[rerun] = {"at": at, **dict(info or {})}
                if fingerprints and rerun in fingerprints:
                    known[rerun]["fingerprint"] = dict(fingerprints[rerun])
            return new

        return self._change(mutate)

    def record_fingerprints(self, run: str, fingerprints: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Give remembered reruns that have none (accepted, or remembered by an older watcher) one."""

        def mutate(runs: Runs) -> list[str]:
            done = []
            for rerun, fp in fingerprints.items():
                entry = runs.get(run, {}).get(rerun)
                if entry is not None and "fingerprint" not in entry:
                    entry["fingerprint"] = dict(fp)
                    done.append(rerun)
            return done

        return self._change(mutate)

    def accept(self, run: str, rerun: str) -> bool:
        """Forget a remembered rerun's fingerprint: its next ready listing becomes the new one."""

        def mutate(runs: Runs) -> bool:
            entry = runs.get(run, {}).get(rerun)
            if entry is None:
                return False
            entry.pop("fingerprint", None)
            entry["accepted"] = datetime.now(UTC).isoformat(timespec="seconds")
            return True

        return self._change(mutate)


class JsonRerunStore(_Memory):
    """A JSON file `{"runs": {...}}`, read and replaced atomically under a lock file."""

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

    def _read(self) -> Runs:
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

    def _change(self, mutate: Callable[[Runs], Any]) -> Any:
        with self._locked():
            runs = self._read()
            before = json.dumps(runs, sort_keys=True)
            result = mutate(runs)
            if json.dumps(runs, sort_keys=True) != before:
                with atomic_path(self.path) as tmp:
                    text = json.dumps({"runs": runs}, indent=1, sort_keys=True) + "\n"
                    tmp.write_text(text, encoding="utf-8")
            return result


class MemoryRerunStore(_Memory):
    """The same contract in memory (for a caller that persists elsewhere, and for tests)."""

    def __init__(self, seen: Mapping[str, Iterable[str]] | None = None) -> None:
        self._runs: Runs = {run: {r: {} for r in reruns} for run, reruns in (seen or {}).items()}

    def _change(self, mutate: Callable[[Runs], Any]) -> Any:
        return mutate(self._runs)


# ---- one watcher pass ----------------------------------------------------------------------------


@dataclass
class WatchReport:
    triggered: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)
    """Not handed out this time, with the reason (not remembered either)."""
    changed: dict[str, str] = field(default_factory=dict)
    """Handed out before and different now, with what changed."""
    gone: list[str] = field(default_factory=list)
    baselined: list[str] = field(default_factory=list)


def watch_reruns(run: str, listing: Listing, rule: RerunRule, store: _Memory,
                 info: Mapping[str, Any] | None = None) -> WatchReport:
    """Claim the ready reruns not handed out before; report the handed-out ones that changed.

    Claim-then-trigger: a rerun is recorded before the caller triggers it, so a crash between the
    two loses that trigger rather than repeating it (the run id `rerun__<rerun>` makes a retry safe).
    Never handed out: `listing.ignored` (the run's own rerun and the reruns it is built on).
    """
    where = f"{listing.repository}/rerun"
    if listing.rerun_dir in ("link", "other"):
        raise InputError(f"{where} is {'a symlink' if listing.rerun_dir == 'link' else 'not a directory'}: "
                         "the watcher never follows one; make it a directory")
    report = WatchReport()
    skip = set(listing.ignored)
    for name in listing.bad_names:
        report.waiting[repr(name)] = "its name is not a rerun name"
    processed = store.processed(run)
    ready: dict[str, dict[str, Any]] = {}
    baseline: dict[str, dict[str, Any]] = {}
    for entry in listing.reruns:
        if entry.name in skip:
            continue
        reason = not_ready(entry, rule, listing)
        recorded = processed.get(entry.name)
        if recorded is None:
            if reason:
                report.waiting[entry.name] = reason
            else:
                ready[entry.name] = fingerprint(entry)
        elif "fingerprint" in recorded:
            diff = changes(recorded["fingerprint"], entry, rule, listing)
            if diff:
                report.changed[entry.name] = diff
        elif not reason:
            baseline[entry.name] = fingerprint(entry)
    present = {e.name for e in listing.reruns}
    report.gone = sorted(r for r in processed if r not in present)
    report.triggered = store.claim(run, sorted(ready), info, fingerprints=ready)
    report.baselined = store.record_fingerprints(run, baseline) if baseline else []
    _log(run, where, report)
    return report


def _log(run: str, where: str, report: WatchReport) -> None:
    for name, reason in report.waiting.items():
        log.info("run %s: rerun %s/%s not handed out: %s", run, where, name, reason)
    for name in report.baselined:
        log.info("run %s: rerun %s/%s: its current content recorded as processed", run, where, name)
    for name in report.gone:
        log.warning("run %s: rerun %s/%s, processed before, is no longer there", run, where, name)
    for name, diff in report.changed.items():
        log.error("run %s: rerun %s/%s changed after it was processed: %s", run, where, name, diff)
