"""Tracts for the awkward places of the sky: across RA = 0/360 and at a pole.

Matching code must handle RA wrapping and the convergence of meridians. The rings sky map puts both
in ordinary tracts: tract 0 is the south polar cap (centred on the pole) and the last tract the north
cap, and the first tract of every ring is centred at RA 0, so half of it lies at RA just below 360.
"""

from __future__ import annotations

import math

from dc2tasks.sample.skymap import RingsSkyMap

SOUTH_POLE_TRACT = 0


def north_pole_tract(skymap: RingsSkyMap | None = None) -> int:
    return (skymap or RingsSkyMap()).num_tracts - 1


def first_tract_of_ring(ring: int, skymap: RingsSkyMap | None = None) -> int:
    """The tract centred at RA 0 in ring `ring` (0 = the southernmost ring after the polar cap)."""
    skymap = skymap or RingsSkyMap()
    if not 0 <= ring < skymap.num_rings:
        raise ValueError(f"ring {ring} is not in the sky map (0..{skymap.num_rings - 1})")
    return 1 + sum(skymap.ring_counts[:ring])


def ra_zero_tract(dec_deg: float, skymap: RingsSkyMap | None = None) -> int:
    """The tract centred at RA 0 whose ring holds declination `dec_deg` (a polar cap at |dec| near 90)."""
    skymap = skymap or RingsSkyMap()
    if not -90.0 <= dec_deg <= 90.0:
        raise ValueError(f"declination must be within -90..90 degrees, not {dec_deg}")
    return int(skymap.find_tracts(0.0, math.radians(dec_deg))[0])
