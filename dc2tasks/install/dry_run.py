"""A dry run of the install: can this account write and chgrp in the central directory?

Run before any job is submitted, so a permission problem shows up in minutes, not after a day of
processing. A temporary file is made in the product's directory (or the central directory, before
the first install), chgrp'd to the group, and removed; the directory's times are put back, so
nothing visible changes. The central and product directories are checked as the install checks
them (owner, mode, no symlink), so a directory the install would refuse is found here too. If the
producer's files already exist they are checked against the manifest by name and size (not
checksums: a dry run must stay cheap).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from dc2tasks.install.errors import InstallError
from dc2tasks.install.fdops import Chown
from dc2tasks.install.layout import ProductLayout
from dc2tasks.install.manifest import MANIFEST_NAME, Manifest, read_manifest
from dc2tasks.install.policy import ModePolicy
from dc2tasks.install.types import InstallResult


def _probe_write_and_chgrp(directory: Path, gid: int, chown: Chown) -> list[str]:
    before = os.stat(directory)
    try:
        fd, name = tempfile.mkstemp(prefix=".dc2-dry-run-", dir=directory)
    except OSError as exc:
        raise InstallError(f"{directory}: this account cannot write here: {exc.strerror or exc}") from None
    try:
        try:
            chown(fd, -1, gid)
        except OSError as exc:
            raise InstallError(
                f"{directory}: this account cannot chgrp to gid {gid}: {exc.strerror or exc}"
            ) from None
    finally:
        os.close(fd)
        os.unlink(name)
        with contextlib.suppress(OSError):  # only the owner may set times; then they just moved
            os.utime(directory, ns=(before.st_atime_ns, before.st_mtime_ns))
    return [f"{directory}: writable, chgrp to gid {gid} allowed"]


def dry_run_install(
    layout: ProductLayout,
    source: Path,
    policy: ModePolicy,
    manifest: Manifest | str | os.PathLike[str] | None,
    chown: Chown,
) -> InstallResult:
    with layout.open(policy, create=False) as tree:
        where = layout.root if tree.exists else layout.central
        checks = _probe_write_and_chgrp(where, policy.gid, chown)
        current = tree.current_version() if tree.exists else None
        installed = tree.current_manifest() if current else None
    if not isinstance(manifest, Manifest):
        path = Path(manifest) if manifest is not None else source / MANIFEST_NAME
        if not path.is_file():
            checks.append(f"{path}: no manifest yet (the products are not made); files not checked")
            return InstallResult("dry-run", layout.product, layout.root, None, current, checks=checks)
        manifest = read_manifest(path)
    missing = [e.name for e in manifest.files if not (source / e.name).is_file()]
    wrong = [
        e.name for e in manifest.files if e.name not in missing and (source / e.name).stat().st_size != e.size
    ]
    if missing or wrong:
        raise InstallError(
            f"{source}: "
            + "; ".join(
                [
                    *(f"{n}: missing" for n in missing),
                    *(f"{n}: size differs from the manifest" for n in wrong),
                ]
            )
        )
    checks.append(f"{source}: {len(manifest.files)} files present with the manifest's sizes")
    same = installed is not None and installed.produced_as == manifest.content_sha256
    checks.append(
        "identical to the current version: the install would do nothing"
        if same
        else "would install a new version"
    )
    return InstallResult(
        "dry-run", layout.product, layout.root, version=current if same else None, previous=current,
        files=len(manifest.files), bytes=manifest.total_bytes, checks=checks,
    )  # fmt: skip
