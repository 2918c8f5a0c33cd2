"""Object pipeline throughput on a tract-sized sample, against the raw read speed of the same files.

One run prints: merge throughput (MB of input per second) next to the raw read throughput of the
same input files (reading their bytes, nothing else) and the ratio; DPDD rows per second; peak
memory. When run as root the page cache is dropped before each timed read, so both figures are
cold reads from disk; otherwise both are warm (and the ratio is harsher, the raw read being a
memory copy).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from dc2tasks.products.object_dpdd import dpdd_tract
from dc2tasks.products.object_merge import merge_tract
from dc2tasks.products.object_trim import trim_file
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.sample import SampleConfig, make_sample_repo
from dc2tasks.sample.config import patch_grid


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def input_files(repo: Gen2Repo, tract: int) -> list[Path]:
    files = []
    for patch in repo.patches(tract):
        files.append(repo.require("deepCoadd_ref", tract=tract, patch=patch))
        for band in repo.bands(tract):
            for ds in ("deepCoadd_forced_src", "deepCoadd_calexp"):
                path = repo.find(ds, tract=tract, patch=patch, filter=band)
                if path:
                    files.append(path)
    return files


def raw_read(files: list[Path]) -> float:
    buf = bytearray(16 << 20)
    view = memoryview(buf)
    start = time.perf_counter()
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(view):
                pass
    return time.perf_counter() - start


def raw_write(path: Path, nbytes: int) -> float:
    """Write `nbytes` to a new file as the merge writes its output (no fsync)."""
    block = bytes(16 << 20)
    start = time.perf_counter()
    with open(path, "wb", buffering=0) as fh:
        left = nbytes
        while left > 0:
            left -= fh.write(block[: min(left, len(block))])
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, default=200_000, help="objects in the tract (before overlaps)")
    p.add_argument("--patches", type=int, default=2, help="patch grid side (N x N patches)")
    p.add_argument("--ref-width", type=int, default=740)
    p.add_argument("--forced-width", type=int, default=280)
    p.add_argument("--workdir", type=Path, help="where to build the sample (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the sample and outputs")
    args = p.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dc2-bench-"))
    npatch = args.patches * args.patches
    config = SampleConfig(
        seed=1,
        patches=patch_grid(args.patches),
        objects_per_patch=args.objects // npatch,
        ref_width=args.ref_width,
        forced_width=args.forced_width,
    )
    try:
        t0 = time.perf_counter()
        sample = make_sample_repo(workdir / "repo", config)
        gen_s = time.perf_counter() - t0
        repo = Gen2Repo.open(sample.root, sample.rerun)
        tract = sample.tracts[0]
        files = input_files(repo, tract)
        nbytes = sum(f.stat().st_size for f in files)
        mb = nbytes / 1e6
        print(
            f"sample: {args.objects} objects, {npatch} patches, 6 bands, {len(files)} files, "
            f"{mb:.0f} MB, generated in {gen_s:.1f} s"
        )

        cold = drop_caches()
        raw_s = raw_read(files)
        if not cold:
            raw_s = raw_read(files)  # warm, like the merge that follows
        drop_caches()
        t0 = time.perf_counter()
        merged = merge_tract(repo, tract, workdir / "out", jobs=1)
        merge_s = time.perf_counter() - t0
        raw_mbs, merge_mbs = mb / raw_s, mb / merge_s
        state = "cold (page cache dropped)" if cold else "warm (page cache)"
        print(f"raw read ({state}):  {raw_mbs:8.1f} MB/s  ({raw_s:.2f} s)")
        print(f"merge, one process:  {merge_mbs:8.1f} MB/s  ({merge_s:.2f} s, {merged.rows} primary rows)")
        print(f"merge / raw read:    {merge_mbs / raw_mbs:8.2f}   (goal >= 0.50)")
        out_bytes = merged.path.stat().st_size
        write_s = raw_write(workdir / "out" / "raw-write.bin", out_bytes)
        floor_mbs = mb / (raw_s + write_s)
        print(
            f"raw write of the {out_bytes / 1e6:.0f} MB output: "
            f"{out_bytes / 1e6 / write_s:.1f} MB/s ({write_s:.2f} s)"
        )
        print(
            f"read + write in turn: {floor_mbs:8.1f} MB/s = {floor_mbs / raw_mbs:.2f} of raw read "
            "(the I/O floor of any merge that writes all its input)"
        )

        t0 = time.perf_counter()
        trimmed = trim_file(merged.path, workdir / "out")
        trim_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = dpdd_tract(trimmed.path, workdir / "out")
        dpdd_s = time.perf_counter() - t0
        print(f"trim:                {trimmed.rows / trim_s:10.0f} rows/s ({trim_s:.2f} s)")
        print(
            f"DPDD:                {result.rows / dpdd_s:10.0f} rows/s ({dpdd_s:.2f} s, "
            f"{len(result.columns)} columns)"
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory:         {peak:8.0f} MB (this process)")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
