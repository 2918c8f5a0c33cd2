"""The installer trusts nothing it did not make (issue #10, items 3, 4 and 7's installed modes).

Each reproduction of the issue is run against the real install: a product directory made under
umask 002, a `.staging-*` or a source file swapped for a symlink at the worst moment, a symlinked
`provenance.json`, container directories another account could change, a lock another account
could take; and the run file's `central.mode` giving the modes of every installed path.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from nobody import NOBODY

from dc2tasks.install import InstallError, copy_and_hash, install_product
from dc2tasks.install import install as install_module
from dc2tasks.install.fdops import make_private_dir
from dc2tasks.install.layout import ProductLayout
from dc2tasks.install.policy import ModePolicy

USERS_GID = grp.getgrnam("users").gr_gid

SECRET = "tok-3f9a1c-never-publish"


def modes(root: Path) -> dict[str, str]:
    """Every path under root (root included) -> its kind and octal mode, without following links."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
        out[str(path.relative_to(root))] = f"{kind}{stat.S_IMODE(st.st_mode):04o}"
    return out


def files_containing(root: Path, text: str) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and text in p.read_text(errors="replace")
    ]


@pytest.fixture
def other(made, central, tmp_path) -> Path:
    """Another product installed beside the one under attack: its version directory."""
    src = tmp_path / "producer" / "dpdd_object"
    shutil.copytree(made.dpdd_dir, src)
    result = install_product(src, central, "dpdd_object", None)
    return central / "dpdd_object" / "versions" / result.version


@pytest.mark.parametrize(
    ("mode", "file_mode", "dir_mode", "container_mode"),
    [("world", 0o444, 0o555, 0o755), ("group", 0o440, 0o550, 0o750)],
)
def test_modes_follow_the_policy_whatever_the_umask(
    source, central, mode, file_mode, dir_mode, container_mode
):
    """Under umask 002 the product root and versions/ were 0775 and the lock 0664 (issue #10, 3)."""
    previous = os.umask(0o002)
    try:
        result = install_product(source, central, "object", "users", mode=mode)
        assert os.umask(0o002) == 0o002  # the install put the caller's umask back
    finally:
        os.umask(previous)
    product = central / "object"
    got = modes(product)
    version = f"versions/{result.version}"
    expected = {
        ".": f"d{container_mode:04o}",
        ".install.lock": "f0600",
        "current": "l0777",
        "versions": f"d{container_mode:04o}",
        "catalog_configs": f"d{container_mode:04o}",
        version: f"d{dir_mode:04o}",
        f"{version}/catalog_configs": f"d{dir_mode:04o}",
    }
    for name in got:
        if name.startswith(version + "/") and name != f"{version}/catalog_configs":
            expected[name] = f"f{file_mode:04o}"
        elif name.startswith("catalog_configs/"):
            expected[name] = f"f{file_mode:04o}"
    assert got == expected
    assert len([n for n in got if n.startswith(version + "/")]) == 9  # 6 product files, 2 ours, 1 dir
    for path in [product / "versions" / result.version, *(product / "versions" / result.version).rglob("*")]:
        assert path.lstat().st_gid == USERS_GID, path


def test_group_managed_tree_gets_setgid_directories(source, central):
    os.chown(central, -1, USERS_GID)
    os.chmod(central, 0o3775)  # group-writable, sticky and setgid: a group-managed central tree
    result = install_product(source, central, "object", "users", mode="group", group_managed=True)
    got = modes(central / "object")
    assert got["."] == got["versions"] == got["catalog_configs"] == "d2750"
    assert got[f"versions/{result.version}"] == "d2550"
    assert got[f"versions/{result.version}/schema.yaml"] == "f0440"


@pytest.mark.parametrize("when", ["copy", "check"])
def test_staging_swapped_for_a_symlink_to_another_product(source, central, other, tree, when):
    """A `.staging-*` swapped for a symlink to another product's version: the failure cleanup
    chmod'ed that version 0700 and dropped files into its versions/, ending in a bare OSError."""
    before = modes(central / "dpdd_object")
    before_tree = tree(central / "dpdd_object")
    product = central / "object"
    swapped: list[Path] = []

    def swap() -> None:
        if swapped:
            return
        (staging,) = product.glob(".staging-*")
        staging.rename(product / "taken-away")
        staging.symlink_to(other)
        swapped.append(staging)

    def copy_then_swap(src: int, dst: int) -> tuple[int, str]:
        swap()
        return copy_and_hash(src, dst)

    def check_then_swap(staged: Path) -> list[str]:
        swap()
        return ["checked"]

    kwargs = {"copy_file": copy_then_swap} if when == "copy" else {"check": check_then_swap}
    with pytest.raises(InstallError) as info:
        install_product(source, central, "object", None, **kwargs)
    (staging,) = swapped
    assert str(info.value).startswith(
        f"{staging}: is now a symlink, not the directory this install made; not followed"
    )
    assert str(info.value).endswith(
        f"; nothing installed changed; cleaning up: {staging}: is now a symlink, "
        "not the directory this install made; left as it is"
    )
    assert modes(central / "dpdd_object") == before
    assert tree(central / "dpdd_object") == before_tree
    # ours: emptied through its descriptor wherever it went; the planted link left for investigation
    assert list((product / "taken-away").iterdir()) == []
    assert os.readlink(staging) == str(other)
    assert not (product / "current").exists() and list(product.glob("versions/*")) == []


def test_a_staging_name_is_never_reused(tmp_path):
    (tmp_path / ".staging-x").symlink_to(tmp_path / "elsewhere")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(
            InstallError, match=r"\.staging-x: already exists; a staging directory is never reused"
        ):
            make_private_dir(fd, ".staging-x", tmp_path / ".staging-x")
    finally:
        os.close(fd)
    assert not (tmp_path / "elsewhere").exists()


def test_provenance_symlink_to_another_json_is_refused(source, central, tmp_path):
    """A provenance.json symlinked to another JSON was copied verbatim and published 0444."""
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"run": "x", "token": SECRET}))
    (source / "provenance.json").unlink()
    (source / "provenance.json").symlink_to(secret)
    with pytest.raises(InstallError) as info:
        install_product(source, central, "object", None)
    assert str(info.value) == (
        "cannot read the producer's provenance record: "
        f"{source / 'provenance.json'}: is a symlink; not followed (a regular file is expected)"
    )
    assert files_containing(central, SECRET) == []
    assert list(central.iterdir()) == []  # refused before the product's directory was made


def test_provenance_that_is_not_a_regular_file_is_refused(source, central):
    (source / "provenance.json").unlink()
    os.mkfifo(source / "provenance.json")  # opened non-blocking: a FIFO cannot hang the install
    with pytest.raises(InstallError, match=rf"{source / 'provenance.json'}: not a regular file"):
        install_product(source, central, "object", None)


def test_provenance_keeps_known_keys_only(source, central, caplog):
    record = json.loads((source / "provenance.json").read_text())
    record["token"] = SECRET
    (source / "provenance.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="dc2tasks.install.provenance"):
        install_product(source, central, "object", None)
    installed = json.loads((central / "object" / "current" / "provenance.json").read_text())
    assert installed["run"] == "itest" and "extra" not in installed
    assert files_containing(central, SECRET) == []
    assert f"{source / 'provenance.json'}: unknown key 'token' dropped" in caplog.text


@pytest.mark.parametrize("swap_to", ["symlink", "other file"])
def test_source_swapped_between_the_check_and_the_copy(source, central, tmp_path, monkeypatch, swap_to):
    """A source swapped for a symlink after the check was staged 0644 before the checksum aborted."""
    victim = source / "schema.yaml"
    planted = tmp_path / "planted.yaml"
    planted.write_bytes(b"#" * victim.stat().st_size)  # same size: only the inode tells them apart
    checked = install_module.check_sources

    def check_then_swap(source_fd, source_path, manifest):
        out = checked(source_fd, source_path, manifest)
        if swap_to == "symlink":
            victim.unlink()
            victim.symlink_to(planted)
        else:  # rewritten in place: same name and size, other bytes
            victim.write_bytes(planted.read_bytes())
        return out

    copied: list[str] = []

    def copy(src: int, dst: int) -> tuple[int, str]:
        copied.append(os.readlink(f"/proc/self/fd/{src}"))
        return copy_and_hash(src, dst)

    monkeypatch.setattr(install_module, "check_sources", check_then_swap)
    with pytest.raises(InstallError) as info:
        install_product(source, central, "object", None, copy_file=copy)
    message = str(info.value)
    if swap_to == "symlink":
        assert message.startswith(f"{victim}: is a symlink; not followed")
    else:
        assert message.startswith(f"{victim}: changed between the check and the copy")
        assert "nothing staged from it" in message
    assert str(victim) not in copied and str(planted) not in copied
    assert copied  # files before it in the manifest were copied, then removed with the staging
    assert sorted(p.name for p in (central / "object").iterdir()) == [".install.lock"]
    assert not [p for p in central.rglob("*") if p.is_file() and stat.S_IMODE(p.stat().st_mode) == 0o644]


def _bad_containers(central: Path) -> list[tuple[str, Callable[[], object], Path, str, str]]:
    product = central / "object"

    def product_mode(mode: int):
        return lambda: (product.mkdir(), os.chmod(product, mode))

    def sub(name: str, mode: int):
        return lambda: (
            (product / name).mkdir(parents=True),
            os.chmod(product, 0o755),
            os.chmod(product / name, mode),
        )

    return [
        ("group-writable product", product_mode(0o775), product, "is writable by its group", "0775"),
        ("world-writable product", product_mode(0o757), product, "is writable by others", "0757"),
        ("world-writable central", lambda: os.chmod(central, 0o777), central,
         "is writable by others", "0777"),
        ("group-writable versions", sub("versions", 0o775), product / "versions",
         "is writable by its group", "0775"),
        ("group-writable configs", sub("catalog_configs", 0o770), product / "catalog_configs",
         "is writable by its group", "0770"),
        ("product owned by nobody", lambda: (product.mkdir(), os.chown(product, NOBODY, NOBODY)), product,
         "is owned by another account", "0755"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(6))
def test_container_directories_others_could_change_are_refused(source, central, tmp_path, tree, case):
    name, make, path, problem, mode = _bad_containers(central)[case]
    make()
    before = tree(central)
    with pytest.raises(InstallError) as info:
        install_product(source, central, "object", None)
    message = str(info.value)
    owner = "nobody (uid 65534)" if "nobody" in name else "root (uid 0)"
    assert message.startswith(f"{path}: {problem} (owner {owner}, group "), message
    assert f"mode {mode}); expected a directory (not a symlink) owned by root (uid 0)" in message
    assert tree(central) == before


def test_symlinked_containers_are_never_followed(source, central, tmp_path, tree):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (central / "object").symlink_to(elsewhere)
    with pytest.raises(
        InstallError, match=rf"{central / 'object'}: is a symlink or not a directory; not followed"
    ):
        install_product(source, central, "object", None)
    (central / "object").unlink()
    (central / "object").mkdir()
    (central / "object" / "versions").symlink_to(elsewhere)
    with pytest.raises(InstallError, match=r"object/versions: is a symlink or not a directory; not followed"):
        install_product(source, central, "object", None)
    assert list(elsewhere.iterdir()) == []


def test_group_managed_accepts_group_write_only_with_sticky_setgid_and_the_group(source, central, tree):
    product = central / "object"
    product.mkdir()
    os.chown(product, -1, USERS_GID)
    for mode, gid, ok in [(0o2775, USERS_GID, False), (0o1775, USERS_GID, False), (0o3775, 0, False),
                          (0o3775, USERS_GID, True)]:  # fmt: skip
        os.chown(product, -1, gid)
        os.chmod(product, mode)
        if not ok:
            before = tree(central)
            with pytest.raises(InstallError) as info:
                install_product(source, central, "object", "users", group_managed=True)
            assert str(info.value).startswith(
                f"{product}: is group-writable without sticky bit, setgid and the expected group"
            )
            assert f"mode {mode:04o}" in str(info.value)
            assert tree(central) == before
            with pytest.raises(InstallError, match="is writable by its group"):
                install_product(source, central, "object", "users")  # not declared group-managed
    result = install_product(source, central, "object", "users", group_managed=True)
    assert result.status == "installed"
    assert stat.S_IMODE(product.stat().st_mode) == 0o3775  # an existing directory's mode is its owner's


@pytest.mark.parametrize("bad", ["mode", "symlink"])
def test_a_lock_others_could_open_is_refused(source, central, tmp_path, tree, bad):
    install_product(source, central, "object", None)
    lock = central / "object" / ".install.lock"
    if bad == "mode":
        os.chmod(lock, 0o644)
        expected = f"{lock}: the lock must be a regular file owned by this account with mode 0600 ("
    else:
        lock.unlink()
        lock.symlink_to(tmp_path / "their-lock")
        expected = f"{lock}: cannot open the lock: is a symlink; not followed"
    with pytest.raises(InstallError) as info:
        install_product(source, central, "object", None, force=True)
    assert str(info.value).startswith(expected)
    assert not (tmp_path / "their-lock").exists()


def test_the_lock_cannot_be_taken_by_another_account(made, as_nobody):
    """Anyone who could open the lock could flock it and block every install (issue #10, 3)."""
    base = Path(tempfile.mkdtemp(prefix="dc2-lock-"))  # outside pytest's 0700 tmp directories
    try:
        os.chmod(base, 0o755)
        shutil.copytree(made.object_dir, base / "object")
        (base / "central").mkdir(mode=0o755)
        install_product(base / "object", base / "central", "object", None, check=None)
        lock = base / "central" / "object" / ".install.lock"
        layout = ProductLayout(base / "central", "object")

        def attempt() -> list[str]:
            out = []
            for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
                try:
                    os.close(os.open(lock, flags))
                    out.append("opened")
                except PermissionError as exc:
                    out.append(exc.strerror)
            try:
                with layout.open(ModePolicy(NOBODY)) as tree, tree.lock():
                    out.append("locked")
            except InstallError as exc:
                out.append(str(exc))
            return out

        got = as_nobody(attempt)
        assert got[:3] == ["Permission denied"] * 3
        assert got[3].startswith(
            f"{base / 'central' / 'object'}: is owned by another account (owner root (uid 0)"
        )
        # and the installing account still takes it at once
        with layout.open(ModePolicy(os.getgid())) as tree, tree.lock():
            pass
    finally:
        shutil.rmtree(base)


def test_install_command_passes_the_central_policy(tmp_path):
    from dc2tasks.runs.loader import parse_run_config
    from dc2tasks.runs.params import validate_params
    from dc2tasks.runs.steps import install_command, plan_run

    data = {
        "name": "pol", "backend": "local", "repository": "/r", "tracts": [1], "products": ["object"],
        "working_dir": "/w", "pixel_scale": 0.2,
        "central": {"dir": "/c", "group": "lsst", "mode": "group", "group_managed": True},
    }  # fmt: skip
    config = parse_run_config(data, tmp_path / "pol.yaml")
    argv = install_command(config, plan_run(config, validate_params({}, config)), "object", "dc2")
    assert argv[argv.index("--mode") + 1] == "group" and "--group-managed" in argv
    default = parse_run_config({**data, "central": {"dir": "/c"}}, tmp_path / "pol.yaml")
    assert (default.central.mode, default.central.group_managed) == ("world", False)
    argv = install_command(default, plan_run(default, validate_params({}, default)), "object", "dc2")
    assert argv[argv.index("--mode") + 1] == "world" and "--group-managed" not in argv
    from dc2tasks.products.errors import InputError

    with pytest.raises(InputError, match=r"group_managed needs central\.group"):
        parse_run_config({**data, "central": {"dir": "/c", "group_managed": True}}, tmp_path / "pol.yaml")
    with pytest.raises(InputError, match=r"central\.mode"):
        parse_run_config({**data, "central": {"dir": "/c", "mode": "public"}}, tmp_path / "pol.yaml")


def test_an_unprivileged_account_installs_with_the_policy_modes(made, as_nobody):
    """As root every permission check passes; as an ordinary account a read-only staged directory
    could not be renamed into versions/ (rename(2) to another parent writes its `..`)."""
    base = Path(tempfile.mkdtemp(prefix="dc2-nobody-install-"))  # outside pytest's 0700 tmp directories
    try:
        os.chmod(base, 0o755)
        shutil.copytree(made.object_dir, base / "object")
        (base / "central").mkdir(mode=0o755)
        for path in [base / "object", *(base / "object").rglob("*"), base / "central"]:
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)

        def install() -> str:
            os.umask(0o002)
            result = install_product(
                base / "object", base / "central", "object", None, check=None, mode="group"
            )
            return result.version

        version = as_nobody(install)
        got = modes(base / "central" / "object")
        assert got["."] == got["versions"] == got["catalog_configs"] == "d0750"
        assert got[f"versions/{version}"] == got[f"versions/{version}/catalog_configs"] == "d0550"
        assert (
            got[f"versions/{version}/object_tract_4850.hdf5"]
            == got["catalog_configs/dc2_object_itest.yaml"]
            == "f0440"
        )
        assert got[".install.lock"] == "f0600"
        assert {p.lstat().st_uid for p in (base / "central").rglob("*")} == {NOBODY}
    finally:
        shutil.rmtree(base)
