"""What a sample repository looks like (SampleConfig) and what was made (SampleRepo).

The defaults make a small repository in about a second; every option exists because some later
test needs that kind of input (older field names, the photocalib era, a per-patch zero point that
is not 27, a band or patch that the pipelines did not produce).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dc2tasks import names
from dc2tasks.catalogue import BANDS, check_bands
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.schema import SchemaGeneration, parse_generation
from dc2tasks.sample.focal_plane import NUM_DETECTORS
from dc2tasks.sample.paths import MAPPERS

ALL_DETECTORS = tuple(range(NUM_DETECTORS))
# R22 S11, S12, S21, S22: a 2x2 block at the centre of the focal plane
CENTRAL_DETECTORS = (94, 95, 97, 98)
MAX_VISITS_PER_TRACT = 1000  # visit ids are 100000 + 1000 * tract + k
# the options that only matter with visits: left out of the marker file when there are none, so
# a repository without visits is byte for byte what it was before visits existed
VISIT_OPTIONS = (
    "visits",
    "detectors",
    "detector_pixels",
    "spurious_fraction",
    "variable_fraction",
    "dia",
    "src_width",
    "forced_src_width",
    "dia_src_width",
)


def patch_grid(nx: int, ny: int | None = None) -> tuple[str, ...]:
    """Patches 0,0 .. nx-1,ny-1, in Gen2 order (x outer, y inner)."""
    ny = nx if ny is None else ny
    return tuple(f"{x},{y}" for x in range(nx) for y in range(ny))


def parse_missing_band(text: str) -> tuple[str, str | None]:
    """`g` (every patch) or `g@0,1` (one patch)."""
    band, _, patch = text.partition("@")
    if band not in tuple(BANDS):
        raise ValueError(f"a missing band is 'b' or 'b@x,y', b one of {BANDS}, not {text!r}")
    return band, names.PATCH.check(patch) if patch else None


@dataclass(frozen=True)
class SampleConfig:
    """Options of the sample repository; every combination of the defaults is small and fast.

    `ref_width` and `forced_width` count columns as a reader sees them: every numeric field plus every
    packed flag bit. `missing_bands` holds (band, patch) pairs, patch None meaning every patch: that
    band's forced_src and coadd calexp are not written there. `missing_patches` get no ref at all
    (and so no forced_src). Either may name a patch that is not generated: nothing to leave out there,
    which lets one list of options serve configs with fewer patches. `zp_jitter` (mag) moves each
    patch-band's zero point away from 27 by a deterministic amount drawn uniformly in
    [-zp_jitter, +zp_jitter].

    Visits (`visits` per tract, 0 = none): `detectors` are the obs_lsst detector numbers written for
    each visit, each `detector_pixels` (width, height) at the coadd pixel scale; `spurious_fraction`
    adds that many unmatched sources per real source; `variable_fraction` of the objects vary and
    give difference-image sources; `dia` (default: whether there are visits) writes the
    difference-image datasets. `*_width` count the columns of src, forced_src and diaSrc as above.
    """

    seed: int = 1
    tracts: tuple[int, ...] = (4850,)
    patches: tuple[str, ...] = patch_grid(2)
    objects_per_patch: int = 500
    bands: tuple[str, ...] = tuple(BANDS)
    ref_width: int = 740
    forced_width: int = 280
    schema: int = 3
    camera: str = "obs_lsst"
    calib_era: str = "calib"
    zero_point: float = 27.0
    zp_jitter: float = 0.0
    pixel_scale: float = 0.2
    rerun: str = "multiband"
    missing_bands: tuple[tuple[str, str | None], ...] = ()
    missing_patches: tuple[str, ...] = ()
    truth: bool = True
    visits: int = 0
    detectors: tuple[int, ...] = CENTRAL_DETECTORS
    detector_pixels: tuple[int, int] = (4000, 4072)
    spurious_fraction: float = 0.05
    variable_fraction: float = 0.1
    dia: bool | None = None
    src_width: int = 60
    forced_src_width: int = 30
    dia_src_width: int = 60

    def __post_init__(self) -> None:
        object.__setattr__(self, "tracts", tuple(int(t) for t in self.tracts))
        object.__setattr__(self, "detectors", tuple(int(d) for d in self.detectors))
        object.__setattr__(self, "detector_pixels", tuple(int(v) for v in self.detector_pixels))
        object.__setattr__(self, "dia", self.visits > 0 if self.dia is None else bool(self.dia))
        patch = names.PATCH.check
        object.__setattr__(self, "patches", tuple(patch(p, "patches") for p in self.patches))
        missing = tuple(patch(p, "missing_patches") for p in self.missing_patches)
        object.__setattr__(self, "missing_patches", missing)
        object.__setattr__(
            self,
            "missing_bands",
            tuple((b, patch(p, "missing_bands") if p else None) for b, p in self.missing_bands),
        )
        object.__setattr__(self, "schema", parse_generation(self.schema).version)
        self.validate()

    def validate(self) -> None:
        if not self.tracts:
            raise ValueError("at least one tract is needed")
        if not self.patches:
            raise ValueError("at least one patch is needed")
        if len(set(self.patches)) != len(self.patches):
            raise ValueError(f"patches are listed twice: {list(self.patches)}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {self.seed}")
        if self.objects_per_patch < 1:
            raise ValueError(f"objects_per_patch must be at least 1, not {self.objects_per_patch}")
        check_bands(self.bands, "bands")
        if self.camera not in MAPPERS:
            raise ValueError(f"camera must be one of {sorted(MAPPERS)}, not {self.camera!r}")
        if self.calib_era not in ("calib", "photocalib"):
            raise ValueError(f"calib_era must be 'calib' or 'photocalib', not {self.calib_era!r}")
        if not self.pixel_scale > 0:
            raise ValueError(f"pixel_scale must be positive, not {self.pixel_scale}")
        if self.zp_jitter < 0:
            raise ValueError(f"zp_jitter must be >= 0, not {self.zp_jitter}")
        if not self.rerun or "/" in self.rerun or self.rerun in ("coadd", ".", ".."):
            raise ValueError(f"rerun must be a plain directory name other than 'coadd', not {self.rerun!r}")
        for band, _ in self.missing_bands:
            if band not in self.bands:
                raise ValueError(f"missing band {band!r} is not one of the bands {list(self.bands)}")
        self._validate_visits()

    def _validate_visits(self) -> None:
        if not 0 <= self.visits <= MAX_VISITS_PER_TRACT:
            raise ValueError(f"visits must be 0..{MAX_VISITS_PER_TRACT} per tract, not {self.visits}")
        if not self.detectors:
            raise ValueError("detectors: at least one detector is needed")
        bad = [d for d in self.detectors if not 0 <= d < NUM_DETECTORS]
        if bad:
            raise ValueError(f"detectors must be numbers 0..{NUM_DETECTORS - 1}, not {bad}")
        if len(set(self.detectors)) != len(self.detectors):
            raise ValueError(f"detectors are listed twice: {list(self.detectors)}")
        if len(self.detector_pixels) != 2 or min(self.detector_pixels) < 16:
            raise ValueError(
                f"detector_pixels must be (width, height), each at least 16, not {self.detector_pixels}"
            )
        for name in ("spurious_fraction", "variable_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")

    @property
    def generation(self) -> SchemaGeneration:
        return SchemaGeneration(self.schema)

    def band_missing(self, band: str, patch: str) -> bool:
        """Whether `missing_bands` removes this band (forced_src and calexp) from this patch."""
        return any(b == band and (p is None or p == patch) for b, p in self.missing_bands)

    def band_written(self, band: str, patch: str) -> bool:
        """Whether this band's forced_src exists for this patch."""
        return patch not in self.missing_patches and not self.band_missing(band, patch)


@dataclass
class SampleVisit:
    """One visit the generator wrote: its data id parts and, per written detector, its raft and sensor.

    `raft_sensor[d]` is (raftName, detectorName), e.g. ("R22", "S11"), for obs_lsst and (raft,
    sensor), e.g. ("2,2", "1,1"), for obs_lsstSim.
    """

    visit: int
    tract: int
    band: str
    mjd: float  # TAI, the exposure mid-point (DATE-AVG)
    detectors: list[int]
    raft_sensor: dict[int, tuple[str, str]]

    def data_id(self, detector: int, camera: str = "obs_lsst") -> dict[str, object]:
        """The Gen2 data id of one detector of this visit, with the keys the camera's templates use."""
        raft, sensor = self.raft_sensor[detector]
        if camera == "obs_lsstSim":
            return {
                "visit": self.visit,
                "filter": self.band,
                "raft": raft,
                "sensor": sensor,
                "tract": self.tract,
            }
        return {
            "visit": self.visit,
            "filter": self.band,
            "raftName": raft,
            "detectorName": sensor,
            "detector": detector,
        }


VISIT_TRUTH_KINDS = ("source", "forced", "dia_source")


@dataclass
class SampleRepo:
    """Where the sample repository is and what it holds; `Gen2Repo.open(root, rerun=rerun)` reads it."""

    root: Path
    rerun: str
    camera: str
    tracts: list[int]
    patches: dict[int, list[str]]  # per tract: patches with a deepCoadd_ref
    bands: list[str]
    pixel_scale: float
    schema: SchemaGeneration
    calib_era: str
    num_patches: dict[int, int]  # per tract: patches along each axis (7 at 0.2"/px, 8 at 0.185")
    truth: dict[int, Path] = field(default_factory=dict)  # per tract
    rows: int = 0  # ref rows over all patches (overlap objects counted in each patch)
    bytes_written: int = 0
    files: int = 0
    visits: list[SampleVisit] = field(default_factory=list)
    visit_truth_paths: dict[tuple[str, int], Path] = field(default_factory=dict)  # (kind, visit)
    dia_object_truth_paths: dict[int, Path] = field(default_factory=dict)  # per tract
    visit_rows: dict[str, int] = field(default_factory=dict)  # rows written: src, forced_src, diaSrc

    @property
    def rerun_path(self) -> Path:
        return self.root / "rerun" / self.rerun

    @property
    def coadd_rerun_path(self) -> Path:
        return self.root / "rerun" / "coadd"

    def truth_path(self, tract: int) -> Path:
        return self.truth[tract]

    def visit_ids(self, tract: int | None = None) -> list[int]:
        """Visits in the order they were written (of one tract, if given)."""
        return [v.visit for v in self.visits if tract is None or v.tract == tract]

    def visit_info(self, visit: int) -> SampleVisit:
        for v in self.visits:
            if v.visit == visit:
                return v
        raise KeyError(f"visit {visit} is not in this sample repository (visits {self.visit_ids()})")

    def write_visit_list(self, path: str | os.PathLike, tract: int | None = None) -> Path:
        """A visit list file as the old scripts read it (`np.loadtxt`): one visit number a line."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(f"{v}\n" for v in self.visit_ids(tract)))
        return path

    def visit_truth(self, kind: str, visit: int) -> Path:
        """Truth of one visit: kind "source" (src rows), "forced" (forced_src) or "dia_source"."""
        if kind not in VISIT_TRUTH_KINDS:
            raise ValueError(f"visit truth kind must be one of {VISIT_TRUTH_KINDS}, not {kind!r}")
        try:
            return self.visit_truth_paths[(kind, visit)]
        except KeyError:
            raise KeyError(
                f"no {kind} truth for visit {visit} (written without truth, or no such visit)"
            ) from None

    def dia_object_truth(self, tract: int) -> Path:
        try:
            return self.dia_object_truth_paths[tract]
        except KeyError:
            raise KeyError(
                f"no DIA object truth for tract {tract} (no DIA, no truth, or no such tract)"
            ) from None
