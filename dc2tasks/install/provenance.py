"""`provenance.json`: what an installed version was made from, by what, and how the jobs went.

The producer side knows the inputs and the jobs (it submitted them) and may leave a partial record
as `provenance.json` in the product directory; the install completes it with what only the install
knows (the version, the checksums it verified, when, by whom, where) and installs it with the
product. Job records are taken as sacct gives them (`JobID`, `State`, `Elapsed`, `MaxRSS`) or in our
own names (`job_id`, `state`, `elapsed_s`, `max_rss_bytes`, as `dc2tasks.slurm` reports them).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from dc2tasks import __version__
from dc2tasks.install.errors import InstallError
from dc2tasks.install.manifest import PROVENANCE_NAME, Manifest, read_regular_json, user_here
from dc2tasks.products.errors import InputError
from dc2tasks.slurm.commands import parse_elapsed, parse_size

log = logging.getLogger(__name__)

FORMAT = "dc2tasks-provenance/1"
PRODUCER_KEYS = ("run", "run_config_hash", "inputs", "jobs", "inventory")
"""What the producer's `provenance.json` may say; anything else is dropped (it would be published
as the collaboration account's statement, readable by every reader of the catalog)."""
_SACCT_KEYS = {
    "jobid": "job_id",
    "jobidraw": "job_id",
    "job_id": "job_id",
    "jobname": "name",
    "name": "name",
    "state": "state",
    "elapsed": "elapsed",
    "elapsed_s": "elapsed_s",
    "elapsedraw": "elapsed_s",
    "maxrss": "max_rss",
    "max_rss_bytes": "max_rss_bytes",
    "exitcode": "exit_code",
    "exit_code": "exit_code",
    "nodelist": "nodes",
    "nodes": "nodes",
}


def job_record(job: Mapping[str, Any] | object) -> dict[str, Any]:
    """One job as `{job_id, state, elapsed_s, max_rss_bytes, ...}`; sacct's text fields converted."""
    if dataclasses.is_dataclass(job) and not isinstance(job, type):
        job = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}  # shallow: keep the state whole
    if not isinstance(job, Mapping):
        raise InputError(f"a job record is a mapping (as sacct gives it), not {type(job).__name__}")
    out: dict[str, Any] = {}
    for key, value in job.items():
        ours = _SACCT_KEYS.get(str(key).lower())
        if ours is None or value in (None, ""):
            continue
        value = getattr(value, "value", value)  # an enum -> its value
        out[ours] = value if isinstance(value, int | float | str) else str(value)  # a SlurmState -> its text
    if "elapsed" in out:
        out.setdefault("elapsed_s", parse_elapsed(str(out.pop("elapsed"))))
    if "max_rss" in out:
        out.setdefault("max_rss_bytes", parse_size(str(out.pop("max_rss"))))
    if "job_id" not in out or "state" not in out:
        raise InputError(f"a job record needs a job id and a state, got {dict(job)!r}")
    out["job_id"] = str(out["job_id"])
    out["state"] = str(out["state"])
    return {k: out[k] for k in sorted(out)}


def who_where() -> dict[str, Any]:
    return {"user": user_here(), "uid": os.getuid(), "host": socket.getfqdn()}


def build_provenance(
    manifest: Manifest,
    *,
    product: str,
    version: str,
    installed_at: str,
    central_dir: str,
    producer_record: Mapping[str, Any] | None = None,
    jobs: Iterable[Mapping[str, Any] | object] = (),
    qa: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record installed with a version: the producer's part plus what the install verified
    and, when given, its quality gate (`qa`: mode, verdicts, overridden failures, approver)."""
    producer = producer_fields(producer_record or {}, "the producer's record")
    all_jobs = [job_record(j) for j in producer.pop("jobs", [])] + [job_record(j) for j in jobs]
    record: dict[str, Any] = {
        "format": FORMAT,
        "product": product,
        "version": version,
        "run": producer.pop("run", None),
        "run_config_hash": producer.pop("run_config_hash", None),
        "inputs": producer.pop("inputs", {}),
        **({"inventory": inventory} if (inventory := producer.pop("inventory", None)) else {}),
        "package": {
            "name": "dc2tasks",
            "produced_with": (manifest.created_by or {}).get("dc2tasks"),
            "installed_with": __version__,
        },
        "jobs": all_jobs,
        "outputs": {
            "content_sha256": manifest.content_sha256,
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in manifest.files],
            **({"produced_content_sha256": p} if (p := manifest.produced_content_sha256) else {}),
        },
        "timestamps": {"produced": manifest.created, "installed": installed_at},
        "produced_by": {k: v for k, v in (manifest.created_by or {}).items() if k != "dc2tasks"},
        "installed_by": {**who_where(), "central_dir": central_dir},
        **({"qa": dict(qa)} if qa is not None else {}),
    }
    return record


def producer_fields(record: Mapping[str, Any], where: object) -> dict[str, Any]:
    """The producer's record with only PRODUCER_KEYS; each dropped key is logged."""
    for key in sorted(set(map(str, record)) - set(PRODUCER_KEYS)):
        log.warning("%s: unknown key %r dropped (known: %s)", where, key, ", ".join(PRODUCER_KEYS))
    out = {k: record[k] for k in PRODUCER_KEYS if k in record}
    if not isinstance(out.get("inputs", {}), Mapping):
        raise InputError(f"{where}: 'inputs' must be a mapping, not {type(out['inputs']).__name__}")
    if not isinstance(out.get("inventory") or {}, Mapping):
        raise InputError(f"{where}: 'inventory' must be a mapping, not {type(out['inventory']).__name__}")
    if not isinstance(out.get("jobs", []), list):
        raise InputError(f"{where}: 'jobs' must be a list, not {type(out['jobs']).__name__}")
    return out


def read_producer_record(source_fd: int, path: object) -> dict[str, Any] | None:
    """`provenance.json` of the source directory (open `source_fd`), opened no-follow and only if
    it is a regular file; None if there is none."""
    try:
        data = read_regular_json(PROVENANCE_NAME, path, source_fd)
    except FileNotFoundError:
        return None
    except InputError as exc:
        raise InstallError(f"cannot read the producer's provenance record: {exc}") from None
    if not isinstance(data, dict):
        raise InstallError(f"{path}: the producer's provenance record is not a JSON object")
    return producer_fields(data, path)
