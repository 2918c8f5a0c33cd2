"""The product catalogue: every product a data run can make, declared once.

An entry says what the product is (its name in run files and trigger params, its unit, the directory
and file names it is written to, the GCRCatalogs catalog that serves it, its docs line), how it is
made (the DAG step, the `dc2` subcommand, the arguments its job passes, the products it needs) and
where the CLI finds the subcommand. Everything that used to keep its own list derives from here:
run-file validation, job scripts, the DAG's tasks and edges, `finalize`'s catalog configs, the
demo's table of installed catalogs, the CLI's product subcommands and the README's product table.

Pure data and small pure functions: no Airflow, no I/O, no import of the rest of dc2tasks (every
layer may import this module).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

Unit = Literal["tract", "visit", "run"]
"""What one file of a product covers; the catalog readers glob one file per tract or per visit."""

Array = Literal["tract", "visit"] | None
"""How a step's Slurm job splits: one array element per tract, a stripe of visits per element, or
one job."""

BANDS = "ugrizy"
"""The LSST filters, in wavelength order: the order of band columns in every product."""


def check_bands(bands: Iterable[str], where: str = "", text: object = None) -> tuple[str, ...]:
    """`bands` as a tuple if there is at least one and each is one of BANDS, given once (a band
    given twice would be merged twice); else ValueError naming `where` (a field) and quoting `text`
    (what was written) or the bands."""
    out = tuple(bands)
    if not out or not set(out) <= set(BANDS) or len(set(out)) != len(out):
        shown = text if text is not None else "".join(map(str, out))
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}bands are distinct letters of {BANDS}, not {shown!r}")
    return out


def parse_bands(text: str, where: str = "") -> tuple[str, ...]:
    """A band list as people and job scripts write it: `ugrizy`, `gri` or `g,r,i`; in that order."""
    return check_bands(re.sub(r"[,\s]", "", text), where, text)


TRACT = '"$T"'
"""The tract of a tract array's element, in a job script."""


class Shell(str):
    """A job-script argument written as is, because it holds a shell variable or glob (`"$T"`);
    every other argument is quoted."""


@dataclass(frozen=True)
class Catalog:
    """The GCRCatalogs catalog a product's directory serves for it."""

    reader: str  # GCRCatalogs `subclass_name`
    name: str  # catalog name, `{run}` filled by the run name folded to [a-z0-9_.]
    schema_filename: str | None
    description: str  # the config's description after "DC2 <run>: "
    id_column: str  # the quantity that identifies a row (the demo loads it to count rows)
    is_dpdd: bool = False
    pixel_scale: bool = False  # the reader turns pixel moments into arcsec with the run's scale


@dataclass(frozen=True)
class StepInputs:
    """What a product's job arguments are made of: the run's values, already chosen."""

    run: str
    work: PurePosixPath
    repo: tuple[str, ...]  # REPO [--rerun R]
    bands: str
    pixel_scale: tuple[str, ...]  # () or ("--pixel-scale", X)
    tracts: tuple[int, ...]
    visits: tuple[str, ...]  # ("--visits", ...), ("--visit-file", F) or ()
    force: bool
    directories: Mapping[str, str]  # product -> its directory under work
    # products this run reads from outside its work directory (an archive): product -> directory
    archived: Mapping[str, PurePosixPath] = field(default_factory=dict)
    # the schema yaml of a product's files, when it is not the one beside them
    schemas: Mapping[str, PurePosixPath] = field(default_factory=dict)

    def dir(self, product: str) -> PurePosixPath:
        return self.archived.get(product) or self.work / self.directories[product]

    def schema_option(self, product: str) -> tuple[object, ...]:
        """`--schema FILE` for a step reading a product's files whose schema is named elsewhere."""
        return ("--schema", self.schemas[product]) if product in self.schemas else ()

    def tract_file(self, product: str, template: str) -> Shell:
        """The array element's file of a per-tract product (`$T` is set by the tract array)."""
        return Shell(f"{shlex.quote(str(self.dir(product)))}/{template.format(tract=TRACT)}")

    def glob(self, product: str, template: str, **values: object) -> Shell:
        """Every file of a product (unquoted `*` in place of the unit's number)."""
        return Shell(
            f"{shlex.quote(str(self.dir(product)))}/{template.format(tract='*', visit='*', **values)}"
        )


Argv = Callable[[StepInputs], Sequence[object]]


@dataclass(frozen=True)
class Product:
    """One product: what it is, how it is made, where it goes."""

    name: str  # in run files and trigger params
    unit: Unit
    step: str  # DAG task id and the run file's slurm.time / slurm.memory key
    command: str  # the `dc2` subcommand its job runs
    argv: Argv  # the arguments after `dc2 <command>` (the array's own options are added)
    directory: str  # under the run's work dir; also the installed product's name
    files: str  # file name template: {tract}, {visit}, {run}
    doc: str  # one line: README table, `dc2 --help`, catalog description
    cli: str  # "module:function" adding the subcommand's arguments: (parser, product) -> None
    needs: tuple[str, ...] = ()  # products of the same run it is made from (required with it)
    uses: tuple[str, ...] = ()  # products it reads, from this run when made, else an earlier one
    inputs: tuple[str, ...] = ()  # Gen2 datasets it reads from the repository (`dc2 inventory`)
    catalog: Catalog | None = None
    group: str | None = None  # the DAG task group it sits in
    array: Array | Literal["unit"] = "unit"  # "unit": by tract or visit as its unit; None: one job
    qa: str | None = None  # "module:function" making its QA report (dc2tasks.products.qa.core.QaFunction)

    @property
    def job_array(self) -> Array:
        if self.array != "unit":
            return self.array
        return None if self.unit == "run" else self.unit

    @property
    def file_pattern(self) -> str:
        """The regex (GCRCatalogs `filename_pattern`) matching this product's files only."""
        parts = re.split(r"(\{tract\}|\{visit\}|\{run\})", self.files)
        return (
            "".join(
                r"\d+" if p in ("{tract}", "{visit}") else r".+" if p == "{run}" else re.escape(p)
                for p in parts
            )
            + "$"
        )

    def file_name(self, **values: object) -> str:
        return self.files.format(**values)

    def catalog_name(self, run: str) -> str:
        if self.catalog is None:
            raise KeyError(f"{self.name}: no GCRCatalogs catalog serves this product")
        return self.catalog.name.format(run=re.sub(r"[^A-Za-z0-9_.]", "_", run).lower())

    @property
    def task_id(self) -> str:
        return f"{self.group}.{self.step}" if self.group else self.step


@dataclass(frozen=True)
class Catalogue:
    """The products in the order the DAG makes them; `needs` and `uses` name earlier entries."""

    products: tuple[Product, ...]
    extra_step_keys: tuple[str, ...] = field(default=())  # slurm limit keys no product owns

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for p in self.products:
            if p.name in seen:
                raise ValueError(f"catalogue: product {p.name!r} declared twice")
            for other in (*p.needs, *p.uses):
                if other not in seen:
                    raise ValueError(f"catalogue: {p.name} needs {other!r}, which is not declared before it")
            seen.add(p.name)
        steps = [p.step for p in self.products]
        if len(set(steps)) != len(steps):
            raise ValueError(f"catalogue: a step makes two products: {steps}")

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products)

    def __getitem__(self, name: str) -> Product:
        for p in self.products:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.products)

    @property
    def steps(self) -> tuple[str, ...]:
        """Every key of the run file's slurm.time and slurm.memory."""
        return tuple(p.step for p in self.products) + self.extra_step_keys

    def by_step(self, step: str) -> Product:
        for p in self.products:
            if p.step == step:
                return p
        raise KeyError(step)

    def with_catalog(self) -> dict[str, Product]:
        """Products served by a GCRCatalogs catalog, by name (`dc2 gcr-config --product`)."""
        return {p.name: p for p in self.products if p.catalog is not None}

    def in_directory(self, directory: str) -> list[Product]:
        return [p for p in self.products if p.directory == directory]

    def directories(self, names: Sequence[str]) -> list[str]:
        """The directories the named products fill, in catalogue order."""
        return list(dict.fromkeys(p.directory for p in self.products if p.name in names))

    def upstream(self, name: str, made: Sequence[str]) -> list[Product]:
        """The products among `made` a product's step waits for: its needs and uses."""
        p = self[name]
        return [self[o] for o in (*p.needs, *p.uses) if o in made]

    def made_from(self, name: str) -> tuple[str, ...]:
        """The products made from a product's files, directly or through others (by `needs`)."""
        below = {name}
        for p in self.products:
            if below.intersection(p.needs):
                below.add(p.name)
        return tuple(p.name for p in self.products if p.name in below and p.name != name)

    def with_inputs(self, name: str) -> tuple[str, ...]:
        """A product and every product it is made from (by `needs`), in catalogue order."""
        above = {name}
        for p in reversed(self.products):
            if p.name in above:
                above.update(p.needs)
        return tuple(p.name for p in self.products if p.name in above)


def _merge_tract(a: StepInputs) -> list[object]:
    return [*a.repo, "--bands", a.bands, "-o", a.dir("object"), "--tract", Shell(TRACT)]


def _trim(a: StepInputs) -> list[object]:
    return [
        a.tract_file("object", "object_tract_{tract}.hdf5"),
        "-o",
        a.dir("trim_object"),
        *a.schema_option("object"),
    ]


def _dpdd(a: StepInputs) -> list[object]:
    return [
        a.tract_file("trim_object", "trim_object_tract_{tract}.hdf5"),
        "-o",
        a.dir("dpdd_object"),
        *a.pixel_scale,
        *a.schema_option("trim_object"),
    ]


def _merge_parquet(a: StepInputs) -> list[object]:
    merged = a.dir("merged_dpdd_object") / CATALOGUE["merged_dpdd_object"].file_name(run=a.run)
    return ["--sort", a.glob("dpdd_object", CATALOGUE["dpdd_object"].files), "-o", merged]


def _visit_step(product: str, *extra: Callable[[StepInputs], list[object]]) -> Argv:
    def argv(a: StepInputs) -> list[object]:
        out = [*a.repo, *a.visits, "-o", a.dir(product)]
        for more in extra:
            out += more(a)
        return out + (["--force"] if a.force else [])

    return argv


def _dia_object(a: StepInputs) -> list[object]:
    return [*a.repo, "--tract", *a.tracts, "--dia-source-dir", a.dir("dia_source"), "-o", a.dir("dia_object")]


OBJECT_READER = "dc2_object.DC2ObjectCatalog"

CATALOGUE = Catalogue(
    (
        Product(
            name="object",
            unit="tract",
            step="merge_tract",
            command="merge-tract",
            argv=_merge_tract,
            directory="object",
            files="object_tract_{tract}.hdf5",
            doc="Object step 1: ref + forced photometry of every band -> object_tract_<t>.hdf5",
            cli="dc2tasks.cli.objects:merge_tract_args",
            qa="dc2tasks.products.qa.objects:object_qa",
            inputs=("deepCoadd_ref", "deepCoadd_forced_src", "deepCoadd_calexp"),
            group="object",
            catalog=Catalog(
                reader=OBJECT_READER,
                name="dc2_object_{run}_all_columns",
                schema_filename="schema.yaml",
                description="Object catalog, all columns of the ref and forced tables",
                id_column="objectId",
                pixel_scale=True,
            ),
        ),
        Product(
            name="trim_object",
            unit="tract",
            step="trim",
            command="trim",
            argv=_trim,
            directory="object",
            files="trim_object_tract_{tract}.hdf5",
            doc="Object step 2: keep the native columns the GCRCatalogs object reader needs",
            cli="dc2tasks.cli.objects:trim_args",
            qa="dc2tasks.products.qa.objects:trim_object_qa",
            needs=("object",),
            group="object",
            catalog=Catalog(
                reader=OBJECT_READER,
                name="dc2_object_{run}",
                schema_filename="trim_schema.yaml",
                description="Object catalog, the columns the DPDD quantities need",
                id_column="objectId",
                pixel_scale=True,
            ),
        ),
        Product(
            name="dpdd_object",
            unit="tract",
            step="dpdd",
            command="dpdd",
            argv=_dpdd,
            directory="dpdd_object",
            files="dpdd_object_tract_{tract}.parquet",
            doc="Object step 3: DPDD columns -> dpdd_object_tract_<t>.parquet",
            cli="dc2tasks.cli.objects:dpdd_args",
            qa="dc2tasks.products.qa.objects:dpdd_object_qa",
            needs=("trim_object",),
            group="object",
            catalog=Catalog(
                reader="dc2_object.DC2ObjectParquetCatalog",
                name="dc2_object_{run}_dpdd",
                schema_filename="dpdd_schema.yaml",
                description="Object catalog, DPDD columns, one Parquet file per tract",
                id_column="objectId",
                is_dpdd=True,
                pixel_scale=True,
            ),
        ),
        Product(
            name="merged_dpdd_object",
            unit="run",
            step="merge_parquet",
            command="merge-parquet",
            argv=_merge_parquet,
            directory="dpdd_object",
            files="dpdd_{run}_object.parquet",
            doc="Object step 4: many tract Parquet files into one, streaming row groups",
            cli="dc2tasks.cli.objects:merge_parquet_args",
            qa="dc2tasks.products.qa.objects:merged_dpdd_object_qa",
            needs=("dpdd_object",),
            group="object",
        ),
        Product(
            name="source",
            unit="visit",
            step="source",
            command="source",
            argv=_visit_step("source", lambda a: ["--objects", a.dir("dpdd_object")]),
            directory="source",
            files="src_visit_{visit}.parquet",
            doc="Source per visit: every detector's src, calibrated, matched to the nearest primary Object",
            cli="dc2tasks.cli.visits:source_args",
            qa="dc2tasks.products.qa.visits:source_qa",
            inputs=("src", "calexp"),
            uses=("dpdd_object",),
            catalog=Catalog(
                reader="dc2_source.DC2SourceCatalog",
                name="dc2_source_{run}",
                schema_filename="schema.yaml",
                description="Source catalog: every detector's src of a visit, calibrated, matched to the "
                "nearest Object",
                id_column="sourceId",
            ),
        ),
        Product(
            name="forced_source",
            unit="visit",
            step="forced_source",
            command="forced-source",
            argv=_visit_step("forced_source"),
            directory="forced_source",
            files="forced_src_visit_{visit}.parquet",
            doc="ForcedSource per visit: every detector's forced_src at the Object positions, calibrated",
            cli="dc2tasks.cli.visits:forced_source_args",
            qa="dc2tasks.products.qa.visits:forced_source_qa",
            inputs=("forced_src", "calexp"),
            catalog=Catalog(
                reader="dc2_forced_source.DC2ForcedSourceCatalog",
                name="dc2_forced_source_{run}",
                schema_filename="schema.yaml",
                description="ForcedSource catalog: forced photometry at Object positions on every "
                "detector of a visit",
                id_column="objectId",
            ),
        ),
        Product(
            name="dia_source",
            unit="visit",
            step="dia_source",
            command="dia-source",
            argv=_visit_step("dia_source"),
            directory="dia_source",
            files="dia_src_visit_{visit}.parquet",
            doc="DIASource per visit: every detector's deepDiff_diaSrc, matched to the nearest DIAObject",
            cli="dc2tasks.cli.visits:dia_source_args",
            qa="dc2tasks.products.qa.visits:dia_source_qa",
            inputs=("deepDiff_diaSrc", "deepDiff_differenceExp", "calexp"),
            catalog=Catalog(
                reader="dc2_dia_source.DC2DiaSourceCatalog",
                name="dc2_dia_source_{run}",
                schema_filename="schema.yaml",
                description="DIASource catalog: difference-image sources of a visit, matched to the "
                "nearest DIAObject",
                id_column="diaSourceId",
            ),
        ),
        Product(
            name="dia_object",
            unit="tract",
            step="dia_object",
            command="dia-object",
            argv=_dia_object,
            directory="dia_object",
            files="dia_object_tract_{tract}.parquet",
            doc="DIAObject per tract: deepDiff_diaObject + per-band light-curve statistics of its "
            "DIASources",
            cli="dc2tasks.cli.visits:dia_object_args",
            qa="dc2tasks.products.qa.visits:dia_object_qa",
            inputs=("deepDiff_diaObject",),
            needs=("dia_source",),
            array=None,  # one job reads every tract's DIASources once
            catalog=Catalog(
                reader="dc2_dia_object.DC2DiaObjectCatalog",
                name="dc2_dia_object_{run}",
                schema_filename="schema.yaml",
                description="DIAObject catalog with per-band light-curve statistics, one Parquet file "
                "per tract",
                id_column="diaObjectId",
            ),
        ),
    ),
    extra_step_keys=("gcr", "qa"),  # gcr: run files may set limits, no job uses them; qa: `dc2 qa` jobs
)
"""Every product, in the order the DAG makes them."""


def markdown_table(catalogue: Catalogue = CATALOGUE) -> str:
    """The README's product table (tests/catalogue checks the README holds exactly this)."""
    rows = [
        "| product | unit | made by | needs | files (in `<work>/`) | GCRCatalogs catalog |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in catalogue:
        origin = ", ".join([*p.needs, *(f"{u} (this run's or an earlier one's)" for u in p.uses)]) or "-"
        served = f"`{p.catalog.name}` ({p.catalog.reader})" if p.catalog else "none"
        rows.append(
            f"| `{p.name}` | {p.unit} | `dc2 {p.command}` (task `{p.task_id}`) | {origin} "
            f"| `{p.directory}/{p.files}` | {served} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
