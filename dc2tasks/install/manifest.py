"""The producer's manifest of a product directory: every file's name, size and sha256.

Why: the install runs as another account, later, possibly after the files were touched; the
manifest is the producer's statement of what the product is, and the install copies exactly that
and proves it did. `content_sha256` (over names, sizes and checksums only) identifies the content,
so installing the same content twice can be recognised and skipped.

Hidden files (`.name`, e.g. a temporary file still being written) are never part of a product, nor
are `manifest.json` and `provenance.json` at the top (written by us).
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dc2tasks import __version__, names
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.errors import InputError

MANIFEST_NAME = "manifest.json"
PROVENANCE_NAME = "provenance.json"
CATALOG_CONFIGS = "catalog_configs"
RESERVED = frozenset({MANIFEST_NAME, PROVENANCE_NAME})
FORMAT = "dc2tasks-manifest/1"
CHUNK = 4 * 1024 * 1024
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_NAME_PART_RE = names.FILE_PART.regex


@dataclass(frozen=True)
class FileEntry:
    name: str  # relative path with '/' separators
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    files: tuple[FileEntry, ...]
    created: str = ""
    created_by: dict[str, str] | None = None
    produced_content_sha256: str | None = None
    """Only in an installed version whose QA reports the install rewrote (qa_gate.py): the
    producer's content_sha256, which this manifest's files (the installed ones) no longer give."""

    @property
    def produced_as(self) -> str:
        """The producer's content this is (what a repeated install of the same content compares)."""
        return self.produced_content_sha256 or self.content_sha256

    def with_files(self, added: Mapping[str, FileEntry], under: str | None = None) -> Manifest:
        """This manifest with `added` (by name) in place of the entries of the same name and, with
        `under` (a folder), of every entry below it; the rest and the creation record kept."""
        prefix = f"{under.rstrip('/')}/" if under else None
        kept = [e for e in self.files if e.name not in added and not (prefix and e.name.startswith(prefix))]
        files = tuple(sorted((*kept, *added.values()), key=lambda e: e.name))
        return Manifest(files, self.created, self.created_by, self.produced_content_sha256)

    @property
    def content_sha256(self) -> str:
        h = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.name):
            h.update(f"{f.name}\t{f.size}\t{f.sha256}\n".encode())
        return h.hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "content_sha256": self.content_sha256,
            "created": self.created,
            "created_by": self.created_by or {},
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files],
            **({"produced_content_sha256": p} if (p := self.produced_content_sha256) else {}),
        }


def check_entry_name(name: str, where: str) -> str:
    """A manifest name is a plain relative path: no '..', no absolute path, no hidden or odd parts."""
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: a file name must be a non-empty string, not {name!r}")
    parts = name.split("/")
    for part in parts:
        if not _NAME_PART_RE.fullmatch(part):
            raise InputError(
                f"{where}: {name!r} is not a plain relative file name "
                "(no '..', no leading '/' or '.', letters, digits and _.,+=@- only)"
            )
    if len(parts) == 1 and name in RESERVED:
        raise InputError(f"{where}: {name!r} is written by the install, it cannot be a product file")
    return name


def sha256_file(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def product_files(product_dir: Path) -> list[str]:
    """Relative names of the product's files, sorted; symlinks and special files are refused."""
    names: list[str] = []
    for root, dirs, files in os.walk(product_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_root = os.path.relpath(root, product_dir)
        for d in dirs:
            if os.path.islink(os.path.join(root, d)):
                raise InputError(
                    f"{os.path.join(root, d)}: a symlink in a product directory (copy the files)"
                )
        for f in sorted(files):
            if f.startswith("."):
                continue
            rel = f if rel_root == "." else f"{rel_root}/{f}".replace(os.sep, "/")
            if rel in RESERVED:
                continue
            path = os.path.join(root, f)
            if os.path.islink(path) or not os.path.isfile(path):
                raise InputError(
                    f"{path}: not a regular file (symlinks and special files cannot be installed)"
                )
            names.append(check_entry_name(rel, str(product_dir)))
    return names


def user_here() -> str:
    """This process's user name (the uid as text where it has no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _who() -> dict[str, str]:
    return {"user": user_here(), "host": socket.getfqdn(), "dc2tasks": __version__}


def build_manifest(product_dir: str | os.PathLike[str]) -> Manifest:
    product_dir = Path(product_dir)
    if not product_dir.is_dir():
        raise InputError(f"{product_dir}: not a directory")
    names = product_files(product_dir)
    if not names:
        raise InputError(f"{product_dir}: no files to put in a manifest")
    entries = []
    for name in names:
        path = product_dir / name
        entries.append(FileEntry(name, path.stat().st_size, sha256_file(path)))
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return Manifest(tuple(entries), created, _who())


def write_manifest(product_dir: str | os.PathLike[str]) -> Manifest:
    """Checksum every file of the product and write `manifest.json` into it, atomically."""
    return _write(Path(product_dir), build_manifest(product_dir))


def _write(product_dir: Path, manifest: Manifest) -> Manifest:
    with atomic_path(product_dir / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(manifest.to_json(), indent=1) + "\n", encoding="utf-8")
    return manifest


def manifest_from_json(data: object, where: str) -> Manifest:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{where}: not a dc2tasks manifest (expected format {FORMAT!r})")
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise InputError(f"{where}: 'files' must be a non-empty list")
    entries = []
    seen: set[str] = set()
    for i, item in enumerate(files):
        at = f"{where}: files[{i}]"
        if not isinstance(item, dict) or set(item) != {"name", "size", "sha256"}:
            raise InputError(f"{at}: expected {{name, size, sha256}}, got {item!r}")
        name = check_entry_name(item["name"], at)
        size, sha = item["size"], item["sha256"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InputError(f"{at}: size {size!r} is not a byte count")
        if not isinstance(sha, str) or not _SHA_RE.fullmatch(sha):
            raise InputError(f"{at}: sha256 {sha!r} is not 64 lower-case hex digits")
        if name in seen:
            raise InputError(f"{at}: {name} is listed twice")
        seen.add(name)
        entries.append(FileEntry(name, size, sha))
    created_by = data.get("created_by") or {}
    produced = data.get("produced_content_sha256")
    if produced is not None and (not isinstance(produced, str) or not _SHA_RE.fullmatch(produced)):
        raise InputError(f"{where}: produced_content_sha256 {produced!r} is not 64 lower-case hex digits")
    manifest = Manifest(
        tuple(entries), str(data.get("created", "")), {str(k): str(v) for k, v in created_by.items()},
        produced,
    )  # fmt: skip
    if data.get("content_sha256") != manifest.content_sha256:
        raise InputError(
            f"{where}: content_sha256 does not match its file list (the manifest was edited or damaged)"
        )
    return manifest


def read_regular_json(path: str | os.PathLike[str], where: object = None, dir_fd: int | None = None) -> Any:
    """JSON from a regular file opened without following a symlink: a link would feed us (and,
    for provenance, publish) whatever file it points to. FileNotFoundError is left to the caller."""
    where = path if where is None else where
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{where}: is a symlink; not followed (a regular file is expected)") from None
        raise InputError(f"{where}: cannot open it: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{where}: not a regular file")
        text = fh.read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON: {exc}") from None


def read_manifest(path: str | os.PathLike[str], dir_fd: int | None = None, where: object = None) -> Manifest:
    where = path if where is None else where
    try:
        data = read_regular_json(path, where, dir_fd)
    except FileNotFoundError:
        raise InputError(f"{where}: no manifest (write one with `dc2 manifest DIR`)") from None
    except InputError as exc:
        raise InputError(f"cannot read the manifest: {exc}") from None
    return manifest_from_json(data, str(where))


LOCK_NAME = ".manifest.lock"
"""Serialises changes to a product directory's manifest (hidden: never a product file)."""


def _entry(product_dir: Path, name: str) -> FileEntry:
    path = product_dir / check_entry_name(name, str(product_dir))
    st = os.lstat(path) if os.path.lexists(path) else None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file; it cannot be added to the manifest")
    return FileEntry(name, st.st_size, sha256_file(path))


def append_files(product_dir: str | os.PathLike[str], names: list[str], under: str | None = None) -> Manifest:
    """Add files of the product directory to its existing manifest: an entry of the same name is
    replaced, and with `under` (a folder, e.g. a QA report's) every earlier entry below it is
    dropped first, so a file a re-run no longer writes is not left listed. Under an exclusive lock
    of LOCK_NAME (the products sharing a directory append their reports concurrently), written to
    a temporary name and renamed; the other entries and the creation record are kept."""
    product_dir = Path(product_dir)
    fd = os.open(product_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = read_manifest(product_dir / MANIFEST_NAME)
        added = {name: _entry(product_dir, name) for name in names}
        return _write(product_dir, old.with_files(added, under))
