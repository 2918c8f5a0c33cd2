"""Where an installed product lives, and the one atomic step that changes what readers see.

    <central>/<product>/versions/<version>/   the files, manifest.json, provenance.json (read-only)
    <central>/<product>/current -> versions/<version>
    <central>/<product>/catalog_configs/      GCRCatalogs configs, base_dir = .../<product>/current
    <central>/<product>/.staging-*            an install in progress (removed on any failure)
    <central>/<product>/.install.lock         0600: only the installing account can open it

`current` is a relative symlink (the tree stays valid when mounted elsewhere) replaced with
rename(2): a reader resolves either the old or the new version, never a mixture, and a file opened
before the switch keeps its old content because the old version is never modified or removed.

`ProductTree` holds the central and product directories open (no-follow, checked by the policy)
and does every change relative to those descriptors, so a name swapped for a symlink under us
never redirects a write, a chmod or a removal.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dc2tasks import names
from dc2tasks.install.errors import InstallError
from dc2tasks.install.fdops import lstat_at, make_dir_at, open_dir
from dc2tasks.install.manifest import MANIFEST_NAME, Manifest, read_manifest
from dc2tasks.install.policy import LOCK_MODE, ModePolicy, describe, user_name

__all__ = ["InstallError", "ProductLayout", "ProductTree"]

VERSIONS = "versions"
CURRENT = "current"
CONFIGS = "catalog_configs"
LOCK_NAME = ".install.lock"
STAGING_PREFIX = ".staging-"
PRODUCT_RE = names.PRODUCT.regex


@dataclass(frozen=True)
class ProductLayout:
    central: Path
    product: str

    def __post_init__(self) -> None:
        if not PRODUCT_RE.fullmatch(self.product):
            raise InstallError(f"product {self.product!r}: lower-case letters, digits and '_' only")

    @property
    def root(self) -> Path:
        return self.central / self.product

    @property
    def versions(self) -> Path:
        return self.root / VERSIONS

    @property
    def current(self) -> Path:
        return self.root / CURRENT

    @property
    def configs(self) -> Path:
        return self.root / CONFIGS

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def new_version_name(self, manifest: Manifest, now: str, taken: set[str]) -> str:
        stamp = re.sub(r"[^0-9TZ]", "", now.replace("+00:00", "Z"))
        base = f"{stamp}-{manifest.content_sha256[:12]}"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        return name

    def staging_name(self, version: str) -> str:
        return f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}"

    @contextlib.contextmanager
    def open(self, policy: ModePolicy, *, create: bool = True) -> Iterator[ProductTree]:
        """The product's directory open and checked (made, with the policy's mode, if `create`)."""
        tree = ProductTree(self, policy, create)
        try:
            yield tree
        finally:
            tree.close()


class ProductTree:
    """The central directory and one product's directory, open and checked; see the module doc."""

    def __init__(self, layout: ProductLayout, policy: ModePolicy, create: bool) -> None:
        self.layout, self.policy = layout, policy
        self._fds: dict[str, int] = {}
        try:
            central = open_dir(layout.central, layout.central)
            self._fds["central"] = central
            policy.check_container(os.fstat(central), layout.central, root_may_own=True)
            self.exists = create or _lexists(layout.product, central)
            if self.exists:
                self.root_fd = self._container("root", central, layout.product, layout.root, create)
                for name in (VERSIONS, CONFIGS):  # checked before anything (the lock) is made
                    self.subdir(name)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _container(self, key: str, parent_fd: int, name: str, path: Path, create: bool) -> int:
        if create:
            fd, _ = make_dir_at(parent_fd, name, self.policy.container_mode(), path)
        else:
            fd = open_dir(name, path, parent_fd)
        self._fds[key] = fd
        self.policy.check_container(os.fstat(fd), path)
        return fd

    def subdir(self, name: str, *, create: bool = False) -> int | None:
        """`versions` or `catalog_configs`, open and checked; None if missing and not `create`."""
        if name not in self._fds:
            if not create and not _lexists(name, self.root_fd):
                return None
            self._container(name, self.root_fd, name, self.layout.root / name, create)
        return self._fds[name]

    def versions_taken(self) -> set[str]:
        fd = self.subdir(VERSIONS)
        return set(os.listdir(fd)) if fd is not None else set()

    def current_version(self) -> str | None:
        """The version `current` points to; a `current` that is not our symlink is refused."""
        path = self.layout.current
        try:
            target = os.readlink(CURRENT, dir_fd=self.root_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise InstallError(
                    f"{path}: exists and is not a symlink; it was not made by dc2 install"
                ) from None
            raise InstallError(f"{path}: cannot read it: {exc.strerror or exc}") from None
        parts = Path(target).parts
        versions = self.subdir(VERSIONS)
        if len(parts) != 2 or parts[0] != VERSIONS or versions is None or not _is_dir_at(parts[1], versions):
            raise InstallError(f"{path}: points to {target!r}, not to an installed version")
        return parts[1]

    def current_manifest(self) -> Manifest | None:
        version = self.current_version()
        if version is None:
            return None
        where = self.layout.version_dir(version)
        fd = open_dir(version, where, self.subdir(VERSIONS))
        try:
            return read_manifest(MANIFEST_NAME, fd, where / MANIFEST_NAME)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def lock(self, timeout: float = 0.0) -> Iterator[None]:
        """One install of a product at a time. The lock file is 0600 and ours: another account can
        neither open it nor, through it, block our installs. Waits at most `timeout` seconds."""
        fd = self._open_lock()
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise InstallError(
                            f"{self.layout.lock_path}: another install of {self.layout.product} is running "
                            f"(held by {lock_holder(os.fstat(fd))}); gave up after {timeout:g} s"
                        ) from None
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _open_lock(self) -> int:
        path = self.layout.lock_path
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(LOCK_NAME, flags, LOCK_MODE, dir_fd=self.root_fd)
        except OSError as exc:
            what = "is a symlink; not followed" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
            raise InstallError(f"{path}: cannot open the lock: {what}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) != LOCK_MODE:
            os.close(fd)
            raise InstallError(
                f"{path}: the lock must be a regular file owned by this account with mode "
                f"{LOCK_MODE:04o} ({describe(st)}); remove it and install again"
            )
        return fd

    def switch_current(self, version: str) -> None:
        """Point `current` at `version` in one rename; the old target is left as it is."""
        tmp = f".{CURRENT}.{uuid.uuid4().hex[:8]}"
        os.symlink(f"{VERSIONS}/{version}", tmp, dir_fd=self.root_fd)
        try:
            os.replace(tmp, CURRENT, src_dir_fd=self.root_fd, dst_dir_fd=self.root_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=self.root_fd)
            raise
        os.fsync(self.root_fd)

    def chgrp_entry(self, name: str, gid: int) -> None:
        """chgrp an entry of the product's directory (a container, `current`), if it is ours."""
        try:
            st = lstat_at(name, self.root_fd)
        except FileNotFoundError:
            return
        if st.st_uid == os.geteuid() and st.st_gid != gid:
            os.chown(name, -1, gid, dir_fd=self.root_fd, follow_symlinks=False)


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        lstat_at(name, dir_fd)
    except FileNotFoundError:
        return False
    return True


def _is_dir_at(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISDIR(lstat_at(name, dir_fd).st_mode)
    except FileNotFoundError:
        return False


def lock_holder(st: os.stat_result) -> str:
    """Who holds a flock on this file, from /proc/locks (Linux); 'unknown' elsewhere."""
    try:
        with open("/proc/locks", encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
            continue
        if fields[5].rsplit(":", 1)[-1] == str(st.st_ino):
            pid = fields[4]
            try:
                uid = os.stat(f"/proc/{pid}").st_uid
            except OSError:
                return f"pid {pid}"
            return f"pid {pid}, {user_name(uid)}"
    return "unknown"
