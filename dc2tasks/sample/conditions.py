"""What each coadd patch-band looked like: its calibration and its PSF.

The zero point is DC2's 27 unless `zp_jitter` moves it, so a reader that assumes ZP 27 and one that
applies the real calibration can be told apart. The PSF varies by band (seeing), by patch and
smoothly across a patch, so PSF moments are not one constant a wrong join could hide behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dc2tasks.products.calib import NJY_AT_MAG0, Calibration
from dc2tasks.sample.config import SampleConfig
from dc2tasks.sample.streams import Purpose, stream

# coadd PSF FWHM in arcsec (DC2-like) and 5-sigma point-source depth in AB mag, per band
SEEING_FWHM = {"u": 0.85, "g": 0.80, "r": 0.75, "i": 0.70, "z": 0.68, "y": 0.66}
DEPTH_5SIGMA = {"u": 25.6, "g": 27.0, "r": 26.9, "i": 26.4, "z": 25.7, "y": 24.9}
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class BandConditions:
    band: str
    calibration: Calibration
    sigma2: float  # PSF second moment at the patch centre, px^2
    e1: float
    e2: float
    grad_x: float  # relative change of the PSF size per patch width
    grad_y: float
    x_center: float
    y_center: float
    width: float

    @property
    def fluxmag0(self) -> float:
        return self.calibration.fluxmag0

    def to_inst(self, njy: np.ndarray) -> np.ndarray:
        """nJy -> instrumental flux of this coadd, f = nJy * F0 / 10**12.56 (a reader inverts it to 1e-16)."""
        return np.asarray(njy, dtype=np.float64) * self.fluxmag0 / NJY_AT_MAG0

    def psf_moments(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        size = self.sigma2 * (
            1.0
            + self.grad_x * (x - self.x_center) / self.width
            + self.grad_y * (y - self.y_center) / self.width
        )
        return size * (1.0 + self.e1), size * (1.0 - self.e1), size * self.e2


def band_conditions(
    config: SampleConfig, tract: int, px: int, py: int, band: str, patch_inner: int
) -> BandConditions:
    rng = stream(config.seed, tract, px, py, Purpose.CONDITIONS, band)
    jitter = rng.uniform(-1.0, 1.0)
    zp = config.zero_point + config.zp_jitter * jitter
    calibration = Calibration.from_zero_point(config.calib_era, zp)
    sigma = SEEING_FWHM[band] / FWHM_PER_SIGMA / config.pixel_scale
    sigma2 = sigma**2 * rng.uniform(0.92, 1.08)
    e1, e2 = rng.uniform(-0.03, 0.03, size=2)
    gx, gy = rng.uniform(-0.05, 0.05, size=2)
    return BandConditions(
        band,
        calibration,
        float(sigma2),
        float(e1),
        float(e2),
        float(gx),
        float(gy),
        (px + 0.5) * patch_inner,
        (py + 0.5) * patch_inner,
        float(patch_inner),
    )
