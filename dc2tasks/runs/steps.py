"""What each task of a run's DAG runs: the job scripts of the Slurm steps and the commands of the
finishing steps, from a run file and the trigger's params. No Airflow here, so the scripts can be
rendered, checked and golden-tested without a scheduler, and `dry_run` can print them all.

Every step runs `dc2 <command>` (the same code a person types), with every value quoted. Arrays carry
their list in the script (`TRACTS=(4850 4851)`), so no task-list file has to exist on the cluster
before the job starts; visit arrays pass the whole list and each element takes its stripe
(`--array-index $SLURM_ARRAY_TASK_ID --array-count N`).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

from dc2tasks.products.errors import InputError
from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.params import TriggerParams

# product (as the run file names it) -> directory under the work dir, which is also the installed
# product's name; a directory can hold several products (the full and trimmed Object files)
PRODUCT_DIRS = {
    "object": "object",
    "trim_object": "object",
    "dpdd_object": "dpdd_object",
    "merged_dpdd_object": "dpdd_object",
    "source": "source",
    "forced_source": "forced_source",
    "dia_source": "dia_source",
    "dia_object": "dia_object",
}
# the GCRCatalogs catalogs (dc2tasks.products.gcr.PRODUCTS keys) each directory serves
CATALOGS = {
    "object": ("object", "trim_object"),
    "dpdd_object": ("dpdd_object",),
    "source": ("source",),
    "forced_source": ("forced_source",),
    "dia_source": ("dia_source",),
    "dia_object": ("dia_object",),
}
VISIT_COMMANDS = {"source": "source", "forced_source": "forced-source", "dia_source": "dia-source"}


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
        return list(dict.fromkeys(PRODUCT_DIRS[p] for p in self.products))


def plan_run(config: RunConfig, params: TriggerParams) -> RunPlan:
    object_steps = {"object", "trim_object", "dpdd_object"} & set(params.products)
    if config.pixel_scale == "auto" and object_steps:
        raise InputError(
            f"{config.name}: pixel_scale: 'auto' is not supported for DAG runs yet; give the coadd's "
            "arcsec per pixel (0.185 for Run 1.1p and Run 1.2p v3, 0.2 otherwise)"
        )
    rerun = params.rerun or config.rerun
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
        products=params.products,
        tracts=params.tracts or tuple(config.tracts),
        visits=visits,
        visit_file=visit_file,
        work_dir=work,
        dry_run=params.dry_run,
        force=params.force,
    )


@dataclass(frozen=True)
class StepScript:
    """The body of one Slurm job (the operator adds the #SBATCH lines) and its array size."""

    step: str  # the run file's step name (slurm.time/memory keys)
    script: str
    array_size: int | None = None


def _q(value: object) -> str:
    return shlex.quote(str(value))


def _dc2(dc2: str, *args: object) -> str:
    return " ".join([dc2, *(_q(a) for a in args)])


def _repo_args(config: RunConfig, plan: RunPlan) -> list[object]:
    return [config.repository] + (["--rerun", plan.rerun] if plan.rerun else [])


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


def step_scripts(config: RunConfig, plan: RunPlan, dc2: str = "dc2") -> dict[str, StepScript]:
    """task id -> job script, for every Slurm step this plan runs."""
    work = PurePosixPath(plan.work_dir)
    out: dict[str, StepScript] = {}
    head = _header(dc2)
    ntracts = len(plan.tracts)
    if plan.makes("object"):
        out["merge_tract"] = StepScript(
            "merge_tract",
            head
            + _tract_array(plan)
            + _dc2(
                dc2,
                "merge-tract",
                *_repo_args(config, plan),
                "--bands",
                "".join(config.bands),
                "-o",
                work / "object",
            )
            + ' --tract "$T"\n',
            ntracts,
        )
    if plan.makes("trim_object"):
        out["trim"] = StepScript(
            "trim",
            head
            + _tract_array(plan)
            + f'{dc2} trim {_q(work / "object")}/object_tract_"$T".hdf5 -o {_q(work / "object")}\n',
            ntracts,
        )
    if plan.makes("dpdd_object"):
        scale = [] if config.pixel_scale == "auto" else ["--pixel-scale", config.pixel_scale]
        out["dpdd"] = StepScript(
            "dpdd",
            head
            + _tract_array(plan)
            + f'{dc2} dpdd {_q(work / "object")}/trim_object_tract_"$T".hdf5 '
            + " ".join(_q(a) for a in ["-o", work / "dpdd_object", *scale])
            + "\n",
            ntracts,
        )
    if plan.makes("merged_dpdd_object"):
        merged = work / "dpdd_object" / f"dpdd_{config.name}_object.parquet"
        out["merge_parquet"] = StepScript(
            "merge_parquet",
            head + f"{dc2} merge-parquet --sort {_q(work / 'dpdd_object')}/dpdd_object_tract_*.parquet "
            f"-o {_q(merged)}\n",
        )
    visits = (
        ["--visits", *plan.visits]
        if plan.visits
        else ["--visit-file", plan.visit_file]
        if plan.visit_file
        else []
    )
    stripes = visit_stripes(config, plan)
    for product, command in VISIT_COMMANDS.items():
        if not plan.makes(product):
            continue
        args: list[object] = [command, *_repo_args(config, plan), *visits, "-o", work / product]
        if product == "source":
            args += ["--objects", work / "dpdd_object"]
        if plan.force:
            args.append("--force")
        out[product] = StepScript(
            product,
            head
            + _dc2(dc2, *args)
            + f' --array-index "${{SLURM_ARRAY_TASK_ID:-0}}" --array-count {stripes}\n',
            stripes,
        )
    if plan.makes("dia_object"):
        out["dia_object"] = StepScript(
            "dia_object",
            head
            + _dc2(
                dc2,
                "dia-object",
                *_repo_args(config, plan),
                "--tract",
                *plan.tracts,
                "--dia-source-dir",
                work / "dia_source",
                "-o",
                work / "dia_object",
            )
            + "\n",
        )
    return out


def catalog_config_dir(plan: RunPlan) -> PurePosixPath:
    return PurePosixPath(plan.work_dir) / "gcr-catalogs"


def planned_catalogs(plan: RunPlan, directory: str) -> list[str]:
    """The GCRCatalogs catalogs (gcr.PRODUCTS keys) a product directory gets in this run."""
    return [
        c for c in CATALOGS[directory] if c not in ("object", "trim_object") or plan.makes(c)
    ]


def catalog_pixel_scale(config: RunConfig, catalog: str) -> float:
    """The pixel scale a catalog config carries: the run's for the Object catalogs (whose readers
    turn pixel moments into arcsec), the coadd default elsewhere, where no reader uses it."""
    from dc2tasks.products.gcr import DEFAULT_PIXEL_SCALE

    if catalog in ("object", "trim_object", "dpdd_object") and config.pixel_scale != "auto":
        return float(config.pixel_scale)
    return DEFAULT_PIXEL_SCALE


def rendered_catalog_configs(
    config: RunConfig, plan: RunPlan, directory: str
) -> dict[str, dict[str, object]]:
    """The catalog configs finalize writes for a product directory, by catalog name, computed
    without a file: what a dry run shows (the schema yaml beside the files needs the files)."""
    from dc2tasks.products.gcr import PRODUCTS, catalog_config, catalog_name

    base = config.central.catalog_base_dir(directory)
    return {
        catalog_name(config.name, PRODUCTS[c]): catalog_config(
            PRODUCTS[c], base, config.name, catalog_pixel_scale(config, c)
        )
        for c in planned_catalogs(plan, directory)
    }


def finalize_commands(
    config: RunConfig, plan: RunPlan, directory: str, dc2: str | Sequence[str] = "dc2", config_hash: str = ""
) -> list[list[str]]:
    """argv of the commands that turn a product directory into something installable: its catalog
    configs and schema yaml (written while the producer still owns the directory), then its manifest
    with the provenance the producer knows (the job records come on stdin)."""
    from dc2tasks.products.gcr import PRODUCTS, catalog_name

    work = PurePosixPath(plan.work_dir)
    cfg_dir = catalog_config_dir(plan)
    prefix = [dc2] if isinstance(dc2, str) else list(dc2)
    out: list[list[str]] = []
    configs: list[str] = []
    for catalog in planned_catalogs(plan, directory):
        argv = [
            *prefix,
            "gcr-config",
            "--product",
            catalog,
            "--run",
            config.name,
            "--base-dir",
            str(work / directory),
        ]
        argv += ["--config-base-dir", config.central.catalog_base_dir(directory), "-o", str(cfg_dir)]
        argv += ["--pixel-scale", str(catalog_pixel_scale(config, catalog))]
        out.append(argv)
        configs.append(str(cfg_dir / f"{catalog_name(config.name, PRODUCTS[catalog])}.yaml"))
    manifest = [*prefix, "manifest", str(work / directory), "--run", config.name, "--jobs", "-"]
    if config_hash:
        manifest += ["--run-config-hash", config_hash]
    for path in configs:
        manifest += ["--catalog-config", path]
    if config.central.group:
        manifest += ["--group", config.central.group]
    manifest += ["--input", f"repository={config.repository}"]
    if plan.rerun:
        manifest += ["--input", f"rerun={plan.rerun}"]
    out.append(manifest)
    return out


def install_command(
    config: RunConfig, plan: RunPlan, directory: str, dc2: str | Sequence[str] = "dc2"
) -> list[str]:
    """argv of the install of one product directory, run as the collaboration account."""
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
    return argv
