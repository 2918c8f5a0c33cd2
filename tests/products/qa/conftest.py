"""One sample repository and its Object products, made once for the QA tests; each test that breaks
a product works on its own copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dc2tasks.products.object_pipeline import run_object_pipeline
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleConfig, make_sample_repo

SAMPLE = SampleConfig(
    seed=11,
    patches=["0,0", "0,1", "1,0"],
    objects_per_patch=150,
    ref_width=200,
    forced_width=90,
    schema=3,
    zp_jitter=0.05,
    missing_bands=[("g", "0,1")],
)


@pytest.fixture(scope="session")
def qa_sample(tmp_path_factory) -> tuple[Path, Path]:
    """(the sample repository's root, which holds truth/; the work directory of its Object products)."""
    root = tmp_path_factory.mktemp("qa_sample")
    sample = make_sample_repo(root / "repo", SAMPLE)
    run_object_pipeline(Gen2Repo.open(sample.root, sample.rerun), root / "work", run="qa_test")
    return sample.root, root / "work"


@pytest.fixture
def work_copy(qa_sample, tmp_path) -> Path:
    """A copy of the sample's work directory, free to break."""
    return Path(shutil.copytree(qa_sample[1], tmp_path / "work"))
