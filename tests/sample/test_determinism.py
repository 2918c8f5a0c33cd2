"""Same config, same bytes; different seed, different data; patches independent of each other."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dc2tasks.sample import NotEmptyError, SampleConfig, make_sample_repo

CONFIG = dict(patches=["0,0", "1,0"], objects_per_patch=60, ref_width=200, forced_width=80)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = _digests(make_sample_repo(tmp_path / "a", SampleConfig(seed=5, **CONFIG)).root)
    b = _digests(make_sample_repo(tmp_path / "b", SampleConfig(seed=5, **CONFIG)).root)
    c = _digests(make_sample_repo(tmp_path / "c", SampleConfig(seed=6, **CONFIG)).root)
    assert len(a) == 2 + 2 * 6 * 2 + 2 + 2 + 1  # _mapper, config, 2x6 calexp+forced, 2 refs, 2 cfgs, truth
    assert a == b
    assert a.keys() == c.keys()
    catalogs = [k for k in a if k.endswith(".fits") and "calexp" not in k]
    assert all(a[k] != c[k] for k in catalogs)
    assert a["truth/object_truth_tract_4850.parquet"] != c["truth/object_truth_tract_4850.parquet"]


def test_adding_a_patch_leaves_the_others_unchanged(tmp_path):
    small = make_sample_repo(tmp_path / "small", SampleConfig(seed=3, **CONFIG))
    more = dict(CONFIG, patches=["0,0", "1,0", "3,3"])
    big = make_sample_repo(tmp_path / "big", SampleConfig(seed=3, **more))
    a, b = _digests(small.root), _digests(big.root)
    shared = [k for k in a if k.startswith("rerun/") and k.endswith(".fits")]
    assert len(shared) == 2 * 6 * 2 + 2
    assert all(a[k] == b[k] for k in shared)
    assert any("3,3" in k for k in b)


def test_refuses_a_non_empty_directory(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(NotEmptyError, match="not empty"):
        make_sample_repo(target, SampleConfig(**CONFIG))
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    make_sample_repo(target, SampleConfig(**CONFIG), overwrite=True)
    assert (target / "notes.txt").read_text() == "mine"
    # overwriting its own earlier output removes stale files from the old config
    make_sample_repo(target, SampleConfig(**dict(CONFIG, patches=["0,0"])), overwrite=True)
    assert not list(target.rglob("*1,0*"))
