"""Where the sample writes each dataset: the Gen2 layouts of obs_lsst and obs_lsstSim, and their mappers.

Written out in full from the CameraMapper policies (spec §1.0: obs_lsst's imsim templates of
2018-10 to 2019-12, obs_lsstSim's of Run 1.1p) and kept apart from the reader's table in
products/repo.py on purpose: a template wrong in the reader then fails the sample's tests instead of
being wrong in both and passing. tests/sample/test_paths.py checks that the two tables agree on every
file a sample holds.

Data ids are the butler's (obs_lsstSim: raft "2,2", sensor "1,1", as its registry holds them); `relpath`
fills a template the way the camera's mapper does, which for obs_lsstSim drops those commas
(LsstSimMapper._transformId), so its files are `R22/S11.fits`.
"""

from __future__ import annotations

MAPPERS = {
    "obs_lsst": "lsst.obs.lsst.imsim.ImsimMapper",
    "obs_lsstSim": "lsst.obs.lsstSim.LsstSimMapper",
}

_OBS_LSST = {
    "deepCoadd_calexp": (
        "deepCoadd-results/%(filter)s/%(tract)d/%(patch)s/calexp-%(filter)s-%(tract)d-%(patch)s.fits"
    ),
    "deepCoadd_ref": "deepCoadd-results/merged/%(tract)d/%(patch)s/ref-%(tract)d-%(patch)s.fits",
    "deepCoadd_forced_src": (
        "deepCoadd-results/%(filter)s/%(tract)d/%(patch)s/forced_src-%(filter)s-%(tract)d-%(patch)s.fits"
    ),
    "calexp": (
        "calexp/%(visit)08d-%(filter)s/%(raftName)s/"
        "calexp_%(visit)08d-%(filter)s-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
    ),
    "src": (
        "src/%(visit)08d-%(filter)s/%(raftName)s/"
        "src_%(visit)08d-%(filter)s-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
    ),
    "forced_src": (
        "forced/%(visit)08d-%(filter)s/%(raftName)s/"
        "forced_%(visit)08d-%(filter)s-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
    ),
    "deepDiff_differenceExp": (
        "deepDiff/v%(visit)08d-f%(filter)s/%(raftName)s/"
        "diffexp_%(visit)08d-%(filter)s-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
    ),
    "deepDiff_diaSrc": (
        "deepDiff/v%(visit)08d-f%(filter)s/%(raftName)s/"
        "diaSrc_%(visit)08d-%(filter)s-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
    ),
    "deepDiff_diaObject": "deepDiff/diaObject/%(tract)d/%(patch)s/diaObject-%(tract)d-%(patch)s.fits",
}

_OBS_LSST_SIM = {
    "deepCoadd_calexp": (
        "deepCoadd-results/%(filter)s/%(tract)d/%(patch)s/calexp-%(filter)s-%(tract)d-%(patch)s.fits"
    ),
    "deepCoadd_ref": "deepCoadd-results/merged/%(tract)d/%(patch)s/ref-%(tract)d-%(patch)s.fits",
    "deepCoadd_forced_src": (
        "deepCoadd-results/%(filter)s/%(tract)d/%(patch)s/forced-%(filter)s-%(tract)d-%(patch)s.fits"
    ),
    "calexp": "calexp/v%(visit)d-f%(filter)s/R%(raft)s/S%(sensor)s.fits",
    "src": "src/v%(visit)d-f%(filter)s/R%(raft)s/S%(sensor)s.fits",
    "forced_src": "forced/%(tract)d/v%(visit)d-f%(filter)s/R%(raft)s/S%(sensor)s.fits",
    "deepDiff_differenceExp": "deepDiff/v%(visit)d-f%(filter)s/R%(raft)s/diffexp-S%(sensor)s.fits",
    "deepDiff_diaSrc": "deepDiff/v%(visit)d-f%(filter)s/R%(raft)s/diaSrc-S%(sensor)s.fits",
    "deepDiff_diaObject": "deepDiff/diaObject/%(tract)d/%(patch)s/diaObject-%(tract)d-%(patch)s.fits",
}

TEMPLATES: dict[str, dict[str, str]] = {"obs_lsst": _OBS_LSST, "obs_lsstSim": _OBS_LSST_SIM}
"""Per camera, the path of each dataset the sample writes, relative to its repository or rerun."""

_WITHOUT_COMMAS = {"obs_lsst": (), "obs_lsstSim": ("raft", "sensor")}


def relpath(camera: str, dataset: str, data_id: dict[str, object]) -> str:
    """Where a dataset of this data id is written, relative to its repository or rerun."""
    dropped = _WITHOUT_COMMAS[camera]
    return TEMPLATES[camera][dataset] % {
        k: str(v).replace(",", "") if k in dropped else v for k, v in data_id.items()
    }
