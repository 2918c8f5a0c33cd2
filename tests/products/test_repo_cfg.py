"""repositoryCfg.yaml read once: the reader's parent chain and the rerun watcher's facts use it."""

from __future__ import annotations

import pytest

from dc2tasks.products.errors import NotARepositoryError
from dc2tasks.products.repo import Gen2Repo, parent_roots, parse_repository_cfg
from dc2tasks.runs.rerun_facts import cfg_parents

BUTLER_CFG = """\
!RepositoryCfg_v1
_mapper: !!python/name:lsst.obs.lsst.imsim.ImsimMapper ''
_parents:
- ../coadd
- !RepositoryCfg_v1
  _root: /data/repo/rerun/calexp
  _mapper: null
- {}
"""


def test_parent_roots_as_written() -> None:
    cfg = parse_repository_cfg(BUTLER_CFG, "cfg")
    assert parent_roots(cfg) == ["../coadd", "/data/repo/rerun/calexp"]
    assert parent_roots({}) == []


@pytest.mark.parametrize("text", ["- a\n- b\n", "_parents: [a\n"])
def test_not_a_repository_cfg(text: str) -> None:
    with pytest.raises(NotARepositoryError, match=r"where: not a valid repositoryCfg\.yaml"):
        parse_repository_cfg(text, "where")


def test_reader_and_watcher_agree_on_parents(tmp_path) -> None:
    root = tmp_path / "repo"
    (root / "rerun" / "coadd").mkdir(parents=True)
    (root / "_mapper").write_text("lsst.obs.lsst.imsim.ImsimMapper\n")
    (root / "rerun" / "coadd" / "repositoryCfg.yaml").write_text("_parents: [../..]\n")
    mine = root / "rerun" / "mine"
    mine.mkdir()
    text = f"_parents:\n- ../coadd\n- {{_root: {root}/rerun/coadd}}\n"
    (mine / "repositoryCfg.yaml").write_text(text)
    repo = Gen2Repo.open(root, "mine")
    assert repo.chain == [mine, root / "rerun" / "coadd", root]
    assert cfg_parents(text, f"{root}/rerun", "mine") == ["coadd", "coadd"]
    assert cfg_parents("- not a mapping\n", f"{root}/rerun", "mine") == []
