"""Sample repositories and pipeline runs shared by the product tests (made once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
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


def _dpdd_equals_gcr(ours: pd.DataFrame, catalog, rtol: float) -> list[str]:
    """Our DPDD columns against the GCRCatalogs catalog's quantities: the same names (plus tract and
    patch), floats of the same type within `rtol`, everything else of the same kind and exact.
    Returns the quantities."""
    quantities = sorted(catalog.list_all_quantities())
    assert set(ours.columns) == set(quantities) | {"tract", "patch"}
    theirs = catalog.get_quantities([*quantities, "tract", "patch"])
    for q in [*quantities, "tract", "patch"]:
        a, b = np.asarray(theirs[q]), ours[q].to_numpy()
        if a.dtype.kind == "f":
            assert b.dtype == a.dtype, q
            np.testing.assert_allclose(b, a, rtol=rtol, atol=0, equal_nan=True, err_msg=q)
        else:
            assert b.dtype.kind == a.dtype.kind or a.dtype.kind in "OU", q
            np.testing.assert_array_equal(b.astype(a.dtype), a, err_msg=q)
    return quantities


@pytest.fixture
def dpdd_equals_gcr():
    return _dpdd_equals_gcr
