"""The HDF5 pickle scan: what it accepts is what PyTables can only read as plain data; what it refuses
names file, node and attribute; and every HDF5 file the demo's steps make passes."""

from __future__ import annotations

import glob
import os
import pickle
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tables

from dc2tasks.products import hdf5_safety
from dc2tasks.products.errors import InputError
from dc2tasks.products.hdf5_safety import UnsafeHDF5Error, pickle_problem, scan_file, scan_tree

PLAIN_VALUES = [
    None,
    True,
    7,
    -(2**70),
    1.5,
    "frame",
    "é",
    b"bytes",
    bytearray(b"ba"),
    [1, "a", None],
    (1, (2, 3)),
    {"a": [1, 2], "b": {"c": None}},
    {1, 2},
    frozenset({"x"}),
    [(1, ["objectId", "ra"])],  # pandas' non_index_axes
]


# values PyTables stores as pickles of plain data (a big int or a set would pickle a numpy array or
# a call to set(): refused)
PICKLED_BY_PYTABLES = [None, [1, "a", None], (1, (2, 3)), {"a": [1, 2], "b": {"c": None}}, [(1, ["ra"])]]
VLEN_VALUE = np.empty(1, dtype=object)
VLEN_VALUE[0] = np.arange(3)


def marker_payload(marker: Path) -> bytes:
    """A pickle that creates `marker` when unpickled (protocol 0, ends in "." as PyTables wants)."""
    return f"cbuiltins\nopen\n(V{marker}\nVw\ntR.".encode()


def write_attr(path: Path, value, node: str = "/", **kwargs) -> None:
    with h5py.File(path, "a") as h5:
        target = h5.require_group(node) if node != "/" else h5
        target.attrs.create("planted", value, **kwargs)


def refusal(path: Path) -> UnsafeHDF5Error:
    with pytest.raises(UnsafeHDF5Error) as info:
        scan_file(path)
    err = info.value
    assert str(path) in str(err) and f"node {err.node}" in str(err)
    if err.attribute is not None:
        assert f"attribute {err.attribute!r}" in str(err)
    return err


# ---- the pickle rule itself ------------------------------------------------------------------


def calls_a_constructor(value, protocol: int) -> bool:
    """Older protocols pickle these built-ins as a call to their constructor (refused, rightly)."""
    return (
        (isinstance(value, bytearray) and protocol < 5)
        or (isinstance(value, bytes) and protocol < 3)
        or (isinstance(value, set | frozenset) and protocol < 4)
    )


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("value", PLAIN_VALUES, ids=repr)
def test_plain_data_pickles_are_accepted(value, protocol):
    problem = pickle_problem(pickle.dumps(value, protocol))
    if calls_a_constructor(value, protocol):
        assert problem is not None and "imports" in problem, problem
    else:
        assert problem is None, problem


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (pickle.dumps(os.getcwd, 0), "GLOBAL at byte 0 imports posix.getcwd"),
        (pickle.dumps(os.getcwd, 4), "STACK_GLOBAL at byte 28 imports posix.getcwd"),
        (pickle.dumps(np.float64(1.0), 0), "GLOBAL at byte 0 imports numpy"),
        (pickle.dumps(set(), 2), "GLOBAL at byte 2 imports __builtin__.set"),
        (b"N)R.", "REDUCE at byte 2 calls an object"),  # REDUCE with no import in sight
        (b"}}b.", "BUILD at byte 2 sets an object's state"),
        (b"(N)o.", "OBJ at byte 3 calls a class"),
        (b"\x80\x02N)\x81.", "NEWOBJ at byte 4 calls a class's __new__"),
        (b"(ios\nsystem\n.", "INST at byte 1 imports a class and calls it"),
        (b"\x80\x02\x82\x01.", "EXT1 at byte 2 imports through the copyreg extension registry"),
        (b"P1\n.", "PERSID at byte 0 asks the unpickler for an outside object"),
        (b"Some text.", "not a well-formed pickle"),
        (b"]\x01.", "not a well-formed pickle"),  # unknown opcode after a good start
        (b"(lp0\nI1\na", "not a well-formed pickle"),  # no STOP
    ],
)
def test_pickles_that_can_run_code_are_refused(data, words):
    problem = pickle_problem(data)
    assert problem is not None and words in problem, problem


def test_candidates_are_what_pytables_could_unpickle():
    assert hdf5_safety.may_be_unpickled(b"N.")
    assert hdf5_safety.may_be_unpickled(b"N.\0\0")  # NUL padding of a fixed-length string
    assert hdf5_safety.may_be_unpickled(b"\x80\x04K\x01")  # binary pickle, whatever its end
    assert not hdf5_safety.may_be_unpickled(b"frame")
    assert not hdf5_safety.may_be_unpickled(b"1.0")


# ---- files ------------------------------------------------------------------------------------


def test_plain_pickles_in_a_file_pass_and_pytables_reads_them_back(tmp_path):
    path = tmp_path / "plain.h5"
    with tables.open_file(str(path), "w") as h5:
        for i, value in enumerate(PICKLED_BY_PYTABLES):
            setattr(h5.root._v_attrs, f"v{i}", value)  # what numpy cannot hold: a protocol-0 pickle
    assert scan_file(path).pickles == len(PICKLED_BY_PYTABLES)
    with tables.open_file(str(path)) as h5:
        values = [getattr(h5.root._v_attrs, f"v{i}") for i in range(len(PICKLED_BY_PYTABLES))]
    assert values == PICKLED_BY_PYTABLES


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: np.bytes_(p), id="fixed ascii"),
        pytest.param(lambda p: np.array(p + b"\0\0", dtype=f"S{len(p) + 2}"), id="fixed nul-padded"),
        pytest.param(lambda p: np.array([[b"frame", p]]), id="fixed array"),
        pytest.param(lambda p: p.decode(), id="vlen utf-8"),
    ],
)
def test_a_planted_pickle_is_refused_and_never_run(tmp_path, make):
    path = tmp_path / "planted.h5"
    marker = tmp_path / "PWNED"
    write_attr(path, make(marker_payload(marker)), node="/coadd_4850_00")
    err = refusal(path)
    assert (err.node, err.attribute) == ("/coadd_4850_00", "planted")
    assert "imports builtins.open" in str(err)
    assert not marker.exists()


def test_a_utf8_fixed_length_pickle_is_refused(tmp_path):
    """PyTables 3.11 reads UTF-8 strings as str and does not unpickle them; others may: refused."""
    path = tmp_path / "utf8.h5"
    data = marker_payload(tmp_path / "m")
    write_attr(path, data, dtype=h5py.string_dtype("utf-8", len(data)))
    assert refusal(path).attribute == "planted"


def test_the_attribute_of_a_dataset_is_scanned(tmp_path):
    path = tmp_path / "ds.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("g").create_dataset("block0_values", data=np.zeros((3, 2)))
        h5["g/block0_values"].attrs["transposed"] = np.bytes_(pickle.dumps(os.getcwd, 0))
    err = refusal(path)
    assert (err.node, err.attribute) == ("/g/block0_values", "transposed")


@pytest.mark.parametrize(
    ("value", "kwargs", "kind"),
    [
        (VLEN_VALUE, {"dtype": h5py.vlen_dtype(np.int64)}, "variable-length"),
        (None, {}, "reference"),
        (np.void(b"\x80\x04N."), {}, "opaque"),
    ],
)
def test_object_typed_attributes_are_refused(tmp_path, value, kwargs, kind):
    path = tmp_path / "obj.h5"
    with h5py.File(path, "w") as h5:
        h5["x"] = np.arange(3)
        value = h5["x"].ref if value is None else value
        h5.attrs.create("planted", value, **kwargs)
    err = refusal(path)
    assert (err.node, err.attribute) == ("/", "planted")
    assert "object-typed" in str(err) and kind in str(err)


def test_an_object_atom_vlarray_is_refused(tmp_path):
    path = tmp_path / "vl.h5"
    with tables.open_file(str(path), "w") as h5:
        h5.create_vlarray("/", "objs", tables.ObjectAtom()).append([1, 2])
    err = refusal(path)
    assert (err.node, err.attribute) == ("/objs", "PSEUDOATOM")
    assert "ObjectAtom" in str(err)


def test_a_pandas_object_column_is_refused(tmp_path):
    """pandas' fixed format stores an object (and, in pandas 3, a string) column as ObjectAtom rows."""
    path = tmp_path / "fixed.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.DataFrame({"a": [1, 2], "s": ["x", "y"]}).to_hdf(path, key="df", format="fixed")
    err = refusal(path)
    assert err.node.startswith("/df/") and err.attribute == "PSEUDOATOM"


def test_vlstring_rows_and_pandas_table_metadata_pass(tmp_path):
    """What PyTables decodes without pickle, and pandas' table format, whose metadata are pickles of
    lists, dicts and strings (GCRCatalogs' photo-z readers read such files)."""
    path = tmp_path / "ok.h5"
    with tables.open_file(str(path), "w") as h5:
        h5.create_vlarray("/", "s", tables.VLStringAtom()).append(b"abc")
        h5.create_vlarray("/", "u", tables.VLUnicodeAtom()).append("é")
    pd.DataFrame({"a": np.arange(3.0), "b": np.arange(3)}).to_hdf(path, key="df", format="table", mode="a")
    report = scan_file(path)
    assert report.pickles >= 3  # non_index_axes, values_cols, info, ...
    assert pd.read_hdf(path, "df")["b"].tolist() == [0, 1, 2]


def test_a_pickled_pseudoatom_is_refused_even_when_plain(tmp_path):
    """A plain pickle of "object" would still make PyTables read the rows as ObjectAtom."""
    path = tmp_path / "pa.h5"
    with tables.open_file(str(path), "w") as h5:
        h5.create_vlarray("/", "s", tables.VLStringAtom()).append(b"abc")
    with h5py.File(path, "a") as h5:
        del h5["s"].attrs["PSEUDOATOM"]
        h5["s"].attrs["PSEUDOATOM"] = np.bytes_(pickle.dumps("object", 0))
    err = refusal(path)
    assert (err.node, err.attribute) == ("/s", "PSEUDOATOM") and "a pickled PSEUDOATOM" in str(err)


def test_links(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["data"] = np.arange(3)
    path = tmp_path / "links.h5"
    with h5py.File(path, "w") as h5:
        h5["g/data"] = np.arange(3)
        h5["g/alias"] = h5py.SoftLink("/g/data")
        h5["hard"] = h5["g/data"]  # a second hard link: scanned once
    assert scan_file(path).nodes == 3  # root, g, data

    with h5py.File(path, "a") as h5:
        h5["g/ext"] = h5py.ExternalLink(str(other), "/data")
    err = refusal(path)
    assert err.node == "/g/ext" and str(other) in str(err) and "external link" in str(err)

    with h5py.File(path, "a") as h5:
        del h5["g/ext"]
        h5["dangling"] = h5py.SoftLink("/nowhere")
    assert "does not resolve" in str(refusal(path))



def test_datasets_with_data_in_other_files_are_refused(tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(bytes(80))
    path = tmp_path / "ext.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("e", shape=(10,), dtype="f8", external=[(str(raw), 0, 80)])
    assert refusal(path).node == "/e" and "external raw files" in str(refusal(path))
    path = tmp_path / "virtual.h5"
    with h5py.File(path, "w") as h5:
        layout = h5py.VirtualLayout(shape=(3,), dtype="i8")
        layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "data", shape=(3,))
        h5.create_virtual_dataset("v", layout)
    assert refusal(path).node == "/v" and "virtual dataset" in str(refusal(path))


def test_a_soft_link_must_resolve_inside_the_file(tmp_path):
    path = tmp_path / "soft.h5"
    with h5py.File(path, "w") as h5:
        h5["a"] = h5py.SoftLink("/b/data")  # through another soft link
        h5["b"] = h5py.SoftLink("/g")
        h5["g/data"] = np.arange(2)
    assert scan_file(path).nodes == 3
    with h5py.File(path, "a") as h5:
        h5["loop1"] = h5py.SoftLink("/loop2")
        h5["loop2"] = h5py.SoftLink("/loop1/x")
    err = refusal(path)
    assert err.node in ("/loop1", "/loop2") and "hops" in str(err)


def test_a_non_hdf5_file_is_an_input_error(tmp_path):
    path = tmp_path / "x.hdf5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        scan_file(path)


def test_scan_tree_finds_hdf5_by_content_not_name(tmp_path):
    path = tmp_path / "sub" / "catalog.dat"
    path.parent.mkdir()
    write_attr(path, np.bytes_(marker_payload(tmp_path / "m")))
    (tmp_path / "readme.hdf5").write_text("text, not HDF5")
    assert hdf5_safety.hdf5_files(tmp_path) == [path]
    with pytest.raises(UnsafeHDF5Error):
        scan_tree(tmp_path)


# ---- our writers ------------------------------------------------------------------------------


def test_every_hdf5_file_the_demo_makes_passes(tmp_path, capsys):
    from dc2tasks.service.demo import run_demo

    assert run_demo(tmp_path, jobs=1, airflow=False) == 0
    out = capsys.readouterr().out
    by_content = []
    for dirpath, _, filenames in os.walk(tmp_path):
        by_content += [p for f in filenames if h5py.is_hdf5(p := Path(dirpath) / f)]
    by_name = [Path(p) for p in glob.glob(f"{tmp_path}/**/*.h*5", recursive=True)]
    assert sorted(by_content) == sorted(by_name) and len(by_content) >= 2  # object + trim at least
    for path in by_content:
        report = scan_file(path)
        assert report.nodes > 10 and report.pickles > 0, report  # index names: the pickle of None
        assert f"{path}: {report.nodes} nodes" in out  # and the demo said it scanned it
    assert f"HDF5 scan: {len(by_content)} file(s)" in out


def test_what_pytables_unpickles_from_accepted_files_is_plain_data():
    """Cross-check on real files from another writer: PyTables' own test files (many PyTables
    versions). For each file the scan accepts, every attribute PyTables reads is built-in data."""
    files = sorted(glob.glob(os.path.join(os.path.dirname(tables.__file__), "**", "*.h5"), recursive=True))
    assert len(files) > 20
    plain = (type(None), bool, int, float, str, bytes, list, tuple, dict, set, frozenset)
    plain += (np.generic, np.ndarray)  # what PyTables reads natively
    accepted = refused = 0
    for f in files:
        try:
            scan_file(f)
        except UnsafeHDF5Error:
            refused += 1
            continue
        accepted += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tables.open_file(f) as h5:
                for node in h5.walk_nodes("/"):
                    for name in node._v_attrs._v_attrnames:
                        value = getattr(node._v_attrs, name, None)
                        assert isinstance(value, plain) or name == "FILTERS", (f, node, name, type(value))
    assert accepted > 10 and refused > 0


@pytest.mark.parametrize("step", ["trim", "dpdd", "schema"])
def test_the_object_steps_scan_their_input_before_pytables_reads_it(tmp_path, step):
    from dc2tasks.products import gcr_schema, hdf5
    from dc2tasks.products.object_dpdd import dpdd_tract
    from dc2tasks.products.object_trim import trim_file

    source = tmp_path / "object_tract_4850.hdf5"
    with tables.open_file(str(source), "w") as h5:
        hdf5.write_frame(h5, "coadd_4850_00", [(["id"], np.arange(3).reshape(3, 1))], 3)
    marker = tmp_path / "PWNED"
    with h5py.File(source, "a") as h5:
        h5["coadd_4850_00"].attrs["pandas_type"] = np.bytes_(marker_payload(marker))
    run = {
        "trim": lambda: trim_file(source, tmp_path / "out"),
        "dpdd": lambda: dpdd_tract(source, tmp_path / "out"),
        "schema": lambda: gcr_schema.hdf5_schema([source]),
    }[step]
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeHDF5Error, match="node /coadd_4850_00, attribute 'pandas_type'"):
        run()
    assert not marker.exists() and not any((tmp_path / "out").iterdir())
