"""Visits never change what a repository without them holds, and the same options give the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dc2tasks.sample import SampleConfig, make_sample_repo

# Whole-tree digests of two repositories made by the generator before visits existed (commit
# 46d9121): a repository with visits=0 must stay byte for byte the same. The bytes depend on which
# SIMD kernels numpy dispatches its sin/cos/log/exp to: the AVX-512 ones differ from the AVX2 and
# baseline ones in the last bit, so the digests were taken (on an AMD EPYC, with 46d9121 and with
# this generator alike) and are checked with dispatch held to AVX2 at most.
BEFORE_VISITS = {
    "06c3f9592ddb67d50b332d28a2d46a60d64661f823e97ceccaa7118e471d8bfb": dict(
        patches=["0,0", "1,1"], objects_per_patch=60, ref_width=200, forced_width=80, seed=11
    ),
    "7c32fa3267e87faa48b2e5bde0b0e7ed0d2d1d99907c0c68ae3c7dc09d325f58": dict(
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


def _make_with_avx2_at_most(root: Path, options: dict) -> None:
    """make_sample_repo in a child process whose numpy dispatches to no kernel beyond AVX2."""
    from numpy._core._multiarray_umath import __cpu_dispatch__

    beyond = __cpu_dispatch__[__cpu_dispatch__.index("X86_V3") + 1 :] if "X86_V3" in __cpu_dispatch__ else []
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=" ".join(beyond))
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from dc2tasks.sample import SampleConfig, make_sample_repo\n"
        "make_sample_repo(Path(sys.argv[1]), SampleConfig(**json.loads(sys.argv[2])))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(root), json.dumps(options)], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("digest", list(BEFORE_VISITS))
def test_without_visits_the_output_is_what_it_was(tmp_path, digest):
    _make_with_avx2_at_most(tmp_path / "r", BEFORE_VISITS[digest])
    root = tmp_path / "r"
    assert '"visits"' not in (root / "sample_config.json").read_text()
    assert sorted(p.name for p in (root / "truth").iterdir()) == ["object_truth_tract_4850.parquet"]
    assert _tree_digest(root) == digest


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
