"""The install's normal paths: fresh, repeated, new version beside the old, permissions, provenance,
dry run, and the collaboration's own reader (real GCRCatalogs) on what was installed."""

from __future__ import annotations

import grp
import json
import os
import stat
import warnings
from pathlib import Path

import GCRCatalogs
import numpy as np
import pandas as pd
import pytest
import yaml
from GCRCatalogs import ConfigSource

from dc2tasks import __version__
from dc2tasks.install import InstallError, install_product, read_manifest

ConfigSource.set_config_source(dr=False)
USERS_GID = grp.getgrnam("users").gr_gid


def load_installed(config_path: Path):
    config = yaml.safe_load(config_path.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GCRCatalogs.load_catalog_from_config_dict(config)


def test_fresh_install(source, central):
    manifest = read_manifest(source / "manifest.json")
    result = install_product(source, central, "object", "users")
    product = central / "object"
    assert result.status == "installed"
    assert result.previous is None
    assert os.readlink(product / "current") == f"versions/{result.version}"
    assert result.version.endswith("-" + manifest.content_sha256[:12])
    installed = product / "versions" / result.version
    names = sorted(str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file())
    assert names == sorted([f.name for f in manifest.files] + ["manifest.json", "provenance.json"])
    for f in manifest.files:
        assert (installed / f.name).read_bytes() == (source / f.name).read_bytes()
    assert result.files == len(manifest.files) == 6  # 2 HDF5 files, 2 schema yamls, 2 catalog configs
    assert sorted(p.name for p in result.catalog_configs) == [
        "dc2_object_itest.yaml",
        "dc2_object_itest_all_columns.yaml",
    ]
    for cfg in result.catalog_configs:
        assert yaml.safe_load(cfg.read_text())["base_dir"] == str(central.resolve() / "object" / "current")
    assert result.checks[0].startswith("HDF5 scan: 2 file(s), ")  # before GCRCatalogs opens them
    assert result.checks[1:] == [
        "dc2_object_itest: 135 quantities, loads",
        "dc2_object_itest_all_columns: 135 quantities, loads",
    ]
    assert not list(product.glob(".staging-*"))


def test_installed_catalogs_load_with_gcrcatalogs(made, source, central, tmp_path):
    """The collaboration's reader, through the installed config, sees the producer's rows and values."""
    install_product(source, central, "object", None)
    trim = load_installed(central / "object" / "catalog_configs" / "dc2_object_itest.yaml")
    data = trim.get_quantities(["objectId", "mag_i", "tract", "patch"])
    assert len(data["objectId"]) == sum(made.pipeline.rows.values())
    ours = pd.concat(pd.read_parquet(p) for p in made.pipeline.files["dpdd_object"])
    np.testing.assert_array_equal(data["objectId"], ours["objectId"].to_numpy())
    np.testing.assert_allclose(data["mag_i"], ours["mag_i"].to_numpy(), rtol=1e-12, equal_nan=True)
    assert set(np.unique(data["tract"])) == {4850}

    dpdd_src = tmp_path / "producer" / "dpdd_object"
    import shutil

    shutil.copytree(made.dpdd_dir, dpdd_src)
    install_product(dpdd_src, central, "dpdd_object", None)
    dpdd = load_installed(central / "dpdd_object" / "catalog_configs" / "dc2_object_itest_dpdd.yaml")
    got = dpdd.get_quantities(["objectId", "psFlux_r"])
    np.testing.assert_array_equal(got["objectId"], ours["objectId"].to_numpy())
    np.testing.assert_array_equal(got["psFlux_r"], ours["psFlux_r"].to_numpy())


def test_second_identical_install_changes_nothing(source, central, tree):
    first = install_product(source, central, "object", "users")
    before = tree(central)
    current = (central / "object" / "current").lstat()
    second = install_product(source, central, "object", "users")
    assert second.status == "unchanged"
    assert second.version == first.version
    assert tree(central) == before
    after = (central / "object" / "current").lstat()
    assert (after.st_ino, after.st_mtime_ns) == (current.st_ino, current.st_mtime_ns)


def test_new_version_beside_the_old_and_readers_keep_the_old_until_the_switch(
    source, central, rewrite_manifest
):
    first = install_product(source, central, "object", None)
    old_bytes = (source / "trim_schema.yaml").read_bytes()
    reader = open(central / "object" / "current" / "trim_schema.yaml", "rb")  # held open across the install
    try:
        (source / "trim_schema.yaml").write_bytes(old_bytes + b"# regenerated\n")
        rewrite_manifest(source)
        second = install_product(source, central, "object", None)
        assert reader.read() == old_bytes  # opened before the switch: still the old version's bytes
    finally:
        reader.close()
    assert second.status == "installed"
    assert second.previous == first.version
    assert second.version != first.version
    versions = central / "object" / "versions"
    assert sorted(p.name for p in versions.iterdir()) == sorted([first.version, second.version])
    assert (versions / first.version / "trim_schema.yaml").read_bytes() == old_bytes
    assert (
        central / "object" / "current" / "trim_schema.yaml"
    ).read_bytes() == old_bytes + b"# regenerated\n"
    assert os.readlink(central / "object" / "current") == f"versions/{second.version}"
    # and the configs did not need to change: they point at `current`
    load_installed(central / "object" / "catalog_configs" / "dc2_object_itest.yaml").get_quantities(
        ["objectId"]
    )


def test_force_installs_identical_content_as_a_new_version(source, central):
    first = install_product(source, central, "object", None)
    again = install_product(source, central, "object", None, force=True)
    assert again.status == "installed"
    assert again.version != first.version and again.previous == first.version
    assert again.version.split("-")[1] == first.version.split("-")[1]  # same content hash


def test_permissions_and_group(source, central):
    result = install_product(source, central, "object", "users")
    version = central / "object" / "versions" / result.version
    paths = [version, *version.rglob("*")]
    assert len(paths) == 10  # the version, 4 data files, catalog_configs/ and its 2, manifest, provenance
    for path in paths:
        st = path.lstat()
        assert st.st_gid == USERS_GID, path
        assert st.st_mode & stat.S_IRGRP, path
        assert not st.st_mode & stat.S_IWOTH, path
        if stat.S_ISDIR(st.st_mode):
            assert st.st_mode & stat.S_IXGRP, path
            assert not st.st_mode & stat.S_IWGRP, path
        else:
            assert not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP), path  # an installed file is never edited
    for cfg in result.catalog_configs:
        st = cfg.stat()
        assert st.st_gid == USERS_GID and st.st_mode & stat.S_IRGRP and not st.st_mode & stat.S_IWOTH


def test_provenance_record(made, source, central):
    manifest = read_manifest(source / "manifest.json")
    result = install_product(source, central, "object", None, jobs=[{"JobID": "77", "State": "COMPLETED"}])
    record = json.loads((central / "object" / "current" / "provenance.json").read_text())
    assert record["format"] == "dc2tasks-provenance/1"
    assert record["product"] == "object"
    assert record["version"] == result.version
    assert record["run"] == "itest"
    assert record["run_config_hash"] == "c0ffee" * 10 + "abcd"
    assert record["inputs"] == {"repository": str(made.sample_root), "rerun": made.rerun}
    assert record["jobs"] == [
        {"exit_code": "0:0", "job_id": "4242_0", "name": "dc2-demo-merge_tract", "state": "COMPLETED",
         "elapsed_s": 62, "max_rss_bytes": 2048 * 1024},
        {"job_id": "4243", "state": "COMPLETED", "elapsed_s": 5, "max_rss_bytes": 1000},
        {"job_id": "77", "state": "COMPLETED"},
    ]  # fmt: skip
    assert record["outputs"]["content_sha256"] == manifest.content_sha256
    assert record["outputs"]["files"] == [
        {"name": f.name, "size": f.size, "sha256": f.sha256} for f in manifest.files
    ]
    assert record["package"] == {
        "name": "dc2tasks",
        "produced_with": __version__,
        "installed_with": __version__,
    }
    assert record["timestamps"]["produced"] == manifest.created
    assert record["timestamps"]["installed"][:4] == result.version[:4]
    assert record["installed_by"]["uid"] == os.getuid()
    assert record["installed_by"]["central_dir"] == str(central.resolve())
    assert set(record["produced_by"]) == {"user", "host"}


def test_dry_run_checks_and_changes_nothing(source, central, tree):
    install_product(source, central, "object", "users")
    before = tree(central)
    dir_times = (central / "object").stat().st_mtime_ns
    result = install_product(source, central, "object", "users", dry_run=True)
    assert result.status == "dry-run"
    assert result.checks[0] == f"{central.resolve() / 'object'}: writable, chgrp to gid {USERS_GID} allowed"
    assert result.checks[-1] == "identical to the current version: the install would do nothing"
    assert tree(central) == before
    assert (central / "object").stat().st_mtime_ns == dir_times


def test_dry_run_before_anything_is_made(tmp_path, central):
    result = install_product(tmp_path / "not-made-yet", central, "object", "users", dry_run=True)
    assert result.status == "dry-run" and result.version is None
    assert result.checks[1].endswith("no manifest yet (the products are not made); files not checked")
    assert list(central.iterdir()) == []


def test_dry_run_reports_a_chgrp_it_could_not_do(source, central):
    def refuse(path, uid, gid, follow_symlinks=True):
        raise PermissionError(1, "Operation not permitted")

    with pytest.raises(
        InstallError, match=f"{central.resolve()}: this account cannot chgrp to gid {USERS_GID}"
    ):
        install_product(source, central, "object", "users", dry_run=True, chown=refuse)
    assert list(central.iterdir()) == []


def test_a_current_that_is_not_ours_is_never_replaced(source, central):
    (central / "object").mkdir()
    (central / "object" / "current").mkdir()
    (central / "object" / "current" / "precious.txt").write_text("hand-installed")
    with pytest.raises(InstallError, match="exists and is not a symlink"):
        install_product(source, central, "object", None)
    assert (central / "object" / "current" / "precious.txt").read_text() == "hand-installed"
