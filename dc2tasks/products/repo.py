"""A Gen2 butler repository read as a directory tree: templates, the rerun chain, discovery.

No butler: the CameraMapper templates of obs_lsst / obs_lsstSim (spec §1.0) say where each dataset
is, and a repository names its parents, where a dataset missing from it is looked for in turn (as
the Gen2 butler does). A repository names them the way its butler wrote them: `_parents` in its
`repositoryCfg.yaml`, or, before that file existed, a `_parent` entry (a symbolic link to the parent;
a regular file whose first line is the parent's path; or the parent repository itself as a folder
named `_parent`). When both are there the cfg is read and `_parent` is not, as the Gen2 butler did.
The camera (which templates) comes from the mapper class the cfg's `_mapper` or the `_mapper` file
names, the repository's own or else its parents'; a mapper not in MAPPER_CAMERAS is an error.

A FITS dataset is found as the template's `.fits` file or as its gzip-compressed `.fits.gz` (Gen2
repositories hold both kinds); both in one repository for one data id is an error, as which of the
two is the dataset is not known.
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
        "deepDiff_differenceExp": "deepDiff/v%(visit)d-f%(filter)s/R%(raft)s/diffexp-S%(sensor)s.fits",
        "deepDiff_diaSrc": "deepDiff/v%(visit)d-f%(filter)s/R%(raft)s/diaSrc-S%(sensor)s.fits",
        "deepDiff_diaObject": "deepDiff/diaObject/%(tract)d/%(patch)s/diaObject-%(tract)d-%(patch)s.fits",
    },
}

MAPPERS = {
    "obs_lsst": "lsst.obs.lsst.imsim.ImsimMapper",
    "obs_lsstSim": "lsst.obs.lsstSim.LsstSimMapper",
}
"""Per camera, the mapper class a repository of it names (the one the sample writes)."""

MAPPER_CAMERAS: dict[str, str] = {
    # obs_lsst (DC2 Run 1.2 on: imSim and PhoSim) and obs_lsstCam, its name before September 2018;
    # the class by its package's short name and by its module
    "lsst.obs.lsst.imsim.ImsimMapper": "obs_lsst",
    "lsst.obs.lsst.phosim.PhosimMapper": "obs_lsst",
    "lsst.obs.lsst.LsstCamMapper": "obs_lsst",
    "lsst.obs.lsst.lsstCamMapper.LsstCamMapper": "obs_lsst",
    "lsst.obs.lsstCam.LsstCamMapper": "obs_lsst",
    "lsst.obs.lsstCam.lsstCamMapper.LsstCamMapper": "obs_lsst",
    # obs_lsstSim: Run 1.1p
    "lsst.obs.lsstSim.LsstSimMapper": "obs_lsstSim",
    "lsst.obs.lsstSim.lsstSimMapper.LsstSimMapper": "obs_lsstSim",
}
"""Every mapper class whose repositories these templates read, and the camera it is."""

COMMA_FREE_KEYS: dict[str, tuple[str, ...]] = {"obs_lsstSim": ("raft", "sensor")}
"""Data id keys a camera's mapper writes into paths without their commas: obs_lsstSim's data ids
say raft "2,2", sensor "1,1" (as its registry does), its files are `R22/S11.fits`."""

REPOSITORY_CFG = "repositoryCfg.yaml"
MAPPER_FILE = "_mapper"
PARENT = "_parent"
GZIP_SUFFIX = ".gz"

_PATCH_RE = re.compile(r"^\d+,\d+$")


def camera_of(mapper: str, where: object = "the repository") -> str:
    """The camera of a mapper class; InputError naming the mapper and `where` for any other."""
    try:
        return MAPPER_CAMERAS[mapper]
    except KeyError:
        raise InputError(
            f"{where}: unknown mapper {mapper!r}: the readers know the templates of "
            + ", ".join(sorted(MAPPER_CAMERAS))
        ) from None


def first_line(text: str) -> str:
    """What a `_mapper` or `_parent` file says: its first line, stripped (the butler read no more)."""
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def path_id(camera: str, data_id: Mapping[str, object]) -> dict[str, object]:
    """A data id as the camera's templates are filled with (either spelling of raft and sensor)."""
    keys = COMMA_FREE_KEYS.get(camera, ())
    return {k: str(v).replace(",", "") if k in keys else v for k, v in data_id.items()}


def _butler_id(camera: str, path_values: Mapping[str, object]) -> dict[str, object]:
    """Values read back from a path as the butler's data id spells them ("22" -> "2,2")."""
    keys = COMMA_FREE_KEYS.get(camera, ())
    return {k: ",".join(str(v)) if k in keys and "," not in str(v) else v for k, v in path_values.items()}


class _TolerantLoader(yaml.SafeLoader):
    """Reads repositoryCfg.yaml without the LSST classes its tags name."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return suffix or loader.construct_scalar(node)


def _python_name(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> str:
    """`!!python/name:lsst.obs.lsst.imsim.ImsimMapper ''`, the butler's way to name a mapper: the name."""
    return suffix


_TolerantLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", _python_name)
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


def _legacy_parent_root(repo: Path) -> str | None:
    """The parent a repository's `_parent` names, as written (relative to the repository, or
    absolute): a symbolic link's target, a regular file's first line, a folder's own name."""
    entry = repo / PARENT
    if entry.is_symlink():
        return os.readlink(entry)
    if entry.is_dir():
        return PARENT
    if entry.is_file():
        return first_line(entry.read_text()) or None
    return None


def _own_mapper(repo: Path, cfg: Mapping[str, object] | None) -> tuple[str, Path] | None:
    """The mapper class this repository itself names, and the file that names it."""
    named = cfg.get("_mapper") if cfg is not None else None
    if isinstance(named, str) and named:
        return named, repo / REPOSITORY_CFG
    mapper_file = repo / MAPPER_FILE
    if mapper_file.is_file():
        name = first_line(mapper_file.read_text())
        if name:
            return name, mapper_file
    return None


def _parents(repo: Path, cfg: Mapping[str, object] | None) -> list[Path]:
    """The repositories this one names as parents, in order; each must be a directory."""
    if cfg is not None:
        where, roots = repo / REPOSITORY_CFG, parent_roots(cfg)
    else:
        where, root = repo / PARENT, _legacy_parent_root(repo)
        roots = [root] if root else []
    parents = [(repo / root).resolve() for root in roots]
    for parent in parents:
        if not parent.is_dir():
            raise NotARepositoryError(f"{where}: parent repository {parent} does not exist")
    return parents


def _stored(path: str) -> Path | None:
    """The file that holds the dataset a template names: the path itself or, for FITS, its `.gz`."""
    plain = os.path.isfile(path)
    packed = path + GZIP_SUFFIX
    if not path.endswith(".fits") or not os.path.isfile(packed):
        return Path(path) if plain else None
    if plain:
        raise _both(Path(path), Path(packed))
    return Path(packed)


def _both(one: Path, other: Path) -> InputError:
    return InputError(f"{one} and {other} hold the same dataset: which one to read is not known; remove one")


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
        name, where = mapper
        return cls(root, chain, camera_of(name, where))

    @classmethod
    def _walk(cls, repo: Path, chain: list[Path], seen: set[Path]) -> tuple[str, Path] | None:
        """Append `repo` and its ancestors to `chain` (depth first); the mapper named nearest."""
        if repo in seen:
            return None
        seen.add(repo)
        cfg_path = repo / REPOSITORY_CFG
        cfg = read_repository_cfg(cfg_path) if cfg_path.is_file() else None
        if cfg is None and not (repo / MAPPER_FILE).is_file() and not os.path.lexists(repo / PARENT):
            raise NotARepositoryError(
                f"{repo}: not a Gen2 repository (none of {REPOSITORY_CFG}, {MAPPER_FILE}, {PARENT} is there)"
            )
        chain.append(repo)
        mapper = _own_mapper(repo, cfg)
        for parent in _parents(repo, cfg):
            found = cls._walk(parent, chain, seen)
            mapper = mapper or found
        return mapper

    # ---- locating datasets ---------------------------------------------------------------

    def _template(self, dataset: str) -> str:
        try:
            return TEMPLATES[self.camera][dataset]
        except KeyError:
            raise InputError(f"unknown dataset type {dataset!r} for {self.camera}") from None

    def relpath(self, dataset: str, **data_id: object) -> str:
        """The dataset's path by its template (`.fits`; the file found may be its `.fits.gz`)."""
        try:
            return self._template(dataset) % path_id(self.camera, data_id)
        except KeyError as exc:
            raise InputError(f"dataset {dataset} needs data id key {exc.args[0]!r}") from None

    def find(self, dataset: str, **data_id: object) -> Path | None:
        rel = self.relpath(dataset, **data_id)
        for repo in self.chain:
            found = _stored(f"{repo}/{rel}")
            if found is not None:
                return found
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
        a parent. Results are in data-id order of the template's keys; data ids are spelled as the
        butler spells them (obs_lsstSim: raft "2,2").
        """
        pattern, regex, keys = template_matchers(self._template(dataset), path_id(self.camera, known))
        found: dict[tuple, tuple[dict[str, object], Path]] = {}
        for repo in self.chain:
            here: dict[tuple, tuple[dict[str, object], Path]] = {}
            for path in sorted(repo.glob(pattern)):
                m = regex.fullmatch(path.relative_to(repo).as_posix())
                if m is None or not path.is_file():
                    continue
                try:
                    groups = _groups(m, keys)
                except _Inconsistent:
                    continue  # e.g. a file of another visit misfiled in this visit's directory
                values = {k: int(v) if kind == "d" else v for k, (v, kind) in groups.items()}
                key = tuple(values[k] for k in keys)
                if key in here:
                    raise _both(here[key][1], path)
                here[key] = (_butler_id(self.camera, values), path)
            for key, hit in here.items():
                found.setdefault(key, hit)
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
    """A glob pattern, a full-path regex and {key: 'd'|'s'} for a Gen2 path template; a `.fits`
    template's pattern and regex take its `.fits.gz` too."""
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
    if template.endswith(".fits"):
        glob_parts.append("*")
        regex_parts.append(f"(?:{re.escape(GZIP_SUFFIX)})?")
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
