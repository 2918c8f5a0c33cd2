"""`dc2`: every product step as a command, so a Slurm job, the local backend and a person at a
terminal all run the same code path."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from dc2tasks import __version__, names
from dc2tasks.cli_help import HelpFormatter, nonneg_int
from dc2tasks.products.errors import InputError

log = logging.getLogger("dc2tasks")

EPILOG = """\
The Object catalog, step by step (what `dc2 object-pipeline` runs in one go):
  dc2 merge-tract REPO --rerun RERUN --tract 4850 -o work/object --jobs 4
  dc2 trim work/object/object_tract_4850.hdf5 -o work/object
  dc2 dpdd work/object/trim_object_tract_4850.hdf5 -o work/dpdd_object --pixel-scale 0.2
  dc2 merge-parquet work/dpdd_object/dpdd_object_tract_*.parquet -o work/dpdd_object/dpdd_run_object.parquet
  dc2 gcr-config --run run1.2i --product trim_object --base-dir work/object -o work/gcr-catalogs

Every output is written under a temporary name and renamed into place; re-running a step rewrites
its output with the same content. Errors name the file, column or parameter at fault (exit code 2).
"""


_Formatter = HelpFormatter


def _patch(text: str) -> str:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 1 for p in parts):
        raise argparse.ArgumentTypeError(f"a patch is 'x,y' with single-digit x and y, not {text!r}")
    return text


def _bands(text: str) -> list[str]:
    bands = [b for b in text.replace(",", "") if b.strip()]
    if not bands or any(not b.isalpha() for b in bands):
        raise argparse.ArgumentTypeError(f"bands are letters such as 'ugrizy', not {text!r}")
    return bands


def _repo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo", type=Path, help="Gen2 repository root (the directory with _mapper)")
    p.add_argument("--rerun", type=names.RERUN.arg_type,
                   help="rerun under REPO/rerun/ to read (its parents are searched too)")


def _cmd_merge_tract(args: argparse.Namespace) -> int:
    from dc2tasks.products.object_merge import merge_tract
    from dc2tasks.products.repo import Gen2Repo

    repo = Gen2Repo.open(args.repo, args.rerun)
    tracts = args.tract or repo.tracts()
    for tract in tracts:
        r = merge_tract(repo, tract, args.output_dir, patches=args.patches, bands=args.bands, jobs=args.jobs)
        print(f"{r.path}: {r.rows} objects in {sum(1 for p in r.patches if p.rows)} patches")
    return 0


def _cmd_trim(args: argparse.Namespace) -> int:
    from dc2tasks.products.object_trim import trim_file

    for src in args.files:
        r = trim_file(src, args.output_dir or src.parent)
        print(f"{r.path}: {r.rows} rows, {r.columns} columns, {r.groups} patches")
    return 0


def _cmd_dpdd(args: argparse.Namespace) -> int:
    from dc2tasks.products.object_dpdd import dpdd_tract

    for src in args.files:
        r = dpdd_tract(src, args.output_dir or src.parent, args.pixel_scale)
        print(f"{r.path}: {r.rows} rows, {len(r.columns)} columns, {r.row_groups} row groups")
    return 0


def _cmd_merge_parquet(args: argparse.Namespace) -> int:
    from dc2tasks.products.parquet_merge import merge_parquet

    files = sorted(args.files) if args.sort else args.files
    r = merge_parquet(files, args.output)
    print(f"{r.path}: {r.rows} rows from {r.files} files, {r.row_groups} row groups")
    return 0


def _cmd_gcr_config(args: argparse.Namespace) -> int:
    from dc2tasks.products import gcr, gcr_schema

    product = gcr.PRODUCTS[args.product]
    schema = gcr_schema.write_schema(args.base_dir, product)
    base = args.config_base_dir or str(args.base_dir.resolve())
    name = args.name or product.catalog_name(args.run)
    path = gcr.write_config(
        args.output_dir, name, gcr.catalog_config(product, base, args.run, args.pixel_scale)
    )
    print(f"{schema}\n{path}")
    return 0


def _cmd_object_pipeline(args: argparse.Namespace) -> int:
    from dc2tasks.products.object_pipeline import run_object_pipeline
    from dc2tasks.products.repo import Gen2Repo

    repo = Gen2Repo.open(args.repo, args.rerun)
    result = run_object_pipeline(
        repo, args.workdir, args.run, args.tract, args.bands, args.pixel_scale, args.jobs
    )
    print(result.summary())
    return 0


def _cmd_dpdd_columns(args: argparse.Namespace) -> int:
    from dc2tasks.products.dpdd import markdown

    print(markdown(generation=args.schema), end="")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dc2tasks.service.demo import run_demo

    return run_demo(args.workdir, seed=args.seed, jobs=args.jobs, airflow=not args.no_airflow)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dc2",
        description="DESC DC2 catalog production from a Gen2 butler repository, without the LSST stack.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"dc2tasks {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every patch and file")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "merge-tract",
        help="Object step 1: ref + forced photometry of every band -> object_tract_<t>.hdf5",
        description="Merge each patch's deepCoadd_ref rows with detect_isPrimary and every band's "
        "deepCoadd_forced_src (columns prefixed <b>_), adding calibrated PSF and CModel magnitudes "
        "and SNR per band from the coadd calibration; one HDF5 group coadd_<t>_<xy> per patch. "
        "A band missing from a patch is filled as GCRCatalogs fills a missing column.",
        formatter_class=_Formatter,
    )
    _repo_args(p)
    p.add_argument("--tract", type=nonneg_int, nargs="+", help="tracts to merge (default: every tract found)")
    p.add_argument(
        "--patches", type=_patch, nargs="+", help="patches 'x,y' (default: every patch with a ref)"
    )
    p.add_argument(
        "--bands", type=_bands, help="bands, e.g. ugrizy (default: every band found for the tract)"
    )
    p.add_argument("-o", "--output-dir", type=Path, required=True, help="directory for object_tract_<t>.hdf5")
    p.add_argument("-j", "--jobs", type=int, default=1, help="patches merged in parallel processes")
    p.set_defaults(func=_cmd_merge_tract)

    p = sub.add_parser(
        "trim",
        help="Object step 2: keep the native columns the GCRCatalogs object reader needs",
        description="Write trim_<name>.hdf5 with exactly the native columns the DPDD table needs for "
        "the schema generation and bands detected in each group (as GCRCatalogs detects them).",
        formatter_class=_Formatter,
    )
    p.add_argument("files", type=Path, nargs="+", help="object_tract_<t>.hdf5 files")
    p.add_argument("-o", "--output-dir", type=Path, help="output directory (default: beside each input)")
    p.set_defaults(func=_cmd_trim)

    p = sub.add_parser(
        "dpdd",
        help="Object step 3: DPDD columns -> dpdd_object_tract_<t>.parquet",
        description="Compute the DPDD Object columns (plus tract and patch) from an object HDF5 file, "
        "one Parquet row group per patch. See `dc2 dpdd-columns` for the definitions.",
        formatter_class=_Formatter,
    )
    p.add_argument("files", type=Path, nargs="+", help="(trim_)object_tract_<t>.hdf5 files")
    p.add_argument("-o", "--output-dir", type=Path, help="output directory (default: beside each input)")
    p.add_argument(
        "--pixel-scale", type=float, default=0.2, help="coadd arcsec per pixel (0.185 for Run 1.1p/1.2p v3)"
    )
    p.set_defaults(func=_cmd_dpdd)

    p = sub.add_parser(
        "merge-parquet",
        help="Object step 4: many tract Parquet files into one, streaming row groups",
        formatter_class=_Formatter,
    )
    p.add_argument("files", type=Path, nargs="+", help="Parquet files with the same columns")
    p.add_argument("-o", "--output", type=Path, required=True, help="the merged file")
    p.add_argument("--sort", action="store_true", help="sort the inputs by name first")
    p.set_defaults(func=_cmd_merge_parquet)

    from dc2tasks.products.gcr import DEFAULT_PIXEL_SCALE, PRODUCTS

    p = sub.add_parser(
        "gcr-config",
        help="schema yaml beside a product's files, and its GCRCatalogs catalog config",
        formatter_class=_Formatter,
    )
    p.add_argument("--product", choices=sorted(PRODUCTS), required=True, help="which product")
    p.add_argument("--run", type=names.RUN.arg_type, required=True,
                   help="data run name, e.g. run1.2i (used in the catalog name)")
    p.add_argument("--base-dir", type=Path, required=True, help="directory holding the product's files")
    p.add_argument(
        "--config-base-dir", help="base_dir to write in the config (default: --base-dir, absolute)"
    )
    p.add_argument(
        "--name", type=names.FILE_PART.arg_type,
        help="catalog name (default: dc2_object_<run>[_all_columns|_dpdd], dc2_<product>_<run>)",
    )
    p.add_argument(
        "--pixel-scale", type=float, default=DEFAULT_PIXEL_SCALE, help="coadd arcsec per pixel"
    )
    p.add_argument("-o", "--output-dir", type=Path, required=True, help="directory for <catalog name>.yaml")
    p.set_defaults(func=_cmd_gcr_config)

    p = sub.add_parser(
        "object-pipeline",
        help="all Object steps for a repository's tracts, in one process",
        formatter_class=_Formatter,
    )
    _repo_args(p)
    p.add_argument(
        "--workdir", type=Path, required=True, help="where object/, dpdd_object/, gcr-catalogs/ go"
    )
    p.add_argument("--run", type=names.RUN.arg_type, default="sample",
                   help="data run name for file and catalog names")
    p.add_argument("--tract", type=nonneg_int, nargs="+", help="tracts (default: every tract found)")
    p.add_argument("--bands", type=_bands, help="bands (default: every band found per tract)")
    p.add_argument("--pixel-scale", type=float, help="arcsec/px (default: from a coadd's WCS)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="patches merged in parallel processes")
    p.set_defaults(func=_cmd_object_pipeline)

    p = sub.add_parser(
        "dpdd-columns",
        help="print the DPDD Object column definitions (Markdown)",
        formatter_class=_Formatter,
    )
    p.add_argument("--schema", type=int, default=3, choices=[1, 2, 3, 4], help="dm_schema_version to show")
    p.set_defaults(func=_cmd_dpdd_columns)

    p = sub.add_parser(
        "demo",
        help="a sample repository through the demo run's Airflow DAG: every product, installed, checked",
        formatter_class=_Formatter,
    )
    p.add_argument("--workdir", type=Path, default=Path("demo-output"), help="where everything goes")
    p.add_argument("--seed", type=int, default=2018, help="sample repository seed")
    p.add_argument("-j", "--jobs", type=int, default=2, help="parallel processes")
    p.add_argument(
        "--no-airflow",
        action="store_true",
        help="run the product steps in this process (no Airflow, no install)",
    )
    p.set_defaults(func=_cmd_demo)

    from dc2tasks.cli_visits import add_parsers as add_visit_parsers

    add_visit_parsers(sub, _Formatter, _repo_args, _bands)

    from dc2tasks.install.cli import add_parser as add_install_parsers
    from dc2tasks.runs.cli import add_parser as add_run_parsers
    from dc2tasks.sample.cli import add_parser as add_sample_parser
    from dc2tasks.service.serve import add_parser as add_serve_parser

    add_install_parsers(sub)
    add_run_parsers(sub)
    add_sample_parser(sub)
    add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.INFO if args.verbose else logging.WARNING
    if not args.quiet and not args.verbose:
        verbose_commands = ("demo", "object-pipeline", "source", "forced-source", "dia-source", "dia-object")
        level = logging.INFO if args.command in verbose_commands else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    start = time.perf_counter()
    try:
        rc = args.func(args)
    except InputError as exc:
        print(f"dc2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dc2 {args.command}: interrupted; no output was left half-written", file=sys.stderr)
        return 130
    log.debug("dc2 %s took %.1f s", args.command, time.perf_counter() - start)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
