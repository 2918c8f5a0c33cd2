"""Install a product into the central directory: stage, verify, check, chgrp, chmod, switch.

This replaces `chgrp -R lsst; collabsu desc; cp -pr SRC DEST` (spec §7), which had no check at
all. Everything up to the switch happens in a staging directory beside the destination (same file
system, so the final rename is atomic); any failure there (a checksum or size that differs from the
producer's manifest, a missing file, a catalog config that does not load, a chgrp the account may
not do, a full disk) removes the staging directory and leaves every installed byte as it was. An
installed version is never modified: a new one goes beside it and `current` is switched.

Nothing the install did not make is trusted (see policy.py and fdops.py): it runs under umask 077
and gives every mode explicitly, uses only container directories nobody else can change, works
through no-follow descriptors, and copies a source file only through the descriptor it checked.

Runs on the machine that holds the central directory, as the account that owns it (`dc2 install`,
locally or over SSH). `copy_file` and `chown` are seams so tests can make a disk fill up or a chgrp
fail where the real system would not.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from dc2tasks.install.check import Check, catalog_config_files, gcr_check, read_catalog_config
from dc2tasks.install.dry_run import dry_run_install
from dc2tasks.install.errors import InstallError
from dc2tasks.install.fdops import (
    FILE_FLAGS,
    NEW_FILE_FLAGS,
    Chown,
    empty_dir,
    kind,
    lstat_at,
    make_dir_at,
    make_private_dir,
    open_dir,
    open_parent,
    opened,
    remove_tree_at,
    same_file,
    set_group_and_mode_at,
)
from dc2tasks.install.layout import CONFIGS, CURRENT, LOCK_NAME, VERSIONS, ProductLayout, ProductTree
from dc2tasks.install.manifest import (
    CHUNK,
    MANIFEST_NAME,
    PROVENANCE_NAME,
    FileEntry,
    Manifest,
    product_files,
    read_manifest,
)
from dc2tasks.install.policy import DEFAULT_MODE, STAGING_UMASK, CentralMode, ModePolicy, resolve_group
from dc2tasks.install.provenance import build_provenance, read_producer_record
from dc2tasks.install.qa_gate import DEFAULT_QA_MODE, QaGate, QaMode, check_mode, read_gate
from dc2tasks.install.types import CopyFile, InstallResult
from dc2tasks.products.errors import InputError

log = logging.getLogger(__name__)

CONFIG_HEADER = "# Installed by dc2 install; base_dir is the product's current version\n"


def copy_and_hash(src_fd: int, dst_fd: int) -> tuple[int, str]:
    """Copy one open file to another, hashing the bytes as they pass; flushed to disk."""
    h = hashlib.sha256()
    n = 0
    with open(src_fd, "rb", closefd=False) as fin, open(dst_fd, "wb", closefd=False) as fout:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            h.update(chunk)
            n += len(chunk)
        fout.flush()
    os.fsync(dst_fd)
    st = os.fstat(src_fd)
    os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p: the producer's mtime
    return n, h.hexdigest()


def open_source(source_fd: int, source: Path, name: str) -> int:
    """A producer's file opened no-follow (every part of its name); the caller fstat's it."""
    parent, leaf = open_parent(source_fd, name, source)
    with opened(parent):
        try:
            return os.open(leaf, FILE_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InstallError(
                    f"{source / name}: is a symlink; not followed "
                    "(only the producer's regular files are installed)"
                ) from None
            raise


def check_sources(source_fd: int, source: Path, manifest: Manifest) -> dict[str, os.stat_result]:
    """Every manifest file present, readable, a regular file of the manifest's size, and no file
    the manifest does not list. Returns what was checked, for the copy to compare against."""
    problems, checked = [], {}
    for entry in manifest.files:
        path = source / entry.name
        try:
            with opened(open_source(source_fd, source, entry.name)) as fd:
                st = os.fstat(fd)
        except FileNotFoundError:
            problems.append(f"{path}: missing (listed in the manifest)")
            continue
        except PermissionError:
            problems.append(f"{path}: this account cannot read it (the producer: dc2 manifest --group GROUP)")
            continue
        except InstallError as exc:
            problems.append(str(exc))
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{path}: {kind(st)}, not a regular file")
        elif st.st_size != entry.size:
            problems.append(f"{path}: {st.st_size} bytes, the manifest says {entry.size}")
        else:
            checked[entry.name] = st
    extra = sorted(set(product_files(source)) - {e.name for e in manifest.files})
    problems += [f"{source / name}: not in the manifest (rewrite it: dc2 manifest DIR)" for name in extra]
    if problems:
        raise InstallError("; ".join(problems))
    return checked


def _staged_parent(staging_fd: int, name: str, staging: Path) -> tuple[int, str]:
    """The staging subdirectory that will hold `name` (made 0700 as needed), open."""
    *dirs, leaf = name.split("/")
    fd, where = os.dup(staging_fd), staging
    for part in dirs:
        where = where / part
        try:
            sub, _ = make_dir_at(fd, part, 0o700, where)
        finally:
            os.close(fd)
        fd = sub
    return fd, leaf


def _copy_one(
    source_fd: int, source: Path, staging_fd: int, staging: Path, entry: FileEntry,
    checked: os.stat_result, copy_file: CopyFile,
) -> None:  # fmt: skip
    path = source / entry.name
    with opened(open_source(source_fd, source, entry.name)) as src:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode) or not _unchanged(st, checked) or st.st_size != entry.size:
            raise InstallError(
                f"{path}: changed between the check and the copy (now {kind(st)} of {st.st_size} bytes, "
                "not the file checked); nothing staged from it"
            )
        parent, leaf = _staged_parent(staging_fd, entry.name, staging)
        with opened(parent), opened(os.open(leaf, NEW_FILE_FLAGS, 0o600, dir_fd=parent)) as dst:
            size, sha = copy_file(src, dst)
    if size != entry.size:
        raise InstallError(f"{path}: copied {size} bytes, the manifest says {entry.size}")
    if sha != entry.sha256:
        raise InstallError(f"{path}: sha256 {sha} differs from the manifest's {entry.sha256}")


def _unchanged(st: os.stat_result, checked: os.stat_result) -> bool:
    """The same file as checked and not rewritten since (ctime: a new inode may reuse the number)."""
    return same_file(st, checked) and (st.st_size, st.st_ctime_ns) == (checked.st_size, checked.st_ctime_ns)


def _write_staged(staging_fd: int, staging: Path, name: str, data: bytes) -> FileEntry:
    """A staged file replaced by `data` (written beside it, then renamed over it)."""
    parent, leaf = _staged_parent(staging_fd, name, staging)
    with opened(parent):
        tmp = f".{leaf}.{uuid.uuid4().hex[:8]}.tmp"
        with opened(os.open(tmp, NEW_FILE_FLAGS, 0o600, dir_fd=parent)) as out:
            with open(out, "wb", closefd=False) as fh:
                fh.write(data)
            os.fsync(out)
        os.replace(tmp, leaf, src_dir_fd=parent, dst_dir_fd=parent)
    return FileEntry(name, len(data), hashlib.sha256(data).hexdigest())


def _write_json_at(dir_fd: int, name: str, data: object) -> None:
    with opened(os.open(name, NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)) as fd:
        os.write(fd, (json.dumps(data, indent=1) + "\n").encode())
        os.fsync(fd)


def _read_config_at(dir_fd: int, name: str) -> object:
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # a link or something odd: replaced below, never read through
    with opened(fd):
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with open(fd, "rb", closefd=False) as fh:
            return yaml.safe_load(fh.read().decode("utf-8"))


def write_installed_configs(
    tree: ProductTree, version_dir: Path, base_dir: str, policy: ModePolicy
) -> list[Path]:
    """Configs for users: the producer's, with `base_dir` pointing at `current` (rewritten only when
    the content differs, so a repeated install changes nothing)."""
    written = []
    for src in catalog_config_files(version_dir):
        config = read_catalog_config(src)
        config["base_dir"] = base_dir
        configs_fd = tree.subdir(CONFIGS, create=True)
        assert configs_fd is not None
        if _read_config_at(configs_fd, src.name) != config:
            tmp = f".{src.name}.{uuid.uuid4().hex[:8]}.tmp"
            with opened(os.open(tmp, NEW_FILE_FLAGS, 0o600, dir_fd=configs_fd)) as fd:
                os.write(fd, (CONFIG_HEADER + yaml.safe_dump(config, sort_keys=False)).encode())
                os.fchown(fd, -1, policy.gid)
                os.fchmod(fd, policy.file_mode(0o644))
                os.fsync(fd)
            os.replace(tmp, src.name, src_dir_fd=configs_fd, dst_dir_fd=configs_fd)
        written.append(tree.layout.configs / src.name)
    return written


def group_containers(tree: ProductTree, gid: int) -> None:
    """chgrp the directories the install makes around the versions (the product's directory,
    `versions`, `catalog_configs`), `current` and the lock, where this account owns them: `chgrp -R`
    of the old procedure covered those too. Modes are left alone (the lock stays 0600)."""
    st = os.fstat(tree.root_fd)
    if st.st_uid == os.geteuid() and st.st_gid != gid:
        os.fchown(tree.root_fd, -1, gid)
    for name in (VERSIONS, CONFIGS, CURRENT, LOCK_NAME):
        tree.chgrp_entry(name, gid)


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
    mode: CentralMode = DEFAULT_MODE,
    group_managed: bool = False,
    lock_timeout: float = 0.0,
    qa_mode: QaMode = DEFAULT_QA_MODE,
    approved_by: str | None = None,
    copy_file: CopyFile = copy_and_hash,
    chown: Chown = os.fchown,
) -> InstallResult:
    """Install `source_dir` (a product directory with its manifest) as `<central_dir>/<product>`.

    `manifest`: the producer's (default `<source_dir>/manifest.json`). `catalog_base_dir`: the
    `base_dir` installed configs get (default the absolute `<central>/<product>/current`; a run's
    `central.catalog_base_dir(product)` gives the `^/` site-relative form). `producer_record`: the
    producer's part of the provenance (default `<source_dir>/provenance.json` if present). `mode`
    and `group_managed`: the run file's `central.mode` / `central.group_managed` (policy.py).
    `lock_timeout`: seconds to wait for another install of the product. A repeat of an install
    whose content is already current does nothing unless `force`. `qa_mode` and `approved_by`: the
    quality gate (qa_gate.py): `enforce` refuses a product whose QA reports hold a failed check.
    """
    check_mode(qa_mode, approved_by)
    umask = os.umask(STAGING_UMASK)  # nothing made here gets a mode we did not give it explicitly
    try:
        return _install(
            Path(source_dir), Path(central_dir), product, resolve_group(group), manifest,
            catalog_base_dir=catalog_base_dir, check=check, producer_record=producer_record,
            jobs=jobs, force=force, dry_run=dry_run, mode=mode, group_managed=group_managed,
            lock_timeout=lock_timeout, qa=(qa_mode, approved_by), copy_file=copy_file, chown=chown,
        )  # fmt: skip
    finally:
        os.umask(umask)


def _install(
    source: Path, central: Path, product: str, gid: int, manifest: Manifest | str | os.PathLike[str] | None,
    *, catalog_base_dir: str | None, check: Check | None, producer_record: Mapping[str, Any] | None,
    jobs: Iterable[Mapping[str, Any] | object], force: bool, dry_run: bool, mode: CentralMode,
    group_managed: bool, lock_timeout: float, qa: tuple[QaMode, str | None], copy_file: CopyFile,
    chown: Chown,
) -> InstallResult:  # fmt: skip
    start = time.perf_counter()
    source = source.resolve()
    if not central.is_dir():
        raise InstallError(f"{central}: the central directory does not exist (it is created by its owner)")
    layout = ProductLayout(central.resolve(), product)
    policy = ModePolicy(gid, mode, group_managed)
    if dry_run:
        return dry_run_install(layout, source, policy, manifest, chown)
    with opened(open_dir(source, source)) as source_fd:
        if not isinstance(manifest, Manifest):
            manifest = (
                read_manifest(manifest)
                if manifest is not None
                else read_manifest(MANIFEST_NAME, source_fd, source / MANIFEST_NAME)
            )
        if producer_record is None:
            producer_record = read_producer_record(source_fd, source / PROVENANCE_NAME)
        gate = read_gate(source_fd, source, manifest, *qa, open_source)
        gate.check(product)  # before anything in the central directory is made or changed
        base_dir = catalog_base_dir or str(layout.current)
        with layout.open(policy) as tree, tree.lock(lock_timeout):
            previous = tree.current_version()
            installed = tree.current_manifest()
            if installed is not None and installed.produced_as == manifest.content_sha256 and not force:
                configs = write_installed_configs(tree, layout.version_dir(previous or ""), base_dir, policy)
                group_containers(tree, gid)
                return InstallResult(
                    "unchanged", product, layout.root, version=previous, previous=previous,
                    files=len(manifest.files), bytes=manifest.total_bytes,
                    seconds=time.perf_counter() - start, catalog_configs=configs, qa=gate.provenance(),
                )  # fmt: skip
            now = datetime.now(UTC).isoformat(timespec="seconds")
            version = layout.new_version_name(manifest, now, tree.versions_taken())
            stage = _Stage(tree, source, source_fd, manifest, version, policy)
            checks = stage.run(now, check, producer_record, gate, jobs, copy_file, chown)
            try:
                configs = write_installed_configs(tree, layout.version_dir(version), base_dir, policy)
            except (OSError, InputError) as exc:
                raise InstallError(
                    f"{layout.product}: version {version} is installed and current, but its catalog configs "
                    f"could not be written ({exc}); run the install again to write them"
                ) from None
            group_containers(tree, gid)
    log.info("%s: installed version %s (previous %s)", product, version, previous)
    return InstallResult(
        "installed", product, layout.root, version=version, previous=previous,
        files=len(manifest.files), bytes=manifest.total_bytes, seconds=time.perf_counter() - start,
        catalog_configs=configs, checks=checks, qa=gate.provenance(),
    )  # fmt: skip


class _Stage:
    """One staging directory: made private and new, filled through descriptors, renamed into
    `versions/` only while its name still holds the directory we made, removed on any failure."""

    def __init__(
        self, tree: ProductTree, source: Path, source_fd: int, manifest: Manifest, version: str,
        policy: ModePolicy,
    ) -> None:  # fmt: skip
        self.tree, self.source, self.source_fd = tree, source, source_fd
        self.manifest, self.version, self.policy = manifest, version, policy
        self.name = tree.layout.staging_name(version)
        self.path = tree.layout.root / self.name
        self.target = tree.layout.version_dir(version)

    def run(
        self, now: str, check: Check | None, producer_record: Mapping[str, Any] | None,
        gate: QaGate, jobs: Iterable[Mapping[str, Any] | object], copy_file: CopyFile, chown: Chown,
    ) -> list[str]:  # fmt: skip
        try:
            checked = check_sources(self.source_fd, self.source, self.manifest)  # before anything is staged
            fd = make_private_dir(self.tree.root_fd, self.name, self.path)
        except (OSError, InputError) as exc:
            raise _as_install_error(exc, self.tree.layout) from None
        made, moved = os.fstat(fd), False
        try:
            for entry in self.manifest.files:
                _copy_one(self.source_fd, self.source, fd, self.path, entry, checked[entry.name], copy_file)
            installed = self._override_reports(fd, gate, now)
            _write_json_at(fd, MANIFEST_NAME, installed.to_json())
            record = build_provenance(
                installed, product=self.tree.layout.product, version=self.version, installed_at=now,
                central_dir=str(self.tree.layout.central), producer_record=producer_record, jobs=jobs,
                qa=gate.provenance(),
            )  # fmt: skip
            _write_json_at(fd, PROVENANCE_NAME, record)
            self._still_ours(made)
            checks = check(self.path) if check is not None else ["catalog check skipped"]
            policy = self.policy
            set_group_and_mode_at(fd, self.path, policy.gid, policy.file_mode, policy.dir_mode(), chown)
            os.fchmod(fd, policy.dir_mode() | stat.S_IWUSR)  # rename(2) to another parent needs it
            os.fsync(fd)
            versions = self.tree.subdir(VERSIONS, create=True)
            self._still_ours(made)
            os.rename(self.name, self.version, src_dir_fd=self.tree.root_fd, dst_dir_fd=versions)
            moved = True  # the version's name was new (chosen under the lock): nothing was replaced
            if not same_file(lstat_at(self.version, versions), made):
                raise InstallError(f"{self.target}: is not the directory this install staged")
            os.fchmod(fd, policy.dir_mode())
            os.fsync(fd)
            os.fsync(versions)
            self.tree.switch_current(self.version)
            return checks
        except Exception as exc:
            error = _as_install_error(exc, self.tree.layout)
            self._clean_up(fd, made, moved, error)
            raise error from (exc if not isinstance(exc, (OSError, InputError)) else None)
        finally:
            os.close(fd)

    def _override_reports(self, fd: int, gate: QaGate, now: str) -> Manifest:
        """Write the installed copies of the reports whose failures the gate overrides over the staged
        ones (see qa_gate.py); the manifest of what is staged, the producer's if nothing was."""
        reports = gate.installed_reports(self.manifest, now)
        written = {name: _write_staged(fd, self.path, name, data) for name, data in reports.items()}
        if not written:
            return self.manifest
        produced = self.manifest.content_sha256
        return replace(self.manifest.with_files(written), produced_content_sha256=produced)

    def _still_ours(self, made: os.stat_result) -> None:
        try:
            st = lstat_at(self.name, self.tree.root_fd)
        except FileNotFoundError:
            raise InstallError(f"{self.path}: gone (renamed or removed by someone else)") from None
        if not same_file(st, made):
            raise InstallError(
                f"{self.path}: is now {kind(st)}, not the directory this install made; not followed "
                "(someone else can write in the product's directory: investigate)"
            )

    def _clean_up(self, fd: int, made: os.stat_result, moved: bool, error: InstallError) -> None:
        """Empty our staged directory through its descriptor, then remove its name if it still
        holds it; a name that holds something else now is left alone and reported. A version the
        switch already made current is installed: it is kept."""
        if moved and self._is_current():
            return
        try:
            empty_dir(fd, self.path)
            versions = self.tree.subdir(VERSIONS)
            if moved and versions is not None:
                remove_tree_at(versions, self.version, made, self.target)
            else:
                remove_tree_at(self.tree.root_fd, self.name, made, self.path)
        except (OSError, InstallError) as exc:
            text = str(exc) if isinstance(exc, InstallError) else f"{self.path}: {exc.strerror or exc}"
            if text not in str(error):
                error.args = (f"{error}; cleaning up: {text}",)

    def _is_current(self) -> bool:
        try:
            return self.tree.current_version() == self.version
        except InstallError:
            return False


def _as_install_error(exc: Exception, layout: ProductLayout) -> InstallError:
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return InstallError(
                f"{layout.root}: no space left on the device while staging {layout.product}; "
                "nothing installed changed"
            )
        return InstallError(f"{layout.product}: {exc}; nothing installed changed")
    if isinstance(exc, InputError):
        return InstallError(f"{exc}; nothing installed changed")
    # a custom check's own error: still stop cleanly, and say so
    return InstallError(f"{layout.product}: {type(exc).__name__}: {exc}; nothing installed changed")
