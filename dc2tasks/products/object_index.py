"""The objects sources are matched to, loaded once per process.

Source is matched to the primary Objects of our own DPDD Object tables (the old object-table mode:
one load per process, not per visit); DIASource to the DIAObjects the pipelines wrote per patch
(`deepDiff_diaObject`), all patches in one index, so an object in a patch overlap is one candidate
among others instead of "the last patch read wins" (spec §4).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dc2tasks.products import afw
from dc2tasks.products.errors import InputError
from dc2tasks.products.matching import SkyMatcher
from dc2tasks.products.repo import Gen2Repo

log = logging.getLogger(__name__)

DPDD_OBJECT_FILE = re.compile(r"dpdd_object_tract_(\d+)\.parquet$")


@dataclass
class ObjectIndex:
    matcher: SkyMatcher
    sources: list[Path]  # the files the objects came from
    signature: str  # changes when any of them changes (for skipping unchanged outputs)

    def __len__(self) -> int:
        return len(self.matcher)


def files_signature(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        st = p.stat()
        digest.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def dpdd_object_files(
    locations: Iterable[str | os.PathLike], tracts: Iterable[int] | None = None
) -> list[Path]:
    """dpdd_object_tract_<t>.parquet files in the given directories (or the files themselves)."""
    wanted = set(tracts) if tracts is not None else None
    files: list[Path] = []
    for loc in locations:
        loc = Path(loc)
        if loc.is_dir():
            candidates = sorted(loc.iterdir())
        elif loc.is_file():
            candidates = [loc]
        else:
            raise InputError(f"{loc}: no such Object table file or directory")
        for f in candidates:
            m = DPDD_OBJECT_FILE.search(f.name)
            if m and (wanted is None or int(m.group(1)) in wanted):
                files.append(f)
    if not files:
        where = ", ".join(str(Path(loc)) for loc in locations)
        raise InputError(f"no dpdd_object_tract_<t>.parquet in {where}: make the Object tables first")
    return files


def load_objects(locations: Iterable[str | os.PathLike], tracts: Iterable[int] | None = None) -> ObjectIndex:
    """Primary Objects (objectId, ra, dec) of our DPDD Object tables."""
    files = dpdd_object_files(list(locations), tracts)
    ids, ras, decs = [], [], []
    for f in files:
        try:
            t = pq.read_table(f, columns=["objectId", "ra", "dec"])
        except (KeyError, ValueError, OSError) as exc:
            raise InputError(f"{f}: cannot read objectId, ra, dec: {exc}") from None
        ids.append(t.column("objectId").to_numpy())
        ras.append(t.column("ra").to_numpy())
        decs.append(t.column("dec").to_numpy())
    matcher = SkyMatcher(np.concatenate(ids), np.concatenate(ras), np.concatenate(decs))
    log.info("loaded %d Objects from %d files", len(matcher), len(files))
    return ObjectIndex(matcher, files, files_signature(files))


def dia_object_files(repo: Gen2Repo, tracts: Iterable[int] | None = None) -> list[tuple[int, str, Path]]:
    """(tract, patch, path) of every deepDiff_diaObject catalog of the given tracts (default all)."""
    wanted = set(tracts) if tracts is not None else None
    out = []
    for data_id, path in repo.discover("deepDiff_diaObject"):
        tract = int(data_id["tract"])  # type: ignore[call-overload]
        if wanted is None or tract in wanted:
            out.append((tract, str(data_id["patch"]), path))
    return out


def load_dia_objects(repo: Gen2Repo, tracts: Iterable[int] | None = None) -> ObjectIndex:
    found = dia_object_files(repo, tracts)
    if not found:
        where = ", ".join(str(p) for p in repo.chain)
        raise InputError(f"no deepDiff_diaObject catalog in {where}: DIA sources have nothing to match")
    ids, ras, decs = [], [], []
    for _, _, path in found:
        t = afw.read_table(path, ["id", "coord_ra", "coord_dec"])
        ids.append(t["id"])
        ras.append(np.degrees(t["coord_ra"]))
        decs.append(np.degrees(t["coord_dec"]))
    paths = [p for _, _, p in found]
    matcher = SkyMatcher(np.concatenate(ids), np.concatenate(ras), np.concatenate(decs))
    log.info("loaded %d DIAObjects from %d patches", len(matcher), len(paths))
    return ObjectIndex(matcher, paths, files_signature(paths))
