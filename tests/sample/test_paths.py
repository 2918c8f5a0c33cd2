"""The sample's path table (sample/paths.py) and the reader's (products/repo.py) are written apart;
here they must agree on every file a sample holds, and the reader's must find real Gen2 names.

Real layouts in ../shared/fixtures: `real/pserv-gen2-repo/image_repo` is an obs_lsstSim input
repository (its `_mapper` file and registry). Its registry's data ids (raft "2,2", sensor "1,1")
become paths the way obs_lsstSim's CameraMapper makes them (`_transformId` drops the commas:
`calexp/v1414156-fr/R22/S11.fits`; difference images `deepDiff/v1414156-fr/R22/diffexp-S11.fits`, as
obs_lsstSim's policy/LsstSimMapper.yaml has them). The other real files are not in a layout the reader covers:
`real/obs_test-calexp` is an obs_test repository, the rest (and `afw/`) are single files named by
the repositories they were taken from.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from dc2tasks.products import repo as reader
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleRepo, paths

VISIT_OPTIONS = dict(
    objects_per_patch=60,
    patches=["0,0", "1,0"],
    bands=("g", "r", "i"),
    ref_width=300,
    forced_width=120,
    visits=2,
    detectors=[93, 94],
    src_width=80,
    forced_src_width=60,
    dia_src_width=80,
)


@pytest.fixture(scope="module", params=sorted(paths.TEMPLATES))
def camera_repo(request, make_repo) -> SampleRepo:
    camera = request.param
    return make_repo(f"paths-{camera}", camera=camera, **VISIT_OPTIONS)


def _written(root: Path) -> set[Path]:
    return {p for p in (root / "rerun").rglob("*.fits") if p.is_file()}


def test_the_reader_finds_every_file_the_sample_wrote(camera_repo):
    camera = camera_repo.camera
    repo = Gen2Repo.open(camera_repo.root, camera_repo.rerun)
    assert repo.camera == camera  # read back from the sample's own _mapper
    assert set(paths.TEMPLATES[camera]) <= set(reader.TEMPLATES[camera])

    found: dict[Path, str] = {}
    for dataset in paths.TEMPLATES[camera]:
        hits = repo.discover(dataset)
        assert hits, f"the reader finds no {dataset} in the {camera} sample"
        for data_id, path in hits:
            assert path not in found, f"{path} is both {found[path]} and {dataset}"
            found[path] = dataset
            # the data id the reader read from the path gives the same path by the sample's table
            assert any(path == chained / paths.relpath(camera, dataset, data_id) for chained in repo.chain)
    assert set(found) == _written(camera_repo.root)

    counts = {d: list(found.values()).count(d) for d in paths.TEMPLATES[camera]}
    n_patch, n_band = len(VISIT_OPTIONS["patches"]), len(VISIT_OPTIONS["bands"])
    n_detector = len(camera_repo.visits) * len(VISIT_OPTIONS["detectors"])
    assert counts == {
        "deepCoadd_calexp": n_patch * n_band,
        "deepCoadd_ref": n_patch,
        "deepCoadd_forced_src": n_patch * n_band,
        "calexp": n_detector,
        "src": n_detector,
        "forced_src": n_detector,
        "deepDiff_differenceExp": n_detector,
        "deepDiff_diaSrc": n_detector,
        "deepDiff_diaObject": n_patch,
    }


def test_the_tables_name_the_same_mappers():
    assert {c: reader.camera_of(m) for c, m in paths.MAPPERS.items()} == {c: c for c in paths.MAPPERS}
    assert paths.MAPPERS == reader.MAPPERS


# ---- real names -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lsstsim_input(afw_fixtures) -> Path:
    found = afw_fixtures.parent / "real" / "pserv-gen2-repo" / "image_repo"
    if not found.is_dir():
        pytest.fail(f"the real fixtures are missing: expected {found}")
    return found


def _registry_detectors(repo_dir: Path) -> list[tuple[int, str, str, str]]:
    """(visit, filter, raft, sensor) of every detector of the registry's raw table."""
    uri = f"file:{repo_dir / 'registry.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute("SELECT DISTINCT visit, filter, raft, sensor FROM raw ORDER BY visit, raft, sensor")
        return [(int(v), str(f), str(r), str(s)) for v, f, r, s in rows]


def test_the_reader_finds_obs_lsstsim_files_under_their_real_names(lsstsim_input, tmp_path):
    detectors = _registry_detectors(lsstsim_input)
    assert len(detectors) == 45  # 5 visits, 9 sensors of raft 2,2
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(lsstsim_input / "_mapper", root / "_mapper")
    names = {
        "calexp": "calexp/v{v}-f{b}/R{r}/S{s}.fits",
        "src": "src/v{v}-f{b}/R{r}/S{s}.fits",
        "deepDiff_differenceExp": "deepDiff/v{v}-f{b}/R{r}/diffexp-S{s}.fits",
        "deepDiff_diaSrc": "deepDiff/v{v}-f{b}/R{r}/diaSrc-S{s}.fits",
    }
    expected = {}
    for visit, band, raft, sensor in detectors:
        data_id = {"visit": visit, "filter": band, "raft": raft, "sensor": sensor}
        r, s = raft.replace(",", ""), sensor.replace(",", "")
        for dataset, name in names.items():
            path = root / name.format(v=visit, b=band, r=r, s=s)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            expected[(dataset, frozenset(data_id.items()))] = path

    repo = Gen2Repo.open(root)
    assert repo.camera == "obs_lsstSim"
    got = {}
    for dataset in names:
        for data_id, path in repo.discover(dataset):
            got[(dataset, frozenset(data_id.items()))] = path
    assert got == expected  # data ids read back as the registry spells them
    assert detectors[0] == (921297, "r", "2,2", "0,0")
    registry_id = {"visit": 921297, "filter": "r", "raft": "2,2", "sensor": "0,0"}
    path_spelling = {"visit": 921297, "filter": "r", "raft": "22", "sensor": "00"}
    for data_id in (registry_id, path_spelling):
        assert repo.relpath("src", **data_id) == "src/v921297-fr/R22/S00.fits"
        assert repo.relpath("deepDiff_diaSrc", **data_id) == "deepDiff/v921297-fr/R22/diaSrc-S00.fits"
        assert paths.relpath("obs_lsstSim", "deepDiff_differenceExp", data_id) == (
            "deepDiff/v921297-fr/R22/diffexp-S00.fits"
        )
    assert repo.require("src", **registry_id) == root / "src/v921297-fr/R22/S00.fits"
    assert [d for d, _ in repo.discover("calexp", visit=921297, raft="2,2", sensor="0,0")] == [registry_id]
    assert [d for d, _ in repo.discover("calexp", visit=921297, raft="22", sensor="00")] == [registry_id]


def test_the_lsstsim_sample_writes_real_names(make_repo):
    camera_repo = make_repo("paths-obs_lsstSim", camera="obs_lsstSim", **VISIT_OPTIONS)  # camera_repo's
    written = {p.relative_to(camera_repo.root / "rerun").as_posix() for p in _written(camera_repo.root)}
    visit = camera_repo.visits[0]
    v, b = visit.visit, visit.band
    assert {
        f"coadd/calexp/v{v}-f{b}/R22/S10.fits",
        f"coadd/src/v{v}-f{b}/R22/S11.fits",
        f"multiband/forced/{visit.tract}/v{v}-f{b}/R22/S10.fits",
        f"multiband/deepDiff/v{v}-f{b}/R22/diffexp-S11.fits",
        f"multiband/deepDiff/v{v}-f{b}/R22/diaSrc-S10.fits",
    } <= written
    visit_files = [w for w in written if "/v" in w]
    assert visit_files and not [w for w in visit_files if "R2,2" in w or "S1," in w]
