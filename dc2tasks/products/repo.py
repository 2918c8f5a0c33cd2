"""A Gen2 butler repository read as a directory tree: templates, the rerun chain, discovery.

No butler: the CameraMapper templates of obs_lsst / obs_lsstSim (spec §1.0) say where each dataset
is, and a rerun's `repositoryCfg.yaml` names its parents, where a dataset missing from the rerun is
looked for in turn (as the Gen2 butler does).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dc2tasks.catalogue import BANDS
from dc2tasks.products.errors import InputError, NotARepositoryError

_COADD = "deepCoadd-results/%(filter)s/%(tract)d/%(patch)s"
_MERGED = "deepCoadd-results/merged/%(tract)d/%(patch)s"
_VISIT = "%(visit)08d-%(filter)s/%(raftName)s"
_DET = "%(visit)08d-%(filter)s-%(raftName)s-%(detectorName)s-det%(detector)03d"

TEMPLATES: dict[str, dict[str, str]] = {
    "obs_lsst": {
        "deepCoadd_calexp": f"{_COADD}/calexp-%(filter)s-%(tract)d-%(patch)s.fits",
        "deepCoadd_meas": f"{_COADD}/meas-%(filter)s-%(tract)d-%(patch)s.fits",
        "deepCoadd_ref": f"{_MERGED}/ref-%(tract)d-%(patch)s.fits",
        "deepCoadd_forced_src": f"{_COADD}/forced_src-%(filter)s-%(tract)d-%(patch)s.fits",
        "calexp": f"calexp/{_VISIT}/calexp_{_DET}.fits",
        "src": f"src/{_VISIT}/src_{_DET}.fits",
        "forced_src": f"forced/{_VISIT}/forced_{_DET}.fits",
        "deepDiff_differenceExp": f"deepDiff/v%(visit)08d-f%(filter)s/%(raftName)s/diffexp_{_DET}.fits",
        "deepDiff_diaSrc": f"deepDiff/v%(visit)08d-f%(filter)s/%(raftName)s/diaSrc_{_DET}.fits",
        "deepDiff_diaObject": "deepDiff/diaObject/%(tract)d/%(patch)s/diaObject-%(tract)d-%(patch)s.fits",
    },
    "obs_lsstSim": {
        "deepCoadd_calexp": f"{_COADD}/calexp-%(filter)s-%(tract)d-%(patch)s.fits",
        "deepCoadd_meas": f"{_COADD}/meas-%(filter)s-%(tract)d-%(patch)s.fits",
        "deepCoadd_ref": f"{_MERGED}/ref-%(tract)d-%(patch)s.fits",
        "deepCoadd_forced_src": f"{_COADD}/forced-%(filter)s-%(tract)d-%(patch)s.fits",
        "calexp": "calexp/v%(visit)d-f%(filter)s/R%(raft)s/S%(sensor)s.fits",
        "src": "src/v%(visit)d-f%(filter)s/R%(raft)s/S%(sensor)s.fits",
        "forced_src": "forced/%(tract)d/v%(visit)d-f%(filter)s/R%(raft)s/S%(sensor)s.fits",
        "deepDiff_differenceExp": "deepDiff/v%(visit)d-f%(filter)s/R%(raft)s/S%(sensor)s/diffexp.fits",
        "deepDiff_diaSrc": "deepDiff/v%(visit)d-f%(filter)s/R%(raft)s/S%(sensor)s/diaSrc.fits",
        "deepDiff_diaObject": "deepDiff/diaObject/%(tract)d/%(patch)s/diaObject-%(tract)d-%(patch)s.fits",
    },
}

MAPPERS = {
    "obs_lsst": "lsst.obs.lsst.imsim.ImsimMapper",
    "obs_lsstSim": "lsst.obs.lsstSim.LsstSimMapper",
}

_PATCH_RE = re.compile(r"^\d+,\d+$")


def camera_of(mapper: str) -> str:
    return "obs_lsstSim" if "lsstSim" in mapper else "obs_lsst"


class _TolerantLoader(yaml.SafeLoader):
    """Reads repositoryCfg.yaml without the LSST classes its tags name."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return suffix or loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("!", _any_tag)
_TolerantLoader.add_multi_constructor("tag:yaml.org,2002:python/", _any_tag)


def parse_repository_cfg(text: str, where: object) -> dict:
    """A repositoryCfg.yaml's content as a mapping; NotARepositoryError if it is not one."""
    try:
        data = yaml.load(text, Loader=_TolerantLoader)
    except yaml.YAMLError as exc:
        raise NotARepositoryError(f"{where}: not a valid repositoryCfg.yaml: {exc}") from None
    if not isinstance(data, dict):
        raise NotARepositoryError(f"{where}: not a valid repositoryCfg.yaml (not a mapping)")
    return data


def read_repository_cfg(path: Path) -> dict:
    return parse_repository_cfg(path.read_text(), path)


def parent_roots(cfg: Mapping[str, object]) -> list[str]:
    """The parents a repositoryCfg.yaml names, as written: paths, relative to the repository or
    absolute. The butler writes a parent as a path or as a nested RepositoryCfg holding `_root`."""
    roots = []
    for parent in cfg.get("_parents") or []:  # type: ignore[union-attr]
        root = parent.get("_root") if isinstance(parent, dict) else parent
        if root:
            roots.append(str(root))
    return roots


@dataclass
class Gen2Repo:
    """A rerun (or a root repository) and the chain of its parents, searched in order."""

    root: Path
    chain: list[Path] = field(default_factory=list)
    camera: str = "obs_lsst"

    @classmethod
    def open(cls, path: str | os.PathLike, rerun: str | None = None) -> Gen2Repo:
        root = Path(path).resolve()
        if rerun:
            root = root / "rerun" / rerun
        if not root.is_dir():
            raise NotARepositoryError(f"{root}: no such directory")
        chain: list[Path] = []
        mapper = cls._walk(root, chain, set())
        if mapper is None:
            raise NotARepositoryError(
                f"{root}: not a Gen2 repository: no _mapper file or repositoryCfg.yaml naming a mapper "
                "here or in its parents"
            )
        return cls(root, chain, camera_of(mapper))

    @classmethod
    def _walk(cls, repo: Path, chain: list[Path], seen: set[Path]) -> str | None:
        if repo in seen:
            return None
        seen.add(repo)
        cfg_path = repo / "repositoryCfg.yaml"
        mapper_file = repo / "_mapper"
        if not cfg_path.is_file() and not mapper_file.is_file():
            raise NotARepositoryError(
                f"{repo}: not a Gen2 repository (neither repositoryCfg.yaml nor _mapper is there)"
            )
        chain.append(repo)
        mapper = None
        parents: list[Path] = []
        if cfg_path.is_file():
            cfg = read_repository_cfg(cfg_path)
            m = cfg.get("_mapper")
            mapper = m if isinstance(m, str) and m else None
            parents = [(repo / root).resolve() for root in parent_roots(cfg)]
        if mapper is None and mapper_file.is_file():
            mapper = mapper_file.read_text().strip() or None
        for parent in parents:
            if not parent.is_dir():
                raise NotARepositoryError(f"{cfg_path}: parent repository {parent} does not exist")
            parent_mapper = cls._walk(parent, chain, seen)
            mapper = mapper or parent_mapper
        return mapper

    # ---- locating datasets ---------------------------------------------------------------

    def relpath(self, dataset: str, **data_id: object) -> str:
        try:
            template = TEMPLATES[self.camera][dataset]
        except KeyError:
            raise InputError(f"unknown dataset type {dataset!r} for {self.camera}") from None
        try:
            return template % data_id
        except KeyError as exc:
            raise InputError(f"dataset {dataset} needs data id key {exc.args[0]!r}") from None

    def find(self, dataset: str, **data_id: object) -> Path | None:
        rel = self.relpath(dataset, **data_id)
        for repo in self.chain:
            candidate = repo / rel
            if candidate.is_file():
                return candidate
        return None

    def require(self, dataset: str, **data_id: object) -> Path:
        found = self.find(dataset, **data_id)
        if found is None:
            rel = self.relpath(dataset, **data_id)
            where = ", ".join(str(r) for r in self.chain)
            ids = ", ".join(f"{k}={v}" for k, v in data_id.items())
            raise InputError(f"no {dataset} for {ids}: {rel} is in none of {where}")
        return found

    # ---- discovery -----------------------------------------------------------------------

    def discover(self, dataset: str, **known: object) -> list[tuple[dict[str, object], Path]]:
        """Every file of a dataset whose data id agrees with `known`, with the data id read back.

        Like `butler.subset`: the template, with the known keys filled in and the rest as wildcards,
        is globbed in each repository of the chain; a data id found in a child hides the same one in
        a parent. Results are in data-id order of the template's keys.
        """
        try:
            template = TEMPLATES[self.camera][dataset]
        except KeyError:
            raise InputError(f"unknown dataset type {dataset!r} for {self.camera}") from None
        pattern, regex, keys = template_matchers(template, known)
        found: dict[tuple, tuple[dict[str, object], Path]] = {}
        for repo in self.chain:
            for path in sorted(repo.glob(pattern)):
                m = regex.fullmatch(path.relative_to(repo).as_posix())
                if m is None or not path.is_file():
                    continue
                try:
                    groups = _groups(m, keys)
                except _Inconsistent:
                    continue  # e.g. a file of another visit misfiled in this visit's directory
                data_id = {k: int(v) if kind == "d" else v for k, (v, kind) in groups.items()}
                key = tuple(data_id[k] for k in keys)
                found.setdefault(key, (data_id, path))
        return [found[k] for k in sorted(found, key=_sortable)]


    def _dirs(self, rel: str) -> Iterator[Path]:
        for repo in self.chain:
            d = repo / rel
            if d.is_dir():
                yield from (p for p in d.iterdir() if p.is_dir())

    def tracts(self) -> list[int]:
        """Tracts that have a merged (ref) directory anywhere along the chain."""
        return sorted({int(p.name) for p in self._dirs("deepCoadd-results/merged") if p.name.isdigit()})

    def patches(self, tract: int) -> list[str]:
        """Patches of a tract that have a deepCoadd_ref, in (x, y) order."""
        found = {
            p.name
            for p in self._dirs(f"deepCoadd-results/merged/{tract}")
            if _PATCH_RE.match(p.name) and self.find("deepCoadd_ref", tract=tract, patch=p.name)
        }
        return sorted(found, key=lambda s: tuple(int(v) for v in s.split(",")))

    def bands(self, tract: int | None = None) -> list[str]:
        """Filters with coadd results (of one tract, if given), in ugrizy order first."""
        names = {p.name for p in self._dirs("deepCoadd-results") if p.name != "merged"}
        if tract is not None:
            names = {b for b in names if any(True for _ in self._dirs(f"deepCoadd-results/{b}/{tract}"))}
        return sort_bands(names)




def sort_bands(bands: object) -> list[str]:
    return sorted(bands, key=lambda b: (BANDS.index(b) if b in BANDS else len(BANDS), b))


def patch_key(tract: int, patch: str) -> str:
    """HDF5 group name `coadd_<tract>_<xy>` (old merge_tract_cat: drop non-identifier characters)."""
    return f"coadd_{tract}_{patch.replace(',', '')}"


_PLACEHOLDER = re.compile(r"%\((\w+)\)(0?\d*)([sd])")


def template_matchers(template: str, known: dict[str, object]) -> tuple[str, re.Pattern, dict[str, str]]:
    """A glob pattern, a full-path regex and {key: 'd'|'s'} for a Gen2 path template."""
    glob_parts: list[str] = []
    regex_parts: list[str] = []
    keys: dict[str, str] = {}
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        literal = template[pos : m.start()]
        glob_parts.append(_glob_escape(literal))
        regex_parts.append(re.escape(literal))
        key, width, kind = m.group(1), m.group(2), m.group(3)
        if key in known:
            value = ("%" + width + kind) % known[key]
            glob_parts.append(_glob_escape(value))
            regex_parts.append(f"(?P<{key}__{len(regex_parts)}>{re.escape(value)})")
        else:
            glob_parts.append("*")
            body = r"\d+" if kind == "d" else r"[^/]+"
            regex_parts.append(f"(?P<{key}__{len(regex_parts)}>{body})")
        keys.setdefault(key, kind)
        pos = m.end()
    literal = template[pos:]
    glob_parts.append(_glob_escape(literal))
    regex_parts.append(re.escape(literal))
    return "".join(glob_parts), re.compile("".join(regex_parts)), keys


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _groups(m: re.Match, keys: dict[str, str]) -> dict[str, tuple[str, str]]:
    """The value of each key; a key repeated in the template must have one value everywhere."""
    values: dict[str, tuple[str, str]] = {}
    for name, value in m.groupdict().items():
        key = name.rsplit("__", 1)[0]
        if key in values and values[key][0] != value:
            raise _Inconsistent(key)
        values[key] = (value, keys[key])
    return values


class _Inconsistent(ValueError):
    pass


def _sortable(key: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, int) else (1, 0, str(v)) for v in key)
