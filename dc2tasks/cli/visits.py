"""`dc2 source | forced-source | dia-source | dia-object`: the per-visit products as commands.

A Slurm array element runs one of these with `--visit-file LIST --array-index $SLURM_ARRAY_TASK_ID
--array-count N`: it loads the Object (or DIAObject) index once and processes its stripe of visits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dc2tasks.catalogue import CATALOGUE, Product
from dc2tasks.cli.args import add_repo, array_index, bands, nonneg_int, radius

VISIT_EPILOG = """\
Visits: the union of --visits and --visit-file (one number per line, # comments), first occurrence
kept; with --array-index I --array-count N only visits[I::N] of that list are processed, so one list
file serves an array of any size. Output: <output-dir>/{files}, written under a
temporary name and renamed; a visit whose inputs have not changed since its file was written is
skipped (--force rewrites it). A visit with no rows writes no file and says so. A visit that fails
(unknown visit, a detector without calibration, an incomplete visit) is reported and the rest of the
stripe still runs; the exit code is then 2.
"""


def _cmd_visits(args: argparse.Namespace) -> int:
    from dc2tasks.products.errors import InputError
    from dc2tasks.products.object_index import load_dia_objects, load_objects
    from dc2tasks.products.repo import Gen2Repo
    from dc2tasks.products.visit_lists import select_visits
    from dc2tasks.products.visit_products import make_visits
    from dc2tasks.products.visit_tables import VISIT_TABLES

    table = VISIT_TABLES[args.product]
    visits = select_visits(args.visits or (), args.visit_file, args.array_index, args.array_count)
    repo = Gen2Repo.open(args.repo, args.rerun)
    objects = None
    if table.match == "object":
        objects = load_objects(args.objects)
    elif table.match == "dia_object":
        objects = load_dia_objects(repo)
    print(
        f"{table.key}: {len(visits)} visit(s) to process"
        + (f", {len(objects)} objects indexed" if objects else "")
    )
    batch = make_visits(
        repo, table, visits, args.output_dir, objects, args.radius, args.allow_missing_detectors, args.force
    )
    for r in batch.results:
        where = r.path if r.path else "no file (every catalog empty)"
        matched = f", {r.matched} matched" if table.match and r.rows else ""
        print(
            f"visit {r.visit}: {r.status}: {r.rows} rows from {r.detectors} detectors{matched} "
            f"-> {where} ({r.seconds:.2f} s)"
        )
    if batch.failures:
        lines = "\n".join(f"  visit {v}: {msg}" for v, msg in batch.failures)
        raise InputError(f"{len(batch.failures)} of {len(visits)} visit(s) failed:\n{lines}")
    return 0


def _cmd_dia_object(args: argparse.Namespace) -> int:
    from dc2tasks.products.dia_object import dia_object_tract, read_dia_sources
    from dc2tasks.products.repo import Gen2Repo

    repo = Gen2Repo.open(args.repo, args.rerun)
    tracts = args.tract or sorted({t for t, _, _ in _dia_object_tracts(repo)})
    sources = read_dia_sources(args.dia_source_dir)
    for tract in tracts:
        r = dia_object_tract(
            repo, tract, args.dia_source_dir, args.output_dir, args.bands, args.statistics, sources
        )
        print(
            f"{r.path}: {r.rows} DIAObjects, {r.sources} DIASources, "
            f"bands {''.join(r.bands)} ({r.seconds:.2f} s)"
        )
    return 0


def _dia_object_tracts(repo):
    from dc2tasks.products.errors import InputError
    from dc2tasks.products.object_index import dia_object_files

    found = dia_object_files(repo)
    if not found:
        raise InputError(f"{repo.root}: no deepDiff_diaObject catalogs, so no tract to summarise")
    return found


def _visit_args(p: argparse.ArgumentParser, product: Product, description: str) -> None:
    key = product.name
    p.description = description + "."
    p.epilog = VISIT_EPILOG.format(files=product.file_name(visit="<visit>"))
    add_repo(p)
    p.add_argument("--visits", type=nonneg_int, nargs="+", help="visit numbers")
    p.add_argument("--visit-file", type=Path, help="file with one visit number per line")
    p.add_argument(
        "--array-index",
        type=array_index,
        help="this array element's stripe ('env': $SLURM_ARRAY_TASK_ID)",
    )
    p.add_argument("--array-count", type=nonneg_int, help="number of stripes (the array size)")
    p.add_argument(
        "-o", "--output-dir", type=Path, required=True, help=f"directory for {product.file_name(visit='<v>')}"
    )
    if key == "source":
        p.add_argument(
            "--objects",
            type=Path,
            nargs="+",
            required=True,
            help="directories (or files) of dpdd_object_tract_<t>.parquet: the Objects to match to",
        )
    if key != "forced_source":
        p.add_argument("--radius", type=radius, default=1.0, help="match radius, arcsec")
    p.add_argument(
        "--allow-missing-detectors",
        action="store_true",
        help="go on when a detector has its exposure but not its catalog (default: refuse the visit)",
    )
    p.add_argument("--force", action="store_true", help="rewrite outputs whose inputs have not changed")
    p.set_defaults(func=_cmd_visits, product=key, radius=1.0, objects=None)


def source_args(p: argparse.ArgumentParser, product: Product) -> None:
    _visit_args(
        p,
        product,
        "Source per visit: every detector's src, calibrated with its calexp, matched to the nearest "
        "primary Object within --radius (objectId, match_distance, match_candidates)",
    )


def forced_source_args(p: argparse.ArgumentParser, product: Product) -> None:
    _visit_args(
        p,
        product,
        "ForcedSource per visit: every detector's forced_src, calibrated with its calexp; objectId "
        "comes from the catalog",
    )


def dia_source_args(p: argparse.ArgumentParser, product: Product) -> None:
    _visit_args(
        p,
        product,
        "DIASource per visit: every detector's deepDiff_diaSrc, calibrated with the DIFFERENCE image's "
        "calibration, matched to the nearest deepDiff_diaObject within --radius",
    )


def dia_object_args(p: argparse.ArgumentParser, product: Product) -> None:
    p.description = (
        "Join each tract's deepDiff_diaObject catalogs (all patches) with per-band statistics of "
        "the DIASources matched to them (psFluxMean, psFluxMeanErr, psFluxSigma, psFluxChi2, psFluxNdata), "
        "reading every dia_src_visit_<v>.parquet once. --statistics dc2 reproduces the 2019 DC2 table "
        "(unweighted mean, MeanErr = Sigma/sqrt(N), N counts NaN fluxes); dm uses the DM ap_association "
        "definitions (inverse-variance weighted mean, finite rows only). A band with no DIASource for an "
        "object has psFluxNdata 0 and NaN statistics."
    )
    add_repo(p)
    p.add_argument(
        "--tract", type=nonneg_int, nargs="+", help="tracts (default: every tract with DIAObjects)"
    )
    sources = CATALOGUE[product.needs[0]].file_name(visit="<v>")
    p.add_argument("--dia-source-dir", type=Path, required=True, help=f"directory of {sources}")
    p.add_argument(
        "-o", "--output-dir", type=Path, required=True, help=f"directory for {product.file_name(tract='<t>')}"
    )
    p.add_argument(
        "--bands", type=bands, help="bands to summarise (default: every band among the DIASources)"
    )
    p.add_argument("--statistics", choices=["dc2", "dm"], default="dc2", help="which definitions")
    p.set_defaults(func=_cmd_dia_object)
