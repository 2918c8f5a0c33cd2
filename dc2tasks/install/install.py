"""Install a product into the central directory: stage, verify, check, chgrp, chmod, switch.

This replaces `chgrp -R lsst; collabsu desc; cp -pr SRC DEST` (spec §7), which had no check at
all. Everything up to the switch happens in a staging directory beside the destination (same file
system, so the final rename is atomic); any failure there (a checksum or size that differs from the
producer's manifest, a missing file, a catalog config that does not load, a chgrp the account may
not do, a full disk) removes the staging directory and leaves every installed byte as it was. An
installed version is never modified: a new one goes beside it and `current` is switched.

Runs on the machine that holds the central directory, as the account that owns it (`dc2 install`,
locally or over SSH). `copy_file` and `chown` are seams so tests can make a disk fill up or a chgrp
fail where the real system would not.
"""

from __future__ import annotations

import errno
import grp
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from dc2tasks.install.check import Check, catalog_config_files, gcr_check, read_catalog_config
from dc2tasks.install.layout import InstallError, ProductLayout, fsync_dir
from dc2tasks.install.manifest import (
    CHUNK,
    MANIFEST_NAME,
    PROVENANCE_NAME,
    Manifest,
    product_files,
    read_manifest,
)
from dc2tasks.install.provenance import build_provenance
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError

log = logging.getLogger(__name__)

CONFIG_HEADER = "# Installed by dc2 install; base_dir is the product's current version\n"
CopyFile = Callable[[Path, Path], tuple[int, str]]
Chown = Callable[..., None]


@dataclass
class InstallResult:
    status: Literal["installed", "unchanged", "dry-run"]
    product: str
    product_dir: Path
    version: str | None  # the version that is (or, for a dry run, would be) current
    previous: str | None = None
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    catalog_configs: list[Path] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def summary(self) -> str:
        what = {"installed": "installed", "unchanged": "already installed", "dry-run": "dry run"}[self.status]
        lines = [f"{self.product}: {what}, version {self.version} ({self.files} files, {self.bytes} bytes)"]
        if self.previous and self.status == "installed":
            lines.append(f"  previous version kept: {self.product_dir / 'versions' / self.previous}")
        lines.append(f"  current: {self.product_dir / 'current'}")
        lines += [f"  config: {p}" for p in self.catalog_configs]
        lines += [f"  checked: {c}" for c in self.checks]
        return "\n".join(lines)


def copy_and_hash(src: Path, dst: Path) -> tuple[int, str]:
    """Copy one file, hashing the bytes as they pass; flushed to disk before returning."""
    import hashlib

    h = hashlib.sha256()
    n = 0
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            h.update(chunk)
            n += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    st = os.stat(src)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p: the producer's mtime
    return n, h.hexdigest()


def resolve_group(group: str | int | None) -> int:
    if group is None:
        return os.getgid()
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise InstallError(f"group {group!r} does not exist on this machine") from None


def _installed_mode(mode: int, is_dir: bool) -> int:
    """chmod g+rX,o-w; files also lose every write bit (an installed version is never edited)."""
    mode = stat.S_IMODE(mode) | stat.S_IRUSR | stat.S_IRGRP
    if is_dir:
        return (mode | stat.S_IRWXU | stat.S_IXGRP) & ~(stat.S_IWGRP | stat.S_IWOTH)
    if mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        mode |= stat.S_IXGRP
    return mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def set_group_and_mode(root: Path, gid: int, chown: Chown = os.chown) -> None:
    """chgrp -R and chmod -R g+rX,o-w; the first failure stops (and names the path)."""
    paths = [root, *sorted(root.rglob("*"))]
    for path in paths:
        try:
            chown(path, -1, gid, follow_symlinks=False)
        except OSError as exc:
            raise InstallError(f"chgrp {gid} {path}: {exc.strerror or exc}") from None
    for path in paths:
        st = path.lstat()
        os.chmod(path, _installed_mode(st.st_mode, stat.S_ISDIR(st.st_mode)))


def group_containers(layout: ProductLayout, gid: int) -> None:
    """chgrp the directories the install makes around the versions (the product's directory,
    `versions`, `catalog_configs`) and its `current` link and lock file, where this account owns
    them: `chgrp -R` of the old procedure covered those too. Modes are left alone."""
    for path in (layout.root, layout.versions, layout.configs, layout.current, layout.root / ".install.lock"):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if st.st_uid == os.getuid() and st.st_gid != gid:
            os.chown(path, -1, gid, follow_symlinks=False)


def _copy_verified(source_dir: Path, staging: Path, manifest: Manifest, copy_file: CopyFile) -> None:
    problems = []
    for entry in manifest.files:
        path = source_dir / entry.name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{path}: missing (listed in the manifest)")
            continue
        except PermissionError:
            size = -1
        if size < 0 or not os.access(path, os.R_OK):
            problems.append(f"{path}: this account cannot read it (the producer: dc2 manifest --group GROUP)")
        elif size != entry.size:
            problems.append(f"{path}: {size} bytes, the manifest says {entry.size}")
    extra = sorted(set(product_files(source_dir)) - {e.name for e in manifest.files})
    problems += [f"{source_dir / name}: not in the manifest (rewrite it: dc2 manifest DIR)" for name in extra]
    if problems:
        raise InstallError("; ".join(problems))
    for entry in manifest.files:
        dst = staging / entry.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        size, sha = copy_file(source_dir / entry.name, dst)
        if size != entry.size:
            raise InstallError(
                f"{source_dir / entry.name}: copied {size} bytes, the manifest says {entry.size}"
            )
        if sha != entry.sha256:
            raise InstallError(
                f"{source_dir / entry.name}: sha256 {sha} differs from the manifest's {entry.sha256}"
            )


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def write_installed_configs(layout: ProductLayout, version_dir: Path, base_dir: str, gid: int) -> list[Path]:
    """Configs for users: the producer's, with `base_dir` pointing at `current` (rewritten only when
    the content differs, so a repeated install changes nothing)."""
    written = []
    for src in catalog_config_files(version_dir):
        config = read_catalog_config(src)
        config["base_dir"] = base_dir
        target = layout.configs / src.name
        current = yaml.safe_load(target.read_text(encoding="utf-8")) if target.is_file() else None
        if current != config:
            layout.configs.mkdir(exist_ok=True)
            with atomic_path(target) as tmp:
                tmp.write_text(CONFIG_HEADER + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
                os.chown(tmp, -1, gid)
                os.chmod(tmp, _installed_mode(0o644, is_dir=False))
        written.append(target)
    return written


def install_product(
    source_dir: str | os.PathLike[str],
    central_dir: str | os.PathLike[str],
    product: str,
    group: str | int | None = None,
    manifest: Manifest | str | os.PathLike[str] | None = None,
    *,
    catalog_base_dir: str | None = None,
    check: Check | None = gcr_check,
    producer_record: Mapping[str, Any] | None = None,
    jobs: Iterable[Mapping[str, Any] | object] = (),
    force: bool = False,
    dry_run: bool = False,
    copy_file: CopyFile = copy_and_hash,
    chown: Chown = os.chown,
) -> InstallResult:
    """Install `source_dir` (a product directory with its manifest) as `<central_dir>/<product>`.

    `manifest`: the producer's (default `<source_dir>/manifest.json`). `catalog_base_dir`: the
    `base_dir` installed configs get (default the absolute `<central>/<product>/current`; a run's
    `central.catalog_base_dir(product)` gives the `^/` site-relative form). `producer_record`: the
    producer's part of the provenance (default `<source_dir>/provenance.json` if present). A repeat
    of an install whose content is already current does nothing unless `force`.
    """
    start = time.perf_counter()
    source = Path(source_dir).resolve()
    central = Path(central_dir)
    if not central.is_dir():
        raise InstallError(f"{central}: the central directory does not exist (it is created by its owner)")
    central = central.resolve()
    layout = ProductLayout(central, product)
    gid = resolve_group(group)
    if dry_run:
        from dc2tasks.install.dry_run import dry_run_install

        return dry_run_install(layout, source, gid, manifest, chown)
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest if manifest is not None else source / MANIFEST_NAME)
    if producer_record is None and (source / PROVENANCE_NAME).is_file():
        producer_record = _read_producer_record(source / PROVENANCE_NAME)
    base_dir = catalog_base_dir or str(layout.current)
    with layout.lock():
        previous = layout.current_version()
        installed = layout.current_manifest()
        if installed is not None and installed.content_sha256 == manifest.content_sha256 and not force:
            configs = write_installed_configs(layout, layout.version_dir(previous or ""), base_dir, gid)
            group_containers(layout, gid)
            return InstallResult(
                "unchanged", product, layout.root, version=previous, previous=previous,
                files=len(manifest.files), bytes=manifest.total_bytes,
                seconds=time.perf_counter() - start, catalog_configs=configs,
            )  # fmt: skip
        now = datetime.now(UTC).isoformat(timespec="seconds")
        version = layout.new_version_name(manifest, now)
        checks = _stage_and_switch(
            layout, source, manifest, version, gid, now, check, producer_record, jobs, copy_file, chown
        )
        try:
            configs = write_installed_configs(layout, layout.version_dir(version), base_dir, gid)
        except (OSError, InputError) as exc:
            raise InstallError(
                f"{layout.product}: version {version} is installed and current, but its catalog configs "
                f"could not be written ({exc}); run the install again to write them"
            ) from None
        group_containers(layout, gid)
    log.info("%s: installed version %s (previous %s)", product, version, previous)
    return InstallResult(
        "installed", product, layout.root, version=version, previous=previous,
        files=len(manifest.files), bytes=manifest.total_bytes, seconds=time.perf_counter() - start,
        catalog_configs=configs, checks=checks,
    )  # fmt: skip


def _stage_and_switch(
    layout: ProductLayout,
    source: Path,
    manifest: Manifest,
    version: str,
    gid: int,
    now: str,
    check: Check | None,
    producer_record: Mapping[str, Any] | None,
    jobs: Iterable[Mapping[str, Any] | object],
    copy_file: CopyFile,
    chown: Chown,
) -> list[str]:
    staging = layout.staging_dir(version)
    target = layout.version_dir(version)
    moved = False
    try:
        staging.mkdir()
        _copy_verified(source, staging, manifest, copy_file)
        _write_json(staging / MANIFEST_NAME, manifest.to_json())
        record = build_provenance(
            manifest,
            product=layout.product,
            version=version,
            installed_at=now,
            central_dir=str(layout.central),
            producer_record=producer_record,
            jobs=jobs,
        )
        _write_json(staging / PROVENANCE_NAME, record)
        checks = check(staging) if check is not None else ["catalog check skipped"]
        set_group_and_mode(staging, gid, chown)
        layout.versions.mkdir(exist_ok=True)
        fsync_dir(staging)
        os.rename(staging, target)  # target's name is new: rename never replaces an installed version
        moved = True
        fsync_dir(layout.versions)
        layout.switch_current(version)
        return checks
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise InstallError(
                f"{layout.root}: no space left on the device while staging {layout.product}; "
                "nothing installed changed"
            ) from None
        raise InstallError(f"{layout.product}: {exc}; nothing installed changed") from None
    except InputError as exc:
        raise InstallError(f"{exc}; nothing installed changed") from None
    except Exception as exc:  # a custom check's own error: still stop cleanly, and say so
        raise InstallError(
            f"{layout.product}: {type(exc).__name__}: {exc}; nothing installed changed"
        ) from exc
    finally:
        if os.path.lexists(staging):
            _remove_tree(staging)
        if moved and layout.current_version() != version:
            _remove_tree(target)  # never made current: not an installed version


def _remove_tree(path: Path) -> None:
    """Remove a staging tree even after its files were made read-only."""
    for p in [path, *path.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            os.chmod(p, stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=False)


def _read_producer_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InstallError(f"{path}: cannot read the producer's provenance record: {exc}") from None
    if not isinstance(data, dict):
        raise InstallError(f"{path}: the producer's provenance record is not a JSON object")
    return data
