"""`dc2 inventory` speed on a Gen2 tree of ~100,000 files, against a bare os.scandir walk of the same
tree (the raw listing limit) and the same walk opening every file (the raw limit of the header check),
all measured in this process.

The tree is obs_lsst calexp + src for enough visits of 189 detectors to reach --files; every file is
a hard link to a zero-row FITS catalog (two 2880-byte blocks): the inventory opens each file for its
first card and size, so the cost per file is a real open, not a read of megabytes. The walk only
lists; the ratio is the share of the raw listing speed the inventory keeps.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from dc2tasks.products.inventory import take_inventory
from dc2tasks.products.repo import MAPPERS, TEMPLATES, Gen2Repo
from dc2tasks.products.visit_info import RAFTS

DETECTORS = 189
LINKS = 30_000


def _header(*cards: str) -> bytes:
    return "".join(c.ljust(80) for c in (*cards, "END")).encode().ljust(2880, b" ")


FITS = _header("SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 0", "EXTEND  = T", "FLUXMAG0= 1.0E12") + _header(
    "XTENSION= 'BINTABLE'", "BITPIX  = 8", "NAXIS   = 2", "NAXIS1  = 8", "NAXIS2  = 0", "PCOUNT  = 0",
    "GCOUNT  = 1", "TFIELDS = 1", "TTYPE1  = 'id'", "TFORM1  = 'K'",
)
"""A zero-row catalog: a primary header and a binary table header, two 2880-byte blocks."""


def data_id(visit: int, detector: int) -> dict[str, object]:
    raft = RAFTS[detector // 9]
    sensor = divmod(detector % 9, 3)
    return {"visit": visit, "filter": "r", "raftName": f"R{raft[0]}{raft[1]}",
            "detectorName": f"S{sensor[0]}{sensor[1]}", "detector": detector}


def make_tree(root: Path, files: int) -> int:
    (root / "_mapper").write_text(MAPPERS["obs_lsst"] + "\n")
    made = 0
    visit = 100000
    while made < files:
        for detector in range(DETECTORS):
            for dataset in ("calexp", "src"):
                path = root / (TEMPLATES["obs_lsst"][dataset] % data_id(visit, detector))
                path.parent.mkdir(parents=True, exist_ok=True)
                block = root / f"block{made // LINKS}.fits"  # file systems cap links per inode
                if made % LINKS == 0:
                    block.write_bytes(FITS)
                os.link(block, path)
                made += 1
        visit += 1
    return made


def scandir_walk(path: str, open_files: bool = False) -> int:
    """Files under `path`, listed with os.scandir; with `open_files`, also what the inventory's
    header check costs the system per file: open, read, fstat, close."""
    count = 0
    with os.scandir(path) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                count += scandir_walk(entry.path, open_files)
                continue
            if open_files:
                fd = os.open(entry.path, os.O_RDONLY)
                os.read(fd, 9)
                os.fstat(fd)
                os.close(fd)
            count += 1
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=100_000, help="files in the tree (whole visits)")
    p.add_argument("--dir", type=Path, help="where to build the tree (default: a temporary directory)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        made = make_tree(root, args.files)
        start = time.perf_counter()
        walked = scandir_walk(str(root))
        walk_s = time.perf_counter() - start
        start = time.perf_counter()
        scandir_walk(str(root), open_files=True)
        open_s = time.perf_counter() - start
        start = time.perf_counter()
        report = take_inventory(Gen2Repo.open(root), ["source"])
        inv_s = time.perf_counter() - start
        source = report["products"]["source"]
        assert report["files"] == made, (report["files"], made)
        assert source["status"] == "complete", source
        print(f"tree:                {made} files ({walked} entries walked)")
        print(f"os.scandir walk:     {walked / walk_s:10.0f} files/s ({walk_s:.2f} s)")
        print(f"walk + open each:    {walked / open_s:10.0f} files/s ({open_s:.2f} s)")
        print(f"dc2 inventory:       {made / inv_s:10.0f} files/s ({inv_s:.2f} s)")
        print(f"inventory / walk:    {walk_s / inv_s:10.2f}")
        print(f"inventory / walk + open: {open_s / inv_s:6.2f}")


if __name__ == "__main__":
    main()
