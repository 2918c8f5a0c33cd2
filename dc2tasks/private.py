"""Files and directories only this account can read: the local service's AIRFLOW_HOME and the
secrets in it (the UI password, the JWT secret, the local backend's job token).

Why so careful: other local users share the machine. A secret file is 0600 from the moment it
exists (never created wider and then tightened), no symlink is followed, and a file read back as a
secret must be a regular file of ours that nobody else can read or replace; otherwise someone may
already know it. No Airflow import here: `dc2tasks.airflow.hooks` uses it as the service does.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


class NotPrivateError(RuntimeError):
    """A path that is not, or cannot be made, this account's alone; the message says why."""


def write_private(path: Path, text: str, replace: bool = True) -> None:
    """`text` into `path`: 0600 from the moment it exists (O_EXCL on a temporary name, no link
    followed), then renamed over whatever was there; with `replace=False` put in place only if
    nothing is there yet, so that processes starting together all keep the first one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_private(path: Path) -> str:
    """The text of `path`, which must be a regular file of ours that no one else can read or write;
    NotPrivateError says what it is instead (the caller names the file). OSError when it cannot be
    opened: missing, or a symlink (never followed)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise NotPrivateError(
                "must be a regular file owned by this account with mode 0600 "
                f"(it is {stat.filemode(st.st_mode)}, uid {st.st_uid})"
            )
        return fh.read()


def private_home(home: Path) -> list[Path]:
    """Make AIRFLOW_HOME 0700 (never wider for a moment: made under umask 077), or make an existing
    one and everything in it private; the paths it tightened. A home that is a symlink or another
    account's is refused: what it holds may already be someone else's."""
    old = os.umask(PRIVATE_UMASK)
    try:
        home.mkdir(parents=True, exist_ok=True)
    finally:
        os.umask(old)
    st = home.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise NotPrivateError(f"{home} (AIRFLOW_HOME) is not a directory (a symlink?); remove it or "
                              "choose another --workdir")
    if st.st_uid != os.geteuid():
        raise NotPrivateError(f"{home} (AIRFLOW_HOME) belongs to uid {st.st_uid}, not to this account "
                              f"(uid {os.geteuid()}); choose another --workdir")
    tightened: list[Path] = []
    _tighten(home, tightened)
    for top, dirs, files in os.walk(home):  # symlinks are listed, never followed
        for name in [*dirs, *files]:
            _tighten(Path(top) / name, tightened)
    return tightened


def tightened_note(home: Path, tightened: list[Path]) -> str:
    """What `private_home` fixed, to tell the person whose files they are."""
    return f"{len(tightened)} paths under {home} were readable by others: now only by this account"


def _tighten(path: Path, tightened: list[Path]) -> None:
    try:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077, follow_symlinks=False)
            tightened.append(path)
    except OSError as exc:
        raise NotPrivateError(f"cannot make {path} private (in AIRFLOW_HOME): {exc.strerror}") from exc
