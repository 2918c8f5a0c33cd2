"""What each visit is: its number, band, date, pointing and observing conditions, and each detector's
calibration (of the calexp and of the difference image).

Visit numbers are 100000 + 1000 * tract + k (k < 1000): distinct over tracts, and above 99999 so
the `%08d` of the obs_lsst templates pads them. Bands cycle through the config's bands; visit k is
taken at MJD 59580 + 0.7 k + a fraction of an hour (TAI, exposure mid-point). A visit points at the
centre of the generated patches (the tract centre when the whole tract is generated), dithered by up
to `DITHER_ARCMIN`, at a rotation angle of its own.

Zero points are those of a 30 s LSST exposure in counts, moved per visit (+-0.1 mag: clouds) and per
detector (+-0.05 mag), so no two detectors share a calibration and a reader that applies the wrong
detector's calibration is caught. The difference image's zero point differs from its calexp's by
0.2-0.4 mag either way: a DIA product calibrated with the calexp is wrong by 20-45%.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from dc2tasks.products.calib import AB_NJY_ZP, Calibration
from dc2tasks.sample.config import SampleConfig
from dc2tasks.sample.focal_plane import Pointing
from dc2tasks.sample.skymap import TractGeometry
from dc2tasks.sample.streams import Purpose, visit_stream

EXPOSURE_TIME = 30.0  # seconds
VISIT_ZERO_POINT = {"u": 30.8, "g": 32.2, "r": 32.0, "i": 31.8, "z": 31.4, "y": 30.6}  # AB mag of 1 count
VISIT_DEPTH_5SIGMA = {"u": 23.9, "g": 25.0, "r": 24.7, "i": 24.0, "z": 23.3, "y": 22.1}
VISIT_SEEING_FWHM = (0.55, 1.1)  # arcsec, range of a visit's PSF FWHM
MJD_START = 59580.0
MJD_STEP = 0.7
DITHER_ARCMIN = 3.0
_MJD_EPOCH = dt.datetime(1858, 11, 17)
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def visit_number(tract: int, k: int) -> int:
    return 100000 + 1000 * tract + k


def noise_njy(band: str) -> float:
    """A single visit's PSF-flux sigma, nJy (a fifth of the 5-sigma depth's flux)."""
    return 10 ** ((AB_NJY_ZP - VISIT_DEPTH_5SIGMA[band]) / 2.5) / 5.0


@dataclass(frozen=True)
class Observation:
    """One visit as taken: its number, band, date, pointing, PSF, source noise and transparency."""

    visit: int
    tract: int
    band: str
    band_index: int  # into the config's bands
    mjd: float
    pointing: Pointing
    psf_sigma2: float  # PSF second moment, px^2
    psf_e1: float
    psf_e2: float
    noise_njy: float  # PSF-flux sigma of a source
    zp_offset: float  # this visit's transparency, mag

    def psf_moments(self) -> tuple[float, float, float]:
        s = self.psf_sigma2
        return s * (1.0 + self.psf_e1), s * (1.0 - self.psf_e1), s * self.psf_e2


def _patches_centre(geom: TractGeometry, patches: tuple[str, ...]) -> tuple[float, float]:
    index = [tuple(int(v) for v in p.split(",")) for p in patches]
    n = geom.patch_inner
    xs = [i[0] for i in index]
    ys = [i[1] for i in index]
    return 0.5 * (min(xs) * n + (max(xs) + 1) * n - 1), 0.5 * (min(ys) * n + (max(ys) + 1) * n - 1)


def visit_observations(config: SampleConfig, geom: TractGeometry) -> list[Observation]:
    cx, cy = _patches_centre(geom, config.patches)
    observations = []
    for k in range(config.visits):
        visit = visit_number(geom.tract, k)
        rng = visit_stream(config.seed, visit, -1, Purpose.VISIT)
        band_index = k % len(config.bands)
        band = config.bands[band_index]
        mjd = MJD_START + MJD_STEP * k + rng.uniform(0.0, 0.04)
        radius = DITHER_ARCMIN * 60.0 / config.pixel_scale * math.sqrt(rng.random())
        angle = rng.uniform(0.0, 2 * math.pi)
        ra, dec = geom.pixel_to_sky(cx + radius * math.cos(angle), cy + radius * math.sin(angle))
        rotation = rng.uniform(0.0, 2 * math.pi)
        fwhm = rng.uniform(*VISIT_SEEING_FWHM)
        e1, e2 = rng.uniform(-0.04, 0.04, size=2)
        noise = noise_njy(band) * (fwhm / 0.7) * rng.uniform(0.9, 1.1)
        observations.append(
            Observation(
                visit=visit,
                tract=geom.tract,
                band=band,
                band_index=band_index,
                mjd=float(mjd),
                pointing=Pointing(float(ra), float(dec), float(rotation), config.pixel_scale),
                psf_sigma2=(fwhm / _FWHM_PER_SIGMA / config.pixel_scale) ** 2,
                psf_e1=float(e1),
                psf_e2=float(e2),
                noise_njy=float(noise),
                zp_offset=float(rng.uniform(-0.1, 0.1)),
            )
        )
    return observations


@dataclass(frozen=True)
class DetectorCalibrations:
    calexp: Calibration
    diffexp: Calibration


def detector_calibrations(
    config: SampleConfig, observation: Observation, detector: int
) -> DetectorCalibrations:
    rng = visit_stream(config.seed, observation.visit, detector, Purpose.DETECTOR_CALIB)
    zp = VISIT_ZERO_POINT[observation.band] + observation.zp_offset + rng.uniform(-0.05, 0.05)
    diff = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.4)
    err, diff_err = rng.uniform(0.002, 0.01, size=2)
    era = config.calib_era
    return DetectorCalibrations(
        Calibration.from_zero_point(era, zp, err), Calibration.from_zero_point(era, zp + diff, diff_err)
    )


def iso_tai(mjd: float) -> str:
    """An MJD as afw writes DATE-AVG: ISO 8601, nanoseconds, no zone letter (the scale is TIMESYS)."""
    day = math.floor(mjd)
    ns = round((mjd - day) * 86400e9)
    if ns >= 86400 * 10**9:
        day, ns = day + 1, ns - 86400 * 10**9
    date = _MJD_EPOCH + dt.timedelta(days=day)
    seconds, nano = divmod(ns, 10**9)
    hh, rest = divmod(seconds, 3600)
    mm, ss = divmod(rest, 60)
    return f"{date:%Y-%m-%d}T{hh:02d}:{mm:02d}:{ss:02d}.{nano:09d}"


def exposure_metadata(observation: Observation, detector_name: str) -> list[tuple[str, object]]:
    """Primary-header cards of a calexp or difference image: the VisitInfo as afw persists it."""
    return [
        ("FILTER", observation.band),
        ("DETNAME", detector_name),
        ("EXPID", observation.visit),
        ("EXPTIME", EXPOSURE_TIME),
        ("DARKTIME", EXPOSURE_TIME),
        ("DATE-AVG", iso_tai(observation.mjd)),
        ("TIMESYS", "TAI"),
        ("BORE-RA", math.degrees(observation.pointing.ra)),
        ("BORE-DEC", math.degrees(observation.pointing.dec)),
        ("BORE-ROTANG", math.degrees(observation.pointing.rotation)),
        ("ROTTYPE", "SKY"),
    ]


def psf_area(sigma2: float) -> np.float32:
    """Effective area of a Gaussian PSF, px^2 (base_PsfFlux_area)."""
    return np.float32(4.0 * math.pi * sigma2)
