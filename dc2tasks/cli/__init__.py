"""`dc2`: every product step as a command, so a Slurm job, the local backend and a person at a
terminal all run the same code path.

One module per domain registers its subcommands with `register(sub)`; what they share (the help
layout, argument types, the repository arguments) is in dc2tasks.cli.args. `dc2 COMMAND` imports
only the module of COMMAND (every Slurm job starts a `dc2`: the others' imports cost each job most
of a second); `dc2 --help` imports them all to list every subcommand with its help line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Sequence
from types import ModuleType

from dc2tasks import __version__
from dc2tasks.catalogue import CATALOGUE
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

REGISTERS = ("product_steps", "objects", "inventory", "qa", "service", "install", "runs", "sample", "slurm")
"""The modules of dc2tasks.cli that register subcommands, in the order `dc2 --help` lists them."""

COMMAND_MODULES = {
    "gcr-config": "objects",
    "object-pipeline": "objects",
    "dpdd-columns": "objects",
    "inventory": "inventory",
    "qa": "qa",
    "demo": "service",
    "serve": "service",
    "install": "install",
    "manifest": "install",
    "run-config": "runs",
    "reruns": "runs",
    "sample-repo": "sample",
    "slurm": "slurm",
}
"""Which module registers each subcommand besides the product steps (one per catalogue entry, in
product_steps); tests/cli checks it against what the modules register."""

VERBOSE_COMMANDS = ("demo", "object-pipeline", "source", "forced-source", "dia-source", "dia-object")
"""Commands that log their progress at INFO unless -q is given: they run for minutes."""


def command_module(command: str) -> str | None:
    """The module (of REGISTERS) that registers `command`; None for no subcommand of dc2."""
    if any(p.command == command for p in CATALOGUE):
        return "product_steps"
    return COMMAND_MODULES.get(command)


def _registers(command: str | None) -> list[ModuleType]:
    names = [m] if command is not None and (m := command_module(command)) else REGISTERS
    return [importlib.import_module(f"dc2tasks.cli.{name}") for name in names]


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand an argument list runs: its first word that is not an option (dc2's own
    options take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """dc2's parser: with every subcommand, or (`command`) with that one only, its module alone
    imported."""
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
    for module in _registers(command):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(_command_of(sys.argv[1:] if argv is None else argv))
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
