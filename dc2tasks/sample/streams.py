"""Random streams keyed by what they are for, so that each piece of a repository is reproducible alone.

A stream is derived from (seed, tract, patch x, patch y, purpose, band): adding a patch, a band or a
column never changes the numbers drawn for the others, and two runs with one config write the same
bytes.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

BAND_INDEX = {b: i for i, b in enumerate("ugrizy")}


class Purpose(IntEnum):
    OBJECTS = 1  # the objects a patch owns (positions, fluxes, flags): shared by overlapping patches
    CONDITIONS = 2  # a patch-band's zero point and PSF
    REF_FILLER = 3
    FORCED_FILLER = 4


def stream(
    seed: int, tract: int, px: int, py: int, purpose: Purpose, band: str | None = None
) -> np.random.Generator:
    key = (tract, px, py, int(purpose), BAND_INDEX[band] if band else 99)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=key)))
