"""Sample repositories and pipeline runs shared by the product tests (made once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dc2tasks.products.object_pipeline import run_object_pipeline
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleConfig, make_sample_repo

GENERATIONS = (1, 3, 4)


def _config(version: int, **kw) -> SampleConfig:
    base = dict(
        seed=7 + version,
        patches=["0,0", "0,1", "1,0"],
        objects_per_patch=300,
        ref_width=200,
        forced_width=90,
        schema=version,
        zp_jitter=0.05,
        missing_bands=[("g", "0,1")],
    )
    base.update(kw)
    return SampleConfig(**base)


@pytest.fixture(scope="session", params=GENERATIONS, ids=lambda v: f"v{v}")
def pipeline_run(request, tmp_path_factory):
    """(sample, result) for each schema generation: a sample repo and every Object product."""
    version = request.param
    root: Path = tmp_path_factory.mktemp(f"gen{version}")
    era = "calib" if version == 1 else "photocalib"
    sample = make_sample_repo(root / "repo", _config(version, calib_era=era))
    repo = Gen2Repo.open(sample.root, sample.rerun)
    result = run_object_pipeline(repo, root / "work", run=f"test_v{version}", jobs=2 if version == 3 else 1)
    return sample, result


@pytest.fixture
def small_sample(tmp_path):
    def make(**kw):
        cfg = _config(3, objects_per_patch=60, **kw)
        return make_sample_repo(tmp_path / "repo", cfg)

    return make
