"""`dc2 qa` on a tract-sized DPDD file against the DPDD step that made it, and its peak memory.

Builds a sample tract (~200k DPDD rows), runs merge and trim, then runs `dc2 dpdd` and `dc2 qa
--product dpdd_object --truth` each as the DAG runs them, a job in a new interpreter, and prints
both with their ratio: as jobs (wall time) and of their runs after the imports.

The qa job's memory: its peak resident memory above what it holds after the imports, next to the
DPDD file's largest row group (uncompressed), with their ratio; then the same peak (without truth)
for the file alone and for `--copies` links to it as as many tracts, that is for N times the rows.
The checks read one row group at a time, and of it only the columns they use, into binned arrays:
the peak follows the columns read (Arrow's Parquet reader keeps ~2 MB per column read, whatever the
rows) and not the rows, but for the ids the duplicate check sorts (8 bytes each).
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

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products.object_merge import merge_tract
from dc2tasks.products.object_trim import trim_file
from dc2tasks.products.qa.object_files import file_unit
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleConfig, make_sample_repo
from dc2tasks.sample.config import patch_grid


def largest_row_group_mb(path: Path) -> float:
    meta = pq.ParquetFile(path).metadata
    return max(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) / 1e6


CHILD = """
import importlib, json, os, re, sys, time
from pathlib import Path
start = time.perf_counter()
from dc2tasks.cli import main
for name in os.environ["DC2_BENCH_IMPORTS"].split():  # what the job imports, measured apart
    importlib.import_module(name)
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

FLOOR = """
import sys, time
start = time.perf_counter()
import numpy, pyarrow.parquet
from matplotlib.figure import Figure
for i in range(int(sys.argv[1])):
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    fig.add_subplot().stairs(numpy.arange(72.0), numpy.arange(73.0))
    fig.savefig(sys.argv[2], format="png")
print(time.perf_counter() - start)
"""
"""The least a qa job that draws its plots costs: a new interpreter, numpy, pyarrow and matplotlib
imported and as many one-line PNGs drawn, no data read."""

DPDD = CATALOGUE["dpdd_object"]
QA_IMPORTS = "dc2tasks.cli.qa dc2tasks.products.qa.objects"
DPDD_IMPORTS = "dc2tasks.cli.objects dc2tasks.products.object_dpdd"


def run_child(argv: list[str], report: Path, imports: str, quiet: bool = False) -> dict[str, float]:
    """`dc2 ARGV` in a new interpreter, as a job runs it; (its wall time, its own figures)."""
    env = {**os.environ, "DC2_BENCH_CHILD": str(report), "DC2_BENCH_IMPORTS": imports}
    t0 = time.perf_counter()
    out = subprocess.DEVNULL if quiet else None
    subprocess.run([sys.executable, "-c", CHILD, *argv], check=True, env=env, stdout=out, stderr=out)
    return {"wall_s": time.perf_counter() - t0, **json.loads(report.read_text())}


def floor_s(plots: int, png: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR, str(plots), str(png)], check=True, capture_output=True)
    return time.perf_counter() - t0


def split(figures: dict[str, float]) -> str:
    return f"{figures['imports_s']:.2f} s imports, {figures['run_s']:.2f} s run"


def memory_by_files(workdir: Path, made: Path, copies: int) -> str:
    """The qa job's peak above its base for the DPDD file alone and as `copies` tracts (links to it,
    other tract numbers in their names: the checks then fail, the reading is the same): the same
    peak for `copies` times the rows is memory that follows a row group, not the catalog."""
    figures = []
    tract = file_unit(DPDD, made)
    assert tract is not None, made
    for n in (1, copies):
        scaled = workdir / f"scaled_{n}"
        shutil.rmtree(scaled, ignore_errors=True)
        scaled.mkdir()
        for k in range(n):
            (scaled / DPDD.file_name(tract=tract + k)).symlink_to(made)
        argv = ["qa", str(scaled), "--product", "dpdd_object", "-o", str(scaled / "qa")]
        qa = run_child(argv, workdir / "scaled.json", QA_IMPORTS, quiet=True)
        figures.append(f"{n} file(s) {qa['peak_mb'] - qa['base_mb']:.0f} MB")
    return ", ".join(figures)


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
    p.add_argument("--copies", type=int, default=4, help="files (links) of the memory against rows")
    p.add_argument("--keep", action="store_true", help="keep the sample and outputs")
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dc2-bench-qa-"))
    try:
        root, trimmed = made_sample(workdir, args.objects, args.patches)
        out = workdir / "dpdd_object"
        shutil.rmtree(out, ignore_errors=True)
        dpdd = run_child(["dpdd", str(trimmed), "-o", str(out)], workdir / "dpdd.json", DPDD_IMPORTS)
        made = next(out.glob("dpdd_object_tract_*.parquet"))
        meta = pq.ParquetFile(made).metadata
        print(f"DPDD job:    {dpdd['wall_s']:7.2f} s in all ({split(dpdd)}); {meta.num_rows} rows, "
              f"{meta.num_row_groups} row groups")
        argv = ["qa", str(out), "--product", "dpdd_object", "--truth", str(root)]
        qa = run_child(argv, workdir / "qa.json", QA_IMPORTS)
        print(f"qa job:      {qa['wall_s']:7.2f} s in all ({split(qa)}; checks, plots, report)")
        print(f"qa / DPDD:   {qa['wall_s'] / dpdd['wall_s']:7.2f} as jobs; "
              f"{qa['run_s'] / dpdd['run_s']:.2f} of their runs after the imports")
        plots = len(list((out / "qa" / "dpdd_object" / "plots").glob("*.png")))
        floor = floor_s(plots, workdir / "floor.png")
        print(f"floor:       {floor:7.2f} s for a job drawing {plots} plots and reading nothing "
              f"({floor / dpdd['wall_s']:.2f} of the DPDD job)")
        group_mb = largest_row_group_mb(made)
        above = qa["peak_mb"] - qa["base_mb"]
        print(
            f"memory:      {above:7.0f} MB peak above the {qa['base_mb']:.0f} MB after the imports; "
            f"the largest row group {group_mb:.0f} MB uncompressed (ratio "
            f"{above / group_mb:.2f}); DPDD file {made.stat().st_size / 1e6:.0f} MB on disk"
        )
        print(f"memory against rows (no truth): {memory_by_files(workdir, made, args.copies)}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
