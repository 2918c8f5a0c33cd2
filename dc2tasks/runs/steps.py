"""What each task of a run's DAG runs: the job scripts of the Slurm steps and the commands of the
finishing steps, from a run file and the trigger's params. No Airflow here, so the scripts can be
rendered, checked and golden-tested without a scheduler, and `dry_run` can print them all.

Every step runs `dc2 <command>` (the same code a person types), with every value quoted. Arrays carry
their list in the script (`TRACTS=(4850 4851)`), so no task-list file has to exist on the cluster
before the job starts; visit arrays pass the whole list and each element takes its stripe
(`--array-index $SLURM_ARRAY_TASK_ID --array-count N`).
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

from dc2tasks.catalogue import CATALOGUE, Product, Shell, StepInputs
from dc2tasks.products.errors import InputError
from dc2tasks.products.gcr import DEFAULT_PIXEL_SCALE, catalog_config
from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.params import TriggerParams


@dataclass(frozen=True)
class RunPlan:
    """What one DAG run makes; JSON-able, so it travels between tasks as an XCom."""

    run: str
    rerun: str | None
    products: tuple[str, ...]
    tracts: tuple[int, ...]
    visits: tuple[int, ...]  # empty with a visit file: the file's visits
    visit_file: str | None
    work_dir: str
    dry_run: bool
    force: bool
    skipped: dict[str, str] = field(default_factory=dict)  # product -> why the inventory skips it
    qa: str = "enforce"  # the quality gate's mode for this run (the trigger param `qa`)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RunPlan:
        d = dict(data)
        for key in ("products", "tracts", "visits"):
            d[key] = tuple(d[key])  # type: ignore[arg-type]
        return cls(**d)  # type: ignore[arg-type]

    def makes(self, product: str) -> bool:
        return product in self.products

    @property
    def directories(self) -> list[str]:
        """Product directories this run fills, in DAG order."""
        return CATALOGUE.directories(self.products)


def plan_run(config: RunConfig, params: TriggerParams, skipped: Mapping[str, str] | None = None) -> RunPlan:
    """The run's scope from the trigger's params, without the products the inventory `skipped`."""
    scaled = [p for p in params.products if (c := CATALOGUE[p].catalog) is not None and c.pixel_scale]
    if config.pixel_scale == "auto" and scaled:
        raise InputError(
            f"{config.name}: pixel_scale: 'auto' is not supported for DAG runs yet; give the coadd's "
            "arcsec per pixel (0.185 for Run 1.1p and Run 1.2p v3, 0.2 otherwise)"
        )
    rerun = params.rerun or config.rerun
    if rerun and config.repository is None:
        raise InputError(f"{config.name}: rerun {rerun!r}: this run reads no repository, only object_source")
    # one work directory per rerun, so the watcher's runs of new reruns never mix their files
    work = config.working_dir if rerun is None or rerun == config.rerun else f"{config.working_dir}/{rerun}"
    visits: tuple[int, ...] = params.visits
    visit_file = None
    if not visits and config.visits is not None:
        if config.visit_file is not None:
            visit_file = config.visit_file
        else:
            visits = tuple(config.visit_list())
    return RunPlan(
        run=config.name,
        rerun=rerun,
        products=tuple(p for p in params.products if p not in (skipped or {})),
        tracts=params.tracts or tuple(config.tracts),
        visits=visits,
        visit_file=visit_file,
        work_dir=work,
        dry_run=params.dry_run,
        force=params.force,
        skipped=dict(skipped or {}),
        qa=params.qa,
    )


INVENTORY_FILE = "inventory.json"
"""The inventory's JSON report, in the run's work directory (and named in its provenance)."""


def inventory_command(
    config: RunConfig, plan: RunPlan, dc2: str | Sequence[str] = "dc2"
) -> list[str] | None:
    """`dc2 inventory` of the plan's scope: the repository's files for the products it makes,
    printed as JSON (and kept in the work directory, except in a dry run, which changes nothing);
    None when the plan makes nothing from the repository (only products of this run's products)."""
    prefix = [dc2] if isinstance(dc2, str) else list(dc2)
    products = [p for p in plan.products if CATALOGUE[p].inputs]
    if not products:
        return None
    argv = [*prefix, "inventory", *_repo_args(config, plan), "--products", *products, "--json"]
    if plan.tracts:
        argv += ["--tracts", *map(str, plan.tracts)]
    if plan.visits:
        argv += ["--visits", *map(str, plan.visits)]
    elif plan.visit_file:
        argv += ["--visit-file", plan.visit_file]
    argv += ["--bands", "".join(config.bands)]
    if not plan.dry_run:
        argv += ["-o", str(PurePosixPath(plan.work_dir) / INVENTORY_FILE)]
    return argv


def inventory_report(config: RunConfig, plan: RunPlan) -> str | None:
    """Where the run's inventory task kept its JSON report; None when it lists nothing."""
    if inventory_command(config, plan) is None:
        return None
    return str(PurePosixPath(plan.work_dir) / INVENTORY_FILE)


def inventory_skips(products: Sequence[str], report: Mapping[str, Mapping[str, object]]) -> dict[str, str]:
    """The products of a run its inventory `report` (by product) says cannot be made, with the
    reason: every file of one of its input datasets absent, or a product it needs skipped. Partial
    inputs are not a reason: the step proceeds and the report names what is missing."""
    skipped: dict[str, str] = {}
    for p in CATALOGUE:
        if p.name not in products:
            continue
        status = report.get(p.name, {})
        gone = [n for n in p.needs if n in skipped]
        if status.get("status") == "absent":
            skipped[p.name] = f"inputs absent: {status.get('reason')}"
        elif gone:
            skipped[p.name] = f"needs {', '.join(gone)}, which is skipped"
    return skipped


@dataclass(frozen=True)
class StepScript:
    """The body of one Slurm job (the operator adds the #SBATCH lines) and its array size."""

    step: str  # the run file's step name (slurm.time/memory keys)
    script: str
    array_size: int | None = None


def _q(value: object) -> str:
    return shlex.quote(str(value))


def _repo_args(config: RunConfig, plan: RunPlan) -> tuple[str, ...]:
    if config.repository is None:  # a run from an Object archive only: no step reads a repository
        return ()
    return (config.repository, *(("--rerun", plan.rerun) if plan.rerun else ()))


def _tract_array(plan: RunPlan) -> str:
    return (
        f"TRACTS=({' '.join(str(int(t)) for t in plan.tracts)})\n"
        'T="${TRACTS[${SLURM_ARRAY_TASK_ID:-0}]}"\n'
        'echo "tract $T (array element ${SLURM_ARRAY_TASK_ID:-0})"\n'
    )


def _header(dc2: str) -> str:
    return f"set -euo pipefail\n{_dc2(dc2, '--version')}\n"


def visit_stripes(config: RunConfig, plan: RunPlan) -> int:
    """Array size for the visit steps: visits per element from the run file."""
    count = len(plan.visits) if plan.visits else len(config.visit_list()) if config.visits else 0
    return max(1, math.ceil(count / config.slurm.visits_per_array_element))


def step_inputs(config: RunConfig, plan: RunPlan) -> StepInputs:
    """The run's values every product's job arguments are made from."""
    source = config.object_source
    visits: tuple[str, ...] = ()
    if plan.visits:
        visits = ("--visits", *map(str, plan.visits))
    elif plan.visit_file:
        visits = ("--visit-file", plan.visit_file)
    return StepInputs(
        run=config.name,
        work=PurePosixPath(plan.work_dir),
        repo=_repo_args(config, plan),
        bands="".join(config.bands),
        pixel_scale=() if config.pixel_scale == "auto" else ("--pixel-scale", str(config.pixel_scale)),
        tracts=plan.tracts,
        visits=visits,
        force=plan.force,
        directories={p.name: p.directory for p in CATALOGUE},
        archived={source.product: PurePosixPath(source.archive)} if source else {},
        schemas={source.product: PurePosixPath(source.schema_file)} if source and source.schema_file else {},
    )


def _dc2(dc2: str, *args: object) -> str:
    return " ".join([dc2, *(a if isinstance(a, Shell) else _q(a) for a in args)])


def step_script(product: Product, config: RunConfig, plan: RunPlan, dc2: str = "dc2") -> StepScript:
    """The job of one product's step: `dc2 <command> <argv>` inside its array."""
    command = _dc2(dc2, product.command, *product.argv(step_inputs(config, plan)))
    if product.job_array == "tract":
        return StepScript(product.step, _header(dc2) + _tract_array(plan) + command + "\n", len(plan.tracts))
    if product.job_array == "visit":
        stripes = visit_stripes(config, plan)
        suffix = f' --array-index "${{SLURM_ARRAY_TASK_ID:-0}}" --array-count {stripes}'
        return StepScript(product.step, _header(dc2) + command + suffix + "\n", stripes)
    return StepScript(product.step, _header(dc2) + command + "\n")


def step_scripts(config: RunConfig, plan: RunPlan, dc2: str = "dc2") -> dict[str, StepScript]:
    """step -> job script, for every Slurm step this plan runs."""
    return {p.step: step_script(p, config, plan, dc2) for p in CATALOGUE if plan.makes(p.name)}


QA_STEP = "qa"
"""The slurm.time / slurm.memory key of every product's `dc2 qa` job (the catalogue's extra key)."""


def qa_script(product: Product, config: RunConfig, plan: RunPlan, dc2: str = "dc2") -> StepScript:
    """The job of one product's quality checks: `dc2 qa` on its directory as finalize left it,
    against the run's inventory and truth, with the run file's thresholds and the plan's tracts and
    visits; `--enforce` (exit 3 when a check fails) only when the gate enforces."""
    args: list[object] = [str(PurePosixPath(plan.work_dir) / product.directory), "--product", product.name]
    if (report := inventory_report(config, plan)) is not None:
        args += ["--against", report]
    if config.qa.truth is not None:
        args += ["--truth", config.qa.truth]
    if config.qa.thresholds:
        args += ["--thresholds", json.dumps(config.qa.thresholds, sort_keys=True, separators=(",", ":"))]
    if plan.tracts:
        args += ["--tracts", *plan.tracts]
    if plan.visits:
        args += ["--visits", *plan.visits]
    if plan.qa == "enforce":
        args.append("--enforce")
    return StepScript(QA_STEP, _header(dc2) + _dc2(dc2, "qa", *args) + "\n")


def catalog_config_dir(plan: RunPlan) -> PurePosixPath:
    return PurePosixPath(plan.work_dir) / "gcr-catalogs"


def planned_catalogs(plan: RunPlan, directory: str) -> list[Product]:
    """The products of a directory whose GCRCatalogs configs this run writes: those it makes, or,
    when it makes none of them (only a product derived from the directory's files), all of them."""
    served = [p for p in CATALOGUE.in_directory(directory) if p.catalog is not None]
    return [p for p in served if plan.makes(p.name)] or served


def catalog_pixel_scale(config: RunConfig, product: Product) -> float:
    """The pixel scale a catalog config carries: the run's for the catalogs whose readers turn pixel
    moments into arcsec, the coadd default elsewhere, where no reader uses it."""
    if product.catalog is not None and product.catalog.pixel_scale and config.pixel_scale != "auto":
        return float(config.pixel_scale)
    return DEFAULT_PIXEL_SCALE


def rendered_catalog_configs(
    config: RunConfig, plan: RunPlan, directory: str
) -> dict[str, dict[str, object]]:
    """The catalog configs finalize writes for a product directory, by catalog name, computed
    without a file: what a dry run shows (the schema yaml beside the files needs the files)."""
    base = config.central.catalog_base_dir(directory)
    return {
        p.catalog_name(config.name): catalog_config(p, base, config.name, catalog_pixel_scale(config, p))
        for p in planned_catalogs(plan, directory)
    }


@dataclass(frozen=True)
class FinishCommand:
    """One command of `finalize`: `jobs_on_stdin` gets the run's sacct records as JSON."""

    what: str
    argv: list[str]
    jobs_on_stdin: bool = False


def _gcr_config_argv(
    config: RunConfig, plan: RunPlan, product: Product, prefix: list[str]
) -> list[str]:
    return [
        *prefix,
        "gcr-config",
        "--product",
        product.name,
        "--run",
        config.name,
        "--base-dir",
        str(PurePosixPath(plan.work_dir) / product.directory),
        "--config-base-dir",
        config.central.catalog_base_dir(product.directory),
        "-o",
        str(catalog_config_dir(plan)),
        "--pixel-scale",
        str(catalog_pixel_scale(config, product)),
    ]


def _manifest_argv(
    config: RunConfig, plan: RunPlan, directory: str, prefix: list[str], config_hash: str, configs: list[str]
) -> list[str]:
    argv = [*prefix, "manifest", str(PurePosixPath(plan.work_dir) / directory), "--run", config.name]
    argv += ["--jobs", "-"]
    if config_hash:
        argv += ["--run-config-hash", config_hash]
    for path in configs:
        argv += ["--catalog-config", path]
    if config.central.group:
        argv += ["--group", config.central.group]
    for key, value in config.inputs(plan.rerun).items():
        argv += ["--input", f"{key}={value}"]
    if (report := inventory_report(config, plan)) is not None:
        argv += ["--inventory", report]
    return argv


def finalize_commands(
    config: RunConfig, plan: RunPlan, directory: str, dc2: str | Sequence[str] = "dc2", config_hash: str = ""
) -> list[FinishCommand]:
    """The commands that turn a product directory into something installable: its catalog configs
    and schema yaml (written while the producer still owns the directory), then its manifest with
    the provenance the producer knows (the job records come on stdin)."""
    prefix = [dc2] if isinstance(dc2, str) else list(dc2)
    out: list[FinishCommand] = []
    configs: list[str] = []
    for product in planned_catalogs(plan, directory):
        out.append(FinishCommand("gcr-config", _gcr_config_argv(config, plan, product, prefix)))
        configs.append(str(catalog_config_dir(plan) / f"{product.catalog_name(config.name)}.yaml"))
    manifest = _manifest_argv(config, plan, directory, prefix, config_hash, configs)
    out.append(FinishCommand("manifest", manifest, jobs_on_stdin=True))
    return out


def install_command(
    config: RunConfig,
    plan: RunPlan,
    directory: str,
    dc2: str | Sequence[str] = "dc2",
    approved_by: str | None = None,
) -> list[str]:
    """argv of the install of one product directory, run as the collaboration account, through
    the run's quality gate (`approved_by`: who approved, in the gate's approve mode)."""
    argv = [
        *([dc2] if isinstance(dc2, str) else dc2),
        "install",
        str(PurePosixPath(plan.work_dir) / directory),
        "--central",
        config.central.dir,
        "--product",
        directory,
        "--catalog-base-dir",
        config.central.catalog_base_dir(directory),
        "--json",
    ]
    if config.central.group:
        argv += ["--group", config.central.group]
    argv += ["--mode", config.central.mode]
    if config.central.group_managed:
        argv.append("--group-managed")
    if plan.dry_run:
        argv.append("--dry-run")
    if plan.force:
        argv.append("--force")
    if not plan.dry_run:  # a dry run installs nothing, so it gates nothing
        argv += ["--qa-mode", plan.qa]
        if approved_by is not None:
            argv += ["--approved-by", approved_by]
    return argv
