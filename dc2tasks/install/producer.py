"""The producer's side of an install, run while the producer still owns the files.

`prepare_product` puts the product's GCRCatalogs configs into `catalog_configs/`, records what
only the producer knows (inputs, run config hash, job ids) in `provenance.json`, opens the files to
the group so the collaboration account can read them (spec §7 step 1, `chgrp -R lsst`), and writes
the manifest last, so the manifest describes exactly what the install will copy.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dc2tasks.install.check import read_catalog_config
from dc2tasks.install.fdops import opened
from dc2tasks.install.manifest import CATALOG_CONFIGS, PROVENANCE_NAME, Manifest, write_manifest
from dc2tasks.install.policy import resolve_group
from dc2tasks.install.provenance import PRODUCER_KEYS, job_record
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError


def add_catalog_configs(
    product_dir: str | os.PathLike[str], configs: Iterable[str | os.PathLike[str]]
) -> list[Path]:
    """Copy catalog config yaml files into `<product_dir>/catalog_configs/` (checked, atomically)."""
    folder = Path(product_dir) / CATALOG_CONFIGS
    out = []
    for src in map(Path, configs):
        read_catalog_config(src)  # refuse a file that is not a config before it becomes part of a product
        target = folder / src.name
        with atomic_path(target) as tmp:
            shutil.copyfile(src, tmp)
        out.append(target)
    return out


def write_producer_record(
    product_dir: str | os.PathLike[str],
    *,
    run: str | None = None,
    run_config_hash: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    jobs: Iterable[Mapping[str, Any] | object] = (),
    inventory: Mapping[str, Any] | None = None,
) -> Path:
    values = (run, run_config_hash, dict(inputs or {}), [job_record(j) for j in jobs], inventory)
    record = {k: v for k, v in zip(PRODUCER_KEYS, values, strict=True) if k != "inventory" or v is not None}
    target = Path(product_dir) / PROVENANCE_NAME
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    return target


def share_with_group(product_dir: str | os.PathLike[str], group: str | None) -> None:
    """chgrp -R (when a group is given) and chmod -R g+rX: the collaboration account reads via the group."""
    gid = resolve_group(group) if group is not None else None
    root = Path(product_dir)
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        try:  # through a no-follow descriptor: a name swapped for a link never redirects the chmod
            with opened(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)) as fd:
                st = os.fstat(fd)
                if gid is not None:
                    os.fchown(fd, -1, gid)
                mode = stat.S_IMODE(st.st_mode) | stat.S_IRGRP
                if stat.S_ISDIR(st.st_mode) or mode & stat.S_IXUSR:
                    mode |= stat.S_IXGRP
                os.fchmod(fd, mode)
        except OSError as exc:
            raise InputError(f"{path}: cannot open it to group {group}: {exc.strerror or exc}") from None


def prepare_product(
    product_dir: str | os.PathLike[str],
    *,
    configs: Iterable[str | os.PathLike[str]] = (),
    group: str | None = None,
    run: str | None = None,
    run_config_hash: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    jobs: Iterable[Mapping[str, Any] | object] = (),
    inventory: Mapping[str, Any] | None = None,
) -> Manifest:
    """`inventory`: the run's `dc2 inventory` report, kept in the provenance."""
    add_catalog_configs(product_dir, configs)
    if run is not None or run_config_hash is not None or inputs or jobs or inventory:
        write_producer_record(
            product_dir,
            run=run,
            run_config_hash=run_config_hash,
            inputs=inputs,
            jobs=jobs,
            inventory=inventory,
        )
    manifest = write_manifest(product_dir)
    share_with_group(product_dir, group)
    return manifest
