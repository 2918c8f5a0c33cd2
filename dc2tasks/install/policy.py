"""Who may read an installed product, and which directories the installer may trust.

The installer runs as the collaboration account and writes where every DESC member reads. Anyone
who can write a directory on the way (the product's, `versions/`, `catalog_configs/`) can swap an
entry between our check and our use: make us chmod, write into or remove something else. So a
container directory is used only if nobody but this account can change its entries: owned by
this account (the central root may also be root's), not a symlink, not writable by others, and
writable by the group only in a tree the run file declares group-managed, where the sticky bit
stops a group member from renaming or removing our entries and setgid keeps the group.

`central.mode` decides who reads: `world` (group and others read, as the seed's central area
filled by `cp -pr` of umask-022 files) or `group` (the group reads, others nothing).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from typing import Literal

from dc2tasks.install.errors import InstallError

CentralMode = Literal["group", "world"]
CENTRAL_MODES: tuple[CentralMode, ...] = ("group", "world")
DEFAULT_MODE: CentralMode = "world"
LOCK_MODE = 0o600
STAGING_MODE = 0o700
STAGING_UMASK = 0o077


def user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def group_name(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def resolve_group(group: str | int | None) -> int:
    if group is None:
        return os.getgid()
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise InstallError(f"group {group!r} does not exist on this machine") from None


def describe(st: os.stat_result) -> str:
    """`owner alice (uid 1000), group lsst (gid 100), mode 0775` for messages."""
    return f"owner {user_name(st.st_uid)}, group {group_name(st.st_gid)}, mode {stat.S_IMODE(st.st_mode):04o}"


@dataclass(frozen=True)
class ModePolicy:
    """The modes the installer gives, and the container rule it checks, for one install."""

    gid: int
    mode: CentralMode = DEFAULT_MODE
    group_managed: bool = False

    def __post_init__(self) -> None:
        if self.mode not in CENTRAL_MODES:
            raise InstallError(f"central mode {self.mode!r}: expected one of {', '.join(CENTRAL_MODES)}")

    @property
    def _other(self) -> int:
        return 0o005 if self.mode == "world" else 0

    @property
    def _setgid(self) -> int:
        return stat.S_ISGID if self.group_managed else 0

    def file_mode(self, source_mode: int) -> int:
        """0440 / 0444 (0550 / 0555 for an executable): an installed file is never edited."""
        execute = 0o111 if source_mode & 0o111 else 0
        return (0o444 | execute) & (0o770 | self._other)

    def dir_mode(self) -> int:
        """A directory inside an installed version: read-only (2550 / 2555 group-managed)."""
        return 0o550 | self._other | self._setgid

    def container_mode(self) -> int:
        """The product's directory, `versions/`, `catalog_configs/`: only this account writes."""
        return 0o750 | self._other | self._setgid

    def expected(self) -> str:
        if self.group_managed:
            return (
                f"a directory (not a symlink) owned by {user_name(os.geteuid())}, not writable by "
                f"others, and if writable by the group then sticky and setgid with group "
                f"{group_name(self.gid)}"
            )
        return (
            f"a directory (not a symlink) owned by {user_name(os.geteuid())} "
            "and writable by nobody else (no group or other write bit)"
        )

    def check_container(self, st: os.stat_result, path: object, *, root_may_own: bool = False) -> None:
        """Refuse a container directory that someone other than this account could change."""
        problem = None
        owners = {os.geteuid(), 0} if root_may_own else {os.geteuid()}
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            problem = "is a symlink"
        elif not stat.S_ISDIR(mode):
            problem = "is not a directory"
        elif st.st_uid not in owners:
            problem = "is owned by another account"
        elif mode & stat.S_IWOTH:
            problem = "is writable by others"
        elif mode & stat.S_IWGRP and not self._group_write_ok(st):
            problem = (
                "is writable by its group"
                if not self.group_managed
                else "is group-writable without sticky bit, setgid and the expected group"
            )
        if problem:
            hint = (
                " (or, for a tree several installing accounts share through the group, "
                "central.group_managed with chmod g+s,+t)"
                if "group" in problem and not self.group_managed
                else ""
            )
            raise InstallError(f"{path}: {problem} ({describe(st)}); expected {self.expected()}{hint}")

    def _group_write_ok(self, st: os.stat_result) -> bool:
        return (
            self.group_managed
            and bool(st.st_mode & stat.S_ISVTX)
            and bool(st.st_mode & stat.S_ISGID)
            and st.st_gid == self.gid
        )
