"""dc2tasks.private, the one way the local service and the local job backend keep a secret:
a file is 0600 from its first byte, a file read back as a secret is refused unless it is ours alone,
and a file that must not change once made is never replaced by a second writer."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dc2tasks.private import NotPrivateError, read_private, write_private


def test_a_private_file_is_0600_and_replaced_or_kept_as_asked(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    old = os.umask(0)  # the mode must not depend on the umask
    try:
        write_private(path, "first")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_private(path, "second")
    assert read_private(path) == "second"
    write_private(path, "third", replace=False)
    assert read_private(path) == "second"  # the first one made is the one everyone keeps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]  # no temporary file left


def test_a_file_others_could_read_or_a_symlink_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_private(path, "s")
    path.chmod(0o640)
    with pytest.raises(NotPrivateError, match=r"^must be a regular file owned by this account with mode "
                                              r"0600 \(it is -rw-r-----, uid \d+\)$"):
        read_private(path)
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(IsADirectoryError):
        read_private(tmp_path / "dir")
    path.chmod(0o600)
    (tmp_path / "link").symlink_to(path)
    with pytest.raises(OSError):  # never followed, even to a file of ours
        read_private(tmp_path / "link")
    with pytest.raises(FileNotFoundError):
        read_private(tmp_path / "missing")
