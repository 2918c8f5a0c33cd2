"""The whole Object catalog of a repository: merge, trim, DPDD, merged Parquet, GCRCatalogs configs.

The same steps the DAG runs as separate jobs, run here in one process, for `dc2 object-pipeline`
and the demo. Output layout under the work directory:

    object/        object_tract_<t>.hdf5, trim_object_tract_<t>.hdf5, schema.yaml, trim_schema.yaml
    dpdd_object/   dpdd_object_tract_<t>.parquet, dpdd_<run>_object.parquet, dpdd_schema.yaml
    gcr-catalogs/  one catalog config per product
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products import gcr, gcr_schema
from dc2tasks.products.calib import read_pixel_scale
from dc2tasks.products.errors import InputError
from dc2tasks.products.object_dpdd import dpdd_tract
from dc2tasks.products.object_merge import merge_tract
from dc2tasks.products.object_trim import trim_file
from dc2tasks.products.parquet_merge import merge_parquet, merged_name
from dc2tasks.products.repo import Gen2Repo

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    workdir: Path
    tracts: list[int]
    rows: dict[int, int] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)
    pixel_scale: float = 0.2
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """What was made, for a person: every file with its size, the catalog configs, the primary
        objects per tract, the pixel scale and each step's time (`dc2 object-pipeline`, the demo)."""
        lines = [f"Object catalog of tracts {', '.join(map(str, self.tracts))} in {self.workdir}:"]
        for kind, paths in self.files.items():
            lines += [f"  {kind:<12} {p}  ({p.stat().st_size / 1e6:.1f} MB)" for p in paths]
        lines += [f"  {'gcr config':<12} {p}  ({kind})" for kind, p in self.configs.items()]
        rows = ", ".join(f"tract {t}: {n}" for t, n in self.rows.items())
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        lines.append(f"Primary objects: {rows}. Pixel scale {self.pixel_scale} arcsec/px. Time: {steps}.")
        return "\n".join(lines)


def repo_pixel_scale(repo: Gen2Repo, tract: int) -> float | None:
    """arcsec/px from the WCS of the first coadd calexp of the tract, if any has one."""
    for band in repo.bands(tract):
        for patch in repo.patches(tract):
            path = repo.find("deepCoadd_calexp", tract=tract, patch=patch, filter=band)
            if path is not None:
                scale = read_pixel_scale(path)
                if scale:
                    return round(scale, 6)
    return None


def run_object_pipeline(
    repo: Gen2Repo,
    workdir: str | Path,
    run: str,
    tracts: list[int] | None = None,
    bands: list[str] | None = None,
    pixel_scale: float | None = None,
    jobs: int = 1,
) -> PipelineResult:
    workdir = Path(workdir)
    all_tracts = repo.tracts()
    if tracts is None:
        tracts = all_tracts
    unknown = [t for t in tracts if t not in all_tracts]
    if unknown:
        raise InputError(f"{repo.root}: no tract {', '.join(map(str, unknown))} (tracts here: {all_tracts})")
    if not tracts:
        raise InputError(f"{repo.root}: no tracts with deepCoadd_ref")
    if pixel_scale is None:
        pixel_scale = repo_pixel_scale(repo, tracts[0])
        if pixel_scale is None:
            pixel_scale = 0.2
            log.warning("no coadd WCS to read the pixel scale from; using 0.2 arcsec/px")
    obj_dir, dpdd_dir, cfg_dir = workdir / "object", workdir / "dpdd_object", workdir / "gcr-catalogs"
    result = PipelineResult(workdir, list(tracts), pixel_scale=pixel_scale)
    files = result.files
    t0 = time.perf_counter()
    for tract in tracts:
        merged = merge_tract(repo, tract, obj_dir, bands=bands, jobs=jobs)
        result.rows[tract] = merged.rows
        files.setdefault("object", []).append(merged.path)
    # the schema yaml beside a step's files before the next step reads them: it gives that step the
    # bands and defaults of the whole product (object_schema), read once rather than per file
    files["schema"] = [gcr_schema.write_schema(obj_dir, CATALOGUE["object"])]
    result.seconds["merge"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for path in list(files["object"]):
        files.setdefault("trim_object", []).append(trim_file(path, obj_dir).path)
    files["schema"].append(gcr_schema.write_schema(obj_dir, CATALOGUE["trim_object"]))
    result.seconds["trim"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for path in files["trim_object"]:
        files.setdefault("dpdd_object", []).append(dpdd_tract(path, dpdd_dir, pixel_scale).path)
    result.seconds["dpdd"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    merged_path = dpdd_dir / merged_name(run)
    files["dpdd_merged"] = [merge_parquet(files["dpdd_object"], merged_path).path]
    result.seconds["merge_parquet"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for product in gcr.PRODUCTS.values():
        if product.directory not in (obj_dir.name, dpdd_dir.name):
            continue
        base = workdir / product.directory
        if product.name not in ("object", "trim_object"):
            files["schema"].append(gcr_schema.write_schema(base, product))
        config = gcr.catalog_config(product, str(base.resolve()), run, pixel_scale)
        result.configs[product.name] = gcr.write_config(cfg_dir, product.catalog_name(run), config)
    result.seconds["gcr"] = time.perf_counter() - t0
    return result
