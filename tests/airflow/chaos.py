"""Whole data runs under faults: the injector, the runs, and the tally an operator asks for.

`chaos_run` triggers demo-shaped data runs (Slurm backend over SSH, arrays included) on real Airflow
services and the loopback cluster, several at once, while an injector thread makes the faults of
chaos_faults.py at random moments from a seed (every kind at least once). When the fault window
closes, every run is let to finish; a failed run gets one operator retry (its failed tasks cleared
once); then the orphan sweep runs, and the tally is counted from Slurm's accounting and the central
directories, not from what the services say about themselves.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from chaos_faults import FAULTS, Lab, Skipped

from dc2tasks.install.layout import CURRENT, LOCK_NAME, STAGING_PREFIX, VERSIONS
from dc2tasks.install.manifest import MANIFEST_NAME, read_manifest, sha256_file

FINAL = ("success", "failed")
DATA_SUFFIXES = (".parquet", ".hdf5")
Remote = Callable[..., str]


@dataclass
class FaultRecord:
    kind: str
    at_s: float  # since the chaos run started
    what: str
    recovered_s: float | None = None  # until the cluster/services answer and a task succeeds again


@dataclass
class Tally:
    date: str
    seed: int
    runs: int
    concurrency: int
    fault_window_s: float
    runs_succeeded_first: int = 0
    runs_succeeded_after_retry: int = 0
    runs_failed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # each failed run's failed tasks: try, log's end
    jobs_needed: int = 0
    jobs_submitted: int = 0
    jobs_resubmitted: int = 0  # a later try's job (a fault ended the earlier one): expected
    duplicate_submissions: int = 0  # two jobs for one task try: never expected
    swept: list[str] = field(default_factory=list)  # jobs the sweep cancelled once every run had ended
    orphans: list[str] = field(default_factory=list)  # still running or pending after the sweep
    wrong_installed_files: list[str] = field(default_factory=list)
    partial_files: list[str] = field(default_factory=list)
    half_switched: list[str] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    wall_s: float = 0.0

    def recovery_medians(self) -> dict[str, float | None]:
        by_kind: dict[str, list[float]] = {k: [] for k in FAULTS}
        for f in self.faults:
            if f.recovered_s is not None:
                by_kind[f.kind].append(f.recovered_s)
        return {k: (round(statistics.median(v), 1) if v else None) for k, v in by_kind.items()}

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["faults_by_kind"] = dict(Counter(f.kind for f in self.faults))
        out["recovery_median_s"] = self.recovery_medians()
        return out

    def summary(self) -> str:
        kinds = Counter(f.kind for f in self.faults)
        med = self.recovery_medians()
        lines = [
            f"chaos run {self.date}: seed {self.seed}, {self.runs} runs ({self.concurrency} at once), "
            f"faults for {self.fault_window_s:.0f} s, {self.wall_s:.0f} s in all",
            f"runs succeeded: {self.runs_succeeded_first} at once, {self.runs_succeeded_after_retry} after "
            f"one operator retry, {len(self.runs_failed)} failed {self.runs_failed or ''}",
            f"Slurm jobs: {self.jobs_needed} needed, {self.jobs_submitted} submitted "
            f"({self.jobs_resubmitted} later tries, {self.duplicate_submissions} duplicates)",
            f"cancelled by the sweep: {len(self.swept)}; orphans after it: {len(self.orphans)}; "
            "wrong installed files: "
            f"{len(self.wrong_installed_files)}; partial files: {len(self.partial_files)}; half-switched "
            f"installs: {len(self.half_switched)}",
            "faults (count, median recovery s): "
            + ", ".join(f"{k} {kinds.get(k, 0)} ({med[k]})" for k in FAULTS),
            *(f"failed: {f}" for f in self.failures),
        ]
        return "\n".join(lines)


# -- the injector ---------------------------------------------------------------------------------------


class Injector(threading.Thread):
    """Faults at random moments, `gap` seconds apart on average: first every kind once in a shuffled
    order (a kind with nothing to act on is tried again later), then random kinds until the window
    closes; past the window only kinds not yet made, for at most two more windows. Each fault's
    recovery is timed in its own thread."""

    def __init__(self, lab: Lab, window_s: float, gap_s: float, progress: Callable[[], int],
                 healthy: Callable[[str], bool], log: Callable[[str], None]) -> None:
        super().__init__(name="chaos-injector", daemon=True)
        self.lab, self.window_s, self.gap_s = lab, window_s, gap_s
        self.progress, self.healthy, self.log = progress, healthy, log
        self.records: list[FaultRecord] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.started_at = time.monotonic()
        self.timers: list[threading.Thread] = []

    def run(self) -> None:
        order = list(FAULTS)
        self.lab.rng.shuffle(order)
        while not self.stop_event.is_set():
            elapsed = time.monotonic() - self.started_at
            if elapsed > 3 * self.window_s or (elapsed > self.window_s and not order):
                return
            self.stop_event.wait(self.lab.rng.uniform(0.5 * self.gap_s, 1.5 * self.gap_s))
            kind = order.pop(0) if order else self.lab.rng.choice(list(FAULTS))
            if not self._inject(kind) and kind not in order:
                order.append(kind)  # nothing to act on yet: try this kind again later

    def _inject(self, kind: str) -> bool:
        before = self.progress()
        at = time.monotonic() - self.started_at
        try:
            what = FAULTS[kind](self.lab)
        except Skipped as why:
            self.log(f"[{at:6.1f} s] {kind}: skipped ({why})")
            return False
        except Exception:
            self.errors.append(f"{kind}: {traceback.format_exc()}")
            return False
        record = FaultRecord(kind, round(at, 1), what)
        self.records.append(record)
        self.log(f"[{at:6.1f} s] {kind}: {what}")
        timer = threading.Thread(target=self._time_recovery, args=(record, before), daemon=True)
        timer.start()
        self.timers.append(timer)
        return True

    def _time_recovery(self, record: FaultRecord, before: int, timeout: float = 900) -> None:
        start = self.started_at + record.at_s
        while time.monotonic() - start < timeout:
            try:
                if self.healthy(record.kind) and self.progress() > before:
                    record.recovered_s = round(time.monotonic() - start, 1)
                    return
            except Exception:
                pass
            time.sleep(1)


# -- what is installed ----------------------------------------------------------------------------------


def content_checksum(path: Path) -> str:
    """sha256 of a data file's values, not its bytes: each run's files carry their own provenance
    in metadata (the signature of the inputs in its own work directory), which must differ."""
    h = hashlib.sha256()
    if path.suffix == ".parquet":
        table = pq.read_table(path).replace_schema_metadata(None)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        h.update(sink.getvalue().to_pybytes())
        return h.hexdigest()
    with pd.HDFStore(path, mode="r") as store:
        for key in sorted(store.keys()):
            frame = store[key]
            h.update(key.encode() + ",".join(map(str, frame.columns)).encode())
            h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


def data_checksums(central: Path, run: str) -> dict[str, str]:
    """The values' checksum of each data file of each product's current version, by product/file
    (the run's name in a file name written as `{run}`)."""
    out = {}
    for product in sorted(p for p in central.iterdir() if (p / CURRENT).exists()):
        version = (product / CURRENT).resolve()
        for f in sorted(version.rglob("*")):
            if f.is_file() and f.suffix in DATA_SUFFIXES:
                out[f"{product.name}/{f.relative_to(version)}".replace(run, "{run}")] = content_checksum(f)
    return out


def partial_files(central: Path) -> list[str]:
    """Staging directories and temporary files left anywhere in a central directory."""
    return [str(p) for p in central.rglob("*")
            if p.name.startswith(STAGING_PREFIX) or (p.name.startswith(".") and p.name.endswith(".tmp"))]


def half_switched(central: Path) -> list[str]:
    """Products whose `current` does not name a complete version: missing, or a file differing from
    its manifest."""
    bad = []
    for product in sorted(p for p in central.iterdir() if p.is_dir() and p.name != LOCK_NAME):
        link = product / CURRENT
        if not link.is_symlink() and not (product / VERSIONS).exists():
            continue
        version = link.resolve()
        if not (version / MANIFEST_NAME).is_file():
            bad.append(f"{product}: current -> {version}, which has no manifest")
            continue
        for entry in read_manifest(version / MANIFEST_NAME).files:
            f = version / entry.name
            if not f.is_file() or f.stat().st_size != entry.size or sha256_file(f) != entry.sha256:
                bad.append(f"{product}: {entry.name} differs from the manifest")
    return bad


def wrong_files(centrals: dict[str, Path], reference: dict[str, str]) -> list[str]:
    """Data files of each run's current versions (central directory by run name) whose values
    differ from `reference`, or that one of them lacks."""
    wrong: list[str] = []
    for run, central in centrals.items():
        got = data_checksums(central, run)
        keys = sorted(set(reference) | set(got))
        wrong += [f"{run}: {k}" for k in keys if got.get(k) != reference.get(k)]
    return wrong


# -- Slurm's record ---------------------------------------------------------------------------------------


def job_rows(remote: Remote, prefix: str, since: str) -> list[dict[str, str]]:
    """Every job (not step, not array element) whose name starts with `prefix`, from sacct."""
    fields = ("JobID", "JobName", "State", "Comment")
    out = remote("sacct", "--noheader", "--parsable2", "--allusers", f"--starttime={since}", "-X",
                 f"--format={','.join(fields)}")
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]
    jobs: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["JobName"].startswith(prefix):
            jobs.setdefault(r["JobID"].split("_")[0], r)  # one row per array job
    return list(jobs.values())


def count_jobs(rows: list[dict[str, str]]) -> tuple[int, int, int]:
    """(submitted, later tries, duplicates): a duplicate is a second job of one task try (same
    name, same signed try in the comment)."""
    by_try = Counter((r["JobName"], r["Comment"]) for r in rows)
    by_name = Counter(r["JobName"] for r in rows)
    duplicates = sum(n - 1 for n in by_try.values())
    resubmitted = sum(n - 1 for n in by_name.values()) - duplicates
    return len(rows), resubmitted, duplicates


def live_jobs(remote: Remote, prefix: str) -> list[str]:
    out = remote("squeue", "--noheader", "--all", "--format=%i|%j|%T")
    return [line for line in out.splitlines() if line.split("|")[1].startswith(prefix)]


def checksum_text(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
