"""Sample repositories shared by the generator tests (each made once per session; all small)."""

from __future__ import annotations

import pytest

from dc2tasks.sample import SampleConfig, SampleRepo, make_sample_repo

SMALL = dict(objects_per_patch=200)


@pytest.fixture(scope="session")
def make_repo(tmp_path_factory):
    """make_repo(name, **config) -> SampleRepo, cached by name for the session."""
    made: dict[str, SampleRepo] = {}

    def make(name: str, **kw) -> SampleRepo:
        if name not in made:
            config = SampleConfig(**{**SMALL, **kw})
            made[name] = make_sample_repo(tmp_path_factory.mktemp(name) / "repo", config)
        return made[name]

    return make


@pytest.fixture(scope="session")
def default_repo(make_repo) -> SampleRepo:
    """The default layout (v3, calib era, 2x2 patches, 6 bands, full width), 200 objects a patch."""
    return make_repo("default")


@pytest.fixture(scope="session", params=[1, 2, 3, 4], ids=lambda v: f"v{v}")
def generation_repo(request, make_repo) -> SampleRepo:
    return make_repo(
        f"gen{request.param}", schema=request.param, patches=["1,1"], ref_width=300, forced_width=120
    )
