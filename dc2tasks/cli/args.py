"""What every `dc2` subcommand's parser shares: the help layout and the argument types."""

from __future__ import annotations

import argparse

from dc2tasks import names


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions keep their line breaks (they hold examples and layouts); options show defaults."""


def nonneg_int(text: str) -> int:
    """A tract, visit, index or count: a non-negative integer, refused by argparse with the value."""
    return int(names.NUMBER.arg_type(text))
