"""Where an installed product lives, and the one atomic step that changes what readers see.

    <central>/<product>/versions/<version>/   the files, manifest.json, provenance.json (read-only)
    <central>/<product>/current -> versions/<version>
    <central>/<product>/catalog_configs/      GCRCatalogs configs, base_dir = .../<product>/current
    <central>/<product>/.staging-*            an install in progress (removed on any failure)

`current` is a relative symlink (the tree stays valid when mounted elsewhere) replaced with
rename(2): a reader resolves either the old or the new version, never a mixture, and a file opened
before the switch keeps its old content because the old version is never modified or removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dc2tasks import names
from dc2tasks.install.manifest import MANIFEST_NAME, Manifest, read_manifest
from dc2tasks.products.errors import InputError

VERSIONS = "versions"
CURRENT = "current"
STAGING_PREFIX = ".staging-"
PRODUCT_RE = names.PRODUCT.regex


class InstallError(InputError):
    """The install stopped; what was installed before is unchanged (the message says why)."""


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
        return self.root / "catalog_configs"

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def current_version(self) -> str | None:
        """The version `current` points to; a `current` that is not our symlink is refused."""
        if not os.path.lexists(self.current):
            return None
        if not self.current.is_symlink():
            raise InstallError(f"{self.current}: exists and is not a symlink; it was not made by dc2 install")
        target = os.readlink(self.current)
        parts = Path(target).parts
        if len(parts) != 2 or parts[0] != VERSIONS or not (self.versions / parts[1]).is_dir():
            raise InstallError(f"{self.current}: points to {target!r}, not to an installed version")
        return parts[1]

    def current_manifest(self) -> Manifest | None:
        version = self.current_version()
        if version is None:
            return None
        return read_manifest(self.version_dir(version) / MANIFEST_NAME)

    def new_version_name(self, manifest: Manifest, now: str) -> str:
        stamp = re.sub(r"[^0-9TZ]", "", now.replace("+00:00", "Z"))
        base = f"{stamp}-{manifest.content_sha256[:12]}"
        name, n = base, 1
        while os.path.lexists(self.version_dir(name)):
            n += 1
            name = f"{base}-{n}"
        return name

    def staging_dir(self, version: str) -> Path:
        return self.root / f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}"

    def leftover_staging(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.name.startswith(STAGING_PREFIX))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One install of a product at a time (a second one stops rather than waits)."""
        self.root.mkdir(exist_ok=True)
        with open(self.root / ".install.lock", "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise InstallError(f"{self.root}: another install of {self.product} is running") from None
                raise
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def switch_current(self, version: str) -> None:
        """Point `current` at `version` in one rename; the old target is left as it is."""
        tmp = self.root / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
        os.symlink(f"{VERSIONS}/{version}", tmp)
        try:
            os.replace(tmp, self.current)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(self.root)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable before telling anyone it happened."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
