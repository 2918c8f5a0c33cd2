"""What a Gen2 repository holds for the products a run makes, found before any job is submitted.

Each dataset's Gen2 path template is walked one directory level at a time with os.scandir (a
template component with a placeholder is matched against the entries of the directories found so
far; a literal one is joined), so the scan costs about one directory listing per directory, never a
template lookup per expected file. Along the rerun chain a data id found in a child hides the same
one in a parent, as the butler does.

Expected data ids come from what is found: a tract's patches are every patch any dataset of the
product has there, its bands the bands asked for (else every band found); a visit's detectors are
every detector any dataset of the product has for it. What is expected and absent is *missing*; a
file whose first card is not SIMPLE (or gzip's magic), or whose size is not a whole number of 2880-
byte FITS blocks, is *unreadable* (truncated or not FITS). One file per dataset is parsed fully to
name the catalog's schema generation and the exposure's calibration era.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products import fits
from dc2tasks.products.calib import read_calibration
from dc2tasks.products.errors import InputError
from dc2tasks.products.progress import Progress
from dc2tasks.products.repo import TEMPLATES, Gen2Repo, sort_bands, template_matchers
from dc2tasks.products.schema import detect_schema_generation
from dc2tasks.products.visit_info import detector_number

FITS_BLOCK = 2880
_GZIP_MAGIC = b"\x1f\x8b"
_PLACEHOLDER = re.compile(r"%\(\w+\)")

DataId = dict[str, Any]


@dataclass
class FileFound:
    data_id: DataId
    path: str
    problem: str | None  # why it is unreadable, None when it looks whole


def header_problem(path: str) -> str | None:
    """Why a file cannot be a whole FITS (or gzip FITS) file, from its size and first bytes."""
    try:
        fd = os.open(path, os.O_RDONLY)  # raw calls: a buffered file object costs more than the read
    except OSError as exc:
        return f"cannot open: {exc.strerror}"
    try:
        head = os.read(fd, 9)
        size = os.fstat(fd).st_size
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    finally:
        os.close(fd)
    if head[:2] == _GZIP_MAGIC and path.endswith(".gz"):
        return None
    if head[:9] != b"SIMPLE  =":
        return "not FITS (no SIMPLE card at the start)"
    if size % FITS_BLOCK:
        return f"truncated ({size} bytes is not a whole number of {FITS_BLOCK}-byte FITS blocks)"
    return None


@dataclass(frozen=True)
class _Component:
    """One path component of a template: a literal name, or a regex and, per group in order, the
    data id key it gives and whether its value is a number."""

    literal: str
    regex: re.Pattern | None = None
    fields: tuple[tuple[str, bool], ...] = ()

    def extend(self, data_id: DataId, m: re.Match) -> DataId | None:
        """The data id with this component's values; None when a key repeated disagrees."""
        out = dict(data_id)
        for (key, number), text in zip(self.fields, m.groups(), strict=True):
            value: Any = int(text) if number else text
            if out.setdefault(key, value) != value:
                return None
        return out


def _components(template: str) -> list[_Component]:
    out: list[_Component] = []
    for part in template.split("/"):
        if _PLACEHOLDER.search(part) is None:
            out.append(_Component(part))
            continue
        _, regex, kinds = template_matchers(part, {})
        names = sorted(regex.groupindex, key=regex.groupindex.__getitem__)
        fields = tuple((n.rsplit("__", 1)[0], kinds[n.rsplit("__", 1)[0]] == "d") for n in names)
        out.append(_Component(part, regex, fields))
    return out


def _listing(path: str, progress: Progress) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []
    progress.advance(1, files=len(entries))
    return entries


def _matched(entry: os.DirEntry, part: _Component, data_id: DataId, keep: dict[str, set],
             last: bool) -> DataId | None:
    """The data id an entry of a directory extends `data_id` to, or None if it is not on the path."""
    name = entry.name[:-3] if last and entry.name.endswith(".gz") else entry.name
    if part.regex is None:
        merged: DataId | None = data_id if name == part.literal else None
    else:
        m = part.regex.fullmatch(name)
        merged = part.extend(data_id, m) if m is not None else None
    if merged is None or (keep and any(k in merged and merged[k] not in v for k, v in keep.items())):
        return None
    return merged if (entry.is_file() if last else entry.is_dir()) else None


def scan_dataset(
    root: str, template: str, keep: dict[str, set], progress: Progress, check: bool = True
) -> list[FileFound]:
    """Every file of one dataset under one repository whose data id values are in `keep` (by key),
    with its data id and, when `check`, why it is unreadable."""
    level: list[tuple[str, DataId]] = [(root, {})]
    parts = _components(template)
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        nxt: list[tuple[str, DataId]] = []
        for directory, data_id in level:
            if part.regex is None and not last:
                nxt.append((os.path.join(directory, part.literal), data_id))
                continue
            for entry in _listing(directory, progress):
                merged = _matched(entry, part, data_id, keep, last)
                if merged is not None:
                    nxt.append((entry.path, merged))
        level = nxt
    paths = [p for p, _ in level]
    problems = check_headers(paths) if check else [None] * len(paths)
    return [FileFound(i, p, problem) for (p, i), problem in zip(level, problems, strict=True)]


CHECK_THREADS = 8
CHECK_CHUNK = 2000


def check_headers(paths: Sequence[str]) -> list[str | None]:
    """`header_problem` of every path, in order, in a few threads: open and read release the GIL,
    so on a network file system (Lustre, GPFS) the waits overlap."""
    chunks = [paths[i : i + CHECK_CHUNK] for i in range(0, len(paths), CHECK_CHUNK)]
    if len(chunks) <= 1:
        return [header_problem(p) for p in paths]
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        done = pool.map(lambda chunk: [header_problem(p) for p in chunk], chunks)
        return [problem for chunk in done for problem in chunk]


def is_visit_dataset(template: str) -> bool:
    return "%(visit)" in template


def _key(data_id: DataId, visit: bool) -> tuple:
    if visit:
        return (int(data_id["visit"]), detector_number(data_id))
    band = (str(data_id["filter"]),) if "filter" in data_id else ()
    return (int(data_id["tract"]), str(data_id["patch"]), *band)


def _patch_order(patch: str) -> tuple[int, ...]:
    return tuple(int(v) for v in patch.split(",")) if re.fullmatch(r"\d+,\d+", patch) else (1 << 30,)


def _sort_key(key: tuple) -> tuple:
    return tuple(_patch_order(v) if isinstance(v, str) and "," in v else v for v in key)


def id_text(key: tuple) -> str:
    """`tract/patch[/band]` or `visit/detector`: how the report names a data id."""
    return "/".join(map(str, key))


def scan_chain(
    repo: Gen2Repo, dataset: str, keep: dict[str, set], progress: Progress
) -> dict[tuple, FileFound]:
    """A dataset's files along the rerun chain by data-id key; a child's file hides its parent's."""
    try:
        template = TEMPLATES[repo.camera][dataset]
    except KeyError:
        raise InputError(f"unknown dataset type {dataset!r} for {repo.camera}") from None
    visit = is_visit_dataset(template)
    found: dict[tuple, FileFound] = {}
    for root in repo.chain:
        for f in scan_dataset(str(root), template, keep, progress):
            found.setdefault(_key(f.data_id, visit), f)
    return found


EXPOSURES = frozenset({"deepCoadd_calexp", "calexp", "deepDiff_differenceExp"})
"""Datasets that are images (a calibration to read), not catalogs (a schema to read)."""

LIST_LIMIT = 500
"""At most this many data ids per list in the report; the counts are always whole."""


@dataclass(frozen=True)
class Scope:
    """What the run asks for: empty means every tract, visit or band found."""

    tracts: tuple[int, ...] = ()
    visits: tuple[int, ...] = ()
    bands: tuple[str, ...] = ()

    def keep(self, visit_dataset: bool) -> dict[str, set]:
        if visit_dataset:
            return {"visit": set(self.visits)} if self.visits else {}
        keep: dict[str, set] = {"tract": set(self.tracts)} if self.tracts else {}
        if self.bands:
            keep["filter"] = set(self.bands)
        return keep


def _expected(found: Sequence[dict[tuple, FileFound]], visit: bool, scope: Scope,
              per_band: Sequence[bool]) -> tuple[list[list[tuple]], list[int]]:
    """Per dataset the data-id keys expected, and the asked-for tracts or visits with no file at all."""
    units = {k[0] for f in found for k in f}
    asked = scope.visits if visit else scope.tracts
    units_all = sorted(set(asked) | units) if asked else sorted(units)
    inner: dict[int, set] = {}
    for f in found:
        for k in f:
            inner.setdefault(k[0], set()).add(k[1])
    bands = list(scope.bands) or sort_bands({k[2] for f in found for k in f if len(k) > 2})
    out = []
    for banded in per_band:
        keys = [(u, i) for u in units_all for i in sorted(inner.get(u, ()), key=lambda v: _sort_key((v,)))]
        out.append([(*k, b) for k in keys for b in bands] if banded else keys)
    return out, [u for u in units_all if u not in inner]


def _limited(items: list) -> list:
    return items[:LIST_LIMIT]


def _dataset_report(found: dict[tuple, FileFound], expected: list[tuple]) -> dict[str, Any]:
    missing = [id_text(k) for k in expected if k not in found]
    problems = sorted(
        ((k, f.problem) for k, f in found.items() if f.problem), key=lambda kp: _sort_key(kp[0])
    )
    bad = {id_text(k): problem for k, problem in problems}
    return {
        "found": sum(1 for f in found.values() if not f.problem),
        "missing_count": len(missing),
        "missing": _limited(missing),
        "unreadable_count": len(bad),
        "unreadable": dict(list(bad.items())[:LIST_LIMIT]),
    }


def _product_report(inputs: Sequence[str], scans: dict[str, dict[tuple, FileFound]],
                    templates: dict[str, str], scope: Scope) -> dict[str, Any]:
    """The status of one product's inputs: complete, partial (what is missing named) or absent."""
    report: dict[str, Any] = {"inputs": list(inputs), "datasets": {}}
    for visit in (False, True):
        names = [d for d in inputs if is_visit_dataset(templates[d]) == visit]
        if not names:
            continue
        per_band = [not visit and "%(filter)" in templates[d] for d in names]
        expected, absent_units = _expected([scans[d] for d in names], visit, scope, per_band)
        report["missing_visits" if visit else "missing_tracts"] = absent_units
        for d, keys in zip(names, expected, strict=True):
            report["datasets"][d] = _dataset_report(scans[d], keys)
    empty = [d for d, r in report["datasets"].items() if r["found"] == 0]
    gaps = any(r["missing_count"] or r["unreadable_count"] for r in report["datasets"].values())
    if empty:
        report["status"], report["reason"] = "absent", f"no readable {', '.join(empty)} in the scope"
    elif gaps or report.get("missing_tracts") or report.get("missing_visits"):
        report["status"], report["reason"] = "partial", "some inputs are missing or unreadable"
    else:
        report["status"], report["reason"] = "complete", ""
    return report


def _column_names(path: str) -> list[str]:
    header = fits.scan(path, max_hdus=2)[1].header
    return [str(header.get(f"TTYPE{i}")) for i in range(1, int(header.get("TFIELDS", 0) or 0) + 1)]


PROBES = 3
"""Files per dataset parsed fully: the first readable one, and the next if it fails, up to this."""


def _probe(scans: dict[str, dict[tuple, FileFound]]) -> dict[str, str | None]:
    """The schema generation of the first readable catalog and the calibration era of the first
    readable exposure; a file that fails this full header parse is marked unreadable."""
    found: dict[str, str | None] = {"schema_generation": None, "calib_era": None}
    for dataset, files in scans.items():
        what = "calib_era" if dataset in EXPOSURES else "schema_generation"
        # plain FITS only: a gzip file's header is behind its decompression, left to the readers
        candidates = [f for f in files.values() if not f.problem and not f.path.endswith(".gz")]
        for f in candidates[:PROBES]:
            try:
                if what == "calib_era":
                    value = read_calibration(f.path).era
                else:
                    value = detect_schema_generation(_column_names(f.path)).name
            except (InputError, IndexError, ValueError) as exc:
                f.problem = f"wrong schema: {exc}"
                continue
            found[what] = found[what] or value
            break
    return found


def take_inventory(repo: Gen2Repo, products: Iterable[str], scope: Scope = Scope()) -> dict[str, Any]:
    """The report of what `repo` holds for each product's Gen2 inputs (the catalogue's `inputs`),
    with progress lines (directories listed, files seen) while it walks."""
    start = time.perf_counter()
    with Progress("inventory", None, "directories") as progress:
        report = _inventory(repo, products, scope, progress)
    report["directories"] = progress.done
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def _inventory(repo: Gen2Repo, products: Iterable[str], scope: Scope, progress: Progress) -> dict[str, Any]:
    wanted = set(products)
    names = [p for p in CATALOGUE.names if p in wanted]
    datasets = list(dict.fromkeys(d for p in names for d in CATALOGUE[p].inputs))
    templates = {d: TEMPLATES[repo.camera].get(d, "") for d in datasets}
    scans = {d: scan_chain(repo, d, scope.keep(is_visit_dataset(templates[d])), progress) for d in datasets}
    probed = _probe(scans)
    reports = {}
    for p in names:
        inputs = CATALOGUE[p].inputs
        if inputs:
            reports[p] = _product_report(inputs, scans, templates, scope)
        else:
            reports[p] = {"inputs": [], "status": "derived", "reason": "made from this run's products"}
    return {
        "repository": str(repo.root),
        "chain": [str(r) for r in repo.chain],
        "camera": repo.camera,
        "scope": {"tracts": list(scope.tracts), "visits": list(scope.visits), "bands": list(scope.bands)},
        **probed,
        "files": sum(len(f) for f in scans.values()),
        "products": reports,
    }


def _some(items: Sequence[str], count: int) -> str:
    shown = ", ".join(items[:8])
    return shown + (f" and {count - 8} more" if count > 8 else "")


def summary(report: dict[str, Any]) -> str:
    """The report as lines a person reads in a task log."""
    lines = [
        f"inventory of {report['repository']} ({report['camera']}): {report['files']} files in "
        f"{report['directories']} directories, {report['seconds']:.1f} s; schema generation "
        f"{report['schema_generation'] or '-'}, calibration era {report['calib_era'] or '-'}"
    ]
    for name, p in report["products"].items():
        lines.append(f"{name}: {p['status']}" + (f" ({p['reason']})" if p["reason"] else ""))
        for key in ("missing_tracts", "missing_visits"):
            if p.get(key):
                lines.append(f"  {key.replace('_', ' ')}: {_some([str(u) for u in p[key]], len(p[key]))}")
        for dataset, d in p.get("datasets", {}).items():
            line = f"  {dataset}: {d['found']} found"
            if d["missing_count"]:
                line += f"; {d['missing_count']} missing: {_some(d['missing'], d['missing_count'])}"
            if d["unreadable_count"]:
                bad = [f"{k} ({v})" for k, v in d["unreadable"].items()]
                line += f"; {d['unreadable_count']} unreadable: {_some(bad, d['unreadable_count'])}"
            lines.append(line)
    return "\n".join(lines)
