"""The product steps as subcommands: each made by one function `(parser, product) -> None` that adds
its arguments and `set_defaults(func=...)`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from dc2tasks.cli import objects, visits
from dc2tasks.cli.args import add_command

AddArguments = Callable[[argparse.ArgumentParser, object], None]

PRODUCT_COMMANDS: tuple[tuple[str, str, AddArguments], ...] = (
    (
        "merge-tract",
        "Object step 1: ref + forced photometry of every band -> object_tract_<t>.hdf5",
        objects.merge_tract_args,
    ),
    ("trim", "Object step 2: keep the native columns the GCRCatalogs object reader needs", objects.trim_args),
    ("dpdd", "Object step 3: DPDD columns -> dpdd_object_tract_<t>.parquet", objects.dpdd_args),
    (
        "merge-parquet",
        "Object step 4: many tract Parquet files into one, streaming row groups",
        objects.merge_parquet_args,
    ),
    ("source", "Source per visit", visits.source_args),
    ("forced-source", "ForcedSource per visit", visits.forced_source_args),
    ("dia-source", "DIASource per visit", visits.dia_source_args),
    (
        "dia-object",
        "DIAObject per tract: deepDiff_diaObject + per-band light-curve statistics of its DIASources",
        visits.dia_object_args,
    ),
)


def register(sub: argparse._SubParsersAction) -> None:
    for command, doc, add_arguments in PRODUCT_COMMANDS:
        add_arguments(add_command(sub, command, help=doc), None)
