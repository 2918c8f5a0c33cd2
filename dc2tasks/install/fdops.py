"""File operations relative to open directory descriptors, never following a symlink.

Why descriptors: a path is looked up again at every use, so an entry swapped for a symlink between
two uses redirects the second one (a chmod, a write, a removal) to wherever the link points. A
directory opened once with O_NOFOLLOW stays the directory we checked; every later operation names
an entry relative to it (`dir_fd=`) and opens that entry with O_NOFOLLOW too, then checks the open
descriptor (fstat) before acting on it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from dc2tasks.install.errors import InstallError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in place of a file must not hang the install
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
Chown = Callable[[int, int, int], None]
"""chown of an open descriptor (uid, gid): os.fchown, or a test's stand-in."""


def kind(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    if stat.S_ISREG(st.st_mode):
        return "a regular file"
    return "a special file"


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def lstat_at(name: str, dir_fd: int) -> os.stat_result:
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)


def open_dir(name: str | os.PathLike[str], path: object, dir_fd: int | None = None) -> int:
    """Open a directory without following a symlink at its last component; `path` is for messages."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InstallError(f"{path}: is a symlink or not a directory; not followed") from None
        raise InstallError(f"{path}: cannot open the directory: {exc.strerror or exc}") from None


@contextlib.contextmanager
def opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def open_parent(root_fd: int, rel: str, root: Path) -> tuple[int, str]:
    """The directory holding `rel` (a '/'-separated name under root), each part opened no-follow.
    Returns a descriptor the caller closes, and the last part of the name."""
    *dirs, leaf = rel.split("/")
    fd = os.dup(root_fd)
    where = root
    try:
        for part in dirs:
            where = where / part
            sub = open_dir(part, where, fd)
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd, leaf


def make_dir_at(parent_fd: int, name: str, mode: int, path: object) -> tuple[int, bool]:
    """Open directory `name`, making it with exactly `mode` (not the umask's) if it is missing.
    Returns (descriptor, made); the caller checks who owns an existing one."""
    made = True
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        made = False
    except OSError as exc:
        raise InstallError(f"{path}: cannot make the directory: {exc.strerror or exc}") from None
    fd = open_dir(name, path, parent_fd)
    if made:
        os.fchmod(fd, mode)
    return fd, made


def make_private_dir(parent_fd: int, name: str, path: object) -> int:
    """A new 0700 directory; an existing name is never reused (someone else may have made it)."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        raise InstallError(f"{path}: already exists; a staging directory is never reused") from None
    fd = open_dir(name, path, parent_fd)
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise InstallError(f"{path}: not the private directory this install just made")
    os.fchmod(fd, 0o700)  # exactly: not a setgid bit inherited from a group-managed parent
    return fd


def empty_dir(fd: int, path: Path) -> None:
    """Remove everything inside the open directory `fd`, never following a link out of it."""
    os.fchmod(fd, stat.S_IRWXU)  # staged directories are made read-only before the rename
    for name in os.listdir(fd):
        st = lstat_at(name, fd)
        if stat.S_ISDIR(st.st_mode):
            with opened(open_dir(name, path / name, fd)) as sub:
                if not same_file(os.fstat(sub), st):
                    raise InstallError(f"{path / name}: replaced while it was being removed; left alone")
                empty_dir(sub, path / name)
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)  # a file or a link itself, never what a link points to


def remove_tree_at(parent_fd: int, name: str, made: os.stat_result, path: Path) -> None:
    """Remove the directory `name` that this install made (`made`: its stat when made). If the name
    now holds something else (a symlink to another product, say), that is left alone and refused."""
    try:
        try:
            st = lstat_at(name, parent_fd)
        except FileNotFoundError:
            return
        if not same_file(st, made):
            raise InstallError(
                f"{path}: is now {kind(st)}, not the directory this install made; left as it is"
            )
        with opened(open_dir(name, path, parent_fd)) as fd:
            if not same_file(os.fstat(fd), made):
                raise InstallError(f"{path}: replaced while it was being removed; left alone")
            empty_dir(fd, path)
        os.rmdir(name, dir_fd=parent_fd)
    except OSError as exc:
        raise InstallError(f"{path}: cannot remove it: {exc.strerror or exc}") from None


def set_group_and_mode_at(
    fd: int, path: Path, gid: int, file_mode: Callable[[int], int], dir_mode: int, chown: Chown
) -> None:
    """chgrp -R and chmod -R of the open directory `fd` and everything in it, each entry opened
    no-follow and acted on through its descriptor; a symlink or special file is refused."""
    for name in sorted(os.listdir(fd)):
        st = lstat_at(name, fd)
        if stat.S_ISDIR(st.st_mode):
            with opened(open_dir(name, path / name, fd)) as sub:
                set_group_and_mode_at(sub, path / name, gid, file_mode, dir_mode, chown)
            continue
        if not stat.S_ISREG(st.st_mode):
            raise InstallError(
                f"{path / name}: {kind(st)} in a staged product; only regular files are installed"
            )
        with opened(os.open(name, FILE_FLAGS, dir_fd=fd)) as entry:
            now = os.fstat(entry)
            if not same_file(now, st):
                raise InstallError(f"{path / name}: replaced while its mode was being set")
            _chown(chown, entry, gid, path / name)
            os.fchmod(entry, file_mode(now.st_mode))
    _chown(chown, fd, gid, path)
    os.fchmod(fd, dir_mode)


def _chown(chown: Chown, fd: int, gid: int, path: Path) -> None:
    try:
        chown(fd, -1, gid)
    except OSError as exc:
        raise InstallError(f"chgrp {gid} {path}: {exc.strerror or exc}") from None
