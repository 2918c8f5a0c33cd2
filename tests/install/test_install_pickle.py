"""The planted-pickle reproduction (issue #10, item 2) against the real `dc2 install` path.

A producer's trim file whose `pandas_type` attribute is a pickle that calls `open(marker, "w")` and
still gives "frame": GCRCatalogs -> pandas -> PyTables unpickles it when the install check loads the
catalog, and without the scan the install succeeds and makes the file current. The install
must refuse the file before GCRCatalogs sees it, naming file, node and attribute, and leave nothing
current; the marker proves the payload never ran.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dc2tasks.cli import install as cli
from dc2tasks.install.check import catalog_config_files


def dc2(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dc2")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


GROUP = "coadd_4850_00"  # the sample's first patch (tests/install/conftest.py's `made` has 0,0 and 0,1)


def payload(marker: Path) -> bytes:
    """Protocol 0, ending in "." as PyTables wants: `itemgetter(1)((open(marker, "w"), "frame"))`.

    It creates the marker and still unpickles to "frame", so pandas reads on and the load succeeds.
    """
    call_open = f"cbuiltins\nopen\n(V{marker}\nVw\ntR"
    return f"coperator\nitemgetter\n(I1\ntR(({call_open}Vframe\nttR.".encode()


@pytest.fixture
def planted(made, tmp_path) -> tuple[Path, Path]:
    """(product directory with a fresh manifest, marker path) with the payload in the trim file."""
    src = tmp_path / "producer" / "object"
    shutil.copytree(made.object_dir, src, ignore=shutil.ignore_patterns("manifest.json", "provenance.json"))
    marker = tmp_path / "PWNED"
    (trim,) = src.glob("trim_object_tract_*.hdf5")
    with h5py.File(trim, "r+") as h5:
        assert GROUP in h5, sorted(h5)
        del h5[GROUP].attrs["pandas_type"]
        h5[GROUP].attrs.create("pandas_type", np.bytes_(payload(marker)))
    assert dc2("manifest", str(src), "--group", "users") == 0  # the checksums of the planted file
    return src, marker


def test_without_the_scan_gcrcatalogs_runs_the_planted_pickle(planted):
    """The payload is real: loading the product through GCRCatalogs, as the check did, runs it."""
    src, marker = planted
    (config,) = [p for p in catalog_config_files(src) if p.stem == "dc2_object_itest"]
    code = (
        "import sys; from pathlib import Path\n"
        "from dc2tasks.install.check import load_with_gcr, read_catalog_config\n"
        "cat = load_with_gcr(read_catalog_config(Path(sys.argv[1])), Path(sys.argv[2]))\n"
        "print(len(cat.get_quantities(['objectId'])['objectId']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(config), str(src)], capture_output=True, text=True)
    assert marker.exists()
    assert r.returncode == 0 and int(r.stdout) > 0, r.stderr  # and the catalog loads as if nothing happened


@pytest.mark.parametrize("extra", [[], ["--no-check"]])
def test_install_refuses_the_planted_pickle(planted, tmp_path, capsys, extra):
    src, marker = planted
    central = tmp_path / "central"
    central.mkdir()
    argv = ["--central", str(central), "--product", "object", "--group", "users", *extra]
    rc = dc2("install", str(src), *argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert "trim_object_tract_4850.hdf5" in err
    assert f"node /{GROUP}, attribute 'pandas_type'" in err
    assert "opcode GLOBAL at byte 0 imports operator.itemgetter" in err
    assert "nothing installed changed" in err
    assert not marker.exists()
    product = central / "object"
    assert not (product / "current").exists() and not (product / "current").is_symlink()
    assert not any((product / "versions").glob("*")) if (product / "versions").exists() else True
    assert not [p for p in product.glob(".staging-*")] if product.exists() else True


def test_install_still_installs_our_own_files(made, tmp_path, capsys):
    """Control: the same path, unplanted, installs and reports the scan among its checks."""
    src = tmp_path / "producer" / "object"
    shutil.copytree(made.object_dir, src)
    central = tmp_path / "central"
    central.mkdir()
    assert dc2("install", str(src), "--central", str(central), "--product", "object", "--group", "users") == 0
    out = capsys.readouterr().out
    assert "checked: HDF5 scan: 2 file(s)" in out, out
    assert (central / "object" / "current").is_symlink()
