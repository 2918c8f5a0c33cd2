"""`dc2 qa` on a tract-sized DPDD file against the DPDD step that made it, and its peak memory.

Builds a sample tract (~200k DPDD rows), runs merge and trim, times the DPDD step (in this process),
then times `dc2 qa --product dpdd_object --truth` (a child process, as the DAG runs it: imports,
checks, plots, report) and prints both with their ratio, the child's imports and run apart, and the
child's peak resident memory above its resident memory after the imports (the checks' and plots'
own memory) next to the DPDD file's largest row group (uncompressed), with their ratio: the checks
read one row group at a time, and of it only the columns they use, into binned arrays, so their
memory follows a row group, not the file.
"""

from __future__ import annotations

import argparse
import json
import os
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


CHILD = """
import json, os, re, sys, time
from pathlib import Path
start = time.perf_counter()
from dc2tasks.cli import main
import dc2tasks.cli.qa, dc2tasks.products.qa.objects  # what a qa job imports, measured apart
imported = time.perf_counter()

def status_mb(key):  # this process's own figures (getrusage's counts the forked parent's too)
    return int(re.search(key + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from here
base = status_mb("VmRSS")
rc = main(sys.argv[1:])
Path(os.environ["DC2_BENCH_CHILD"]).write_text(json.dumps({
    "imports_s": imported - start, "run_s": time.perf_counter() - imported,
    "base_mb": base, "peak_mb": status_mb("VmHWM"),
}))
sys.exit(rc)
"""


def run_child(argv: list[str], report: Path) -> dict[str, float]:
    """`dc2 ARGV` in a new interpreter, as a job runs it; (its wall time, its own figures)."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", CHILD, *argv], check=True, env={**os.environ, "DC2_BENCH_CHILD": str(report)}
    )
    return {"wall_s": time.perf_counter() - t0, **json.loads(report.read_text())}


def made_sample(workdir: Path, objects: int, patches: int) -> tuple[Path, Path]:
    """(sample root, trimmed Object file) of a sample tract, reused when workdir already holds one."""
    config = SampleConfig(
        seed=1,
        patches=patch_grid(patches),
        objects_per_patch=objects // patches**2,
        ref_width=740,
        forced_width=280,
    )
    root = workdir / "repo"
    trimmed = sorted((workdir / "object").glob("trim_object_tract_*.hdf5"))
    if root.is_dir() and trimmed:
        return root, trimmed[0]
    sample = make_sample_repo(root, config, overwrite=True)
    repo = Gen2Repo.open(sample.root, sample.rerun)
    merged = merge_tract(repo, sample.tracts[0], workdir / "object", jobs=1)
    return sample.root, trim_file(merged.path, workdir / "object").path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--objects",
        type=int,
        default=250_000,
        help="objects made in the tract's patches (4/5 of them primary: ~200k DPDD rows)",
    )
    p.add_argument("--patches", type=int, default=2, help="patch grid side (N x N patches)")
    p.add_argument(
        "--workdir",
        type=Path,
        help="where to build the sample (default: a temporary directory; a sample already there is reused)",
    )
    p.add_argument("--keep", action="store_true", help="keep the sample and outputs")
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dc2-bench-qa-"))
    try:
        root, trimmed = made_sample(workdir, args.objects, args.patches)
        t0 = time.perf_counter()
        result = dpdd_tract(trimmed, workdir / "dpdd_object")
        dpdd_s = time.perf_counter() - t0
        print(f"DPDD step:   {dpdd_s:7.2f} s ({result.rows} rows, {result.row_groups} row groups)")
        print("dc2 qa --product dpdd_object --truth (a new process: imports, checks, plots, report):")
        argv = ["qa", str(workdir / "dpdd_object"), "--product", "dpdd_object", "--truth", str(root)]
        qa = run_child(argv, workdir / "child.json")
        group_mb = largest_row_group_mb(result.path)
        above = qa["peak_mb"] - qa["base_mb"]
        split = f"{qa['imports_s']:.2f} s imports, {qa['run_s']:.2f} s checks, plots, report"
        print(f"dc2 qa:      {qa['wall_s']:7.2f} s in all ({split})")
        print(f"qa / DPDD:   {qa['wall_s'] / dpdd_s:7.2f}")
        print(
            f"memory:      {above:7.0f} MB peak above the {qa['base_mb']:.0f} MB after the imports; the "
            f"largest row group {group_mb:.0f} MB uncompressed (ratio {above / group_mb:.2f}); "
            f"DPDD file {result.path.stat().st_size / 1e6:.0f} MB on disk"
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
