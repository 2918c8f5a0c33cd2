"""The LSST focal plane as obs_lsst numbers it, and where each detector looks on the sky in a visit.

21 science rafts (5x5 without the corners R00 R04 R40 R44) of 3x3 sensors. obs_lsst names a raft
`R{x}{y}` and a sensor `S{x}{y}` and numbers detectors raft by raft in name order (R01 -> 0..8,
R02 -> 9..17, ..., R22 S11 -> 94, ..., R43 S22 -> 188); obs_lsstSim (Run 1.1p) names the same
detectors raft "x,y" and sensor "x,y". The first digit runs along the detectors' x axis.

Geometry: sensors of width x height pixels on a pitch one gap wider (LSSTCam: 4000 x 4072 pixels
of 10 um on a 42.25 mm pitch, a gap of 5.6%), rafts on a pitch of three sensors plus one gap; the
gaps scale with the sensor, so a small-sensor focal plane keeps LSST's proportions. Focal-plane
pixel coordinates (u, v) are 0 at the centre of R22 S11.

A visit is one TAN projection about its boresight, rotated by the visit's angle (CD = R(angle) @
diag(-scale, scale), so at angle 0 x grows to the west and y to the north, like a tract); each
detector's WCS is that projection with the reference pixel moved by the detector's offset, which is
what a camera geometry plus a pointing gives, without optical distortion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dc2tasks.sample.fits_writer import tan_wcs_cards

CORNER_RAFTS = frozenset({(0, 0), (0, 4), (4, 0), (4, 4)})
RAFTS = tuple((x, y) for x in range(5) for y in range(5) if (x, y) not in CORNER_RAFTS)
SENSORS = tuple((x, y) for x in range(3) for y in range(3))
NUM_DETECTORS = len(RAFTS) * len(SENSORS)
GAP_FRACTION = 0.05625  # LSSTCam: 2.25 mm between 40 mm sensors

_RAFT_ORDINAL = np.full((5, 5), -1, dtype=np.int64)
for _k, (_x, _y) in enumerate(RAFTS):
    _RAFT_ORDINAL[_x, _y] = _k


def raft_sensor(detector: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((raft x, raft y), (sensor x, sensor y)) of an obs_lsst detector number."""
    if not 0 <= detector < NUM_DETECTORS:
        raise ValueError(f"detector {detector} is not an LSSTCam science detector (0..{NUM_DETECTORS - 1})")
    return RAFTS[detector // 9], SENSORS[detector % 9]


def detector_number(raft: tuple[int, int], sensor: tuple[int, int]) -> int:
    if raft not in RAFTS or sensor not in SENSORS:
        raise ValueError(f"raft {raft} sensor {sensor} is not on the LSSTCam focal plane")
    return RAFTS.index(raft) * 9 + SENSORS.index(sensor)


def detector_names(detector: int, camera: str) -> tuple[str, str]:
    """(raftName, detectorName) for obs_lsst, e.g. ("R22", "S11"); (raft, sensor) for obs_lsstSim,
    e.g. ("2,2", "1,1")."""
    (rx, ry), (sx, sy) = raft_sensor(detector)
    if camera == "obs_lsstSim":
        return f"{rx},{ry}", f"{sx},{sy}"
    return f"R{rx}{ry}", f"S{sx}{sy}"


@dataclass(frozen=True)
class FocalPlane:
    width: int
    height: int

    @property
    def gaps(self) -> tuple[int, int]:
        return max(1, round(GAP_FRACTION * self.width)), max(1, round(GAP_FRACTION * self.height))

    @property
    def sensor_pitch(self) -> tuple[int, int]:
        gx, gy = self.gaps
        return self.width + gx, self.height + gy

    @property
    def raft_pitch(self) -> tuple[int, int]:
        (px, py), (gx, gy) = self.sensor_pitch, self.gaps
        return 3 * px + gx, 3 * py + gy

    def center(self, detector: int) -> tuple[float, float]:
        """(u, v) of the centre of a detector's pixel grid."""
        (rx, ry), (sx, sy) = raft_sensor(detector)
        (rpx, rpy), (spx, spy) = self.raft_pitch, self.sensor_pitch
        return float((rx - 2) * rpx + (sx - 1) * spx), float((ry - 2) * rpy + (sy - 1) * spy)

    def to_detector(self, detector: int, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel (x, y) on a detector of focal-plane positions."""
        uc, vc = self.center(detector)
        return np.asarray(u) - uc + 0.5 * (self.width - 1), np.asarray(v) - vc + 0.5 * (self.height - 1)

    def to_focal(self, detector: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uc, vc = self.center(detector)
        return np.asarray(x) + uc - 0.5 * (self.width - 1), np.asarray(y) + vc - 0.5 * (self.height - 1)

    def locate(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(detector number or -1 in a gap or off the focal plane, x, y) of focal-plane positions.

        A pixel covers [i - 0.5, i + 0.5), so a position is on a detector when -0.5 <= x < width - 0.5.
        """
        rx, sx, x, ok_x = _axis(np.asarray(u, dtype=np.float64), self.width, *self._axis_pitch(0))
        ry, sy, y, ok_y = _axis(np.asarray(v, dtype=np.float64), self.height, *self._axis_pitch(1))
        ok = ok_x & ok_y
        raft = np.where(ok, _RAFT_ORDINAL[np.clip(rx, 0, 4), np.clip(ry, 0, 4)], -1)
        ok &= raft >= 0
        detector = np.where(ok, raft * 9 + sx * 3 + sy, -1)
        return detector, x, y

    def _axis_pitch(self, axis: int) -> tuple[int, int]:
        return self.sensor_pitch[axis], self.raft_pitch[axis]


def _axis(
    u: np.ndarray, size: int, sensor_pitch: int, raft_pitch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    raft = np.floor((u + 2.5 * raft_pitch) / raft_pitch).astype(np.int64)
    in_raft = u - (raft - 2) * raft_pitch
    sensor = np.floor((in_raft + 1.5 * sensor_pitch) / sensor_pitch).astype(np.int64)
    pixel = in_raft - (sensor - 1) * sensor_pitch + 0.5 * (size - 1)
    ok = (raft >= 0) & (raft <= 4) & (sensor >= 0) & (sensor <= 2) & (pixel >= -0.5) & (pixel < size - 0.5)
    return raft, np.clip(sensor, 0, 2), pixel, ok


@dataclass(frozen=True)
class Pointing:
    """A visit's boresight (radians), the rotation of the focal plane on the sky and the pixel scale."""

    ra: float
    dec: float
    rotation: float  # radians
    pixel_scale_arcsec: float

    @property
    def _scale_rad(self) -> float:
        return math.radians(self.pixel_scale_arcsec / 3600.0)

    def sky_to_focal(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, in front): gnomonic projection about the boresight; `in front` is False for points
        90 degrees or more away, which have no image."""
        ra = np.asarray(ra, dtype=np.float64)
        dec = np.asarray(dec, dtype=np.float64)
        dra = ra - self.ra
        sd0, cd0 = math.sin(self.dec), math.cos(self.dec)
        cos_dec = np.cos(dec)
        cosc = sd0 * np.sin(dec) + cd0 * cos_dec * np.cos(dra)
        front = cosc > 1e-6
        safe = np.where(front, cosc, 1.0)
        xi = cos_dec * np.sin(dra) / safe
        eta = (cd0 * np.sin(dec) - sd0 * cos_dec * np.cos(dra)) / safe
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        return -(c * xi + s * eta) / self._scale_rad, (c * eta - s * xi) / self._scale_rad, front

    def focal_to_sky(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ra in [0, 2pi), dec), radians."""
        a = -np.asarray(u, dtype=np.float64) * self._scale_rad
        b = np.asarray(v, dtype=np.float64) * self._scale_rad
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        xi = c * a - s * b
        eta = s * a + c * b
        sd0, cd0 = math.sin(self.dec), math.cos(self.dec)
        denom = cd0 - eta * sd0
        ra = (self.ra + np.arctan2(xi, denom)) % (2 * math.pi)
        dec = np.arctan2(sd0 + eta * cd0, np.hypot(xi, denom))
        return ra, dec

    def wcs_cards(self, plane: FocalPlane, detector: int) -> list[tuple[str, object]]:
        """The detector's FITS TAN WCS as afw writes a calexp's (image origin 0, 0)."""
        uc, vc = plane.center(detector)
        scale = self.pixel_scale_arcsec / 3600.0
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        return tan_wcs_cards(
            (0.5 * (plane.width - 1) - uc + 1.0, 0.5 * (plane.height - 1) - vc + 1.0),
            (math.degrees(self.ra), math.degrees(self.dec)),
            (-scale * c, -scale * s, -scale * s, scale * c),
        )
