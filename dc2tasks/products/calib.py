"""Photometric calibration of an exposure, read from its FITS file without the LSST stack.

Two eras: the older `Calib` was persisted as `FLUXMAG0`/`FLUXMAG0ERR` header keywords; from 2019 a
`PhotoCalib` is persisted in the exposure's archive HDUs (calibrationMean in nJy per count). Both
are reduced to the same object, with each era's own magnitude-error convention kept, because the
old products were made with them (spec §1.0 "Photometric calibration formulas").
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dc2tasks.products import afw, fits
from dc2tasks.products.errors import InputError

AB_NJY_ZP = 2.5 * 9 + 8.90  # the AB magnitude of 1 nJy (31.4), written as GCRCatalogs computes it
NJY_AT_MAG0 = 10 ** (AB_NJY_ZP / 2.5)  # 10**12.56 nJy
MAGERR_FACTOR = 2.5 / math.log(10)


def ab_magnitude(flux_njy: np.ndarray) -> np.ndarray:
    """AB magnitudes of fluxes in nJy; NaN where a flux is not positive (no magnitude to give)."""
    flux_njy = np.asarray(flux_njy, dtype=np.float64)
    positive = flux_njy > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(positive, AB_NJY_ZP - 2.5 * np.log10(np.where(positive, flux_njy, 1.0)), np.nan)


def to_njy(counts: np.ndarray, fluxmag0: np.ndarray | float) -> np.ndarray:
    """Instrumental counts in nJy with F0 (one, or each row's: as the GCRCatalogs readers compute
    psFlux)."""
    return np.asarray(counts, dtype=np.float64) * (NJY_AT_MAG0 / np.asarray(fluxmag0, dtype=np.float64))


@dataclass(frozen=True)
class Calibration:
    """Flux of a zero-magnitude source (F0) and its error; `era` is "calib" or "photocalib"."""

    fluxmag0: float
    fluxmag0_err: float
    era: str
    source: str = ""

    @classmethod
    def from_photocalib(cls, mean: float, err: float, source: str = "") -> Calibration:
        if not mean > 0:
            raise InputError(f"{source}: PhotoCalib calibrationMean is {mean}, not positive")
        # F0 = 10**12.56 / C; its relative error is the relative error of C
        f0 = NJY_AT_MAG0 / mean
        return cls(f0, f0 * err / mean, "photocalib", source)

    @classmethod
    def from_zero_point(cls, era: str, zero_point: float, relative_error: float = 0.0) -> Calibration:
        """An image whose one count is `zero_point` AB magnitudes, as persisted in `era`: for
        photocalib, F0 as a reader derives it from the persisted calibrationMean."""
        f0 = 10.0 ** (zero_point / 2.5)
        if era == "calib":
            return cls(f0, f0 * relative_error, "calib")
        mean = NJY_AT_MAG0 / f0
        return cls.from_photocalib(mean, mean * relative_error)

    @property
    def counts_per_njy(self) -> float:
        return self.fluxmag0 / NJY_AT_MAG0

    @property
    def calibration_mean(self) -> float:
        """nJy per count."""
        return NJY_AT_MAG0 / self.fluxmag0

    @property
    def calibration_err(self) -> float:
        return self.calibration_mean * self.fluxmag0_err / self.fluxmag0

    def magnitude(self, flux: np.ndarray, flux_err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """AB magnitude and error of instrumental fluxes.

        Calib: m = -2.5 log10(f/F0), sigma = 2.5/ln10 * sqrt((sf/f)^2 + (sF0/F0)^2), NaN for f <= 0.
        PhotoCalib: the same m, sigma = 2.5/ln10 * hypot(sf/f, sC/C), finite for negative f.
        """
        flux = np.asarray(flux, dtype=np.float64)
        flux_err = np.asarray(flux_err, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            positive = flux > 0
            mag = np.where(positive, -2.5 * np.log10(np.where(positive, flux, 1.0) / self.fluxmag0), np.nan)
            rel0 = self.fluxmag0_err / self.fluxmag0
            if self.era == "calib":
                err = MAGERR_FACTOR * np.sqrt((flux_err / flux) ** 2 + rel0**2)
                err = np.where(positive, err, np.nan)
            else:
                err = MAGERR_FACTOR * np.hypot(flux_err / flux, rel0)
        return mag, err

    def nanojansky(self, flux: np.ndarray) -> np.ndarray:
        return to_njy(flux, self.fluxmag0)


def read_photocalib_archive(path: Path, hdus: list[fits.Hdu], archive_id: int | None) -> tuple[float, float]:
    """calibrationMean, calibrationErr of the PhotoCalib stored in a file's archive."""
    index_hdus = list(fits.iter_hdus_by(hdus, "EXTTYPE", "ARCHIVE_INDEX"))
    if not index_hdus:
        raise InputError(
            f"{path}: no calibration: neither FLUXMAG0 keywords nor an archive with a PhotoCalib"
        )
    index = afw.read_table_from_hdu(path, index_hdus[0])
    names = np.char.strip(index["name"].astype(str))
    ids = index["id"]
    if archive_id is not None:
        rows = np.flatnonzero((ids == archive_id) & (names == "PhotoCalib"))
    else:
        rows = np.flatnonzero(names == "PhotoCalib")
    if len(rows) == 0:
        what = f"archive id {archive_id}" if archive_id is not None else "any entry"
        raise InputError(f"{path}: no calibration: the archive has no PhotoCalib ({what})")
    if len(rows) > 1 and archive_id is None:
        raise InputError(f"{path}: the archive holds {len(rows)} PhotoCalibs and no PHOTOCALIB_ID says which")
    row = int(rows[0])
    catn = int(index["cat.archive"][row])
    row0 = int(index["row0"][row])
    data_hdu = next(
        (h for h in hdus if h.header.get("AR_CATN") == catn and h.header.get("EXTTYPE") == "ARCHIVE_DATA"),
        None,
    )
    if data_hdu is None or data_hdu.header.get("AR_NAME") != "PhotoCalib":
        raise InputError(f"{path}: archive catalog {catn} for the PhotoCalib is missing")
    table = afw.read_table_from_hdu(path, data_hdu)
    return float(table["calibrationMean"][row0]), float(table["calibrationErr"][row0])


def read_calibration(path: str | os.PathLike) -> Calibration:
    """The calibration of an exposure file (calexp, coadd calexp, difference image)."""
    path = Path(path)
    return calibration_from_hdus(path, fits.scan(path, max_hdus=1))


def calibration_from_hdus(path: Path, hdus: list[fits.Hdu]) -> Calibration:
    """As read_calibration, for a caller that has scanned the file already (and wants more of it).

    `hdus` may stop at the primary: the rest is scanned only for an archived PhotoCalib, so an
    old-era exposure, gzip-compressed, is not decompressed past its first header for FLUXMAG0.
    """
    primary = hdus[0].header
    if "FLUXMAG0" in primary:
        f0 = float(primary["FLUXMAG0"])
        f0_err = float(primary.get("FLUXMAG0ERR", 0.0) or 0.0)
        if not f0 > 0:
            raise InputError(f"{path}: FLUXMAG0 is {f0}, not positive")
        return Calibration(f0, f0_err, "calib", str(path))
    archive_id = primary.get("PHOTOCALIB_ID")
    if len(hdus) == 1:
        hdus = fits.scan(path)
    mean, err = read_photocalib_archive(path, hdus, int(archive_id) if archive_id is not None else None)
    return Calibration.from_photocalib(mean, err, str(path))


def read_pixel_scale(path: str | os.PathLike) -> float | None:
    """arcsec per pixel from the CD matrix of an exposure's image HDU (or primary), if present."""
    for hdu in fits.scan(path, max_hdus=2):
        h = hdu.header
        if "CD1_1" in h:
            cd11, cd12 = float(h["CD1_1"]), float(h.get("CD1_2", 0.0) or 0.0)
            cd21, cd22 = float(h.get("CD2_1", 0.0) or 0.0), float(h["CD2_2"])
            return math.sqrt(abs(cd11 * cd22 - cd12 * cd21)) * 3600.0
    return None
