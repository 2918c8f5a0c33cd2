"""The product steps as subcommands, one per catalogue entry: `dc2 <product.command>`, its help the
entry's docs line, its arguments added by the function the entry's `cli` names ("module:function",
called with the parser and the product). A product added to the catalogue is a subcommand here
without an edit to this package beyond that function."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterable

from dc2tasks import catalogue
from dc2tasks.catalogue import Product
from dc2tasks.cli.args import add_command

AddArguments = Callable[[argparse.ArgumentParser, Product], None]


def add_arguments_of(product: Product) -> AddArguments:
    """The function `product.cli` names."""
    module, sep, name = product.cli.partition(":")
    function = getattr(importlib.import_module(module), name, None) if sep and module else None
    if not callable(function):
        raise ValueError(f"catalogue: {product.name}: cli {product.cli!r} is not 'module:function'")
    return function


def register(sub: argparse._SubParsersAction, products: Iterable[Product] | None = None) -> None:
    """Every product's subcommand (of `products`, by default the catalogue), in catalogue order."""
    for product in catalogue.CATALOGUE if products is None else products:
        add_arguments_of(product)(add_command(sub, product.command, help=product.doc), product)
