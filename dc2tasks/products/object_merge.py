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
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dc2tasks.products import afw
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.calib import Calibration, read_calibration
from dc2tasks.products.errors import InputError
from dc2tasks.products.repo import Gen2Repo, patch_key
from dc2tasks.products.schema import SchemaGeneration, detect_schema_generation

log = logging.getLogger(__name__)

# Columns the merge adds per band, beside the forced catalog's own (all float64).
DERIVED_PER_BAND = ("mag", "mag_err", "SNR", "modelfit_mag", "modelfit_mag_err", "modelfit_SNR")


def object_file_name(tract: int, name: str = "object") -> str:
    return f"{name}_tract_{tract}.hdf5"


@dataclass
class PatchResult:
    patch: str
    frame: pd.DataFrame | None
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


def default_value(name: str, dtype: np.dtype) -> object:
    """GCRCatalogs' value for a column a patch lacks: NaN, -1, False, '' (bad-pixel flags True)."""
    kind = np.dtype(dtype).kind
    if kind == "b":
        return name.endswith("_flag_bad") or name.endswith("_flag_noGoodPixels")
    if kind in "iu":
        return -1
    if kind == "f":
        return np.nan
    return ""


def _band_columns(
    forced: afw.AfwTable, calib: Calibration, gen: SchemaGeneration, mask: np.ndarray, band: str
) -> dict[str, np.ndarray]:
    out = {
        f"{band}_{name}": col[mask] for name, col in forced.columns.items() if name != "id" and col.ndim == 1
    }
    psf, psf_err = forced[f"base_PsfFlux_{gen.flux}"][mask], forced[f"base_PsfFlux_{gen.flux_err}"][mask]
    cm, cm_err = forced[f"modelfit_CModel_{gen.flux}"][mask], forced[f"modelfit_CModel_{gen.flux_err}"][mask]
    mag, mag_err = calib.magnitude(psf, psf_err)
    cmag, cmag_err = calib.magnitude(cm, cm_err)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[f"{band}_mag"], out[f"{band}_mag_err"] = mag, mag_err
        out[f"{band}_SNR"] = np.abs(psf / psf_err).astype(np.float64)
        out[f"{band}_modelfit_mag"], out[f"{band}_modelfit_mag_err"] = cmag, cmag_err
        out[f"{band}_modelfit_SNR"] = np.abs(cm / cm_err).astype(np.float64)
    return out


def _filled_band(template: dict[str, np.dtype], band: str, n: int) -> dict[str, np.ndarray]:
    out = {}
    for name, dtype in template.items():
        if name == "id":
            continue
        full = f"{band}_{name}"
        out[full] = np.full(n, default_value(full, dtype), dtype=dtype)
    for name in DERIVED_PER_BAND:
        out[f"{band}_{name}"] = np.full(n, np.nan)
    return out


def merge_patch(
    repo: Gen2Repo, tract: int, patch: str, bands: list[str], template: dict[str, np.dtype] | None
) -> PatchResult:
    """The merged, primary-only table of one patch (None when the patch has no primary object)."""
    start = time.perf_counter()
    ref_path = repo.require("deepCoadd_ref", tract=tract, patch=patch)
    ref = afw.read_table(ref_path)
    bytes_in = ref_path.stat().st_size
    if "detect_isPrimary" not in ref.columns:
        raise InputError(f"{ref_path}: no detect_isPrimary flag: not a deepCoadd_ref catalog")
    gen = detect_schema_generation(ref.columns)
    mask = ref["detect_isPrimary"]
    n = int(mask.sum())
    result = PatchResult(patch, None, rows_in=len(ref))
    if n == 0:
        log.warning(
            "tract %d patch %s: %s has %d rows, none primary; patch skipped", tract, patch, ref_path, len(ref)
        )
        result.seconds = time.perf_counter() - start
        return result
    columns: dict[str, np.ndarray] = {k: v[mask] for k, v in ref.columns.items() if v.ndim == 1}
    for band in bands:
        forced_path = repo.find("deepCoadd_forced_src", tract=tract, patch=patch, filter=band)
        if forced_path is None:
            if template is None:
                raise InputError(
                    f"tract {tract}: no deepCoadd_forced_src in any band to take the band columns from"
                )
            columns.update(_filled_band(template, band, n))
            result.bands_filled.append(band)
            continue
        forced = afw.read_table(forced_path)
        bytes_in += forced_path.stat().st_size
        if len(forced) != len(ref):
            raise InputError(
                f"{forced_path}: not row-aligned with its ref {ref_path}: "
                f"{len(forced)} rows against {len(ref)}"
            )
        if not np.array_equal(forced["id"], ref["id"]):
            bad = int(np.flatnonzero(forced["id"] != ref["id"])[0])
            raise InputError(
                f"{forced_path}: not row-aligned with its ref {ref_path}: row {bad} has id "
                f"{forced['id'][bad]} where the ref has {ref['id'][bad]}"
            )
        calexp = repo.require("deepCoadd_calexp", tract=tract, patch=patch, filter=band)
        columns.update(_band_columns(forced, read_calibration(calexp), gen, mask, band))
    if result.bands_filled:
        log.warning(
            "tract %d patch %s: no forced photometry in band(s) %s; their columns are NaN/-1/False "
            "(bad-pixel flags True), as GCRCatalogs serves a missing band",
            tract,
            patch,
            ",".join(result.bands_filled),
        )
    result.frame = pd.DataFrame(columns)
    result.rows, result.ncolumns = result.frame.shape
    result.bytes_in = bytes_in
    result.seconds = time.perf_counter() - start
    return result


def _merge_patch_task(args: tuple) -> PatchResult:
    return merge_patch(*args)


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
    name: str = "object",
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
    target = Path(output_dir) / object_file_name(tract, name)
    results: list[PatchResult] = []
    log.info("tract %d: merging %d patches, bands %s, %d job(s)", tract, len(patches), "".join(bands), jobs)
    with atomic_path(target) as tmp:
        with pd.HDFStore(tmp, mode="w") as store:
            if jobs > 1:
                with ProcessPoolExecutor(max_workers=jobs) as pool:
                    _write_results(pool.map(_merge_patch_task, tasks), store, tract, results)
            else:
                _write_results(map(_merge_patch_task, tasks), store, tract, results)
        if not any(r.rows for r in results):
            raise InputError(
                f"tract {tract}: no primary object in any patch ({', '.join(patches)}); nothing written"
            )
    return TractResult(tract, target, results)


def _write_results(results, store: pd.HDFStore, tract: int, out: list[PatchResult]) -> None:
    for r in results:
        if r.frame is not None:
            store.put(patch_key(tract, r.patch), r.frame, format="fixed")
            log.info(
                "tract %d patch %s: %d primary of %d rows, %d columns (%.1f s)",
                tract,
                r.patch,
                r.rows,
                r.rows_in,
                r.ncolumns,
                r.seconds,
            )
            r.frame = None  # written: free the rows
        out.append(r)
