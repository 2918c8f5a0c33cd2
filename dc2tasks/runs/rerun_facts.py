"""What a repository's `rerun/` holds, as the facts the watcher's readiness rule needs, read without
ever following a symlink.

Gathered where the repository is: in this process for the local backend, on the login node by
`dc2 reruns REPO --facts ...` for Slurm runs (its JSON is parsed strictly here, `Listing`). The rule
itself is applied by dc2tasks.runs.reruns on our side, from these facts only.

No link is followed: `rerun/` and each rerun are opened with O_NOFOLLOW and compared with their lstat
(a directory swapped for a link between the two is refused), and the walk goes down by directory
descriptors (`fstatat(AT_SYMLINK_NOFOLLOW)`, `openat(O_NOFOLLOW)`), so a link anywhere in the tree is
an entry of the listing, never a way out of it. A rerun's old-style `_parent` symlink, which names
its parent, is read with readlink and taken as a path, never opened.

Bounded cost: a rerun is walked only when it could be handed out or compared (a directory, owned by
an allowed account, with its repositoryCfg.yaml, with the marker when the rule has one, not the
run's own rerun or a parent of it); the walk is one `fstatat` per entry, stops at the first entry
changed within the quiet period (quiet rule), and gives up after `max_entries` entries. Memory is
one directory's names at a time (entries are hashed in sorted order as they are met).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import posixpath
import pwd
import stat
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from dc2tasks import names
from dc2tasks.products.errors import InputError, NotARepositoryError
from dc2tasks.products.repo import (
    PARENT,
    REPOSITORY_CFG,
    TEMPLATES,
    first_line,
    parent_roots,
    parse_repository_cfg,
    template_matchers,
)
from dc2tasks.products.visit_lists import select_visits

FORMAT = "dc2tasks-rerun-facts/1"
MAX_MISSING_SHOWN = 20
FACTS_TIMEOUT_S = 1800.0
"""How long the remote `dc2 reruns --facts` may take (a walk of max_entries on a parallel file system)."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

PRESENCE: dict[str, tuple[tuple[str, str], ...]] = {
    "object": (("deepCoadd_ref", "tract"), ("deepCoadd_forced_src", "tract")),
    "source": (("src", "visit"),),
    "forced_source": (("forced_src", "visit"),),
    "dia_source": (("deepDiff_diaSrc", "visit"),),
    "dia_object": (("deepDiff_diaObject", "tract"),),
}
"""The pipeline outputs a product is made from, per tract or visit: a rerun is complete for a run
when it holds at least one file of each for every tract (visit) of the run. The other products are
made from these (trim_object from object, ...)."""


class _Fact(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Walk(_Fact):
    """One rerun's tree. `digest` (sha256 of every entry's path, type, size and mtime in sorted
    order) is set only when the walk saw everything (`stopped` None)."""

    entries: int
    newest_mtime_ns: int
    newest: str
    digest: str | None
    stopped: Literal["recent", "too_many", "unreadable", "race"] | None
    detail: str
    owners: dict[str, int]
    missing: list[str]
    missing_count: int


class Entry(_Fact):
    name: str
    kind: Literal["dir", "link", "other"]
    owner: str
    cfg: bool
    parents: list[str]
    """Reruns of the same repository it names as parents: its repositoryCfg.yaml's `_parents` or,
    without that file, its `_parent` (a symlink's target, a file's first line)."""
    marker: Literal["file", "absent", "link", "other"] | None
    walk: Walk | None
    not_walked: str


class Listing(_Fact):
    format: Literal["dc2tasks-rerun-facts/1"]
    repository: str
    account: str
    now_ns: int
    rerun_dir: Literal["dir", "missing", "link", "other"]
    reruns: list[Entry]
    bad_names: list[str]
    ignored: list[str]
    """The run's own rerun and every rerun it is built on: listed, never walked nor handed out."""

    def entry(self, name: str) -> Entry | None:
        return next((e for e in self.reruns if e.name == name), None)


@dataclass(frozen=True)
class FactsRequest:
    """What to look at: the rule's marker and quiet period, whose reruns to walk, which products."""

    marker: str | None = None
    quiet_hours: int | None = None
    owners: tuple[str, ...] = ()
    max_entries: int = 1_000_000
    own_rerun: str | None = None
    products: tuple[str, ...] = ()
    tracts: tuple[int, ...] = ()
    visits: tuple[int, ...] = ()
    visit_file: str | None = None

    def argv(self) -> list[str]:
        """The options of `dc2 reruns REPO --facts` that ask for exactly this (see add_arguments)."""
        out = ["--max-entries", str(self.max_entries)]
        if self.marker is not None:
            out += ["--marker", self.marker]
        if self.quiet_hours is not None:
            out += ["--quiet-hours", str(self.quiet_hours)]
        if self.own_rerun is not None:
            out += ["--own-rerun", self.own_rerun]
        for flag, values in (("--owner", self.owners), ("--product", self.products),
                             ("--tract", self.tracts), ("--visit", self.visits)):
            for value in values:
                out += [flag, str(value)]
        if self.visit_file is not None:
            out += ["--visit-file", self.visit_file]
        return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`dc2 reruns --facts` options, the other half of FactsRequest.argv."""
    p.add_argument("--marker", type=names.FILE_PART.arg_type, help="completion file name in each rerun")
    p.add_argument("--quiet-hours", type=int, help="stop a rerun's walk at an entry changed this recently")
    p.add_argument("--owner", type=names.ACCOUNT.arg_type, action="append", default=[],
                   help="walk only reruns of this account (repeat; default: this account)")
    p.add_argument("--max-entries", type=int, default=1_000_000, help="stop a rerun's walk after this many")
    p.add_argument("--own-rerun", type=names.RERUN.arg_type,
                   help="the run's own rerun: it and the reruns it is built on are listed, never walked")
    p.add_argument("--product", choices=sorted(PRESENCE), action="append", default=[],
                   help="require this product's inputs for every tract/visit (repeat)")
    p.add_argument("--tract", type=names.number, action="append", default=[],
                   help="an expected tract (repeat)")
    p.add_argument("--visit", type=names.number, action="append", default=[],
                   help="an expected visit (repeat)")
    p.add_argument("--visit-file", help="expected visits, one per line (read here)")


def request_from_args(args: argparse.Namespace) -> FactsRequest:
    return FactsRequest(
        marker=args.marker, quiet_hours=args.quiet_hours, owners=tuple(args.owner),
        max_entries=args.max_entries, own_rerun=args.own_rerun, products=tuple(args.product),
        tracts=tuple(args.tract), visits=tuple(args.visit), visit_file=args.visit_file,
    )


@functools.lru_cache(maxsize=256)
def account_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def this_account() -> str:
    return account_of(os.geteuid())


def parse_listing(text: str, where: str) -> Listing:
    """The JSON `dc2 reruns --facts` printed, checked field by field (nothing unknown, no coercion)."""
    try:
        return Listing.model_validate_json(text, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "document"
        raise InputError(f"{where}: not a rerun listing ({FORMAT}): {loc}: {first['msg']}") from None


def gather(repository: str | os.PathLike[str], request: FactsRequest) -> Listing:
    """The facts of every entry of `<repository>/rerun`, read here."""
    repo = os.fspath(repository)
    if not os.path.isdir(repo):
        raise InputError(f"{repo}: repository not found (not a directory)")
    account, now_ns = this_account(), time.time_ns()

    def listing(kind: str, reruns: list[Entry], bad: list[str], ignored: list[str]) -> Listing:
        return Listing(format=FORMAT, repository=repo, account=account, now_ns=now_ns,
                       rerun_dir=kind, reruns=reruns, bad_names=bad, ignored=ignored)  # type: ignore[arg-type]

    path = os.path.join(repo, "rerun")
    own = [request.own_rerun] if request.own_rerun else []
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return listing("missing", [], [], own)
    if not stat.S_ISDIR(st.st_mode):
        return listing("link" if stat.S_ISLNK(st.st_mode) else "other", [], [], own)
    try:
        fd = _open_dir(path, st, None)
    except (OSError, _Stop) as exc:
        raise InputError(f"{path}: cannot be opened as a directory (not following links): {exc}") from None
    try:
        owners = request.owners or (account,)
        cutoff = now_ns - request.quiet_hours * 3_600_000_000_000 if request.quiet_hours else None
        expected = _Expected.of(request)
        found: list[tuple[Entry, os.stat_result]] = []
        bad = []
        for name in sorted(os.listdir(fd)):
            if not names.RERUN.fullmatch(name):
                bad.append(name)
                continue
            entry = _entry(fd, os.path.abspath(path), name, request, owners)
            if entry is not None:
                found.append(entry)
        ignored = ancestry([e for e, _ in found], request.own_rerun)
        entries = [_walked(fd, e, st, ignored, request, cutoff, expected) for e, st in found]
        return listing("dir", entries, bad, ignored)
    finally:
        os.close(fd)


def ancestry(entries: Sequence[Entry], rerun: str | None) -> list[str]:
    """`rerun` and every listed rerun it is built on (their `_parents`, transitively)."""
    by_name = {e.name: e for e in entries}
    found: list[str] = []
    todo = [rerun] if rerun else []
    while todo:
        name = todo.pop()
        if name not in found:
            found.append(name)
            todo += by_name[name].parents if name in by_name else []
    return found


def _open_dir(name: str, st: os.stat_result, dir_fd: int | None) -> int:
    """Open a directory we lstat'ed as one: O_NOFOLLOW, and the same inode (not swapped since)."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    if not os.path.samestat(os.fstat(fd), st):
        os.close(fd)
        raise _Stop("race", f"{name} changed while it was read")
    return fd


def _lkind(dir_fd: int, name: str) -> Literal["file", "absent", "link", "other"]:
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return "absent"
    return "file" if stat.S_ISREG(mode) else "link" if stat.S_ISLNK(mode) else "other"


def _entry(fd: int, rerun_root: str, name: str, request: FactsRequest, owners: Sequence[str]
           ) -> tuple[Entry, os.stat_result] | None:
    """What one lstat and the rerun's own directory say (nothing walked yet)."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None  # removed while listed
    owner = account_of(st.st_uid)
    base = {"name": name, "owner": owner, "cfg": False, "parents": [], "marker": None, "walk": None}
    if not stat.S_ISDIR(st.st_mode):
        link = stat.S_ISLNK(st.st_mode)
        return Entry(**base, kind="link" if link else "other",  # type: ignore[arg-type]
                     not_walked="a symlink, never followed" if link else "not a directory"), st
    try:
        sub = _open_dir(name, st, fd)
    except (OSError, _Stop) as exc:
        return Entry(**base, kind="dir", not_walked=f"cannot be opened: {exc}"), st  # type: ignore[arg-type]
    try:
        text = _read_small(sub, REPOSITORY_CFG)
        parents = (legacy_parents(sub, rerun_root, name) if text is None
                   else cfg_parents(text, rerun_root, name))
        marker = _lkind(sub, request.marker) if request.marker else None
    finally:
        os.close(sub)
    reason = (
        f"owned by {owner}" if owner not in owners
        else f"no {REPOSITORY_CFG}" if text is None
        else f"no completion marker {request.marker}" if marker not in (None, "file")
        else ""
    )
    return Entry(**{**base, "cfg": text is not None, "parents": parents, "marker": marker},  # type: ignore[arg-type]
                 kind="dir", not_walked=reason), st


def _walked(fd: int, entry: Entry, st: os.stat_result, ignored: Sequence[str], request: FactsRequest,
            cutoff: int | None, expected: _Expected) -> Entry:
    """`entry` with its walk, when it could be handed out or compared."""
    if entry.kind != "dir" or entry.not_walked:
        return entry
    if entry.name in ignored:
        return entry.model_copy(update={"not_walked": "the run's own rerun or one it is built on"})
    try:
        sub = _open_dir(entry.name, st, fd)
    except (OSError, _Stop) as exc:
        return entry.model_copy(update={"not_walked": f"cannot be opened: {exc}"})
    try:
        return entry.model_copy(update={"walk": _walk(sub, st, request.max_entries, cutoff, expected)})
    finally:
        os.close(sub)


MAX_CFG_BYTES = 1 << 20


def _read_small(dir_fd: int, name: str) -> str | None:
    """A regular file's text, opened without following a link; None if it is not one."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, MAX_CFG_BYTES).decode("utf-8", "replace")
    finally:
        os.close(fd)


def cfg_parents(text: str, rerun_root: str, name: str) -> list[str]:
    """The reruns of the same repository a rerun's repositoryCfg.yaml names as parents: each
    `_parents` entry (a path, or the butler's nested RepositoryCfg with `_root`), relative to the
    rerun or absolute, that spells `<rerun_root>/<other>`. A parent reached through another
    symlinked path is not recognised (and so would be handed out)."""
    try:
        cfg = parse_repository_cfg(text, name)
    except NotARepositoryError:
        return []
    return _sibling_reruns(parent_roots(cfg), rerun_root, name)


def legacy_parents(dir_fd: int, rerun_root: str, name: str) -> list[str]:
    """The rerun of the same repository that the rerun open at `dir_fd` names by its `_parent`, the
    Gen2 way before repositoryCfg.yaml: a symbolic link's target, read with readlink and taken as a
    path (never followed), or a regular file's first line (opened without following a link). A
    `_parent` folder is the parent itself, inside this rerun: no other rerun."""
    kind = _lkind(dir_fd, PARENT)
    try:
        root = os.readlink(PARENT, dir_fd=dir_fd) if kind == "link" else None
    except OSError:
        return []  # changed since it was looked at
    if kind == "file":
        root = first_line(_read_small(dir_fd, PARENT) or "")
    return _sibling_reruns([root], rerun_root, name) if root else []


def _sibling_reruns(roots: Sequence[str], rerun_root: str, name: str) -> list[str]:
    """The parent paths, relative to the rerun or absolute, that spell `<rerun_root>/<other>`."""
    found = []
    for root in roots:
        head, other = posixpath.split(posixpath.normpath(posixpath.join(rerun_root, name, root)))
        if head == rerun_root and names.RERUN.fullmatch(other):
            found.append(other)
    return found


class _Stop(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


@dataclass(frozen=True)
class _Expected:
    """Which (dataset, id) files a complete rerun holds, and the path regexes that find them."""

    wanted: tuple[tuple[str, str, int], ...]
    matchers: tuple[tuple[str, str, object], ...]

    @classmethod
    def of(cls, request: FactsRequest) -> _Expected:
        visits = list(request.visits)
        if request.visit_file is not None and any(k == "visit" for p in request.products
                                                  for _, k in PRESENCE.get(p, ())):
            visits += select_visits(visit_file=request.visit_file)
        ids = {"tract": sorted(set(request.tracts)), "visit": sorted(set(visits))}
        pairs = list(dict.fromkeys(pair for p in request.products for pair in PRESENCE.get(p, ())))
        wanted = tuple((ds, key, i) for ds, key in pairs for i in ids[key])
        matchers = tuple(
            (ds, key, template_matchers(TEMPLATES[camera][ds], {})[1])
            for ds, key in pairs for camera in sorted(TEMPLATES)
        )
        return cls(wanted, matchers)

    def found_in(self, rel: str) -> list[tuple[str, int]]:
        out = []
        for ds, key, regex in self.matchers:
            m = regex.fullmatch(rel)  # type: ignore[attr-defined]
            if m is None:
                continue
            values = {v for k, v in m.groupdict().items() if k.rsplit("__", 1)[0] == key}
            if len(values) == 1:
                out.append((ds, int(values.pop())))
        return out

    def missing(self, found: set[tuple[str, int]]) -> list[str]:
        return [f"{ds} of {key} {i}" for ds, key, i in self.wanted if (ds, i) not in found]


class _Tree:
    """Running totals of one walk; raises _Stop when the rule's bounds are reached."""

    def __init__(self, max_entries: int, cutoff: int | None, expected: _Expected) -> None:
        self.max_entries, self.cutoff, self.expected = max_entries, cutoff, expected
        self.entries, self.newest, self.newest_path = 0, -1, "."
        self.digest = hashlib.sha256()
        self.owners: Counter[str] = Counter()
        self.found: set[tuple[str, int]] = set()

    def see(self, rel: str, st: os.stat_result) -> None:
        if rel != ".":
            self.entries += 1
        if st.st_mtime_ns > self.newest:
            self.newest, self.newest_path = st.st_mtime_ns, rel
        self.owners[account_of(st.st_uid)] += 1
        kind = "d" if stat.S_ISDIR(st.st_mode) else "f" if stat.S_ISREG(st.st_mode) else (
            "l" if stat.S_ISLNK(st.st_mode) else "o")
        raw = os.fsencode(rel)
        self.digest.update(b"%d:%s %s %d %d\n" % (len(raw), raw, kind.encode(), st.st_size, st.st_mtime_ns))
        if kind == "f":
            self.found.update(self.expected.found_in(rel))
        if self.cutoff is not None and st.st_mtime_ns > self.cutoff:
            raise _Stop("recent", rel)
        if self.entries > self.max_entries:
            raise _Stop("too_many", f"more than {self.max_entries} entries")


def _walk(fd: int, top: os.stat_result, max_entries: int, cutoff: int | None, expected: _Expected) -> Walk:
    tree = _Tree(max_entries, cutoff, expected)
    stopped, detail = None, ""
    try:
        tree.see(".", top)
        _walk_dir(fd, "", tree)
    except _Stop as stop:
        stopped, detail = stop.kind, stop.detail
    missing = expected.missing(tree.found) if stopped is None else []
    return Walk(entries=tree.entries, newest_mtime_ns=tree.newest, newest=tree.newest_path,
                digest=tree.digest.hexdigest() if stopped is None else None, stopped=stopped,  # type: ignore[arg-type]
                detail=detail, owners=dict(sorted(tree.owners.items())),
                missing=missing[:MAX_MISSING_SHOWN], missing_count=len(missing))


def _walk_dir(fd: int, prefix: str, tree: _Tree) -> None:
    try:
        with os.scandir(fd) as it:
            items = sorted((e.name, e.stat(follow_symlinks=False)) for e in it)
    except FileNotFoundError as exc:
        raise _Stop("race", f"{prefix}{os.fsdecode(exc.filename or '')}: removed while it was read") from None
    except OSError as exc:
        raise _Stop("unreadable", f"{prefix or '.'}: {exc.strerror}") from None
    for name, st in items:
        rel = prefix + name
        tree.see(rel, st)
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = _open_dir(name, st, fd)
            except OSError as exc:
                raise _Stop("unreadable", f"{rel}: {exc.strerror}") from None
            try:
                _walk_dir(sub, rel + "/", tree)
            finally:
                os.close(sub)
