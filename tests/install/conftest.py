"""Real products to install: the Object pipeline run once on a small sample repository.

Each test gets its own copy of the producer's directories (tests damage them on purpose) and an
empty central directory.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from nobody import run_as_nobody

from dc2tasks.install import prepare_product
from dc2tasks.products.object_pipeline import PipelineResult, run_object_pipeline
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleConfig, make_sample_repo

JOBS = [
    {"JobID": "4242_0", "JobName": "dc2-demo-merge_tract", "State": "COMPLETED", "Elapsed": "00:01:02",
     "MaxRSS": "2048K", "ExitCode": "0:0"},
    {"job_id": "4243", "state": "COMPLETED", "elapsed_s": 5, "max_rss_bytes": 1000},
]  # fmt: skip


@dataclass
class Made:
    pipeline: PipelineResult
    sample_root: Path
    rerun: str
    object_dir: Path  # object + trim_object files, schema yamls, catalog_configs/, manifest
    dpdd_dir: Path


@pytest.fixture(scope="session")
def made(tmp_path_factory) -> Made:
    root = tmp_path_factory.mktemp("install-products")
    config = SampleConfig(
        seed=11, patches=["0,0", "0,1"], objects_per_patch=60, ref_width=120, forced_width=70
    )
    sample = make_sample_repo(root / "repo", config)
    result = run_object_pipeline(Gen2Repo.open(sample.root, sample.rerun), root / "work", run="itest")
    inputs = {"repository": str(sample.root), "rerun": sample.rerun}
    prepare_product(
        root / "work" / "object",
        configs=[result.configs["object"], result.configs["trim_object"]],
        run="itest", run_config_hash="c0ffee" * 10 + "abcd", inputs=inputs, jobs=JOBS,
    )  # fmt: skip
    prepare_product(root / "work" / "dpdd_object", configs=[result.configs["dpdd_object"]], run="itest")
    return Made(result, sample.root, sample.rerun, root / "work" / "object", root / "work" / "dpdd_object")


@pytest.fixture
def source(made, tmp_path) -> Path:
    """A private copy of the producer's Object directory (manifest included)."""
    dst = tmp_path / "producer" / "object"
    shutil.copytree(made.object_dir, dst)
    return dst


@pytest.fixture
def central(tmp_path) -> Path:
    path = tmp_path / "central"
    path.mkdir()
    return path


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything a reader could notice: names, inodes, sizes, modes, owners, mtimes, link targets."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path), st.st_ino, st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_ino, st.st_mode, st.st_gid)
            else:
                out[rel] = (
                    "file",
                    st.st_ino,
                    st.st_size,
                    st.st_mode,
                    st.st_gid,
                    st.st_mtime_ns,
                    path.read_bytes(),
                )
    return out


@pytest.fixture
def tree() -> Callable[[Path], dict[str, tuple]]:
    """`tree(root)`: a snapshot to compare before and after (see `snapshot`)."""
    return snapshot


@pytest.fixture
def rewrite_manifest() -> Callable[[Path], None]:
    from dc2tasks.install import write_manifest

    return write_manifest


@pytest.fixture
def as_nobody() -> Callable[[Callable[[], object]], object]:
    """`as_nobody(fn)`: fn() run as `nobody` in a forked child (see tests/nobody.py); needs root."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root, which this test needs to become nobody")
        pytest.skip("needs root (to become nobody)")
    return run_as_nobody
