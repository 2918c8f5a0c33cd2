"""What the `dc2` subcommands share: the help layout, the argument types and the common arguments.

Each type refuses a bad value with argparse's own error, which names the option, and a message
that quotes the value. The band and patch rules themselves are catalogue.parse_bands and
names.PATCH, so the sample generator's config applies the same ones without argparse.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dc2tasks import catalogue, names

T = TypeVar("T")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions keep their line breaks (they hold examples and layouts); options show their
    defaults, except None ("not given", explained by the help text if at all) and a flag's False."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_command(sub: argparse._SubParsersAction, name: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand's parser with the shared help layout."""
    return sub.add_parser(name, formatter_class=HelpFormatter, **kwargs)


def argparse_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """A parser that raises ValueError, as an argparse `type=` that shows its message."""

    def wrapped(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapped.__name__ = parse.__name__
    return wrapped


nonneg_int = names.number
"""A tract, visit, index or count: a non-negative integer, refused by argparse with the value."""


def bands(text: str) -> list[str]:
    """`ugrizy`, `gri` or `g,r,i` (catalogue.parse_bands)."""
    return list(argparse_type(catalogue.parse_bands)(text))


patch = names.PATCH.arg_type


def array_index(text: str) -> int:
    """A Slurm array element's index, or `env` for $SLURM_ARRAY_TASK_ID."""
    if text == "env":
        value = os.environ.get("SLURM_ARRAY_TASK_ID")
        if value is None:
            raise argparse.ArgumentTypeError("--array-index env: SLURM_ARRAY_TASK_ID is not set")
        text = value
    return nonneg_int(text)


def radius(text: str) -> float:
    """A match radius in arcsec: a positive number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a radius in arcsec is a number, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the radius must be positive, not {text!r}")
    return value


def add_repo(p: argparse.ArgumentParser) -> None:
    """The Gen2 repository to read and the rerun in it."""
    p.add_argument("repo", type=Path, help="Gen2 repository root (the directory with _mapper)")
    p.add_argument("--rerun", type=names.RERUN.arg_type,
                   help="rerun under REPO/rerun/ to read (its parents are searched too)")


def add_jobs(
    p: argparse.ArgumentParser, default: int = 1, help: str = "patches merged in parallel processes"
) -> None:
    p.add_argument("-j", "--jobs", type=int, default=default, help=help)
