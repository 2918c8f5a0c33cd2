"""Writing afw exposure files with their calibration, for the sample repository.

The layout follows afw's ExposureFitsWriter: a primary HDU with the metadata, image, mask and
variance HDUs, then the archive (index + one catalog per persisted class). Pixels are tiny: our
readers only ever look at headers and the archive.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.calib import Calibration
from dc2tasks.sample import afw_writer, fits_writer


def _image_hdu(array: np.ndarray, exttype: str, cards: list[tuple[str, object]]) -> bytes:
    bitpix = {"f4": -32, "i4": 32, "i2": 16}[f"{array.dtype.kind}{array.dtype.itemsize}"]
    header = [
        ("XTENSION", "IMAGE"),
        ("BITPIX", bitpix),
        ("NAXIS", 2),
        ("NAXIS1", array.shape[1]),
        ("NAXIS2", array.shape[0]),
        ("PCOUNT", 0),
        ("GCOUNT", 1),
        ("EXTTYPE", exttype),
        *cards,
    ]
    data = array.astype(array.dtype.newbyteorder(">")).tobytes()
    return fits_writer.header_bytes(header) + fits_writer.pad_data(data)


def photocalib_archive_hdus(calibration: Calibration, first_hdu: int) -> tuple[bytes, int]:
    """Archive index + PhotoCalib catalog; returns the bytes and the PhotoCalib's archive id."""
    archive_id = 1
    index = afw_writer.table_hdu_bytes(
        {
            "id": np.array([archive_id], dtype=np.int32),
            "cat.archive": np.array([1], dtype=np.int32),
            "cat.persistable": np.array([0], dtype=np.int32),
            "row0": np.array([0], dtype=np.int32),
            "nrows": np.array([1], dtype=np.int32),
            "name": np.array(["PhotoCalib".ljust(64)], dtype="S64"),
            "module": np.array(["lsst.afw.image".ljust(64)], dtype="S64"),
        },
        extra_cards=[("EXTTYPE", "ARCHIVE_INDEX"), ("AR_CATN", 0), ("AR_NCAT", 2), ("AFW_TABLE_VERSION", 3)],
    )
    data = afw_writer.table_hdu_bytes(
        {
            "calibrationMean": np.array([calibration.calibration_mean]),
            "calibrationErr": np.array([calibration.calibration_err]),
            "field": np.array([0], dtype=np.int32),
            "version": np.array([1], dtype=np.int32),
        },
        flags={"isConstant": np.array([True])},
        extra_cards=[
            ("EXTTYPE", "ARCHIVE_DATA"),
            ("AR_CATN", 1),
            ("AR_NAME", "PhotoCalib"),
            ("AFW_TABLE_VERSION", 3),
        ],
    )
    return index + data, archive_id


def write_exposure(
    path: str | os.PathLike,
    calibration: Calibration | None,
    wcs_cards: list[tuple[str, object]] | None = None,
    metadata: list[tuple[str, object]] | None = None,
    shape: tuple[int, int] = (4, 4),
) -> None:
    """An exposure whose calibration is stored the way its era stored it.

    `calibration.era == "calib"` writes FLUXMAG0/FLUXMAG0ERR keywords; "photocalib" writes an archive
    and points PHOTOCALIB_ID at it; None writes no calibration at all (for error tests).
    """
    path = Path(path)
    primary_cards = list(metadata or [])
    tail = b""
    if calibration is not None and calibration.era == "calib":
        primary_cards += [
            ("FLUXMAG0", float(calibration.fluxmag0)),
            ("FLUXMAG0ERR", float(calibration.fluxmag0_err)),
        ]
    elif calibration is not None:
        tail, archive_id = photocalib_archive_hdus(calibration, first_hdu=5)
        primary_cards += [("AR_HDU", 5), ("PHOTOCALIB_ID", archive_id)]
    image = np.zeros(shape, dtype=np.float32)
    body = (
        afw_writer.primary_hdu_bytes(primary_cards)
        + _image_hdu(image, "IMAGE", list(wcs_cards or []))
        + _image_hdu(np.zeros(shape, dtype=np.int32), "MASK", [])
        + _image_hdu(np.ones(shape, dtype=np.float32), "VARIANCE", [])
        + tail
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(body)
