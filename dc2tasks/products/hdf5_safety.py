"""Refuse an HDF5 file that would make PyTables or pandas run code when it is read.

Why: reading an HDF5 file through pandas or PyTables (as GCRCatalogs' object reader does) hands some
values of the file to `pickle.loads`, and a pickle can import and call any function. A file made by
another account (the producer's, for the install check run as the collaboration account; any file
in the central area, for every reader) must therefore be looked at, before pandas or PyTables open
it, with a reader that never unpickles: h5py.

What PyTables unpickles (tables 3.11: tables/attributeset.py, tables/vlarray.py, tables/atom.py):
- an attribute value read as a byte string that ends in "." (`AttributeSet.__getattr__`: PyTables
  stores every value numpy cannot hold as a protocol-0 pickle, and recognises them by that "."). It
  does so for scalar fixed- and variable-length ASCII strings, NUL padding stripped; other PyTables
  versions may differ, so the scan looks at every string attribute whatever its shape or charset;
- every row of a VLArray whose PSEUDOATOM attribute is "object" (ObjectAtom), or whose FLAVOR is
  "Object" in a PyTables 1.x file: pandas' "fixed" format stores object (and, in pandas 3, string)
  columns that way.
A reader also follows HDF5 external links into other files, which the scan cannot vouch for.

The rule, checked on every group, dataset, named datatype, attribute and link reachable from the
root (each object once, however many hard links lead to it):

1. A numeric attribute (integer, float, bitfield, enum; compound or array of those) is data.
2. Each value of a string attribute (fixed or variable length, ASCII or UTF-8, any shape) that some
   PyTables could take for a pickle (it ends in "." once NUL padding and white space are stripped, or
   starts with the PROTO byte 0x80 of a binary pickle) must parse, with `pickletools.genops` (a parser:
   nothing is imported or run), as one complete pickle made only of PLAIN_OPCODES: numbers, strings,
   bytes, None/True/False, lists, tuples, dicts, sets, and stack and memo bookkeeping. A pickle that
   can import nothing and call nothing can only build those built-in values, so it cannot run code.
   Everything else is refused: the opcodes that import (GLOBAL, STACK_GLOBAL, EXT1/2/4), call or
   build objects (REDUCE, BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX) or ask for outside objects (PERSID,
   BINPERSID, NEXT_BUFFER, READONLY_BUFFER), any opcode this Python does not know, and a value that
   ends in "." without being a well-formed pickle (where the parser gives up the C unpickler may read
   on, and the opcodes before that point would have run).
3. The PyTables system attributes that choose how a node is decoded (DECODING_ATTRIBUTES) must not be
   pickles at all: a harmless pickle of the string "object" there would turn a node into an ObjectAtom
   array, and a pickled FILTERS is rewritten by PyTables before unpickling, so what would be loaded is
   not what was parsed.
4. Any other attribute type (variable-length sequences, references, opaque, time) is object-typed and
   refused: no PyTables or pandas metadata has that type.
5. PSEUDOATOM may only be "vlstring" or "vlunicode" (decoded without pickle), and FLAVOR not "Object";
   a dataset of variable-length sequence type needs one of those two pseudo-atoms (without, PyTables
   reads it as numbers, but then it is not something our readers read). Object rows are refused
   outright rather than parsed: pandas writes them as pickled numpy arrays, which always import
   numpy's reconstructor and so could never pass rule 2. A dataset of reference type is refused: a
   reference reaches objects no link leads to, which this walk does not scan.
6. An external link is refused, as is a user-defined link, a dataset whose data is stored in external
   raw files and a virtual dataset (both make a reader open other files). A soft link (a path in the
   same file) must resolve, through at most MAX_SOFT_HOPS soft links and no external link, to an
   object of the file: every object reachable by hard links is scanned, so it leads to scanned data;
   a dangling one is refused as broken.

Our own writers pass: PyTables stores an index's `name = None` as the pickle b"N.", and pandas'
"table" format stores its metadata (`non_index_axes`, `info`, `values_cols`, ...) as protocol-0
pickles of lists, dicts, tuples and strings: plain data. A DatetimeIndex's `freq` (a DateOffset)
pickles a class reference and is refused, correctly: it is a pickle that imports.

Cost: metadata only. No dataset value is read, attribute values only for strings: about 0.1 ms per
attribute, so well under a second for a tract file's ~1,000 nodes, which hold gigabytes to read.

Not covered: what happens after the scan. A file changed in place after it was scanned (by its
owner, or by anyone who can write it) is read as changed; the install check scans the staged copy,
which only the installing account can write. Nor are non-HDF5 readers (Parquet) covered here.
"""

from __future__ import annotations

import os
import pickletools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dc2tasks.products.errors import InputError

PLAIN_OPCODES = frozenset(
    {
        # numbers, None, booleans
        "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
        "NONE", "NEWTRUE", "NEWFALSE",
        # str, bytes, bytearray
        "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
        "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
        # containers of the above
        "EMPTY_LIST", "APPEND", "APPENDS", "LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
        "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS", "EMPTY_SET", "ADDITEMS", "FROZENSET",
        # stack, memo and framing
        "MARK", "POP", "POP_MARK", "DUP", "GET", "BINGET", "LONG_BINGET", "PUT", "BINPUT",
        "LONG_BINPUT", "MEMOIZE", "PROTO", "FRAME", "STOP",
    }
)  # fmt: skip
"""Opcodes that only push built-in values or move them around: none imports, calls or builds objects."""

# what each code-capable opcode would do, for the error message
_WHY = {
    "GLOBAL": "imports",
    "STACK_GLOBAL": "imports",
    "EXT1": "imports through the copyreg extension registry",
    "EXT2": "imports through the copyreg extension registry",
    "EXT4": "imports through the copyreg extension registry",
    "REDUCE": "calls an object",
    "BUILD": "sets an object's state (may call its __setstate__)",
    "INST": "imports a class and calls it",
    "OBJ": "calls a class",
    "NEWOBJ": "calls a class's __new__",
    "NEWOBJ_EX": "calls a class's __new__",
    "PERSID": "asks the unpickler for an outside object",
    "BINPERSID": "asks the unpickler for an outside object",
    "NEXT_BUFFER": "asks the unpickler for an out-of-band buffer",
    "READONLY_BUFFER": "changes an out-of-band buffer",
}

DECODING_ATTRIBUTES = frozenset({"CLASS", "FLAVOR", "PSEUDOATOM", "FILTERS"})
STRING_PSEUDOATOMS = (b"vlstring", b"vlunicode")
MAX_SOFT_HOPS = 16  # HDF5's own default limit on soft links followed in one path (H5L_NUM_LINKS)

_NUMERIC = frozenset({h5py.h5t.INTEGER, h5py.h5t.FLOAT, h5py.h5t.BITFIELD, h5py.h5t.ENUM})
_CLASS_NAMES = {
    h5py.h5t.VLEN: "variable-length sequence",
    h5py.h5t.REFERENCE: "reference",
    h5py.h5t.OPAQUE: "opaque",
    h5py.h5t.TIME: "time",
}


class UnsafeHDF5Error(InputError):
    """An HDF5 file holds something pandas or PyTables would unpickle or follow out of the file."""

    def __init__(self, path: Path, node: str, attribute: str | None, reason: str) -> None:
        self.path, self.node, self.attribute, self.reason = path, node, attribute, reason
        where = f"node {node}" + (f", attribute {attribute!r}" if attribute is not None else "")
        super().__init__(
            f"{path}: {where}: {reason}; refused: pandas/PyTables would unpickle it or leave the file"
        )


@dataclass
class ScanReport:
    path: Path
    nodes: int = 0
    attributes: int = 0
    pickles: int = 0  # pickled values found to be plain data


def may_be_unpickled(value: bytes) -> bool:
    """Whether some PyTables could take this string for a pickle (see the module docstring)."""
    value = value.rstrip(b"\0")
    return value.rstrip().endswith(b".") or value.startswith(b"\x80")


def pickle_problem(data: bytes) -> str | None:
    """None if `data` is one complete pickle of plain data; otherwise what is wrong with it.

    Parsed with pickletools.genops, which decodes opcodes and their arguments and executes nothing.
    """
    strings: list[str] = []  # string arguments so far: STACK_GLOBAL imports the last two
    try:
        for op, arg, pos in pickletools.genops(data.rstrip(b"\0")):
            if op.name not in PLAIN_OPCODES:
                return f"a pickle whose opcode {op.name} at byte {pos} {_what(op.name, arg, strings)}"
            if isinstance(arg, str):
                strings.append(arg)
    except Exception as exc:  # genops raises ValueError, UnicodeDecodeError, ... on malformed input
        return f"a value ending in '.' that is not a well-formed pickle of plain data ({exc})"
    return None


def _what(name: str, arg: object, strings: list[str]) -> str:
    why = _WHY.get(name, "is not a plain-data opcode")
    if name == "GLOBAL" and isinstance(arg, str):
        return f"{why} {arg.replace(' ', '.')}"
    if name == "STACK_GLOBAL" and len(strings) >= 2:
        return f"{why} {strings[-2]}.{strings[-1]}"
    return why


def _strings(value: object) -> Iterator[bytes]:
    """Every string of an attribute value as its bytes (h5py gives variable-length ones as str)."""
    if isinstance(value, h5py.Empty):
        return
    for item in np.asarray(value, dtype=object).ravel():
        yield bytes(item) if isinstance(item, bytes) else str(item).encode("utf-8", "surrogateescape")


def _is_numeric(tid: h5py.h5t.TypeID) -> bool:
    cls = tid.get_class()
    if cls in _NUMERIC:
        return True
    if cls == h5py.h5t.COMPOUND:
        return all(_is_numeric(tid.get_member_type(i)) for i in range(tid.get_nmembers()))
    if cls == h5py.h5t.ARRAY:
        return _is_numeric(tid.get_super())
    return False


class _Scan:
    def __init__(self, path: Path, h5: h5py.File) -> None:
        self.path = path
        self.h5 = h5
        self.report = ScanReport(path)
        self.node = "/"  # where the scan is, for an error h5py raises mid-walk

    def refuse(self, node: str, attribute: str | None, reason: str) -> UnsafeHDF5Error:
        return UnsafeHDF5Error(self.path, node, attribute, reason)

    def run(self) -> ScanReport:
        seen = {self.h5.id}
        soft: list[tuple[str, str, str]] = []  # (link path, its group, target)
        self.check_object("/", self.h5)
        groups: list[tuple[str, h5py.Group]] = [("/", self.h5)]
        while groups:
            gpath, group = groups.pop()
            for name in group:
                self.node = path = gpath.rstrip("/") + "/" + name
                link = group.get(name, getlink=True)
                if isinstance(link, h5py.SoftLink):
                    soft.append((path, gpath, link.path))
                    continue
                if isinstance(link, h5py.ExternalLink):
                    raise self.refuse(
                        path,
                        None,
                        f"an external link to {link.filename}:{link.path} (a reader would open that file)",
                    )
                if not isinstance(link, h5py.HardLink):
                    raise self.refuse(path, None, f"a link of unknown kind ({type(link).__name__})")
                obj = group[name]
                if obj.id in seen:
                    continue
                seen.add(obj.id)
                self.check_object(path, obj)
                if isinstance(obj, h5py.Group):
                    groups.append((path, obj))
        for path, gpath, target in soft:
            self.node = path
            self.resolve(path, gpath, target)
        return self.report

    def check_object(self, path: str, obj: h5py.HLObject) -> None:
        self.node = path
        self.report.nodes += 1
        for name in obj.attrs:
            self.check_attribute(path, obj.attrs, name)
        if isinstance(obj, h5py.Dataset):
            self.check_dataset(path, obj)

    def check_attribute(self, path: str, attrs: h5py.AttributeManager, name: str) -> None:
        self.report.attributes += 1
        tid = attrs.get_id(name).get_type()
        if _is_numeric(tid):
            return
        cls = tid.get_class()
        if cls != h5py.h5t.STRING:
            kind = _CLASS_NAMES.get(
                cls, "compound with non-numeric members" if cls == h5py.h5t.COMPOUND else f"HDF5 class {cls}"
            )
            raise self.refuse(path, name, f"an object-typed value ({kind})")
        for raw in _strings(attrs[name]):
            if not may_be_unpickled(raw):
                continue
            if name in DECODING_ATTRIBUTES:
                raise self.refuse(
                    path, name, f"a pickled {name}, which decides how PyTables decodes the node"
                )
            problem = pickle_problem(raw)
            if problem is not None:
                raise self.refuse(path, name, problem)
            self.report.pickles += 1

    def check_dataset(self, path: str, dset: h5py.Dataset) -> None:
        attrs = dset.attrs
        pseudo = _plain_string(attrs, "PSEUDOATOM")
        if pseudo is not None and pseudo not in STRING_PSEUDOATOMS:
            raise self.refuse(
                path, "PSEUDOATOM", f"{pseudo!r} rows (PyTables ObjectAtom: every row is unpickled)"
            )
        flavor = _plain_string(attrs, "FLAVOR")
        if flavor is not None and flavor.lower() == b"object":
            raise self.refuse(
                path, "FLAVOR", "'Object' rows (PyTables 1.x object array: every row is unpickled)"
            )
        cls = dset.id.get_type().get_class()
        if cls == h5py.h5t.VLEN and pseudo is None:
            raise self.refuse(
                path,
                None,
                "variable-length rows that are not a PyTables string pseudo-atom "
                "(PSEUDOATOM vlstring or vlunicode): the layout of pickled object rows",
            )
        if cls == h5py.h5t.REFERENCE:
            raise self.refuse(
                path, None, "a dataset of HDF5 references (it reaches objects no link leads to)"
            )
        plist = dset.id.get_create_plist()
        if plist.get_external_count():
            raise self.refuse(path, None, "data stored in external raw files (a reader would open them)")
        if plist.get_layout() == h5py.h5d.VIRTUAL:
            raise self.refuse(path, None, "a virtual dataset (its data comes from other files)")

    def resolve(self, path: str, gpath: str, target: str) -> None:
        """Follow a soft link by hand, one path component at a time, never through an external link."""
        parts = [p for p in target.split("/") if p not in ("", ".")]
        node: h5py.HLObject = self.h5 if target.startswith("/") else self.h5[gpath]
        hops = 0
        while parts:
            name = parts.pop(0)
            link = node.get(name, getlink=True) if isinstance(node, h5py.Group) else None
            if link is None:
                raise self.refuse(path, None, f"a soft link to {target}, which does not resolve in the file")
            if isinstance(link, h5py.ExternalLink):
                raise self.refuse(
                    path, None, f"a soft link to {target}, which leads through an external link"
                )
            if isinstance(link, h5py.SoftLink):
                hops += 1
                if hops > MAX_SOFT_HOPS:
                    raise self.refuse(path, None, f"a soft link to {target}: more than {MAX_SOFT_HOPS} hops")
                parts[:0] = [p for p in link.path.split("/") if p not in ("", ".")]
                if link.path.startswith("/"):
                    node = self.h5
                continue
            node = node[name]


def _plain_string(attrs: h5py.AttributeManager, name: str) -> bytes | None:
    """The attribute's value as bytes when it is a string (rule 3 keeps it from being a pickle)."""
    if name not in attrs or attrs.get_id(name).get_type().get_class() != h5py.h5t.STRING:
        return None
    values = list(_strings(attrs[name]))
    return values[0].rstrip(b"\0") if len(values) == 1 else b"<" + str(len(values)).encode() + b" values>"


def scan_file(path: str | os.PathLike) -> ScanReport:
    """Scan one HDF5 file; raises UnsafeHDF5Error (an InputError) naming file, node and attribute."""
    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file: {exc}") from None
    scan = _Scan(path, h5)
    with h5:
        try:
            return scan.run()
        except UnsafeHDF5Error:
            raise
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise UnsafeHDF5Error(
                path, scan.node, None, f"cannot be read to the end by h5py ({type(exc).__name__}: {exc})"
            ) from None


def is_hdf5(path: Path) -> bool:
    """A regular file (after links) with an HDF5 signature, whatever its name: a reader's file pattern
    is the producer's choice, so the name proves nothing."""
    try:
        return path.is_file() and h5py.is_hdf5(str(path))
    except OSError:
        return False


def hdf5_files(root: str | os.PathLike) -> list[Path]:
    """Every HDF5 file under `root` (directory links not followed), sorted."""
    root = Path(root)
    if root.is_file():
        return [root] if is_hdf5(root) else []
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        found += [p for name in sorted(filenames) if is_hdf5(p := Path(dirpath) / name)]
    return found


def scan_tree(root: str | os.PathLike) -> list[ScanReport]:
    """Scan every HDF5 file under `root`; raises on the first file that fails."""
    return [scan_file(p) for p in hdf5_files(root)]


def summary(reports: list[ScanReport]) -> str:
    if not reports:
        return "HDF5 scan: no HDF5 file"
    nodes = sum(r.nodes for r in reports)
    attributes = sum(r.attributes for r in reports)
    pickles = sum(r.pickles for r in reports)
    return (
        f"HDF5 scan: {len(reports)} file(s), {nodes} nodes, {attributes} attributes "
        f"({pickles} pickled values, all plain data): no pickle that imports or calls, "
        "no object rows, no external link"
    )
