"""Every per-visit product of a repository in one process: Source, ForcedSource, DIASource, DIAObject.

What the DAG runs as Slurm arrays, run here in turn for `dc2 visit-pipeline` and the demo. It expects
the Object tables (for Source matching) in <workdir>/dpdd_object, as object_pipeline leaves them.
Output layout under the work directory:

    source/ forced_source/ dia_source/   <prefix>_visit_<v>.parquet, schema.yaml
    dia_object/                          dia_object_tract_<t>.parquet, schema.yaml
    gcr-catalogs/                        dc2_<product>_<run>.yaml
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dc2tasks.products import gcr, gcr_schema
from dc2tasks.products.dia_object import dia_object_tract, read_dia_sources
from dc2tasks.products.errors import InputError
from dc2tasks.products.object_index import dia_object_files, load_dia_objects, load_objects
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.products.visit_products import BatchResult, make_visits
from dc2tasks.products.visit_tables import VISIT_TABLES

VISIT_PRODUCT_KEYS = ("source", "forced_source", "dia_source", "dia_object")


@dataclass
class VisitPipelineResult:
    workdir: Path
    visits: list[int]
    batches: dict[str, BatchResult] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def repo_visits(repo: Gen2Repo) -> list[int]:
    """Visits with at least one calexp anywhere along the chain."""
    return sorted({int(data_id["visit"]) for data_id, _ in repo.discover("calexp")})  # type: ignore[call-overload]


def run_visit_pipeline(
    repo: Gen2Repo,
    workdir: str | Path,
    run: str,
    visits: Sequence[int] | None = None,
    products: Sequence[str] = VISIT_PRODUCT_KEYS,
    radius_arcsec: float = 1.0,
    statistics: str = "dc2",
    bands: Sequence[str] | None = None,
) -> VisitPipelineResult:
    workdir = Path(workdir)
    unknown = [p for p in products if p not in VISIT_PRODUCT_KEYS]
    if unknown:
        raise InputError(f"unknown visit product(s) {unknown}; choose from {list(VISIT_PRODUCT_KEYS)}")
    visits = list(visits) if visits is not None else repo_visits(repo)
    if not visits:
        raise InputError(f"{repo.root}: no calexp, so no visits")
    result = VisitPipelineResult(workdir, visits)
    for key in ("source", "forced_source", "dia_source"):
        if key not in products:
            continue
        t0 = time.perf_counter()
        table = VISIT_TABLES[key]
        objects = None
        if table.match == "object":
            objects = load_objects([workdir / "dpdd_object"])
        elif table.match == "dia_object":
            objects = load_dia_objects(repo)
        batch = make_visits(repo, table, visits, workdir / key, objects, radius_arcsec)
        if batch.failures:
            lines = "; ".join(f"visit {v}: {m}" for v, m in batch.failures)
            raise InputError(f"{key}: {len(batch.failures)} visit(s) failed: {lines}")
        result.batches[key] = batch
        result.files[key] = [r.path for r in batch.results if r.path is not None]
        result.seconds[key] = time.perf_counter() - t0
    if "dia_object" in products:
        t0 = time.perf_counter()
        sources = read_dia_sources(workdir / "dia_source")
        tracts = sorted({t for t, _, _ in dia_object_files(repo)})
        result.files["dia_object"] = [
            dia_object_tract(
                repo, t, workdir / "dia_source", workdir / "dia_object", bands, statistics, sources
            ).path
            for t in tracts
        ]
        result.seconds["dia_object"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for key in products:
        if not result.files.get(key):
            continue
        product = gcr.PRODUCTS[key]
        base = workdir / key
        gcr_schema.write_schema(base, product)
        config = gcr.catalog_config(product, str(base.resolve()), run, None)
        result.configs[key] = gcr.write_config(
            workdir / "gcr-catalogs", product.catalog_name(run), config
        )
    result.seconds["gcr"] = time.perf_counter() - t0
    return result
