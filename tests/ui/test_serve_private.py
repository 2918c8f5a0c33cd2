"""`dc2 serve`'s files are its account's alone (issue #10): after a real start, another local user
(`nobody`, in a forked child) can list the work directory but not AIRFLOW_HOME, and cannot open the
password file, standalone's log or the SQLite database; the password is in no file but its own, and
logging in with it works. Then the same rules on homes an earlier run (or someone else) left."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from nobody import NOBODY, run_as_nobody
from served_demo import Served, dc2_serve, free_port

from dc2tasks.private import NotPrivateError, private_home
from dc2tasks.service.serve import PASSWORDS_FILE, private_home_and_password, user_password
from dc2tasks.service.standalone import REDACTED, copy_redacted

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def as_nobody(paths: dict[str, Path]) -> dict[str, str]:
    """For each path, what `nobody` gets trying to read it (listdir for a directory, open
    otherwise): "ok" or the errno's name."""

    def attempt() -> dict[str, str]:
        results = {}
        for name, path in paths.items():
            try:
                if name.endswith("/"):
                    os.listdir(path)
                else:
                    os.close(os.open(path, os.O_RDONLY))
                results[name] = "ok"
            except OSError as exc:
                results[name] = errno.errorcode.get(exc.errno or 0, str(exc))
        return results

    return run_as_nobody(attempt)  # type: ignore[return-value]


def needs_root() -> None:
    if os.geteuid() != 0:
        if CI:
            pytest.fail("CI runs as root, which this test needs to become nobody")
        pytest.skip("needs root (to become nobody)")


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One real `dc2 serve`, its work directory in a 0755 directory outside pytest's 0700 tmp (so
    only AIRFLOW_HOME's own mode can stop `nobody`)."""
    needs_root()
    base = Path(tempfile.mkdtemp(prefix="dc2-serve-private-"))
    try:
        os.chmod(base, 0o755)
        with dc2_serve(base / "demo", free_port()) as running:
            yield running
    finally:
        shutil.rmtree(base)


def login(served: Served, password: str) -> int:
    body = json.dumps({"username": served.user, "password": password}).encode()
    req = urllib.request.Request(served.url + "/auth/token", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.load(resp)["access_token"]
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_another_user_can_read_nothing_of_airflow_home(served: Served) -> None:
    home = served.workdir / "airflow"
    got = as_nobody({
        "workdir/": served.workdir,  # the control: nobody reaches the work directory itself
        "home/": home,
        "passwords": home / PASSWORDS_FILE,
        "log": home / "services" / "standalone.log",
        "db": home / "airflow.db",
    })
    assert got == {"workdir/": "ok", "home/": "EACCES", "passwords": "EACCES", "log": "EACCES",
                   "db": "EACCES"}


def test_everything_in_airflow_home_is_the_owners_only(served: Served) -> None:
    home = served.workdir / "airflow"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / PASSWORDS_FILE).stat().st_mode) == 0o600
    for name in ("airflow.db", "services/standalone.log", "jwt_secret", "airflow.cfg"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    wider = [str(p) for p in home.rglob("*")
             if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert wider == []


def test_the_password_is_in_its_file_only_and_logs_in(served: Served) -> None:
    home = served.workdir / "airflow"
    assert json.loads((home / PASSWORDS_FILE).read_text()) == {served.user: served.password}
    assert login(served, served.password) == 201
    assert login(served, served.password + "x") == 401
    log = (home / "services" / "standalone.log").read_text()
    assert "Starting Airflow Standalone" in log
    assert "has been previously generated" in log  # Airflow found ours: it generated none
    secret = served.password.encode()
    holders = [str(p.relative_to(served.workdir)) for p in served.workdir.rglob("*")
               if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]
    assert holders == [f"airflow/{PASSWORDS_FILE}"]


def test_a_wider_home_is_tightened_and_an_exposed_password_replaced(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    (home / "services").mkdir(parents=True, mode=0o755)
    os.chmod(home, 0o755)
    (home / "airflow.db").write_text("db")
    os.chmod(home / "airflow.db", 0o644)
    (home / PASSWORDS_FILE).write_text(json.dumps({"admin": "old"}))
    os.chmod(home / PASSWORDS_FILE, 0o644)
    (home / "link").symlink_to("/etc/passwd")
    tightened = private_home(home)
    assert set(tightened) == {home, home / "services", home / "airflow.db", home / PASSWORDS_FILE}
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "airflow.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(Path("/etc/passwd").stat().st_mode) == 0o644  # no link followed
    assert private_home(home) == []  # private now: nothing to do
    new = user_password(home)
    assert new == "old"  # private now, and not known to have been exposed: kept
    os.chmod(home / PASSWORDS_FILE, 0o640)
    new = user_password(home)
    assert new != "old" and len(new) >= 16  # one others could read is never used
    assert json.loads((home / PASSWORDS_FILE).read_text()) == {"admin": new}
    assert stat.S_IMODE((home / PASSWORDS_FILE).stat().st_mode) == 0o600
    assert user_password(home) == new  # kept across starts


def test_an_exposed_password_and_jwt_secret_are_replaced(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    home.mkdir(mode=0o700)
    for name, text in ((PASSWORDS_FILE, json.dumps({"admin": "seen"})), ("jwt_secret", "seen-secret")):
        (home / name).write_text(text)
        os.chmod(home / name, 0o644)
    password, notes = private_home_and_password(home)
    assert password != "seen"
    assert json.loads((home / PASSWORDS_FILE).read_text()) == {"admin": password}
    assert not (home / "jwt_secret").exists()  # serve_env makes a new one
    assert notes == [f"2 paths under {home} were readable by others: now only by this account",
                     f"{home / PASSWORDS_FILE} was readable by others: replaced with a new one",
                     f"{home / 'jwt_secret'} was readable by others: replaced with a new one"]
    assert private_home_and_password(home) == (password, [])


def test_a_new_home_is_0700_from_the_start(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        private_home(tmp_path / "a" / "airflow")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "airflow").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700


def test_a_home_of_another_account_or_a_symlink_is_refused(tmp_path: Path) -> None:
    needs_root()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(NotPrivateError, match=f"{theirs} \\(AIRFLOW_HOME\\) belongs to uid {NOBODY}, not to "
                                              "this account"):
        private_home(theirs)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(NotPrivateError, match=f"{link} \\(AIRFLOW_HOME\\) is not a directory"):
        private_home(link)


def test_the_log_copy_filters_the_password(tmp_path: Path) -> None:
    log = tmp_path / "standalone.log"
    log.write_text("earlier run\n")
    os.chmod(log, 0o644)
    r, w = os.pipe()
    os.write(w, b"api-server | hello\nx s3cr3t y\nSimple auth manager | Password for user 'bob': Zq9\n")
    os.close(w)
    copy_redacted(os.fdopen(r, "rb"), log, "s3cr3t")
    assert log.read_text() == (f"earlier run\napi-server | hello\nx {REDACTED} y\n"
                               f"Simple auth manager | Password for user 'bob': {REDACTED}\n")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
