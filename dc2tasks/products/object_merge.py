"""Step 1 of the Object catalog: merge a tract's ref and forced photometry into one HDF5 file.

Per patch: the `deepCoadd_ref` rows with `detect_isPrimary`, joined with each band's
`deepCoadd_forced_src` (columns prefixed `<b>_`), plus per-band calibrated PSF and CModel magnitudes
and SNRs from the coadd's own calibration (spec §1.1). One HDF5 group per patch, `coadd_<t>_<xy>`,
pandas "fixed" format, as GCRCatalogs' object reader expects.

Where the old merge_tract_cat.py joined on `id` with pandas, we check that each forced catalog is
row-aligned with its ref (same length, same ids in the same order) and fail naming the file if not:
a silent inner join would drop or misplace rows.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tables

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products import afw, hdf5
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.calib import Calibration, read_calibration
from dc2tasks.products.errors import InputError
from dc2tasks.products.object_schema import default_value, forget_schema
from dc2tasks.products.progress import Progress
from dc2tasks.products.repo import Gen2Repo, patch_key
from dc2tasks.products.schema import SchemaGeneration, detect_schema_generation

log = logging.getLogger(__name__)

# Columns the merge adds per band, beside the forced catalog's own (all float64).
DERIVED_PER_BAND = ("mag", "mag_err", "SNR", "modelfit_mag", "modelfit_mag_err", "modelfit_SNR")


def object_file_name(tract: int) -> str:
    return CATALOGUE["object"].file_name(tract=tract)


@dataclass
class PatchResult:
    patch: str
    blocks: list[tuple[list[str], np.ndarray]] | None
    rows_in: int = 0
    rows: int = 0
    ncolumns: int = 0
    bands_filled: list[str] = field(default_factory=list)
    seconds: float = 0.0
    bytes_in: int = 0


@dataclass
class TractResult:
    tract: int
    path: Path | None
    patches: list[PatchResult]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.patches)

    @property
    def bytes_in(self) -> int:
        return sum(p.bytes_in for p in self.patches)

    @property
    def empty_patches(self) -> list[str]:
        """Patches whose ref catalog has no rows (at a survey's edges, normal): no group written."""
        return [p.patch for p in self.patches if p.rows_in == 0]


def _add_band(
    frame: hdf5.FrameBuilder,
    forced: afw.RawRecords,
    rows: np.ndarray,
    calib: Calibration,
    gen: SchemaGeneration,
    band: str,
) -> None:
    frame.add_records(forced, rows, prefix=f"{band}_", skip={"id"})
    psf, psf_err, cm, cm_err = (
        forced.column(name)[rows]
        for name in (
            f"base_PsfFlux_{gen.flux}",
            f"base_PsfFlux_{gen.flux_err}",
            f"modelfit_CModel_{gen.flux}",
            f"modelfit_CModel_{gen.flux_err}",
        )
    )
    mag, mag_err = calib.magnitude(psf, psf_err)
    cmag, cmag_err = calib.magnitude(cm, cm_err)
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = {
            "mag": mag,
            "mag_err": mag_err,
            "SNR": np.abs(psf / psf_err).astype(np.float64),
            "modelfit_mag": cmag,
            "modelfit_mag_err": cmag_err,
            "modelfit_SNR": np.abs(cm / cm_err).astype(np.float64),
        }
    for name in DERIVED_PER_BAND:
        frame.add(f"{band}_{name}", derived[name])


def _add_filled_band(frame: hdf5.FrameBuilder, template: dict[str, np.dtype], band: str) -> None:
    for name, dtype in template.items():
        if name == "id" or np.dtype(dtype).kind == "O":
            continue
        full = f"{band}_{name}"
        frame.add(full, np.full(frame.nrows, default_value(full, dtype), dtype=dtype))
    for name in DERIVED_PER_BAND:
        frame.add(f"{band}_{name}", np.full(frame.nrows, np.nan))


def _check_aligned(forced: afw.RawRecords, ref: afw.RawRecords, ref_ids: np.ndarray) -> None:
    if len(forced) != len(ref):
        raise InputError(
            f"{forced.path}: not row-aligned with its ref {ref.path}: {len(forced)} rows against {len(ref)}"
        )
    ids = forced.column("id")
    if not np.array_equal(ids, ref_ids):
        bad = int(np.flatnonzero(ids != ref_ids)[0])
        raise InputError(
            f"{forced.path}: not row-aligned with its ref {ref.path}: row {bad} has id "
            f"{ids[bad]} where the ref has {ref_ids[bad]}"
        )


@dataclass
class PatchInputs:
    """Everything a patch's merge reads from disk, loaded ahead of the work on it."""

    patch: str
    ref: afw.RawRecords
    forced: dict[str, tuple[afw.RawRecords, Calibration] | None]
    bytes_in: int


def load_patch(repo: Gen2Repo, tract: int, patch: str, bands: list[str]) -> PatchInputs:
    ref_path = repo.require("deepCoadd_ref", tract=tract, patch=patch)
    ref = afw.RawRecords.open(ref_path)
    inputs = PatchInputs(patch, ref, {}, ref_path.stat().st_size)
    for band in bands:
        forced_path = repo.find("deepCoadd_forced_src", tract=tract, patch=patch, filter=band)
        if forced_path is None:
            inputs.forced[band] = None
            continue
        calexp = repo.require("deepCoadd_calexp", tract=tract, patch=patch, filter=band)
        inputs.forced[band] = (afw.RawRecords.open(forced_path), read_calibration(calexp))
        inputs.bytes_in += forced_path.stat().st_size
    return inputs


def build_patch(inputs: PatchInputs, tract: int, template: dict[str, np.dtype] | None) -> PatchResult:
    """The merged, primary-only column blocks of one patch (None when no object is primary)."""
    start = time.perf_counter()
    ref, patch = inputs.ref, inputs.patch
    result = PatchResult(patch, None, rows_in=len(ref), bytes_in=inputs.bytes_in)
    if len(ref) == 0:
        log.info("tract %d patch %s: %s has no rows: an empty patch, no group", tract, patch, ref.path)
        result.seconds = time.perf_counter() - start
        return result
    names = {name for name, _, _ in ref.scalar_fields()}
    flags = {n for group, _, _ in ref.flag_groups() for n in group}
    if "detect_isPrimary" not in flags:
        raise InputError(f"{ref.path}: no detect_isPrimary flag: not a deepCoadd_ref catalog")
    gen = detect_schema_generation(names | flags)
    mask = ref.column("detect_isPrimary")
    n = int(mask.sum())
    if n == 0:
        log.warning(
            "tract %d patch %s: %s has %d rows, none primary; patch skipped", tract, patch, ref.path, len(ref)
        )
        result.seconds = time.perf_counter() - start
        return result
    ref_ids = ref.column("id")
    frame = hdf5.FrameBuilder(n)
    rows = np.flatnonzero(mask)
    frame.add_records(ref, rows)
    for band, loaded in inputs.forced.items():
        if loaded is None:
            if template is None:
                raise InputError(
                    f"tract {tract}: no deepCoadd_forced_src in any band to take the band columns from"
                )
            _add_filled_band(frame, template, band)
            result.bands_filled.append(band)
            continue
        forced, calib = loaded
        _check_aligned(forced, ref, ref_ids)
        _add_band(frame, forced, rows, calib, gen, band)
    if result.bands_filled:
        log.warning(
            "tract %d patch %s: no forced photometry in band(s) %s; their columns are NaN/-1/False "
            "(bad-pixel flags True), as GCRCatalogs serves a missing band",
            tract,
            patch,
            ",".join(result.bands_filled),
        )
    result.blocks = frame.blocks()
    result.rows, result.ncolumns = n, frame.ncolumns
    result.seconds = time.perf_counter() - start
    return result


def merge_patch(
    repo: Gen2Repo, tract: int, patch: str, bands: list[str], template: dict[str, np.dtype] | None
) -> PatchResult:
    return build_patch(load_patch(repo, tract, patch, bands), tract, template)


def _merge_patch_task(args: tuple) -> PatchResult:
    return merge_patch(*args)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers fork from a single-threaded server, never from the caller: the caller may be an Airflow
    task or a test process with threads, and a fork taken while another thread holds a lock can hang
    the child for ever."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def band_template(
    repo: Gen2Repo, tract: int, patches: list[str], bands: list[str]
) -> dict[str, np.dtype] | None:
    """Names and types of a forced catalog's columns, from the first one found in the tract."""
    for patch in patches:
        for band in bands:
            path = repo.find("deepCoadd_forced_src", tract=tract, patch=patch, filter=band)
            if path is not None:
                return afw.column_dtypes(path)
    return None


def merge_tract(
    repo: Gen2Repo,
    tract: int,
    output_dir: str | os.PathLike,
    patches: list[str] | None = None,
    bands: list[str] | None = None,
    jobs: int = 1,
) -> TractResult:
    """Write `<output_dir>/object_tract_<tract>.hdf5`, atomically; patches in parallel with `jobs`."""
    available = repo.patches(tract)
    if patches is None:
        patches = available
        if not patches:
            raise InputError(f"{repo.root}: tract {tract} has no deepCoadd_ref in any patch")
    else:
        missing = [p for p in patches if p not in available]
        if missing:
            rel = repo.relpath("deepCoadd_ref", tract=tract, patch=missing[0])
            raise InputError(
                f"tract {tract}: no deepCoadd_ref for patch(es) {', '.join(missing)} (e.g. {rel})"
            )
    bands = bands or repo.bands(tract)
    if not bands:
        raise InputError(f"{repo.root}: tract {tract} has no coadd results in any band")
    template = band_template(repo, tract, patches, bands)
    tasks = [(repo, tract, p, bands, template) for p in patches]
    target = Path(output_dir) / object_file_name(tract)
    forget_schema(target)
    results: list[PatchResult] = []
    log.info("tract %d: merging %d patches, bands %s, %d job(s)", tract, len(patches), "".join(bands), jobs)
    with atomic_path(target) as tmp, Progress(f"tract {tract} merge", len(patches), "patches") as progress:
        with tables.open_file(str(tmp), mode="w") as h5:
            if jobs > 1:
                with ProcessPoolExecutor(max_workers=jobs, mp_context=_worker_context()) as pool:
                    _write_results(pool.map(_merge_patch_task, tasks), h5, tract, results, progress)
            else:
                _merge_pipelined(repo, tract, patches, bands, template, h5, results, progress)
        _report_empty(tract, results)
    return TractResult(tract, target, results)


def _report_empty(tract: int, results: list[PatchResult]) -> None:
    """Say which patches gave no rows; refuse a tract where none did (there is nothing to write)."""
    empty = [r.patch for r in results if r.rows_in == 0]
    no_primary = [r.patch for r in results if r.rows_in and not r.rows]
    what = []
    if empty:
        what.append(f"{len(empty)} empty (no rows: {', '.join(empty)})")
    if no_primary:
        what.append(f"{len(no_primary)} with no primary object ({', '.join(no_primary)})")
    if not any(r.rows for r in results):
        raise InputError(
            f"tract {tract}: no rows to write: of its {len(results)} patches, {' and '.join(what)}; "
            "nothing written"
        )
    if what:
        written = sum(1 for r in results if r.rows)
        log.warning("tract %d: %d patches written; %s", tract, written, "; ".join(what))


def _merge_pipelined(
    repo: Gen2Repo,
    tract: int,
    patches: list[str],
    bands: list[str],
    template: dict[str, np.dtype] | None,
    h5: tables.File,
    results: list[PatchResult],
    progress: Progress,
) -> None:
    """One process, three stages overlapped: read patch i+1, build patch i, write patch i-1.

    Reading and writing are I/O that release the GIL, so the build (the only CPU-heavy stage)
    hides them; done in turn they would cost as much as the build itself.
    """
    with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writer:
        loading = reader.submit(load_patch, repo, tract, patches[0], bands)
        writing = None
        for i in range(len(patches)):
            inputs = loading.result()
            if i + 1 < len(patches):
                loading = reader.submit(load_patch, repo, tract, patches[i + 1], bands)
            result = build_patch(inputs, tract, template)
            del inputs
            if writing is not None:
                writing.result()
            writing = writer.submit(_write_results, [result], h5, tract, results, progress)
        if writing is not None:
            writing.result()


def _write_results(
    results: Iterable[PatchResult], h5: tables.File, tract: int, out: list[PatchResult], progress: Progress
) -> None:
    for r in results:
        if r.blocks is not None:
            hdf5.write_frame(h5, patch_key(tract, r.patch), r.blocks, r.rows)
            log.info(
                "tract %d patch %s: %d primary of %d rows, %d columns (%.1f s)",
                tract,
                r.patch,
                r.rows,
                r.rows_in,
                r.ncolumns,
                r.seconds,
            )
            r.blocks = None  # written: free the rows
        out.append(r)
        progress.advance(1, rows=r.rows, MB=r.bytes_in / 1e6)
