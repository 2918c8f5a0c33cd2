"""`dc2 manifest` and `dc2 install` through an argparse parser, as dc2tasks.cli registers them."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from dc2tasks.cli import install as cli
from dc2tasks.install import read_manifest


def dc2(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dc2")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_install_help_explains_the_steps(capsys):
    with pytest.raises(SystemExit) as info:
        dc2("install", "--help")
    assert info.value.code == 0
    out = capsys.readouterr().out
    for words in (
        "staging",
        "sha256",
        "chgrp -R GROUP",
        "current",
        "--dry-run",
        "--catalog-base-dir",
        "previous",
    ):
        assert words in out, words


def test_manifest_then_install_then_again(made, tmp_path, capsys):
    src = tmp_path / "object"
    shutil.copytree(made.object_dir, src, ignore=shutil.ignore_patterns("manifest.json", "provenance.json"))
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"JobID": "9", "State": "COMPLETED", "Elapsed": "1-00:00:01"}]))
    assert dc2("manifest", str(src), "--jobs", str(jobs), "--group", "users") == 0
    manifest = read_manifest(src / "manifest.json")
    assert capsys.readouterr().out == (
        f"{src / 'manifest.json'}: {len(manifest.files)} files, {manifest.total_bytes} bytes, "
        f"content sha256 {manifest.content_sha256}\n"
    )
    assert json.loads((src / "provenance.json").read_text())["jobs"][0]["elapsed_s"] == 86401
    central = tmp_path / "central"
    central.mkdir()
    base = "^/DC2-prod/test/dpdd/object/current"
    assert dc2("install", str(src), "--central", str(central), "--product", "object", "--group", "users",
               "--catalog-base-dir", base, "--json") == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "installed" and result["previous"] is None
    assert result["files"] == len(manifest.files)
    assert (central / "object" / "catalog_configs" / "dc2_object_itest.yaml").read_text().count(
        f"base_dir: {base}"
    ) == 1
    assert dc2("install", str(src), "--central", str(central), "--product", "object", "--group", "users") == 0
    assert capsys.readouterr().out.startswith(f"object: already installed, version {result['version']} ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--central", "{tmp}/missing", "--product", "object"], "the central directory does not exist"),
        (["--central", "{tmp}", "--product", "../etc"], "product '../etc': lower-case letters"),
        (["--central", "{tmp}", "--product", "object", "--group", "no-such-group-x"],
         "group 'no-such-group-x' does not exist on this machine"),
        (["--central", "{tmp}", "--product", "object"], "no manifest (write one with `dc2 manifest DIR`)"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, argv, message):
    src = tmp_path / "empty-product"
    src.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert dc2("install", str(src), *(a.format(tmp=tmp_path) for a in argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("dc2 install: error: ")
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_manifest_with_inputs_and_jobs_from_stdin(made, tmp_path, monkeypatch, capsys):
    """What the DAG runs over SSH: no run file there, the job records on stdin."""
    import io

    src = tmp_path / "object"
    shutil.copytree(made.object_dir, src, ignore=shutil.ignore_patterns("manifest.json", "provenance.json"))
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps([{"JobID": "5_1", "State": "COMPLETED"}])))
    argv = ["--run", "demo", "--run-config-hash", "ab" * 32, "--input", "rerun=multiband", "--jobs", "-"]
    assert dc2("manifest", str(src), *argv) == 0
    record = json.loads((src / "provenance.json").read_text())
    assert record == {"run": "demo", "run_config_hash": "ab" * 32, "inputs": {"rerun": "multiband"},
                      "jobs": [{"job_id": "5_1", "state": "COMPLETED"}]}  # fmt: skip
    assert dc2("manifest", str(src), "--input", "oops") == 2
    assert "--input 'oops': expected KEY=VALUE" in capsys.readouterr().err


def test_the_inventory_report_goes_into_the_installed_provenance(made, tmp_path, capsys):
    src = tmp_path / "object"
    shutil.copytree(made.object_dir, src, ignore=shutil.ignore_patterns("manifest.json", "provenance.json"))
    report = {"repository": "/repo", "files": 12, "products": {"object": {"status": "partial",
              "reason": "patch 3,3 missing"}}}  # fmt: skip
    (tmp_path / "inventory.json").write_text(json.dumps(report))
    assert dc2("manifest", str(src), "--run", "demo", "--inventory", str(tmp_path / "inventory.json")) == 0
    assert json.loads((src / "provenance.json").read_text())["inventory"] == report
    central = tmp_path / "central"
    central.mkdir()
    assert dc2("install", str(src), "--central", str(central), "--product", "object", "--json") == 0
    version = json.loads(capsys.readouterr().out.split("\n", 1)[1])["version"]
    installed = json.loads((central / "object" / "versions" / version / "provenance.json").read_text())
    assert installed["inventory"] == report and installed["run"] == "demo"
    (tmp_path / "bad.json").write_text(json.dumps([1, 2]))
    assert dc2("manifest", str(src), "--inventory", str(tmp_path / "bad.json")) == 2
    assert "bad.json: not a `dc2 inventory` report (no 'products' mapping)" in capsys.readouterr().err


def test_manifest_of_an_empty_directory_exits_2(tmp_path, capsys):
    assert dc2("manifest", str(tmp_path)) == 2
    assert capsys.readouterr().err == f"dc2 manifest: error: {tmp_path}: no files to put in a manifest\n"


def test_install_mode_group_managed_and_lock_timeout_options(made, tmp_path, capsys):
    """The options the DAG passes from the run file's `central` section reach the install."""
    import grp
    import os
    import stat

    from dc2tasks.install import ProductLayout
    from dc2tasks.install.policy import ModePolicy

    users = grp.getgrnam("users").gr_gid
    src = tmp_path / "object"
    shutil.copytree(made.object_dir, src)
    central = tmp_path / "central"
    central.mkdir()
    os.chown(central, -1, users)
    os.chmod(central, 0o3775)
    argv = ["install", str(src), "--central", str(central), "--product", "object", "--group", "users"]
    assert dc2(*argv, "--mode", "group", "--no-check") == 2
    assert f"{central}: is writable by its group" in capsys.readouterr().err
    assert dc2(*argv, "--mode", "group", "--group-managed", "--no-check", "--json") == 0
    version = central / "object" / "versions" / json.loads(capsys.readouterr().out)["version"]
    assert stat.S_IMODE(version.stat().st_mode) == 0o2550
    assert stat.S_IMODE((version / "schema.yaml").stat().st_mode) == 0o440
    policy = ModePolicy(users, "group", group_managed=True)
    with ProductLayout(central, "object").open(policy) as tree, tree.lock():
        assert dc2(*argv, "--group-managed", "--force", "--lock-timeout", "0.3") == 2
    err = capsys.readouterr().err
    assert "another install of object is running (held by pid " in err
    assert err.endswith("gave up after 0.3 s\n")
