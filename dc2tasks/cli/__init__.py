"""`dc2`: every product step as a command, so a Slurm job, the local backend and a person at a
terminal all run the same code path.

One module per domain registers its subcommands with `register(sub)`; what they share (the help
layout, argument types, the repository arguments) is in dc2tasks.cli.args.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from dc2tasks import __version__
from dc2tasks.cli import install, inventory, objects, product_steps, qa, runs, sample, service, slurm
from dc2tasks.cli.args import HelpFormatter
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

REGISTERS = (product_steps, objects, inventory, qa, service, install, runs, sample, slurm)
"""In the order `dc2 --help` lists their subcommands."""

VERBOSE_COMMANDS = ("demo", "object-pipeline", "source", "forced-source", "dia-source", "dia-object")
"""Commands that log their progress at INFO unless -q is given: they run for minutes."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dc2",
        description="DESC DC2 catalog production from a Gen2 butler repository, without the LSST stack.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dc2tasks {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every patch and file")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in REGISTERS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.INFO if args.verbose else logging.WARNING
    if not args.quiet and not args.verbose:
        level = logging.INFO if args.command in VERBOSE_COMMANDS else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.quiet:  # progress lines log at INFO whatever the step's level, unless asked for quiet
        logging.getLogger("dc2tasks.progress").setLevel(logging.WARNING)
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
