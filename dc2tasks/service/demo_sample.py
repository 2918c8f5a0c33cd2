"""The demo's inputs under the work directory, as dags/runs/demo.yaml reads them (DC2_DEMO_DIR):
the sample repository `sample-repo/` with its `visits.txt`, and `central/` for the installs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dc2tasks.sample import SampleRepo

# `dc2 demo` and `dc2 serve` defaults: the same repository in the same place unless told otherwise
DEMO_WORKDIR = Path("demo-output")
DEMO_SEED = 2018


def make_demo_sample(workdir: Path, seed: int = DEMO_SEED) -> SampleRepo:
    """The sample repository dags/runs/demo.yaml reads (<workdir>/sample-repo + its visits.txt), made
    afresh: `dc2 demo` and `dc2 serve` must process the same repository."""
    # imported here: every `dc2` command imports this module (for `dc2 serve`'s arguments), and
    # the generator takes half a second to import
    from dc2tasks.sample import SampleConfig, make_sample_repo

    repo_dir = workdir / "sample-repo"
    if repo_dir.exists():
        shutil.rmtree(repo_dir)  # ours: regenerated from the seed every time
    config = SampleConfig(seed=seed, patches=["0,0", "0,1", "1,0", "1,1"], objects_per_patch=2000, visits=3)
    sample = make_sample_repo(repo_dir, config)
    sample.write_visit_list(repo_dir / "visits.txt")
    return sample


def has_demo_sample(workdir: Path) -> bool:
    """visits.txt is written last: a repository without it is a half-made one."""
    return (workdir / "sample-repo" / "visits.txt").is_file()


def make_central(workdir: Path) -> Path:
    """The local central directory the demo run installs into: 0755, as `dc2 install` refuses a
    group-writable one."""
    central = workdir / "central"
    central.mkdir(mode=0o755, parents=True, exist_ok=True)
    return central
