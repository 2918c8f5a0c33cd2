"""`dc2 inventory`: what a Gen2 repository holds for each product's inputs, before any job."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.cli.args import add_command, add_repo, bands, nonneg_int
from dc2tasks.products.atomic import atomic_path
from dc2tasks.products.inventory import Scope, summary, take_inventory
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.products.visit_lists import read_visit_file

DESCRIPTION = """\
Which tracts, patches, bands, visits and detectors the repository (and its rerun chain) holds for
every Gen2 dataset the named products read, which are missing (another dataset of the product has
them) or unreadable (not FITS, or truncated: not a whole number of 2880-byte blocks), and the
schema generation and calibration era found. Directories are listed, files are not opened through
the butler templates one by one: a 100,000-file tree takes seconds.

Progress lines go to stderr every few seconds (DC2_PROGRESS_INTERVAL_S), then a readable summary;
-o writes the JSON report (the run DAG's `inventory` task keeps it in the run's work directory).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "inventory", help="what a repository holds for the products' inputs",
                    description=DESCRIPTION)
    add_repo(p)
    made = [name for name in CATALOGUE.names if CATALOGUE[name].inputs]
    p.add_argument("--products", nargs="+", choices=CATALOGUE.names, default=made, metavar="PRODUCT",
                   help="products whose inputs to check")
    p.add_argument("--tracts", type=nonneg_int, nargs="+", help="tracts (all found when not given)")
    p.add_argument("--visits", type=nonneg_int, nargs="+", help="visits (all found when not given)")
    p.add_argument("--visit-file", type=Path, help="one visit number per line (with --visits: both)")
    p.add_argument("--bands", type=bands, help="bands the Object needs (all found when not given)")
    p.add_argument("-o", "--output", type=Path, help="write the JSON report here")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout, not the summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    visits = list(args.visits or ()) + (read_visit_file(args.visit_file) if args.visit_file else [])
    scope = Scope(tuple(args.tracts or ()), tuple(dict.fromkeys(visits)), tuple(args.bands or ()))
    report = take_inventory(Gen2Repo.open(args.repo, args.rerun), args.products, scope)
    text = json.dumps(report, indent=1)
    if args.output is not None:
        with atomic_path(args.output) as tmp:
            tmp.write_text(text + "\n")
    print(text if args.json else summary(report))
    return 0
