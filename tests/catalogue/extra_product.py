"""Run in a fresh interpreter by test_catalogue.py: register one more product in the catalogue
before any other dc2tasks module is imported, then report what each consumer of the catalogue
made of it, as JSON on stdout. Nothing outside this file names the product."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import dc2tasks.catalogue as catalogue
from dc2tasks.catalogue import Catalog, Product, StepInputs

ARGV_OF = {}


def star_counts_argv(a: StepInputs) -> list[object]:
    return [*a.repo, "--objects", a.dir("dpdd_object"), "-o", a.dir("star_counts"), "--tract", *a.tracts]


def add_star_counts(parser: argparse.ArgumentParser, product: Product) -> None:
    parser.add_argument("repo")
    parser.add_argument("--objects", required=True)
    parser.add_argument("-o", "--output-dir", required=True)
    parser.set_defaults(func=lambda args: 0)


STAR_COUNTS = Product(
    "star_counts", "tract", "star_counts", "star-counts", star_counts_argv, "star_counts",
    "star_counts_tract_{tract}.parquet", "Star counts per tract, from the DPDD Object table",
    f"{__name__}:add_star_counts", needs=("dpdd_object",), array=None,
    catalog=Catalog("dc2_object.DC2ObjectParquetCatalog", "dc2_star_counts_{run}", "schema.yaml",
                    "star counts per tract", "objectId"),
)
catalogue.CATALOGUE = dataclasses.replace(
    catalogue.CATALOGUE, products=(*catalogue.CATALOGUE.products, STAR_COUNTS)
)


def main(run_file: str, work: str) -> dict[str, object]:
    import yaml

    from dc2tasks.airflow.run_dag import build_dag
    from dc2tasks.runs.config import PRODUCTS
    from dc2tasks.runs.loader import RunConfigError, load_run_config
    from dc2tasks.runs.params import validate_params
    from dc2tasks.runs.steps import finalize_commands, plan_run, rendered_catalog_configs, step_scripts

    data = yaml.safe_load(Path(run_file).read_text())
    data["products"] = [*data["products"], "star_counts"]
    ok = Path(work) / "with.yaml"
    ok.write_text(yaml.safe_dump(data))
    data["products"] = ["object", "star_counts"]
    bad = Path(work) / "without.yaml"
    bad.write_text(yaml.safe_dump(data))
    try:
        load_run_config(bad)
        refused = ""
    except RunConfigError as err:
        refused = str(err)
    config = load_run_config(ok)
    dag = build_dag(config, ok)
    task = dag.get_task("star_counts")
    plan = plan_run(config, validate_params({}, config))
    return {
        "products": list(PRODUCTS),
        "refused": refused,
        "upstream": sorted(task.upstream_task_ids),
        "downstream": sorted(task.downstream_task_ids),
        "script": step_scripts(config, plan, "dc2")["star_counts"].script,
        "directories": plan.directories,
        "configs": rendered_catalog_configs(config, plan, "star_counts"),
        "finalize": [c.argv for c in finalize_commands(config, plan, "star_counts")],
        "cli": cli_view(),
    }


def cli_view() -> dict[str, object]:
    """The product's `dc2` subcommand: its help line, a parsed command line, and gcr-config's choice."""
    from dc2tasks.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["star-counts", "repo", "--objects", "o", "-o", "out"])
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    gcr = next(a for a in commands.choices["gcr-config"]._actions if a.dest == "product")
    return {
        "help": {a.dest: a.help for a in commands._choices_actions}["star-counts"],
        "parsed": [args.command, args.repo, args.objects, args.output_dir, args.func(args)],
        "gcr_products": sorted(gcr.choices),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
