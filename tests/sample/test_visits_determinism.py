"""Visits never change what a repository without them holds, and the same options give the same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dc2tasks.sample import SampleConfig, make_sample_repo

# Whole-tree digests of two repositories made by the generator before visits existed (commit
# 46d9121): a repository with visits=0 must stay byte for byte the same.
BEFORE_VISITS = {
    "e98db924ffc83da600a9efb0550c2e253f75fae38357ad19cd381e8bc65bb388": dict(
        patches=["0,0", "1,1"], objects_per_patch=60, ref_width=200, forced_width=80, seed=11
    ),
    "8f7168a1352aaebfaf6e3b35a99fd291d9d099932fb48d46a8c4e407b9942ab9": dict(
        patches=["2,3"],
        objects_per_patch=40,
        ref_width=150,
        forced_width=60,
        schema=1,
        calib_era="photocalib",
        zp_jitter=0.1,
        camera="obs_lsstSim",
        bands=("g", "r", "i"),
    ),
}
SMALL = dict(patches=["0,0", "1,1"], objects_per_patch=300, ref_width=150, forced_width=60, bands=("g", "r"))


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@pytest.mark.parametrize("digest", list(BEFORE_VISITS))
def test_without_visits_the_output_is_what_it_was(tmp_path, digest):
    repo = make_sample_repo(tmp_path / "r", SampleConfig(**BEFORE_VISITS[digest]))
    assert not repo.visits and not repo.visit_truth_paths
    assert '"visits"' not in (repo.root / "sample_config.json").read_text()
    assert _tree_digest(repo.root) == digest


def test_visits_leave_the_coadd_files_alone(tmp_path):
    plain = _files(make_sample_repo(tmp_path / "plain", SampleConfig(**SMALL)).root)
    with_visits = _files(make_sample_repo(tmp_path / "visits", SampleConfig(**SMALL, visits=2)).root)
    assert len(with_visits) > len(plain) + 2 * 4 * 5
    changed = [k for k in plain if plain[k] != with_visits[k]]
    assert changed == ["sample_config.json"]


def test_same_options_same_bytes_and_detectors_independent(tmp_path):
    config = dict(SMALL, visits=2, detectors=(94, 98))
    a = _files(make_sample_repo(tmp_path / "a", SampleConfig(**config)).root)
    b = _files(make_sample_repo(tmp_path / "b", SampleConfig(**config)).root)
    assert a == b
    c = _files(make_sample_repo(tmp_path / "c", SampleConfig(**dict(config, seed=2))).root)
    visit_files = [k for k in a if "-det09" in k or k.endswith("S2,2.fits")]
    assert len(visit_files) == 2 * 2 * 5
    assert all(a[k] != c[k] for k in visit_files if "src_" in k)
    # adding a detector changes nothing in the files of the others
    more = _files(make_sample_repo(tmp_path / "d", SampleConfig(**dict(config, detectors=(94, 95, 98)))).root)
    assert all(more[k] == a[k] for k in visit_files)
    assert any("-det095" in k for k in more)
