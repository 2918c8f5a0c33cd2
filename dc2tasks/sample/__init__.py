"""A deterministic sample Gen2 repository: the test bed for every product step.

`make_sample_repo(path, SampleConfig(...))` writes real afw-format catalogs and coadd exposures in
the obs_lsst (or obs_lsstSim) layout, with a rerun chain, a rings sky map geometry and a truth table.
Modules: skymap (geometry), columns (table schemas), objects (the simulated sky), conditions
(calibration, PSF), filler (cheap wide columns), coadd (coadd datasets), truth, layout, generate;
paths (the sample's own Gen2 path templates), fits_writer, afw_writer and exposure (the file writers);
observations, visits and detector_catalogs (the visits).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dc2tasks.sample.config import SampleConfig, SampleRepo, parse_missing_band, patch_grid
    from dc2tasks.sample.generate import NotEmptyError, make_sample_repo

# Loaded on first use: `dc2` imports this package for its sample-repo options, and every `dc2`
# command (each Slurm job) would otherwise pay for the generator's imports (scipy, ~1 s).
_LAZY = {
    "SampleConfig": "config",
    "SampleRepo": "config",
    "parse_missing_band": "config",
    "patch_grid": "config",
    "NotEmptyError": "generate",
    "make_sample_repo": "generate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NotEmptyError",
    "SampleConfig",
    "SampleRepo",
    "make_sample_repo",
    "parse_missing_band",
    "patch_grid",
]
