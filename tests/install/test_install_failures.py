"""Every way an install can fail stops before anything installed changes, and leaves no staging behind.

Each test installs a first version, prepares a second one, breaks it in one way, and compares a
full snapshot of the central directory (names, inodes, bytes, modes, link targets) before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from nobody import NOBODY

from dc2tasks.install import InstallError, ProductLayout, copy_and_hash, install_product
from dc2tasks.install.policy import ModePolicy
from dc2tasks.products.errors import InputError

CI = os.environ.get("CI") == "true"


@pytest.fixture
def v1_installed(source, central, rewrite_manifest):
    """Version 1 installed; `source` now holds version 2 (a regenerated schema yaml), manifest rewritten."""
    first = install_product(source, central, "object", None)
    with open(source / "trim_schema.yaml", "a") as fh:
        fh.write("# regenerated\n")
    rewrite_manifest(source)
    return first


def assert_unchanged(central: Path, before: dict, tree) -> None:
    assert tree(central) == before
    assert not list((central / "object").glob(".staging-*"))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checksum_mismatch(source, central, v1_installed, tree):
    before = tree(central)
    flip_byte(source / "object_tract_4850.hdf5", 5000)  # same size, different bytes
    with pytest.raises(InstallError) as info:
        install_product(source, central, "object", None)
    message = str(info.value)
    assert f"{source / 'object_tract_4850.hdf5'}: sha256 " in message
    assert "differs from the manifest's" in message and message.endswith("nothing installed changed")
    assert_unchanged(central, before, tree)


def test_missing_file(source, central, v1_installed, tree):
    before = tree(central)
    (source / "trim_object_tract_4850.hdf5").unlink()
    with pytest.raises(
        InstallError, match=r"trim_object_tract_4850\.hdf5: missing \(listed in the manifest\)"
    ):
        install_product(source, central, "object", None)
    assert_unchanged(central, before, tree)


def test_size_differs_and_extra_file(source, central, v1_installed, tree):
    before = tree(central)
    with open(source / "schema.yaml", "a") as fh:
        fh.write("# edited after the manifest\n")
    (source / "object_tract_4851.hdf5").write_bytes(b"not in the manifest")
    with pytest.raises(InstallError) as info:
        install_product(source, central, "object", None)
    assert "schema.yaml: " in str(info.value) and "bytes, the manifest says" in str(info.value)
    assert "object_tract_4851.hdf5: not in the manifest (rewrite it: dc2 manifest DIR)" in str(info.value)
    assert_unchanged(central, before, tree)


def test_chgrp_failure(source, central, v1_installed, tree):
    before = tree(central)
    calls = []

    def chown(fd, uid, gid):
        calls.append(fd)
        if len(calls) == 3:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        os.fchown(fd, uid, gid)

    with pytest.raises(
        InstallError, match=r"chgrp 100 .*: Operation not permitted; nothing installed changed"
    ):
        install_product(source, central, "object", "users", chown=chown)
    assert len(calls) == 3
    assert_unchanged(central, before, tree)


def test_disk_full_midway(source, central, v1_installed, tree):
    before = tree(central)
    copied = []

    def copy_until_full(src: int, dst: int) -> tuple[int, str]:
        if len(copied) == 1:
            os.write(dst, os.read(src, 1000))  # a partial file, as a real full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        copied.append(src)
        return copy_and_hash(src, dst)

    with pytest.raises(
        InstallError, match="no space left on the device while staging object; nothing installed"
    ):
        install_product(source, central, "object", None, copy_file=copy_until_full)
    assert_unchanged(central, before, tree)


def test_catalog_config_that_does_not_load(source, central, v1_installed, tree, rewrite_manifest):
    before = tree(central)
    config_path = source / "catalog_configs" / "dc2_object_itest.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["filename_pattern"] = r"trim_merged_tract_\d+\.hdf5$"  # the 1.2p v3 name: matches nothing here
    config_path.write_text(yaml.safe_dump(config))
    rewrite_manifest(source)
    with pytest.raises(InstallError, match=r"dc2_object_itest\.yaml: GCRCatalogs"):
        install_product(source, central, "object", None)
    assert_unchanged(central, before, tree)


def test_no_catalog_config_at_all(source, central, v1_installed, tree, rewrite_manifest):
    before = tree(central)
    shutil.rmtree(source / "catalog_configs")
    rewrite_manifest(source)
    with pytest.raises(InstallError, match=r"no GCRCatalogs config in catalog_configs/"):
        install_product(source, central, "object", None)
    assert_unchanged(central, before, tree)


def test_a_check_that_crashes(source, central, v1_installed, tree):
    before = tree(central)

    def crash(staged: Path) -> list[str]:
        raise RuntimeError("reader exploded")

    with pytest.raises(
        InstallError, match="object: RuntimeError: reader exploded; nothing installed changed"
    ):
        install_product(source, central, "object", None, check=crash)
    assert_unchanged(central, before, tree)


def test_edited_manifest_is_refused(source, central, v1_installed, tree):
    before = tree(central)
    data = json.loads((source / "manifest.json").read_text())
    data["files"][0]["size"] += 1
    (source / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="content_sha256 does not match its file list"):
        install_product(source, central, "object", None)
    assert_unchanged(central, before, tree)


def test_hostile_manifest_names_are_refused(source, central, tree):
    from dc2tasks.install.manifest import Manifest, manifest_from_json

    good = json.loads((source / "manifest.json").read_text())
    for name in ("../../etc/passwd", "/etc/passwd", "sub/../../x", ".hidden", "a b", "manifest.json"):
        data = {**good, "files": [{"name": name, "size": 1, "sha256": "0" * 64}]}
        data["content_sha256"] = Manifest(()).content_sha256  # irrelevant: the name is checked first
        with pytest.raises(InputError, match=r"plain relative file name|written by the install"):
            manifest_from_json(data, "m.json")
    assert list(central.iterdir()) == []


def test_a_second_install_at_the_same_time_is_refused(source, central, v1_installed, tree):
    before = tree(central)
    layout = ProductLayout(central.resolve(), "object")
    with layout.open(ModePolicy(os.getgid())) as held, held.lock():
        with pytest.raises(InstallError) as info:
            install_product(source, central, "object", None, lock_timeout=0.5)
    assert str(info.value) == (
        f"{layout.lock_path}: another install of object is running (held by pid {os.getpid()}, "
        "root (uid 0)); gave up after 0.5 s"
    )
    assert_unchanged(central, before, tree)


def _can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = tempfile.mkdtemp()
    try:
        ok = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True
        ).returncode
        if ok == 0:
            subprocess.run(["umount", probe], check=True)
        return ok == 0
    finally:
        os.rmdir(probe)


def test_a_really_full_disk(source, tmp_path, tree, rewrite_manifest):
    """A real ENOSPC: the central directory on a tmpfs too small for the second version."""
    if not _can_mount_tmpfs():
        if CI:
            pytest.fail("CI runs as root and must be able to mount a tmpfs for the real full-disk test")
        pytest.skip("needs root to mount a small tmpfs; test_disk_full_midway covers the logic")
    size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    central = tmp_path / "small-disk"
    central.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size + 300_000},mode=0755", "tmpfs", str(central)],
        check=True,
    )
    try:
        install_product(source, central, "object", None)
        (source / "padding.bin").write_bytes(os.urandom(size))  # version 2 cannot fit beside version 1
        rewrite_manifest(source)
        before = tree(central)
        free = shutil.disk_usage(central).free
        with pytest.raises(InstallError, match="no space left on the device"):
            install_product(source, central, "object", None)
        assert_unchanged(central, before, tree)
        assert shutil.disk_usage(central).free == free  # the partial staging copy is gone
    finally:
        subprocess.run(["umount", str(central)], check=True)


def _as_nobody(args: argparse.Namespace, as_nobody) -> tuple[int, str]:
    """Run the parsed `dc2 install` as `nobody`: (exit code, stderr)."""

    def run() -> list:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = args.func(args)
        return [code, err.getvalue()]

    code, err = as_nobody(run)
    return code, err


def test_chgrp_refused_by_the_system_for_an_unprivileged_account(made, as_nobody):
    """As `nobody`, a chgrp to a group it is not in fails for real (EPERM) and the install stops;
    so does a source file it cannot read."""
    from dc2tasks.cli import install as cli

    base = Path(tempfile.mkdtemp(prefix="dc2-nobody-"))  # outside pytest's 0700 tmp directories
    try:
        os.chmod(base, 0o755)
        shutil.copytree(made.object_dir, base / "object")
        central = base / "central"
        central.mkdir()
        for path in [base / "object", *(base / "object").rglob("*"), central]:
            os.chown(path, NOBODY, NOBODY)
        parser = argparse.ArgumentParser(prog="dc2")
        cli.register(parser.add_subparsers(dest="command"))
        argv = ["install", str(base / "object"), "--central", str(central), "--product", "object"]
        # --no-check: the catalog check is not the point here, and it imports modules lazily
        args = parser.parse_args([*argv, "--group", "root", "--no-check"])
        secret = base / "object" / "trim_schema.yaml"
        os.chown(secret, 0, 0)
        os.chmod(secret, 0o600)  # a file the producer forgot to open to the group
        code, err = _as_nobody(args, as_nobody)
        assert code == 2, err
        assert f"{secret}: this account cannot read it (the producer: dc2 manifest --group" in err
        os.chown(secret, NOBODY, NOBODY)
        code, err = _as_nobody(args, as_nobody)
        assert code == 2, err
        assert err.startswith("dc2 install: error: chgrp 0 ")
        assert "Operation not permitted; nothing installed changed" in err
        # no version, no current, no staging: only the lock file the install took
        assert sorted(p.name for p in (central / "object").iterdir()) == [".install.lock"]
    finally:
        shutil.rmtree(base)
