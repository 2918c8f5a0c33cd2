"""Write a tract's visits: per visit and written detector a calexp and src (in the coadd rerun), a
forced_src, and with DIA a difference image and diaSrc (in the config's rerun); then per patch the
deepDiff_diaObject of the variable objects seen, and the truth of it all.

Memory: a visit projects the tract's objects once (a few arrays of the object count), then builds
and writes one detector's files at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy.spatial import cKDTree

from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.calib import Calibration
from dc2tasks.sample import layout
from dc2tasks.sample.coadd import assemble, write_catalog
from dc2tasks.sample.config import SampleConfig, SampleRepo, SampleVisit
from dc2tasks.sample.detector_catalogs import (
    SPURIOUS_CLEARANCE_ARCSEC,
    Catalog,
    DetectorContext,
    dia_catalog,
    forced_catalog,
    src_catalog,
)
from dc2tasks.sample.exposure import write_exposure
from dc2tasks.sample.filler import FillerSource
from dc2tasks.sample.focal_plane import FocalPlane, detector_names
from dc2tasks.sample.observations import (
    VISIT_DEPTH_5SIGMA,
    Observation,
    detector_calibrations,
    exposure_metadata,
    noise_njy,
    visit_observations,
)
from dc2tasks.sample.paths import TEMPLATES, relpath
from dc2tasks.sample.skymap import TractGeometry
from dc2tasks.sample.streams import Purpose, visit_stream
from dc2tasks.sample.tract_objects import TractObjects, Variables, choose_variables
from dc2tasks.sample.visit_columns import VisitSchemas
from dc2tasks.sample.visit_truth import (
    DIA_OBJECT_SCHEMA,
    VisitTruthWriters,
    dia_object_truth_path,
    truth_table,
)


@dataclass
class VisitView:
    """Where a visit puts the tract's objects: each object's detector (-1: none) and pixel position."""

    detector: np.ndarray
    x: np.ndarray
    y: np.ndarray
    order: np.ndarray  # object indices grouped by detector, by id within a detector
    bounds: np.ndarray  # order[bounds[k]:bounds[k + 1]] are the objects of detector k
    tree: cKDTree | None  # focal-plane positions of the objects near the focal plane
    clearance_px: float

    @classmethod
    def project(cls, objs: TractObjects, observation: Observation, plane: FocalPlane) -> VisitView:
        u, v, front = observation.pointing.sky_to_focal(objs.ra, objs.dec)
        detector, x, y = plane.locate(u, v)
        detector = np.where(front, detector, -1)
        order = np.argsort(detector, kind="stable")
        bounds = np.searchsorted(detector[order], np.arange(-1, 190))[1:]
        clearance = SPURIOUS_CLEARANCE_ARCSEC / observation.pointing.pixel_scale_arcsec
        (rx, ry), margin = plane.raft_pitch, 2 * clearance
        near = front & (np.abs(u) < 2.5 * rx + margin) & (np.abs(v) < 2.5 * ry + margin)
        tree = cKDTree(np.column_stack([u[near], v[near]])) if near.any() else None
        return cls(detector, x, y, order, bounds, tree, clearance)

    def on(self, detector: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(object indices in id order, x, y) of the objects whose true position is on a detector."""
        index = self.order[self.bounds[detector] : self.bounds[detector + 1]]
        return index, self.x[index], self.y[index]

    def clear(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if self.tree is None:
            return np.ones(len(u), dtype=bool)
        distance, _ = self.tree.query(np.column_stack([u, v]), distance_upper_bound=self.clearance_px)
        return ~np.isfinite(distance)


@dataclass
class DiaTally:
    """What the DIA sources written so far say about each variable object (dia_pipe's running sums)."""

    nobs: np.ndarray
    flux_sum: np.ndarray
    err2_sum: np.ndarray

    @classmethod
    def empty(cls, n: int) -> DiaTally:
        return cls(np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n))

    def add(self, variable: np.ndarray, flux: np.ndarray, err: np.ndarray) -> None:
        real = variable >= 0
        np.add.at(self.nobs, variable[real], 1)
        ok = real & np.isfinite(flux) & np.isfinite(err)
        np.add.at(self.flux_sum, variable[ok], flux[ok])
        np.add.at(self.err2_sum, variable[ok], err[ok] ** 2)


class TractVisitWriter:
    """Writes one tract's visits and DIA objects into a repository and records them in `repo`."""

    def __init__(
        self,
        root: Path,
        config: SampleConfig,
        schemas: VisitSchemas,
        geom: TractGeometry,
        objs: TractObjects,
        repo: SampleRepo,
    ) -> None:
        self.root = root
        self.config = config
        self.schemas = schemas
        self.geom = geom
        self.objs = objs
        self.repo = repo
        self.plane = FocalPlane(*config.detector_pixels)
        self.templates = TEMPLATES[config.camera]
        self.coadd_root = root / "rerun" / layout.COADD_RERUN
        self.rerun_root = root / "rerun" / config.rerun
        self.variables: Variables | None = None
        self.variable_of = np.full(len(objs), -1, dtype=np.int64)
        if config.dia:
            noise = {b: noise_njy(b) for b in VISIT_DEPTH_5SIGMA}
            self.variables = choose_variables(
                config.seed, objs, geom, config.patches, config.variable_fraction, noise
            )
            self.variable_of[self.variables.index] = np.arange(len(self.variables))
        self.tally = DiaTally.empty(len(self.variables) if self.variables is not None else 0)

    def write(self) -> None:
        for observation in visit_observations(self.config, self.geom):
            self._write_visit(observation)
        if self.variables is not None:
            self._write_dia_objects(self.variables)

    # ---- one visit ----------------------------------------------------------------------

    def _data_id(self, observation: Observation, detector: int) -> dict[str, object]:
        raft, sensor = detector_names(detector, self.config.camera)
        return {
            "visit": observation.visit,
            "filter": observation.band,
            "raftName": raft,
            "detectorName": sensor,
            "detector": detector,
            "raft": raft,
            "sensor": sensor,
            "tract": observation.tract,
        }

    def _write_visit(self, observation: Observation) -> None:
        config = self.config
        kinds = ("source", "forced", "dia_source") if config.dia else ("source", "forced")
        truth = VisitTruthWriters(self.root, observation.visit, kinds if config.truth else ())
        view = VisitView.project(self.objs, observation, self.plane)
        detectors = sorted(config.detectors)
        for detector in detectors:
            self._write_detector(observation, detector, view, truth)
        for kind, (path, size) in truth.close().items():
            self.repo.visit_truth_paths[(kind, observation.visit)] = path
            self.repo.bytes_written += size
            self.repo.files += 1
        names = {d: detector_names(d, config.camera) for d in detectors}
        visit = SampleVisit(
            observation.visit, observation.tract, observation.band, observation.mjd, detectors, names
        )
        self.repo.visits.append(visit)

    def _write_detector(
        self, observation: Observation, detector: int, view: VisitView, truth: VisitTruthWriters
    ) -> None:
        config = self.config
        data_id = self._data_id(observation, detector)
        calibs = detector_calibrations(config, observation, detector)
        ctx = DetectorContext(
            observation,
            detector,
            self.plane,
            calibs.calexp,
            calibs.diffexp,
            config.generation,
            config.spurious_fraction,
        )
        wcs = observation.pointing.wcs_cards(self.plane, detector)
        raft, sensor = detector_names(detector, config.camera)
        metadata = exposure_metadata(observation, f"{raft}_{sensor}")
        index, x, y = view.on(detector)

        self._exposure("calexp", self.coadd_root, data_id, calibs.calexp, wcs, metadata)
        rng = self._rng(observation, detector, Purpose.SOURCES)
        src = src_catalog(ctx, rng, self.objs, index, x, y, view.clear)
        self._catalog("src", self.coadd_root, data_id, src, observation, detector, Purpose.SOURCE_FILLER)
        truth.write("source", src.truth)
        self._count("src", len(src))

        forced = forced_catalog(
            ctx, self._rng(observation, detector, Purpose.FORCED_SOURCES), self.objs, index, x, y
        )
        purpose = Purpose.FORCED_SOURCE_FILLER
        self._catalog("forced_src", self.rerun_root, data_id, forced, observation, detector, purpose)
        truth.write("forced", forced.truth)
        self._count("forced_src", len(forced))

        if self.variables is None:
            return
        self._exposure("deepDiff_differenceExp", self.rerun_root, data_id, calibs.diffexp, wcs, metadata)
        rng = self._rng(observation, detector, Purpose.DIA_SOURCES)
        dia = dia_catalog(ctx, rng, self.objs, self.variables, self.variable_of, index, x, y, view.clear)
        self._catalog(
            "deepDiff_diaSrc", self.rerun_root, data_id, dia, observation, detector, Purpose.DIA_SOURCE_FILLER
        )
        truth.write("dia_source", dia.truth)
        self._count("deepDiff_diaSrc", len(dia))
        self.tally.add(dia.variable, dia.inst_flux, dia.inst_err)

    def _rng(self, observation: Observation, detector: int, purpose: Purpose) -> np.random.Generator:
        return visit_stream(self.config.seed, observation.visit, detector, purpose)

    def _count(self, dataset: str, rows: int) -> None:
        self.repo.visit_rows[dataset] = self.repo.visit_rows.get(dataset, 0) + rows

    def _exposure(
        self,
        dataset: str,
        where: Path,
        data_id: dict[str, object],
        calibration: Calibration,
        wcs: list[tuple[str, object]],
        metadata: list[tuple[str, object]],
    ) -> None:
        path = where / relpath(self.config.camera, dataset, data_id)
        write_exposure(path, calibration, wcs, metadata)
        self.repo.bytes_written += os.path.getsize(path)
        self.repo.files += 1

    def _catalog(
        self,
        dataset: str,
        where: Path,
        data_id: dict[str, object],
        catalog: Catalog,
        observation: Observation,
        detector: int,
        filler_purpose: Purpose,
    ) -> None:
        schema = {
            "src": self.schemas.src,
            "forced_src": self.schemas.forced_src,
            "deepDiff_diaSrc": self.schemas.dia_src,
        }[dataset]
        rng = self._rng(observation, detector, filler_purpose)
        filler = FillerSource(rng, len(catalog), catalog.x, catalog.y)
        columns, flags = assemble(schema, catalog.columns, catalog.flags, filler)
        path = where / relpath(self.config.camera, dataset, data_id)
        self.repo.bytes_written += write_catalog(path, schema, columns, flags)
        self.repo.files += 1

    # ---- DIA objects ----------------------------------------------------------------------

    def _write_dia_objects(self, variables: Variables) -> None:
        """Per generated patch, the variable objects of its inner region that some DIA source saw."""
        tally = self.tally
        seen = tally.nobs > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(seen, tally.flux_sum / np.maximum(tally.nobs, 1), np.nan)
            mean_err = np.where(seen, np.sqrt(tally.err2_sum) / np.maximum(tally.nobs, 1), np.nan)
        rows = []
        for patch in self.config.patches:
            sel = np.flatnonzero(seen & (variables.patch == patch))
            sel = sel[np.argsort(variables.dia_object_id[sel], kind="stable")]
            columns = {
                "id": variables.dia_object_id[sel],
                "coord_ra": variables.dia_ra[sel],
                "coord_dec": variables.dia_dec[sel],
                "parent": np.zeros(len(sel), dtype=np.int64),
                "nobs": tally.nobs[sel].astype(np.int32),
                "base_PsfFlux_instFlux": mean[sel],
                "base_PsfFlux_instFluxErr": mean_err[sel],
            }
            rel = self.templates["deepDiff_diaObject"] % {"tract": self.geom.tract, "patch": patch}
            schema = self.schemas.dia_object
            self.repo.bytes_written += write_catalog(self.rerun_root / rel, schema, columns, {})
            self.repo.files += 1
            rows.append((patch, sel))
        if not self.config.truth:
            return
        sel = np.concatenate([s for _, s in rows]) if rows else np.zeros(0, dtype=np.int64)
        truth = {
            "diaObjectId": variables.dia_object_id[sel],
            "objectId": variables.object_id[sel],
            "patch": np.concatenate([np.full(len(s), p, dtype=object) for p, s in rows]) if rows else [],
            "ra": np.degrees(variables.dia_ra[sel]),
            "dec": np.degrees(variables.dia_dec[sel]),
            "nobs": tally.nobs[sel],
        }
        path = dia_object_truth_path(self.root, self.geom.tract)
        with atomic_path(path) as tmp:
            pq.write_table(truth_table(DIA_OBJECT_SCHEMA, truth), tmp, compression="zstd")
        self.repo.dia_object_truth_paths[self.geom.tract] = path
        self.repo.bytes_written += os.path.getsize(path)
        self.repo.files += 1
