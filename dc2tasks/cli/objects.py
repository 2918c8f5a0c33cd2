"""`dc2 merge-tract | trim | dpdd | merge-parquet | gcr-config | object-pipeline | dpdd-columns`: the
Object catalog's steps as commands, so a Slurm job, the local backend and a person at a terminal all
run the same code path."""

from __future__ import annotations

import argparse
from pathlib import Path

from dc2tasks import names
from dc2tasks.catalogue import CATALOGUE, Product
from dc2tasks.cli.args import add_command, add_jobs, add_repo, bands, nonneg_int, patch
from dc2tasks.products.gcr import DEFAULT_PIXEL_SCALE


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
        r = trim_file(src, args.output_dir or src.parent, args.schema)
        print(f"{r.path}: {r.rows} rows, {r.columns} columns, {r.groups} patches")
    return 0


def _cmd_dpdd(args: argparse.Namespace) -> int:
    from dc2tasks.products.object_dpdd import dpdd_tract

    for src in args.files:
        r = dpdd_tract(src, args.output_dir or src.parent, args.pixel_scale, args.schema)
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


def merge_tract_args(p: argparse.ArgumentParser, product: Product) -> None:
    p.description = (
        "Merge each patch's deepCoadd_ref rows with detect_isPrimary and every band's "
        "deepCoadd_forced_src (columns prefixed <b>_), adding calibrated PSF and CModel magnitudes "
        "and SNR per band from the coadd calibration; one HDF5 group coadd_<t>_<xy> per patch. "
        "A band missing from a patch is filled as GCRCatalogs fills a missing column."
    )
    add_repo(p)
    p.add_argument("--tract", type=nonneg_int, nargs="+", help="tracts to merge (default: every tract found)")
    p.add_argument(
        "--patches", type=patch, nargs="+", help="patches 'x,y' (default: every patch with a ref)"
    )
    p.add_argument(
        "--bands", type=bands, help="bands, e.g. ugrizy (default: every band found for the tract)"
    )
    p.add_argument(
        "-o", "--output-dir", type=Path, required=True, help=f"directory for {product.file_name(tract='<t>')}"
    )
    add_jobs(p)
    p.set_defaults(func=_cmd_merge_tract)


def _add_schema(p: argparse.ArgumentParser, beside: str) -> None:
    p.add_argument(
        "--schema",
        type=Path,
        metavar="FILE",
        help=f"schema yaml giving every column's dtype and default (default: {beside} beside each "
        "input, else inferred from the files of its product in its directory, as GCRCatalogs does)",
    )


def trim_args(p: argparse.ArgumentParser, product: Product) -> None:
    p.description = (
        "Write trim_<name>.hdf5 with exactly the native columns the DPDD table needs for "
        "the schema generation and bands of the input's schema (as GCRCatalogs takes them); a "
        "column a patch lacks is written with the schema's default."
    )
    source = CATALOGUE[product.needs[0]].file_name(tract="<t>")
    p.add_argument("files", type=Path, nargs="+", help=f"{source} files")
    p.add_argument("-o", "--output-dir", type=Path, help="output directory (default: beside each input)")
    _add_schema(p, CATALOGUE[product.needs[0]].catalog.schema_filename)
    p.set_defaults(func=_cmd_trim)


def dpdd_args(p: argparse.ArgumentParser, product: Product) -> None:
    p.description = (
        "Compute the DPDD Object columns (plus tract and patch) from an object HDF5 file, "
        "one Parquet row group per patch, for the bands and schema generation of the input's schema; "
        "a column a patch lacks takes the schema's default, as in GCRCatalogs. See `dc2 dpdd-columns` "
        "for the definitions."
    )
    p.add_argument("files", type=Path, nargs="+", help="(trim_)object_tract_<t>.hdf5 files")
    p.add_argument("-o", "--output-dir", type=Path, help="output directory (default: beside each input)")
    p.add_argument(
        "--pixel-scale", type=float, default=0.2, help="coadd arcsec per pixel (0.185 for Run 1.1p/1.2p v3)"
    )
    _add_schema(p, "schema.yaml (trim_schema.yaml for trim_*)")
    p.set_defaults(func=_cmd_dpdd)


def merge_parquet_args(p: argparse.ArgumentParser, product: Product) -> None:
    p.add_argument("files", type=Path, nargs="+", help="Parquet files with the same columns")
    p.add_argument("-o", "--output", type=Path, required=True, help="the merged file")
    p.add_argument("--sort", action="store_true", help="sort the inputs by name first")
    p.set_defaults(func=_cmd_merge_parquet)


def register(sub: argparse._SubParsersAction) -> None:
    """The Object tools that are not a product's step: configs, the whole pipeline, the column table."""
    p = add_command(
        sub, "gcr-config", help="schema yaml beside a product's files, and its GCRCatalogs catalog config"
    )
    p.add_argument("--product", choices=sorted(CATALOGUE.with_catalog()), required=True, help="which product")
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

    p = add_command(sub, "object-pipeline", help="all Object steps for a repository's tracts, in one process")
    add_repo(p)
    p.add_argument(
        "--workdir", type=Path, required=True, help="where object/, dpdd_object/, gcr-catalogs/ go"
    )
    p.add_argument("--run", type=names.RUN.arg_type, default="sample",
                   help="data run name for file and catalog names")
    p.add_argument("--tract", type=nonneg_int, nargs="+", help="tracts (default: every tract found)")
    p.add_argument("--bands", type=bands, help="bands (default: every band found per tract)")
    p.add_argument("--pixel-scale", type=float, help="arcsec/px (default: from a coadd's WCS)")
    add_jobs(p)
    p.set_defaults(func=_cmd_object_pipeline)

    p = add_command(sub, "dpdd-columns", help="print the DPDD Object column definitions (Markdown)")
    p.add_argument("--schema", type=int, default=3, choices=[1, 2, 3, 4], help="dm_schema_version to show")
    p.set_defaults(func=_cmd_dpdd_columns)
