"""A deterministic sample Gen2 repository: the test bed for every product step.

`make_sample_repo(path, SampleConfig(...))` writes real afw-format catalogs and coadd exposures in
the obs_lsst (or obs_lsstSim) layout, with a rerun chain, a rings sky map geometry and a truth table.
Modules: skymap (geometry), columns (table schemas), objects (the simulated sky), conditions
(calibration, PSF), filler (cheap wide columns), coadd (coadd datasets), truth, layout, generate;
paths (the sample's own Gen2 path templates), fits_writer, afw_writer and exposure (the file writers);
observations, visits and detector_catalogs (the visits).
"""

from dc2tasks.sample.config import SampleConfig, SampleRepo, parse_missing_band, patch_grid
from dc2tasks.sample.generate import NotEmptyError, make_sample_repo

__all__ = [
    "NotEmptyError",
    "SampleConfig",
    "SampleRepo",
    "make_sample_repo",
    "parse_missing_band",
    "patch_grid",
]
