"""The truth table: what the generator put into each patch, in physical units, outside the butler tree.

One row per (object, patch) written, because an object in a patch overlap is in two catalogs with
two calibrations. Fluxes are the nJy values behind the written instrumental fluxes
(instFlux = nJy * F0 / 10**12.56 with that patch-band's F0), so a reader that applies the
calibration must get them back to ~1e-15; a reader that assumes ZP 27 will not when `zp_jitter` > 0.
A band not written for a patch has NaN there (and NaN fluxmag0).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.qa.references import TRUTH_DIR, TRUTH_FILE
from dc2tasks.sample.coadd import PatchContext, placement_flags, psf_moments
from dc2tasks.sample.objects import Objects


def truth_path(root: Path, tract: int) -> Path:
    return root / TRUTH_DIR / TRUTH_FILE.format(tract=tract)


def truth_batch(objs: Objects, ctx: PatchContext, written: dict[str, bool]) -> pa.Table:
    n = len(objs)
    inner, primary = placement_flags(objs, ctx)
    psf = psf_moments(objs, ctx)
    cols: dict[str, np.ndarray] = {
        "objectId": objs.id,
        "parentObjectId": objs.parent,
        "tract": np.full(n, ctx.geom.tract, dtype=np.int64),
        "patch": np.full(n, ctx.patch, dtype=object),
        "ra": np.degrees(objs.ra),
        "dec": np.degrees(objs.dec),
        "x": objs.x,
        "y": objs.y,
        "is_primary": primary,
        "is_patch_inner": inner,
        "is_tract_inner": objs.tract_inner,
        "deblend_nChild": objs.n_child,
        "ref_band": np.array(ctx.bands, dtype=object)[objs.ref_band.astype(np.int64)],
        "extendedness": objs.extendedness,
    }
    for k, b in enumerate(ctx.bands):
        nan = not written[b]
        f0 = np.nan if nan else ctx.conditions[b].fluxmag0

        def band(values: np.ndarray, nan: bool = nan) -> np.ndarray:
            return np.full(n, np.nan) if nan else np.asarray(values, dtype=np.float64)

        cols[f"psf_flux_nJy_{b}"] = band(objs.psf_flux[k])
        cols[f"psf_flux_err_nJy_{b}"] = band(objs.psf_err[k])
        cols[f"cmodel_flux_nJy_{b}"] = band(objs.cmodel_flux[k])
        cols[f"cmodel_flux_err_nJy_{b}"] = band(objs.cmodel_err[k])
        cols[f"fluxmag0_{b}"] = np.full(n, f0)
        cols[f"psf_xx_{b}"] = band(psf[k, 0])
        cols[f"psf_yy_{b}"] = band(psf[k, 1])
        cols[f"psf_xy_{b}"] = band(psf[k, 2])
    return pa.table({k: pa.array(v) for k, v in cols.items()})


class TruthWriter:
    """Appends one row group per patch to a tract's truth file, renamed into place on close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._atomic = atomic_path(path)
        self._tmp = self._atomic.__enter__()
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema, compression="zstd")
        self._writer.write_table(table)

    def close(self) -> int:
        """Rename into place; returns the file size, 0 (and no file) if no patch was written."""
        if self._writer is None:
            self.abort(RuntimeError("no truth rows"))
            return 0
        self._writer.close()
        self._atomic.__exit__(None, None, None)
        return os.path.getsize(self.path)

    def abort(self, exc: BaseException) -> None:
        """Drop the temporary file (atomic_path removes it when told the write failed)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._atomic.__exit__(type(exc), exc, exc.__traceback__)
