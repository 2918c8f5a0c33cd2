"""Gen2 repositories as their butlers left them: parents named by `_parent` (a link, a file, a folder)
as well as by repositoryCfg.yaml, the camera from the mapper class named, FITS stored gzip-compressed
too. The rerun watcher's facts see the old parents without following a link.

Real inputs from ../shared/fixtures/real: `pserv-gen2-repo/image_repo` (an obs_lsstSim input
repository's `_mapper` and registry; its output repository named it with `output/_parent ->
../image_repo`, made here), the lsstSim src catalog `lsstsim-src-v695833-e0-c000.xy.fits`, and
`obs_test-calexp` (a repositoryCfg.yaml naming an obs_test mapper, and a `.fits.gz` calexp).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from dc2tasks.products.afw import read_table
from dc2tasks.products.errors import InputError, NotARepositoryError
from dc2tasks.products.repo import MAPPER_CAMERAS, MAPPERS, Gen2Repo, camera_of, parse_repository_cfg
from dc2tasks.runs import FactsRequest, gather
from dc2tasks.sample.layout import repository_cfg

IMSIM = "lsst.obs.lsst.imsim.ImsimMapper"


@pytest.fixture(scope="module")
def real(afw_fixtures) -> Path:
    found = afw_fixtures.parent / "real"
    if not (found / "pserv-gen2-repo" / "image_repo" / "_mapper").is_file():
        pytest.fail(f"the real fixtures are missing: expected {found}")
    return found


def _first_raw(image_repo: Path) -> dict[str, object]:
    uri = f"file:{image_repo / 'registry.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        visit, band, raft, sensor = db.execute(
            "SELECT visit, filter, raft, sensor FROM raw ORDER BY visit, raft, sensor LIMIT 1"
        ).fetchone()
    return {"visit": int(visit), "filter": str(band), "raft": str(raft), "sensor": str(sensor)}


@pytest.fixture
def pserv(real, tmp_path) -> Path:
    """The pserv test tree: image_repo (real `_mapper` and registry) and output/_parent -> ../image_repo."""
    root = tmp_path / "pserv"
    shutil.copytree(real / "pserv-gen2-repo" / "image_repo", root / "image_repo")
    (root / "output").mkdir()
    os.symlink("../image_repo", root / "output" / "_parent")
    return root


def test_a_parent_symlink_resolves_datasets_through_the_parent(pserv, real):
    data_id = _first_raw(pserv / "image_repo")
    assert data_id == {"visit": 921297, "filter": "r", "raft": "2,2", "sensor": "0,0"}
    src = pserv / "image_repo" / "src" / "v921297-fr" / "R22" / "S00.fits"
    src.parent.mkdir(parents=True)
    shutil.copy(real / "lsstsim-src-v695833-e0-c000.xy.fits", src)
    mine = pserv / "output" / "src" / "v921297-fr" / "R22" / "S01.fits"
    mine.parent.mkdir(parents=True)
    shutil.copy(src, mine)

    repo = Gen2Repo.open(pserv / "output")
    assert repo.camera == "obs_lsstSim"  # LsstSimMapper in image_repo/_mapper
    assert repo.chain == [pserv / "output", pserv / "image_repo"]
    found = repo.require("src", **data_id)
    assert found == src
    assert len(read_table(found)) == 337
    assert repo.require("src", **{**data_id, "sensor": "0,1"}) == mine  # the output's own first
    assert [(d["sensor"], p) for d, p in repo.discover("src", visit=921297)] == [("0,0", src), ("0,1", mine)]
    assert repo.relpath("deepDiff_diaSrc", **data_id) == "deepDiff/v921297-fr/R22/diaSrc-S00.fits"


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_parent_file_names_the_parent(pserv, how):
    parent = pserv / "output" / "_parent"
    parent.unlink()
    parent.write_text(("../image_repo" if how == "relative" else str(pserv / "image_repo")) + "\n# more\n")
    repo = Gen2Repo.open(pserv / "output")
    assert (repo.camera, repo.chain) == ("obs_lsstSim", [pserv / "output", pserv / "image_repo"])


def test_a_parent_folder_is_the_parent(pserv):
    folder = pserv / "output" / "_parent"
    folder.unlink()
    shutil.copytree(pserv / "image_repo", folder)
    repo = Gen2Repo.open(pserv / "output")
    assert (repo.camera, repo.chain) == ("obs_lsstSim", [pserv / "output", folder])


def test_a_chain_of_parent_links_and_cfgs(pserv):
    """A rerun with a repositoryCfg.yaml on an output repository with a `_parent` link: both read."""
    rerun = pserv / "output" / "rerun" / "mine"
    rerun.mkdir(parents=True)
    (rerun / "repositoryCfg.yaml").write_text(repository_cfg(MAPPERS["obs_lsstSim"], ["../.."]))
    repo = Gen2Repo.open(pserv / "output", "mine")
    assert repo.chain == [rerun, pserv / "output", pserv / "image_repo"]


def test_the_cfg_is_read_and_the_parent_link_is_not_when_both_are_there(pserv):
    (pserv / "output" / "repositoryCfg.yaml").write_text("_parents: []\n")
    with pytest.raises(NotARepositoryError, match=r"no _mapper file or repositoryCfg\.yaml naming a mapper"):
        Gen2Repo.open(pserv / "output")
    (pserv / "output" / "_mapper").write_text(IMSIM + "\n")
    repo = Gen2Repo.open(pserv / "output")
    assert (repo.camera, repo.chain) == ("obs_lsst", [pserv / "output"])


def test_a_dangling_parent_link_is_named(pserv):
    (pserv / "output" / "_parent").unlink()
    os.symlink("../gone", pserv / "output" / "_parent")
    with pytest.raises(NotARepositoryError, match=r"output/_parent: parent repository .*/pserv/gone does"):
        Gen2Repo.open(pserv / "output")


def test_a_directory_with_none_of_the_three_is_not_a_repository(tmp_path):
    with pytest.raises(NotARepositoryError, match=r"none of repositoryCfg\.yaml, _mapper, _parent is there"):
        Gen2Repo.open(tmp_path)


# ---- the camera --------------------------------------------------------------------------------


def test_an_obs_test_mapper_is_an_error_naming_it(real, tmp_path):
    repo_dir = tmp_path / "obs_test"
    shutil.copytree(real / "obs_test-calexp", repo_dir)
    with pytest.raises(InputError) as err:
        Gen2Repo.open(repo_dir)
    message = str(err.value)
    assert message.startswith(f"{repo_dir / 'repositoryCfg.yaml'}: unknown mapper "
                              "'lsst.obs.test.MapperForTestCalexpMetadataObjects'")
    assert "lsst.obs.lsst.imsim.ImsimMapper" in message and "lsst.obs.lsstSim.LsstSimMapper" in message


def test_an_unknown_mapper_of_a_parent_names_its_file(tmp_path):
    (tmp_path / "_mapper").write_text("lsst.obs.hsc.HscMapper\n")
    (tmp_path / "rerun" / "r").mkdir(parents=True)
    (tmp_path / "rerun" / "r" / "repositoryCfg.yaml").write_text("_parents: [../..]\n_mapper: null\n")
    with pytest.raises(InputError, match=rf"^{tmp_path}/_mapper: unknown mapper 'lsst.obs.hsc.HscMapper'"):
        Gen2Repo.open(tmp_path, "r")


def test_mapper_names_and_cameras():
    assert {camera_of(m) for m in MAPPER_CAMERAS} == {"obs_lsst", "obs_lsstSim"}
    assert camera_of("lsst.obs.lsstCam.LsstCamMapper") == "obs_lsst"  # Run 1.2's obs_lsst, before its rename
    assert camera_of("lsst.obs.lsstSim.lsstSimMapper.LsstSimMapper") == "obs_lsstSim"
    with pytest.raises(InputError, match=r"^here: unknown mapper 'lsstSim'"):
        camera_of("lsstSim", "here")  # no guessing from a part of the name
    cfg = parse_repository_cfg(repository_cfg(MAPPERS["obs_lsstSim"], []), "cfg")
    assert cfg["_mapper"] == "lsst.obs.lsstSim.LsstSimMapper"  # the `!!python/name:` tag's name


def test_the_mapper_file_is_read_to_its_first_line(tmp_path):
    (tmp_path / "_mapper").write_text("\n  lsst.obs.lsstSim.LsstSimMapper  \nwritten by hand\n")
    assert Gen2Repo.open(tmp_path).camera == "obs_lsstSim"


# ---- gzip-compressed FITS -----------------------------------------------------------------------


CALEXP_ID = {"visit": 1000, "filter": "r", "raftName": "R22", "detectorName": "S11", "detector": 94}


@pytest.fixture
def chained(tmp_path) -> tuple[Gen2Repo, Path, Path]:
    root = tmp_path / "repo"
    (root / "rerun" / "mine").mkdir(parents=True)
    (root / "_mapper").write_text(IMSIM + "\n")
    (root / "rerun" / "mine" / "repositoryCfg.yaml").write_text(repository_cfg(IMSIM, ["../.."]))
    repo = Gen2Repo.open(root, "mine")
    return repo, repo.chain[0], repo.chain[1]


def _put(where: Path, rel: str, source: Path | None = None) -> Path:
    path = where / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is None:
        path.write_bytes(b"")
    else:
        shutil.copy(source, path)
    return path


def test_a_gzip_fits_is_found_where_the_template_names_fits(chained, real):
    repo, rerun, root = chained
    rel = repo.relpath("calexp", **CALEXP_ID)
    assert rel.endswith("-det094.fits")
    packed = _put(root, rel + ".gz", real / "obs_test-calexp" / "example-calexp.fits.gz")
    assert repo.require("calexp", **CALEXP_ID) == packed
    assert repo.discover("calexp") == [(CALEXP_ID, packed)]
    plain = _put(rerun, rel)  # the rerun's own hides its parent's, whichever is compressed
    assert repo.require("calexp", **CALEXP_ID) == plain
    assert repo.discover("calexp", visit=1000) == [(CALEXP_ID, plain)]
    _put(rerun, rel + ".gz")
    with pytest.raises(InputError, match=r"-det094\.fits and .*-det094\.fits\.gz hold the same dataset"):
        repo.find("calexp", **CALEXP_ID)
    with pytest.raises(InputError, match="hold the same dataset"):
        repo.discover("calexp")


def test_only_fits_and_its_gzip_are_taken(chained):
    repo, rerun, _ = chained
    rel = repo.relpath("deepCoadd_ref", tract=4850, patch="1,1")
    _put(rerun, rel + ".bz2")
    _put(rerun, rel + ".gz.tmp")
    assert repo.find("deepCoadd_ref", tract=4850, patch="1,1") is None
    assert repo.discover("deepCoadd_ref") == []
    packed = _put(rerun, rel + ".gz")
    assert repo.patches(4850) == ["1,1"]
    assert repo.discover("deepCoadd_ref") == [({"tract": 4850, "patch": "1,1"}, packed)]


# ---- the rerun watcher ---------------------------------------------------------------------------


def _listing(root: Path, **kw):
    return gather(root, FactsRequest(**kw))


@pytest.fixture
def reruns(tmp_path) -> Path:
    root = tmp_path / "repo"
    for name in ("coadd", "mine"):
        (root / "rerun" / name).mkdir(parents=True)
    (root / "_mapper").write_text(IMSIM + "\n")
    (root / "rerun" / "coadd" / "repositoryCfg.yaml").write_text(repository_cfg(IMSIM, ["../.."]))
    return root


def test_the_watcher_reads_a_parent_link_without_following_it(reruns):
    mine = reruns / "rerun" / "mine"
    os.symlink("../coadd", mine / "_parent")
    listing = _listing(reruns, own_rerun="mine")
    assert listing.entry("mine").parents == ["coadd"]
    assert listing.ignored == ["mine", "coadd"]  # built on coadd: neither walked nor handed out
    assert listing.entry("coadd").parents == []  # its cfg names the root, not a rerun

    (mine / "_parent").unlink()
    os.symlink(f"{reruns}/rerun/elsewhere", mine / "_parent")  # dangling: a name, never opened
    assert _listing(reruns).entry("mine").parents == ["elsewhere"]
    (mine / "_parent").unlink()
    (reruns / "rerun" / "coadd" / "note").write_text("../coadd\n")
    os.symlink("../coadd/note", mine / "_parent")  # a link to a file: its text is not read
    assert _listing(reruns).entry("mine").parents == []


def test_the_watcher_reads_a_parent_file(reruns):
    mine = reruns / "rerun" / "mine"
    (mine / "_parent").write_text(f"{reruns}/rerun/coadd\n")
    assert _listing(reruns).entry("mine").parents == ["coadd"]
    (mine / "_parent").write_text("../..\n")  # the root repository: no rerun
    assert _listing(reruns).entry("mine").parents == []
    (mine / "_parent").unlink()
    (mine / "_parent").mkdir()  # a parent folder is inside the rerun
    assert _listing(reruns).entry("mine").parents == []


def test_the_watcher_reads_the_cfg_and_not_the_link_when_both_are_there(reruns):
    mine = reruns / "rerun" / "mine"
    os.symlink("../coadd", mine / "_parent")
    (mine / "repositoryCfg.yaml").write_text(repository_cfg(IMSIM, ["../.."]))
    entry = _listing(reruns).entry("mine")
    assert (entry.cfg, entry.parents) == (True, [])
