"""Random streams keyed by what they are for, so that each piece of a repository is reproducible alone.

A stream is derived from (seed, tract, patch x, patch y, purpose, band): adding a patch, a band or a
column never changes the numbers drawn for the others, and two runs with one config write the same
bytes. Visit-level streams are keyed by (seed, visit, detector, purpose) under a key space of their
own, so adding visits or detectors never changes a coadd file, nor one detector's files another's.
Per-object properties that must not depend on which patches were generated (is it variable, its
light curve) come from a hash of the object id instead of a stream.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from dc2tasks.catalogue import BANDS

BAND_INDEX = {b: i for i, b in enumerate(BANDS)}


class Purpose(IntEnum):
    OBJECTS = 1  # the objects a patch owns (positions, fluxes, flags): shared by overlapping patches
    CONDITIONS = 2  # a patch-band's zero point and PSF
    REF_FILLER = 3
    FORCED_FILLER = 4
    VISIT = 5  # a visit's pointing, rotation, seeing and sky
    DETECTOR_CALIB = 6  # a detector's zero points (calexp and difference image)
    SOURCES = 7  # src measurements and spurious sources
    SOURCE_FILLER = 8
    FORCED_SOURCES = 9
    FORCED_SOURCE_FILLER = 10
    DIA_SOURCES = 11
    DIA_SOURCE_FILLER = 12
    DIA_OBJECTS = 13  # DIA object positions
    VARIABILITY = 14  # hash key of the per-object light curves


def stream(
    seed: int, tract: int, px: int, py: int, purpose: Purpose, band: str | None = None
) -> np.random.Generator:
    key = (tract, px, py, int(purpose), BAND_INDEX[band] if band else 99)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=key)))


_VISIT_KEY_SPACE = 1 << 20  # above every tract number, so no visit key equals a coadd key


def visit_stream(seed: int, visit: int, detector: int, purpose: Purpose) -> np.random.Generator:
    """A stream for one visit (detector -1 for the whole visit) and purpose."""
    key = (_VISIT_KEY_SPACE, visit, detector + 1, int(purpose))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=key)))


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = (z + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return z ^ (z >> np.uint64(31))


def hash_uniform(seed: int, ids: np.ndarray, purpose: Purpose, draw: int) -> np.ndarray:
    """Uniform [0, 1) numbers that depend only on (seed, id, purpose, draw): the same for an object
    whichever patches, visits or detectors were generated along with it."""
    key = _splitmix64(np.array([(seed * 65536 + int(purpose) * 256 + draw) % (1 << 64)], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        bits = _splitmix64(np.asarray(ids).astype(np.uint64) ^ key)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
