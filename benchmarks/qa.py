"""`dc2 qa` on a tract-sized DPDD file against the DPDD step that made it, and its peak memory.

Builds a sample tract (~200k objects), runs merge and trim, times the DPDD step (in this process),
then times `dc2 qa --product dpdd_object` (a child process, as the DAG runs it: imports, checks,
plots, report) and prints both with their ratio, then the child's peak resident memory next to the
DPDD file's size and its largest row group: the checks read one row group at a time into binned
arrays, so their memory follows a row group, not the file.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from dc2tasks.products.object_dpdd import dpdd_tract
from dc2tasks.products.object_merge import merge_tract
from dc2tasks.products.object_trim import trim_file
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleConfig, make_sample_repo
from dc2tasks.sample.config import patch_grid


def largest_row_group_mb(path: Path) -> float:
    meta = pq.ParquetFile(path).metadata
    return max(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, default=200_000, help="objects in the tract (before overlaps)")
    p.add_argument("--patches", type=int, default=2, help="patch grid side (N x N patches)")
    p.add_argument("--workdir", type=Path, help="where to build the sample (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the sample and outputs")
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dc2-bench-qa-"))
    npatch = args.patches * args.patches
    config = SampleConfig(seed=1, patches=patch_grid(args.patches), objects_per_patch=args.objects // npatch,
                          ref_width=740, forced_width=280)
    try:
        sample = make_sample_repo(workdir / "repo", config)
        repo = Gen2Repo.open(sample.root, sample.rerun)
        merged = merge_tract(repo, sample.tracts[0], workdir / "object", jobs=1)
        trimmed = trim_file(merged.path, workdir / "object")
        t0 = time.perf_counter()
        result = dpdd_tract(trimmed.path, workdir / "dpdd_object")
        dpdd_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dc2tasks.cli", "qa", str(workdir / "dpdd_object"),
                        "--product", "dpdd_object", "--truth", str(sample.root)], check=True)
        qa_s = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size_mb = result.path.stat().st_size / 1e6
        print(f"DPDD step:   {dpdd_s:7.2f} s ({result.rows} rows, {result.row_groups} row groups)")
        print(f"dc2 qa:      {qa_s:7.2f} s (a new process: imports, checks against truth, plots, report)")
        print(f"qa / DPDD:   {qa_s / dpdd_s:7.2f}")
        print(f"dc2 qa peak memory: {peak_mb:.0f} MB; DPDD file {size_mb:.0f} MB on disk, largest row group "
              f"{largest_row_group_mb(result.path):.0f} MB uncompressed")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
