"""The typed model of a data run (`dags/runs/<run>.yaml`).

Why a strict model: a run file drives Slurm jobs on a shared allocation and an install into the
collaboration's central area, so a typo must stop at load time with the field named, not surface
hours later as a failed job or a file in the wrong place. Unknown keys are rejected (a misspelt
optional key would otherwise be silently ignored), nothing is coerced (a quoted "4850" is not a
tract), and every value that will reach an `#SBATCH` line is checked with the same validators the
Slurm job model uses.

Paths may use `${VAR}` or `${VAR:-default}`; a relative path is relative to the run file's
directory, so `demo.yaml` works from any current directory.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from dc2tasks import names
from dc2tasks.catalogue import BANDS, CATALOGUE
from dc2tasks.install.policy import DEFAULT_MODE, CentralMode
from dc2tasks.install.qa_gate import DEFAULT_QA_MODE, QaMode
from dc2tasks.products.errors import InputError
from dc2tasks.products.qa.core import Thresholds
from dc2tasks.products.visit_lists import read_visit_file as read_visit_file  # re-exported
from dc2tasks.products.visit_lists import select_visits
from dc2tasks.slurm import validate as slurm_validate

PRODUCTS: tuple[str, ...] = CATALOGUE.names
"""Every product a run can make, in the order the DAG makes them."""

VISIT_PRODUCTS = frozenset(p.name for p in CATALOGUE if p.unit == "visit")
STEPS: tuple[str, ...] = CATALOGUE.steps
"""The job steps that get their own Slurm time and memory limits."""

DEFAULT_APPROVE_TIMEOUT = "7-00:00:00"
"""How long a run in the gate's approve mode waits for a person's answer: a week of holidays."""
MAX_TRACT = 99_999  # above any tract id of an LSST rings sky map
CONN_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,250}")
DC2_COMMAND_RE = re.compile(r"(?:shifter )?(?:/[A-Za-z0-9_.+/-]{1,1000}|[A-Za-z0-9_.+-]{1,100})")
"""How a cluster job starts `dc2`: a word on PATH, an absolute path, either after `shifter `. It is
written unquoted into job scripts (so `shifter dc2` stays two words): nothing that needs quoting."""
_PATH_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f'\"`$\\;|&<>*?\[\]{}()!#\s]")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

RETIRED_CONSTRAINTS: dict[str, str] = {
    "haswell": "use `cpu` (Perlmutter CPU nodes)",
    "knl": "use `cpu` (Perlmutter CPU nodes)",
}
"""Cori's node features (Cori was retired in 2023): a job asking for them would never start."""
RETIRED_PATHS: dict[str, str] = {
    "/global/cscratch1": "Cori's scratch was retired in 2023: use $PSCRATCH (/pscratch/sd/<initial>/<user>)",
    "/global/projecta": "projecta was retired into the community file system: use its CFS location "
    "(/global/cfs/cdirs/...)",
}
"""Cori-era file systems that no longer exist, and where their data went."""
_FEATURE_RE = re.compile(r"[A-Za-z0-9_.-]+")


def _slurm_check(check, value):  # type: ignore[no-untyped-def]
    """Run a dc2tasks.slurm validator; drop its own field prefix (pydantic names the field)."""
    try:
        check("", value)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix(": ")) from None
    return value


def _expand(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m[1], m[2]
        value = os.environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        raise ValueError(f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")

    return _VAR_RE.sub(sub, text)


def _path(value: str, info: ValidationInfo) -> str:
    """Expand variables and `~`, make absolute against the run file's directory, normalise `..`."""
    expanded = os.path.expanduser(_expand(value))
    if not expanded:
        raise ValueError("empty path")
    bad = _PATH_FORBIDDEN.search(expanded)
    if bad:
        raise ValueError(
            f"{expanded!r}: character {bad[0]!r} is not allowed in a path (it would need quoting)"
        )
    base = (info.context or {}).get("base_dir")
    path = Path(expanded)
    if not path.is_absolute():
        if base is None:
            raise ValueError(
                f"{expanded!r} is relative and there is no run file directory to resolve it against"
            )
        path = Path(base) / path
    return _not_retired(os.path.normpath(path))


def _not_retired(path: str) -> str:
    for root, advice in RETIRED_PATHS.items():
        if path == root or path.startswith(root + "/"):
            raise ValueError(f"{path!r} is under {root}: {advice}")
    return path


def _name(value: str) -> str:
    return names.RUN.check(value)


def _rerun(value: str) -> str:
    return names.RERUN.check(value)


def _group(value: str) -> str:
    return names.ACCOUNT.check(value)


def _file_name(value: str) -> str:
    return names.FILE_PART.check(value)


def _conn_id(value: str) -> str:
    if not CONN_ID_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an Airflow connection id (letters, digits, '_', '.', '-')")
    return value


def _slurm_time(value: str) -> str:
    return _slurm_check(slurm_validate.parse_time_limit, value)


def _slurm_memory(value: str) -> str:
    return _slurm_check(slurm_validate.parse_memory_mib, value)


def _word(value: str) -> str:
    return _slurm_check(lambda f, v: slurm_validate.check(f, v, slurm_validate.WORD_RE, "name"), value)


PathStr = Annotated[str, AfterValidator(_path)]
SlurmTime = Annotated[str, AfterValidator(_slurm_time)]
SlurmMemory = Annotated[str, AfterValidator(_slurm_memory)]
SlurmWord = Annotated[str, AfterValidator(_word)]
ConnId = Annotated[str, AfterValidator(_conn_id)]
Tract = Annotated[int, Field(ge=0, le=MAX_TRACT)]
Visit = Annotated[int, Field(ge=0, le=2**31 - 1)]
Product = Literal[PRODUCTS]  # type: ignore[valid-type]  # the same names, one list
Band = Literal[tuple(BANDS)]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _step_model(name: str, value_type: object, doc: str) -> type[_Strict]:
    """One optional field per job step: an unknown step name is an unknown key."""
    fields = {step: (value_type | None, None) for step in STEPS}
    model = create_model(name, __base__=_Strict, __doc__=doc, **fields)  # type: ignore[call-overload]
    return model


StepTimes = _step_model("StepTimes", SlurmTime, "Slurm time limit per step (`H:M:S`, `D-H:M:S`, minutes).")
StepMemory = _step_model("StepMemory", SlurmMemory, "Slurm memory per step (`500M`, `8G`).")


class SlurmSettings(_Strict):
    account: SlurmWord | None = None
    qos: SlurmWord | None = None
    partition: SlurmWord | None = None
    constraint: str | None = None
    image: str | None = None
    licenses: list[str] = []
    time: StepTimes = Field(default_factory=StepTimes)  # type: ignore[valid-type]
    memory: StepMemory = Field(default_factory=StepMemory)  # type: ignore[valid-type]
    array_throttle: int = Field(16, ge=1, le=10_000, description="`%` throttle: array elements at once")
    visits_per_array_element: int = Field(8, ge=1, le=10_000)
    dc2_command: str = Field(
        "dc2", description="how a job on the cluster starts dc2: on PATH, an absolute path, or `shifter dc2`"
    )
    poll_interval: int | None = Field(
        None, ge=1, le=3600, description="seconds between Slurm status polls (default 30; local backend 2)"
    )

    @field_validator("dc2_command")
    @classmethod
    def _dc2_command(cls, v: str) -> str:
        if not DC2_COMMAND_RE.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a dc2 command: a plain word on PATH (dc2), an absolute path "
                "(/opt/dc2/bin/dc2), or either after 'shifter ' (no other spaces, nothing that needs quoting)"
            )
        return v

    @model_validator(mode="after")
    def _shifter_needs_image(self) -> SlurmSettings:
        if self.dc2_command.startswith("shifter ") and self.image is None:
            raise ValueError(f"dc2_command {self.dc2_command!r} runs dc2 in shifter: set slurm.image too")
        return self

    @field_validator("constraint")
    @classmethod
    def _constraint(cls, v: str | None) -> str | None:
        if v is None:
            return v
        _slurm_check(
            lambda f, x: slurm_validate.check(f, x, slurm_validate.CONSTRAINT_RE, "constraint expression"), v
        )
        for feature in _FEATURE_RE.findall(v):
            advice = RETIRED_CONSTRAINTS.get(feature.lower())
            if advice:
                raise ValueError(f"{feature!r} is a node feature of Cori (retired in 2023): {advice}")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is None:
            return v
        return _slurm_check(lambda f, x: slurm_validate.check(f, x, slurm_validate.IMAGE_RE, "image"), v)

    @field_validator("licenses")
    @classmethod
    def _licenses(cls, v: list[str]) -> list[str]:
        for lic in v:
            _slurm_check(lambda f, x: slurm_validate.check(f, x, slurm_validate.LICENSE_RE, "license"), lic)
        return v

    def time_for(self, step: str) -> str | None:
        return getattr(self.time, step)

    def memory_for(self, step: str) -> str | None:
        return getattr(self.memory, step)


class GcrBaseDir(_Strict):
    """How installed GCRCatalogs configs spell `base_dir`.

    `absolute`: the central path itself. `site_relative`: `^/<path under site_root>`, the form
    gcr-catalogs uses today so one config serves every site (NERSC, IN2P3) that mirrors the tree.
    """

    style: Literal["absolute", "site_relative"] = "absolute"
    site_root: PathStr | None = None

    @model_validator(mode="after")
    def _root_needed(self) -> GcrBaseDir:
        if self.style == "site_relative" and self.site_root is None:
            raise ValueError("style site_relative needs site_root (e.g. /global/cfs/cdirs/lsst/shared)")
        return self


class Central(_Strict):
    dir: PathStr
    group: Annotated[str, AfterValidator(_group)] | None = Field(
        None, description="group the installed files get; None: the installing account's primary group"
    )
    gcr_base_dir: GcrBaseDir = Field(default_factory=GcrBaseDir)
    mode: CentralMode = Field(
        DEFAULT_MODE,
        description="who reads installed files: `group` (0440, directories 0550) or `world` "
        "(0444 / 0555, as the seed's central area)",
    )
    group_managed: bool = Field(
        False,
        description="the central tree is shared by `group`: group-writable directories are accepted "
        "only with sticky bit and setgid (otherwise a directory must be writable by its owner only)",
    )

    @model_validator(mode="after")
    def _managed_needs_group(self) -> Central:
        if self.group_managed and self.group is None:
            raise ValueError("group_managed needs central.group (the group that manages the tree)")
        return self

    @model_validator(mode="after")
    def _under_site_root(self) -> Central:
        root = self.gcr_base_dir.site_root
        if self.gcr_base_dir.style == "site_relative" and root is not None:
            if os.path.commonpath([root, self.dir]) != root:
                raise ValueError(f"central dir {self.dir} is not under gcr_base_dir.site_root {root}")
        return self

    def product_dir(self, product: str) -> str:
        return os.path.join(self.dir, product)

    def catalog_base_dir(self, product: str) -> str:
        """The `base_dir` an installed config gets: the product's `current` pointer."""
        current = os.path.join(self.dir, product, "current")
        if self.gcr_base_dir.style == "absolute":
            return current
        root = self.gcr_base_dir.site_root or "/"
        return "^/" + os.path.relpath(current, root)


class Connections(_Strict):
    producer: ConnId | None = Field(None, description="SSH connection of the account that runs the jobs")
    collaboration: ConnId | None = Field(
        None, description="SSH connection of the collaboration account that owns the central directory"
    )


class RerunRule(_Strict):
    """When the rerun watcher may hand a rerun of the repository to this run, and whose it must be.

    A Gen2 rerun exists (with its repositoryCfg.yaml) from the moment the pipelines start writing
    it, so existence says nothing about completeness: `ready` names the rule. Either way the rerun
    must be a directory (not a symlink) owned by one of `owners`, every entry in it too, and must
    hold the run's products for every tract (and visit) of the run file.
    """

    ready: Literal["marker", "quiet"] = Field(
        description="marker: the pipelines write `marker` when done; quiet: nothing changed for quiet_hours"
    )
    marker: Annotated[str, AfterValidator(_file_name)] | None = Field(
        None, description="completion file directly in the rerun directory (a regular file, not a link)"
    )
    quiet_hours: int | None = Field(
        None, ge=1, le=24 * 60, description="hours without any change under the rerun before it is complete"
    )
    owners: list[Annotated[str, AfterValidator(_group)]] = Field(
        default_factory=list,
        description="accounts a rerun may belong to; empty: the account that lists it (the producer login)",
    )
    max_entries: int = Field(
        1_000_000, ge=1, le=1_000_000_000, description="a rerun with more entries is not examined (a bound)"
    )

    @model_validator(mode="after")
    def _rule_complete(self) -> RerunRule:
        if self.ready == "marker" and (self.marker is None or self.quiet_hours is not None):
            raise ValueError("ready: marker needs `marker` (the completion file name) and no quiet_hours")
        if self.ready == "quiet" and (self.quiet_hours is None or self.marker is not None):
            raise ValueError("ready: quiet needs `quiet_hours` and no marker")
        _no_duplicates(self.owners)  # type: ignore[arg-type]
        return self


class QaSettings(_Strict):
    """The quality gate between `finalize` and `install` (`dc2 qa` per product)."""

    mode: QaMode = Field(
        DEFAULT_QA_MODE,
        description="enforce: a failed check stops the run before install; warn: install anyway and record "
        "the failures; approve: wait for a person's approval in the UI (the trigger param `qa` overrides it)",
    )
    thresholds: dict[str, Any] = Field(
        default_factory=dict, description="threshold name -> number (dc2tasks.products.qa.core.THRESHOLDS)"
    )
    truth: PathStr | None = Field(None, description="a directory of truth tables the checks compare with")
    approve_timeout: SlurmTime = Field(
        DEFAULT_APPROVE_TIMEOUT,
        description="approve mode: how long `approve_qa` waits for an answer, as a Slurm time (`D-H:M:S`, "
        "`H:M:S`, `M:S`, minutes); unanswered by then, the approval is rejected and nothing is installed",
    )

    @property
    def approve_wait(self) -> timedelta:
        return slurm_validate.parse_time_limit("qa.approve_timeout", self.approve_timeout)

    @property
    def limits(self) -> Thresholds:
        """The thresholds the checks are held to: the defaults with this run's values."""
        return Thresholds.from_mapping(self.thresholds)


ARCHIVED_PRODUCT: dict[str, str] = {"full": "object", "trimmed": "trim_object"}
"""What an Object archive's files are, by `object_source.kind`: the files of this catalogue product
(its file names and columns), as a run made them earlier."""


class ObjectArchive(_Strict):
    """Object HDF5 files made earlier (the DC2 archive at NERSC) that a run re-makes its Object
    products from, instead of merging a Gen2 repository's tables."""

    archive: PathStr = Field(description="the directory holding the files")
    kind: Literal["full", "trimmed"] = Field(
        description="full: object_tract_<t>.hdf5 (trimmed by the run); trimmed: trim_object_tract_<t>.hdf5"
    )
    schema_file: PathStr | None = Field(
        None, description="their schema yaml; default: the one beside them, else inferred from them"
    )

    @property
    def product(self) -> str:
        """The catalogue product whose files the archive holds."""
        return ARCHIVED_PRODUCT[self.kind]


def archive_tracts(directory: str, product: str) -> list[int]:
    """The tracts of an archive's files (named by the product's file template), read here."""
    before, _, after = CATALOGUE[product].files.partition("{tract}")
    name_re = re.compile(re.escape(before) + r"(\d+)" + re.escape(after))
    try:
        names_here = os.listdir(directory)
    except OSError as exc:
        raise ValueError(
            f"tracts: not given, and object_source.archive {directory} cannot be listed here "
            f"({exc.strerror or exc}): list the tracts"
        ) from None
    tracts = sorted(int(m[1]) for n in names_here if (m := name_re.fullmatch(n)))
    if not tracts:
        raise ValueError(
            f"tracts: not given, and object_source.archive {directory} holds no "
            f"{CATALOGUE[product].file_name(tract='<t>')} file"
        )
    return tracts


class RunConfig(_Strict):
    """One data run: what to read, what to make, where it goes, and how jobs run."""

    name: Annotated[str, AfterValidator(_name)]
    description: str = ""
    backend: Literal["local", "slurm"]
    repository: PathStr | None = None
    object_source: ObjectArchive | None = None
    rerun: Annotated[str, AfterValidator(_rerun)] | None = None
    watch_reruns: bool = False
    reruns: RerunRule | None = None
    tracts: Annotated[list[Tract], Field(min_length=1)]
    visits: list[Visit] | PathStr | None = None
    bands: Annotated[list[Band], Field(min_length=1)] = list(BANDS)  # type: ignore[assignment]
    pixel_scale: Annotated[float, Field(gt=0, le=10)] | Literal["auto"] = "auto"
    schema_generation: Literal[1, 2, 3, 4, "auto"] = "auto"
    products: Annotated[list[Product], Field(min_length=1)]
    working_dir: PathStr
    central: Central
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    connections: Connections = Field(default_factory=Connections)
    qa: QaSettings = Field(default_factory=QaSettings)

    @model_validator(mode="before")
    @classmethod
    def _tracts_from_archive(cls, data: object, info: ValidationInfo) -> object:
        """Without `tracts`, a run from an archive makes every tract of the archive's files, listed
        where the run file is read (so only where that machine sees the archive)."""
        if not isinstance(data, dict) or "tracts" in data:
            return data
        source = data.get("object_source")
        if not isinstance(source, dict) or source.get("kind") not in ARCHIVED_PRODUCT:
            return data
        try:
            directory = _path(source.get("archive"), info)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return data  # object_source.archive reports it
        return {**data, "tracts": archive_tracts(directory, ARCHIVED_PRODUCT[source["kind"]])}

    @field_validator("tracts", "bands", "products")
    @classmethod
    def _distinct(cls, v: list[object]) -> list[object]:
        return _no_duplicates(v)

    @field_validator("visits", mode="before")
    @classmethod
    def _visits_shape(cls, v: object) -> object:
        if v is not None and not isinstance(v, list | str):
            raise ValueError(f"expected a list of visit ids or the path of a visit file, got {v!r}")
        return v

    @field_validator("pixel_scale", mode="before")
    @classmethod
    def _pixel_scale_shape(cls, v: object) -> object:
        if v != "auto" and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise ValueError(f"expected arcsec per pixel (e.g. 0.2) or 'auto', got {v!r}")
        return v

    @field_validator("visits")
    @classmethod
    def _visits(cls, v: list[int] | str | None) -> list[int] | str | None:
        if isinstance(v, list):
            if not v:
                raise ValueError("an empty visit list; leave `visits` out instead")
            _no_duplicates(v)
        return v

    @model_validator(mode="after")
    def _qa_thresholds(self) -> RunConfig:
        """Checked here, not on QaSettings, so the message's own field path (`qa.thresholds.mag_min`)
        is the one the run file's error names."""
        try:
            Thresholds.from_mapping(self.qa.thresholds)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        self._check_sources()
        for product in self.products:
            for needed in CATALOGUE[product].needs:
                if needed not in self.products and needed not in self.archived:
                    raise ValueError(f"products: {product} is made from {needed}; add {needed} to products")
        if self.watch_reruns and self.reruns is None:
            raise ValueError(
                "reruns: required with watch_reruns: true (when is a rerun complete? "
                "{ready: marker, marker: FILE} or {ready: quiet, quiet_hours: N})"
            )
        visit_products = sorted(VISIT_PRODUCTS.intersection(self.products))
        if visit_products and self.visits is None:
            raise ValueError(f"visits: required, products {', '.join(visit_products)} are per visit")
        if self.backend == "slurm":
            missing = [
                f
                for f, v in (
                    ("slurm.account", self.slurm.account),
                    ("connections.producer", self.connections.producer),
                    ("connections.collaboration", self.connections.collaboration),
                    ("central.group", self.central.group),
                )
                if v is None
            ]
            if missing:
                raise ValueError(f"backend: slurm needs {', '.join(missing)}")
        return self

    @property
    def archived(self) -> tuple[str, ...]:
        """Products this run reads from its Object archive instead of making them: the archive's
        and every product they are made from."""
        return CATALOGUE.with_inputs(self.object_source.product) if self.object_source else ()

    def _check_sources(self) -> None:
        """A Gen2 repository, an Object archive or both; what the archive holds is never made, and
        without a repository only what is made from the archive's files is."""
        if self.object_source is None:
            if self.repository is None:
                raise ValueError(
                    "repository: required field is missing (or object_source: Object HDF5 files)"
                )
            return
        source = self.object_source
        remade = sorted(set(self.archived).intersection(self.products), key=PRODUCTS.index)
        if remade:
            raise ValueError(
                f"products: {', '.join(remade)} cannot be made in a run whose object_source is an archive "
                f"of {source.kind} Object files ({source.archive}): drop {', '.join(remade)}"
            )
        if self.repository is None:
            from_repo = [p for p in self.products if p not in CATALOGUE.made_from(source.product)]
            if from_repo:
                raise ValueError(
                    f"repository: required for products {', '.join(from_repo)} (object_source gives only "
                    f"the Object products made from {CATALOGUE[source.product].file_name(tract='<t>')})"
                )
            for key, value in (("rerun", self.rerun), ("watch_reruns", self.watch_reruns)):
                if value:
                    raise ValueError(f"{key}: needs a repository (this run reads only object_source)")

    def inputs(self, rerun: str | None) -> dict[str, str]:
        """What the run reads, as its products' provenance records it."""
        out: dict[str, str] = {}
        if self.repository is not None:
            out["repository"] = self.repository
        if rerun:
            out["rerun"] = rerun
        if self.object_source is not None:
            out["object_archive"] = self.object_source.archive
            out["object_archive_kind"] = self.object_source.kind
            if self.object_source.schema_file:
                out["object_schema"] = self.object_source.schema_file
        return out

    @property
    def visit_file(self) -> str | None:
        """The visit list file, when visits are given as a path (read where the jobs run)."""
        return self.visits if isinstance(self.visits, str) else None

    def visit_list(self) -> list[int]:
        """Visits inline, or read from the visit file on this machine (one per line, `#` comments)."""
        if self.visits is None:
            return []
        if isinstance(self.visits, list):
            return list(self.visits)
        return select_visits(visit_file=self.visits)


def _no_duplicates(values: list[object]) -> list[object]:
    dupes = sorted({str(x) for x in values if values.count(x) > 1})
    if dupes:
        raise ValueError(f"listed more than once: {', '.join(dupes)}")
    return values
