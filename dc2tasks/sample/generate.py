"""make_sample_repo: write a whole sample Gen2 repository, patch by patch.

Memory stays at about one patch: a patch's objects are assembled from its own and its neighbours'
owned objects (kept only while a later patch still needs them), each file is built and written
before the next, and the truth table grows one row group per patch. With visits, a tract's objects
are also gathered (a few arrays per object) and its visits are written after its coadds
(visits.py), one detector at a time; nothing a coadd file holds depends on them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dc2tasks.sample import coadd, layout, truth
from dc2tasks.sample.columns import CoaddSchemas, coadd_schemas
from dc2tasks.sample.conditions import band_conditions
from dc2tasks.sample.config import SampleConfig, SampleRepo
from dc2tasks.sample.filler import FillerSource
from dc2tasks.sample.objects import Objects, patch_objects, simulate_owner
from dc2tasks.sample.paths import TEMPLATES
from dc2tasks.sample.skymap import RingsSkyMap, TractGeometry
from dc2tasks.sample.streams import Purpose, stream
from dc2tasks.sample.tract_objects import TractObjectCollector
from dc2tasks.sample.visit_columns import VisitSchemas, visit_schemas
from dc2tasks.sample.visits import TractVisitWriter


class NotEmptyError(ValueError):
    """The target directory already holds files and overwriting was not asked for."""


def make_sample_repo(
    path: str | os.PathLike, config: SampleConfig | None = None, *, overwrite: bool = False
) -> SampleRepo:
    """Write a sample repository at `path` and say what is in it.

    A non-empty `path` is refused unless `overwrite`; when overwriting a tree this function made
    before (it has the marker file), its reruns and truth are removed first so no stale file stays.
    """
    config = config or SampleConfig()
    root = Path(path)
    schemas = coadd_schemas(config.generation, config.bands, config.ref_width, config.forced_width)
    vschemas = (
        visit_schemas(config.generation, config.src_width, config.forced_src_width, config.dia_src_width)
        if config.visits
        else None
    )
    skymap = RingsSkyMap()
    geoms = {t: skymap.tract(t, config.pixel_scale) for t in config.tracts}
    for geom in geoms.values():
        for patch in config.patches:
            geom.patch_index(patch)  # fail before writing anything
    _prepare(root, overwrite)
    layout.write_skeleton(root, config)

    repo = SampleRepo(
        root=root,
        rerun=config.rerun,
        camera=config.camera,
        tracts=list(config.tracts),
        patches={},
        bands=list(config.bands),
        pixel_scale=config.pixel_scale,
        schema=config.generation,
        calib_era=config.calib_era,
        num_patches={t: g.num_patches for t, g in geoms.items()},
    )
    for geom in geoms.values():
        collector = TractObjectCollector(geom.tract, config.bands) if vschemas is not None else None
        _write_tract(root, config, schemas, skymap, geom, repo, collector)
        if collector is not None and vschemas is not None:
            _write_visits(root, config, vschemas, geom, collector, repo)
    return repo


def _write_visits(
    root: Path,
    config: SampleConfig,
    schemas: VisitSchemas,
    geom: TractGeometry,
    collector: TractObjectCollector,
    repo: SampleRepo,
) -> None:
    TractVisitWriter(root, config, schemas, geom, collector.finish(), repo).write()


def _prepare(root: Path, overwrite: bool) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise NotEmptyError(f"{root}: exists and is not a directory")
    if not any(root.iterdir()):
        return
    if not overwrite:
        raise NotEmptyError(f"{root}: the directory is not empty")
    if (root / layout.MARKER).is_file():
        for sub in ("rerun", "truth"):
            shutil.rmtree(root / sub, ignore_errors=True)


def _sorted_patches(patches: tuple[str, ...]) -> list[str]:
    return sorted(patches, key=lambda p: tuple(int(v) for v in p.split(",")))


def _write_tract(
    root: Path,
    config: SampleConfig,
    schemas: CoaddSchemas,
    skymap: RingsSkyMap,
    geom: TractGeometry,
    repo: SampleRepo,
    collector: TractObjectCollector | None = None,
) -> None:
    tract = geom.tract
    coadd_root = root / "rerun" / layout.COADD_RERUN
    rerun_root = root / "rerun" / config.rerun
    templates = TEMPLATES[config.camera]
    owners: dict[tuple[int, int], Objects] = {}
    truth_writer = truth.TruthWriter(truth.truth_path(root, tract)) if config.truth else None
    written_patches: list[str] = []
    try:
        for patch in _sorted_patches(config.patches):
            px, py = geom.patch_index(patch)
            conditions = {
                b: band_conditions(config, tract, px, py, b, geom.patch_inner) for b in config.bands
            }
            ctx = coadd.PatchContext(geom, px, py, config.bands, conditions)
            for band in config.bands:
                if not config.band_missing(band, patch):
                    rel = templates["deepCoadd_calexp"] % {"filter": band, "tract": tract, "patch": patch}
                    repo.bytes_written += coadd.write_calexp(coadd_root / rel, ctx, band)
                    repo.files += 1
            if patch in config.missing_patches:
                continue
            needed = set(geom.neighbours(px, py))
            owners = {k: v for k, v in owners.items() if k in needed}
            for qx, qy in sorted(needed - owners.keys()):
                q = f"{qx},{qy}"
                excluded = {b for b in config.bands if config.band_missing(b, q)}
                owners[(qx, qy)] = simulate_owner(config, skymap, geom, qx, qy, excluded)
            objs = patch_objects(owners, geom, px, py)

            core, core_flags = coadd.ref_core(objs, ctx, schemas.ref, config.generation)
            rng = stream(config.seed, tract, px, py, Purpose.REF_FILLER)
            filler = FillerSource(rng, len(objs), objs.x, objs.y)
            columns, flags = coadd.assemble(schemas.ref, core, core_flags, filler)
            rel = templates["deepCoadd_ref"] % {"tract": tract, "patch": patch}
            repo.bytes_written += coadd.write_catalog(rerun_root / rel, schemas.ref, columns, flags)
            repo.files += 1
            del columns, flags, core, core_flags, filler

            written = {b: config.band_written(b, patch) for b in config.bands}
            for band in config.bands:
                if not written[band]:
                    continue
                core, core_flags = coadd.forced_core(objs, ctx, band, config.generation)
                rng = stream(config.seed, tract, px, py, Purpose.FORCED_FILLER, band)
                filler = FillerSource(rng, len(objs), objs.x, objs.y)
                columns, flags = coadd.assemble(schemas.forced, core, core_flags, filler)
                rel = templates["deepCoadd_forced_src"] % {"filter": band, "tract": tract, "patch": patch}
                repo.bytes_written += coadd.write_catalog(rerun_root / rel, schemas.forced, columns, flags)
                repo.files += 1
                del columns, flags, core, core_flags, filler

            if truth_writer is not None:
                truth_writer.write(truth.truth_batch(objs, ctx, written))
            if collector is not None:
                collector.add(objs, ctx)
            repo.rows += len(objs)
            written_patches.append(patch)
    except BaseException as exc:
        if truth_writer is not None:
            truth_writer.abort(exc)
        raise
    if truth_writer is not None and (size := truth_writer.close()):
        repo.bytes_written += size
        repo.truth[tract] = truth_writer.path
        repo.files += 1
    repo.patches[tract] = written_patches
