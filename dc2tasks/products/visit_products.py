"""Source, ForcedSource and DIASource tables of a visit, and of a batch of visits in one process.

A visit's detectors are read and calibrated one by one (visit_catalog), matched to the objects index
the batch loaded once (the old scripts' 2-3 minutes per visit went to reading and re-matching), and
written as one Parquet file under a temporary name. The file records a signature of its inputs, so a
batch that is re-run skips the visits whose inputs have not changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dc2tasks import __version__
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError
from dc2tasks.products.object_index import ObjectIndex, files_signature
from dc2tasks.products.progress import Progress
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.products.schema import SchemaGeneration
from dc2tasks.products.visit_catalog import Columns, read_detector
from dc2tasks.products.visit_detectors import DetectorFiles, visit_detectors
from dc2tasks.products.visit_tables import VisitTable

log = logging.getLogger(__name__)

SIGNATURE_KEY = b"dc2tasks.inputs"
RADIUS_KEY = b"dc2tasks.match_radius_arcsec"  # the radius a file's rows were matched with
DEFAULT_RADIUS_ARCSEC = 1.0


@dataclass
class VisitResult:
    visit: int
    status: str  # "written", "unchanged" (inputs as before: skipped) or "empty" (no rows, no file)
    path: Path | None
    rows: int = 0
    detectors: int = 0
    empty_detectors: int = 0
    matched: int = 0  # rows with an objectId
    seconds: float = 0.0


@dataclass
class BatchResult:
    results: list[VisitResult] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)


def _signature(
    table: VisitTable, detectors: list[DetectorFiles], objects: ObjectIndex | None, radius: float
) -> str:
    files = [p for d in detectors for p in (*d.catalogs, d.exposure, d.calexp)]
    digest = hashlib.sha256(f"{__version__}\0{table.key}\0{radius!r}\0".encode())
    digest.update(files_signature(dict.fromkeys(files)).encode())
    if objects is not None:
        digest.update(objects.signature.encode())
    return digest.hexdigest()


def _recorded_signature(path: Path) -> bytes | None:
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    return meta.get(SIGNATURE_KEY)


def _match(table: VisitTable, columns: Columns, objects: ObjectIndex | None, radius: float) -> None:
    if table.match is None:
        columns["objectId"] = columns["objectId"].astype(np.int64)
        return
    if objects is None:
        raise InputError(f"{table.key} needs the {table.match} table to match to")
    ra = np.degrees(columns["coord_ra"])
    dec = np.degrees(columns["coord_dec"])
    m = objects.matcher.match(ra, dec, radius_arcsec=radius)
    columns["objectId"] = np.asarray(m.object_id, dtype=np.int64)
    columns["match_distance"] = np.asarray(m.distance_arcsec, dtype=np.float64)
    columns["match_candidates"] = np.asarray(m.candidates, dtype=np.int32)


def _arrow_table(
    table: VisitTable, gen: SchemaGeneration, columns: Columns, meta: dict[bytes, bytes]
) -> pa.Table:
    names = table.columns(gen)
    arrays = [
        pa.array(columns[n], type=pa.string()) if n == "filter" else pa.array(columns[n]) for n in names
    ]
    return pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(meta)


def make_visit(
    repo: Gen2Repo,
    table: VisitTable,
    visit: int,
    output_dir: str | os.PathLike,
    objects: ObjectIndex | None = None,
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC,
    allow_missing: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> VisitResult:
    """One visit's file; `progress` (a batch's) counts its detectors as they are read."""
    start = time.perf_counter()
    if not radius_arcsec > 0:
        raise InputError(f"the match radius must be positive, not {radius_arcsec} arcsec")
    target = Path(output_dir) / table.file_name(visit)
    detectors = visit_detectors(repo, table, visit, allow_missing)
    signature = _signature(table, detectors, objects, radius_arcsec)
    if not force and target.is_file() and _recorded_signature(target) == signature.encode():
        log.info("visit %d: %s is up to date; skipped", visit, target)
        return VisitResult(visit, "unchanged", target, detectors=len(detectors))

    parts: list[Columns] = []
    gen: SchemaGeneration | None = None
    for det in detectors:
        got = read_detector(det, table, visit, gen)
        if got is not None:
            part, gen = got
            parts.append(part)
        if progress is not None:
            progress.advance(0, detectors=1)
    result = VisitResult(
        visit, "empty", None, detectors=len(detectors), empty_detectors=len(detectors) - len(parts)
    )
    if gen is None:
        if target.exists():
            target.unlink()  # what it held no longer follows from the inputs
            log.warning("visit %d: removed %s, left from an earlier run", visit, target)
        log.warning(
            "visit %d: all %d %s catalogs are empty; no file written", visit, len(detectors), table.dataset
        )
        result.seconds = time.perf_counter() - start
        return result

    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    _match(table, columns, objects, radius_arcsec)
    meta = {
        SIGNATURE_KEY: signature.encode(),
        b"dc2tasks.version": __version__.encode(),
        b"dc2tasks.product": table.key.encode(),
        RADIUS_KEY: repr(radius_arcsec).encode(),
    }
    arrow = _arrow_table(table, gen, columns, meta)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        pq.write_table(arrow, tmp)
    result.status, result.path, result.rows = "written", target, arrow.num_rows
    result.matched = int(np.count_nonzero(columns["objectId"] >= 0))
    result.seconds = time.perf_counter() - start
    log.info(
        "visit %d: %d rows from %d detectors (%d matched) -> %s in %.2f s",
        visit,
        result.rows,
        len(parts),
        result.matched,
        target,
        result.seconds,
    )
    return result


def make_visits(
    repo: Gen2Repo,
    table: VisitTable,
    visits: Iterable[int],
    output_dir: str | os.PathLike,
    objects: ObjectIndex | None = None,
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC,
    allow_missing: bool = False,
    force: bool = False,
) -> BatchResult:
    """Every visit of a batch; a visit that fails is reported and the others still run."""
    batch = BatchResult()
    visits = list(visits)
    with Progress(f"{table.key} of {len(visits)} visit(s)", len(visits), "visits") as progress:
        for k, visit in enumerate(visits, start=1):
            try:
                r = make_visit(
                    repo, table, visit, output_dir, objects, radius_arcsec, allow_missing, force, progress
                )
            except InputError as exc:
                log.error("visit %d (%d of %d): %s", visit, k, len(visits), exc)
                batch.failures.append((visit, str(exc)))
                progress.advance(1, failed=1)
                continue
            batch.results.append(r)
            progress.advance(1, rows=r.rows)
            log.info("visit %d (%d of %d): %s", visit, k, len(visits), r.status)
    empty = [r.visit for r in batch.results if r.status == "empty"]
    if empty:
        log.warning(
            "%d of %d visit(s) have no %s rows in any detector, so no file: %s",
            len(empty),
            len(visits),
            table.dataset,
            ", ".join(map(str, empty)),
        )
    return batch
