"""What an exposure says about its visit (when, through which calibration), and which detector a data
id names, without the LSST stack.

afw persists a VisitInfo as primary-header cards: `DATE-AVG` (ISO 8601 in the time scale `TIMESYS`,
TAI by default) is the exposure's mid-point, which the old Source script turned into `mjd` (TAI).
obs_lsstSim data ids name a detector by raft and sensor ("2,2", "1,1"); obs_lsst by a number 0-188
that orders rafts R01..R43 without the corner rafts, then sensors S00..S22 in each raft, so both are
reduced to that number.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from dc2tasks.products import fits
from dc2tasks.products.calib import Calibration, calibration_from_hdus
from dc2tasks.products.errors import InputError

log = logging.getLogger(__name__)

_MJD_EPOCH = dt.datetime(1858, 11, 17)
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}):(\d{2})(\.\d*)?)?Z?$")
_CORNER_RAFTS = {(0, 0), (0, 4), (4, 0), (4, 4)}
RAFTS = [(x, y) for x in range(5) for y in range(5) if (x, y) not in _CORNER_RAFTS]


@dataclass(frozen=True)
class ExposureInfo:
    calibration: Calibration
    mjd: float  # TAI; NaN when the exposure carries no date


def mjd_from_iso(text: str, path: Path | str = "") -> float:
    """MJD of an ISO 8601 date-time, nanoseconds kept (datetime would drop them)."""
    m = _ISO.match(text.strip())
    if not m:
        raise InputError(f"{path}: DATE-AVG {text!r} is not an ISO 8601 date")
    y, mo, d, hh, mm, ss, frac = m.groups()
    try:
        day = dt.datetime(int(y), int(mo), int(d))
    except ValueError:
        raise InputError(f"{path}: DATE-AVG {text!r} is not a calendar date") from None
    seconds = int(hh or 0) * 3600 + int(mm or 0) * 60 + int(ss or 0) + float(frac or 0.0)
    return (day - _MJD_EPOCH).days + seconds / 86400.0


def mjd_of(header: fits.Header, path: Path | str = "") -> float:
    """The exposure mid-point as MJD (TAI), or NaN when the header has no date."""
    date = header.get("DATE-AVG")
    if isinstance(date, str) and date.strip():
        scale = str(header.get("TIMESYS", "TAI") or "TAI").strip().upper()
        mjd = mjd_from_iso(date, path)
        if scale == "TAI":
            return mjd
        from astropy.time import Time  # only for the rare non-TAI header

        return float(Time(mjd, format="mjd", scale=scale.lower()).tai.mjd)
    for key in ("MJD-AVG", "MJD-OBS"):
        value = header.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return math.nan


def read_exposure_info(calib_path: Path, visit_info_path: Path | None = None) -> ExposureInfo:
    """Calibration from one exposure and the date from another (a difference image's own
    calibration, its calexp's date), scanning each file's headers once."""
    hdus = fits.scan(calib_path, max_hdus=1)
    calibration = calibration_from_hdus(calib_path, hdus)
    if visit_info_path is None or visit_info_path == calib_path:
        header, where = hdus[0].header, calib_path
    else:
        header, where = fits.scan(visit_info_path, max_hdus=1)[0].header, visit_info_path
    mjd = mjd_of(header, where)
    if math.isnan(mjd):
        log.warning("%s: no DATE-AVG in the header; mjd is NaN", where)
    return ExposureInfo(calibration, mjd)


def _pair(text: str, what: str) -> tuple[int, int]:
    digits = [c for c in str(text) if c.isdigit()]
    if len(digits) != 2:
        raise InputError(f"{what} {text!r} is not two digits such as '2,2' or 'R22'")
    return int(digits[0]), int(digits[1])


def detector_number(data_id: dict[str, object]) -> int:
    """obs_lsst's detector number of a data id (given, or from raft and sensor)."""
    if "detector" in data_id:
        return int(data_id["detector"])  # type: ignore[call-overload]
    raft = data_id.get("raftName", data_id.get("raft"))
    sensor = data_id.get("detectorName", data_id.get("sensor"))
    if raft is None or sensor is None:
        raise InputError(f"data id {data_id} names no detector")
    r = _pair(str(raft), "raft")
    s = _pair(str(sensor), "sensor")
    if r not in RAFTS or not all(0 <= v <= 2 for v in s):
        raise InputError(f"data id {data_id}: raft {raft} sensor {sensor} is not on the LSST focal plane")
    return RAFTS.index(r) * 9 + s[0] * 3 + s[1]
