"""Values for filler columns, made cheaply: the benchmark writes gigabytes of them.

Drawing a fresh random number for each of ~500 columns x rows would dominate the run time, so each
table draws a handful of random "pool" rows per patch and every filler column is a scaled, shifted
view of one pool (a multiply-add). Columns then differ from each other, have plausible ranges for
what they are named (fluxes, errors, moments, positions, counts), and carry the occasional NaN.
"""

from __future__ import annotations

import numpy as np

from dc2tasks.sample.columns import Field

POOLS = 8
NAN_FRACTION = 0.01
FLAG_RATE = 0.02


class FillerSource:
    def __init__(self, rng: np.random.Generator, n: int, x: np.ndarray, y: np.ndarray) -> None:
        self.n = n
        normal = rng.standard_normal((POOLS, n))
        nan_rows = rng.random((2, n)) < NAN_FRACTION
        normal[:2][nan_rows] = np.nan  # two pools carry NaN (failed measurements) into their columns
        self.normal = {np.dtype("f8"): normal, np.dtype("f4"): normal.astype(np.float32)}
        self.positive = {k: np.abs(v) for k, v in self.normal.items()}
        self.counts = rng.integers(0, 60, size=(POOLS, n), dtype=np.int32)
        self.xy = (x, y)
        # per-column scales come from one small draw, so columns differ from each other
        self.params = rng.uniform(0.5, 2.0, size=4096)
        flag_bytes = rng.integers(0, 256, size=(POOLS, n), dtype=np.uint8)
        self.flag_pool = [flag_bytes[k] < int(256 * FLAG_RATE) for k in range(POOLS)]

    def column(self, index: int, f: Field) -> np.ndarray:
        dt = np.dtype(f.dtype)
        k = index % POOLS
        s = float(self.params[index % len(self.params)])
        if f.kind == "count":
            out = self.counts[k] if s < 1.25 else self.counts[k] // 4
            return out.astype(dt, copy=False)
        if f.kind == "position":
            base = self.xy[1] if f.name.endswith("_y") else self.xy[0]
            return (base + 0.05 * s * self.normal[np.dtype("f8")][k]).astype(dt, copy=False)
        if f.kind == "flux":
            return (self.positive[dt][k] * dt.type(300.0 * s) - dt.type(20.0)).astype(dt, copy=False)
        if f.kind == "err":
            return (self.positive[dt][k] * dt.type(5.0 * s) + dt.type(1.0)).astype(dt, copy=False)
        if f.kind == "moment":
            offset = 0.0 if f.name.endswith("_xy") else 2.5 * s
            return (self.normal[dt][k] * dt.type(0.3 * s) + dt.type(offset)).astype(dt, copy=False)
        return (self.normal[dt][k] * dt.type(s) + dt.type(s - 1.0)).astype(dt, copy=False)

    def flag(self, index: int) -> np.ndarray:
        """Rarely-set flags; a rotation of the pools keeps neighbouring flags from matching exactly."""
        k = index % POOLS
        shift = int(self.params[index % len(self.params)] * 997) % max(self.n, 1)
        return np.roll(self.flag_pool[k], shift) if shift else self.flag_pool[k]
