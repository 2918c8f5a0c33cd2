"""Every name that becomes a path component (run, rerun, product, tract, visit, file), declared once.

Why one module: the run file model, the trigger params, the `dc2` command line, the rerun listing
and the installer all turn these names into paths; one declaration per name keeps them agreeing.
No Airflow import, only the standard library: products/, slurm/, runs/ and install/ all import it.

Why these shapes: the first character is a letter, a digit or `_` (or only digits), so a name is
never read as an option (`-x`), never hidden or relative (`.`, `..`, `.x`), and none holds a `/`.
A value is checked with `fullmatch`, so a trailing newline is refused; `re.search` on `^...$`
(what JSON-schema validators do with `pattern`) accepts `"x\\n"`, hence `json_schema_pattern`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NamePattern:
    """One kind of name: its regex body (plain ASCII classes, valid in Python and ECMAScript)."""

    what: str
    body: str
    hint: str
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.body))

    def fullmatch(self, value: object) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None

    def check(self, value: object, where: str = "") -> str:
        """`value` if it is such a name; else ValueError naming `where` (a field or option)."""
        if not self.fullmatch(value):
            prefix = f"{where}: " if where else ""
            raise ValueError(f"{prefix}{value!r} is not a {self.what} ({self.hint})")
        return value  # type: ignore[return-value]

    @property
    def json_schema_pattern(self) -> str:
        """The same set for a JSON-schema `pattern`, which is searched (Python `re.search` in
        jsonschema, an ECMAScript RegExp in the browser). `(?![\\s\\S])` is "end of string" in both
        (`$` would also match before a final newline in Python; `\\Z` does not exist in ECMAScript)."""
        return rf"^(?:{self.body})(?![\s\S])"

    def arg_type(self, value: str) -> str:
        """An argparse `type=`: refuses a bad value with the value and what is allowed."""
        try:
            return self.check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


RUN = NamePattern(
    "run name",
    r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}",
    "letters, digits, '_', '.', '-', a letter or digit first; at most 64",
)
RERUN = NamePattern(
    "rerun name",
    r"[A-Za-z0-9_][A-Za-z0-9_.+\-]{0,199}",
    "one directory under <repository>/rerun: letters, digits, '_', '.', '+', '-', not '.', '+' or '-' first",
)
PRODUCT = NamePattern("product name", r"[a-z][a-z0-9_]{0,63}", "lower-case letters, digits and '_'")
NUMBER = NamePattern("non-negative integer", r"[0-9]{1,10}", "digits only, e.g. 4850")
"""A tract, a visit, an array index or count as typed on a command line (a sign, a space or `_`
that `int()` would take is refused)."""


def number(text: str) -> int:
    """A NUMBER as an int; an argparse `type=` (a bad value is refused naming it)."""
    return int(NUMBER.arg_type(text))
FILE_PART = NamePattern(
    "plain file name",
    r"[A-Za-z0-9_][A-Za-z0-9_.,+=@\-]{0,254}",
    "letters, digits and _.,+=@-, not '.' or '-' first, no '/'",
)
PATCH = NamePattern("patch", r"[0-9],[0-9]", "x,y with single-digit x and y, e.g. 0,1")
"""A coadd patch as Gen2 names it (`deepCoadd-results/<band>/<tract>/<x>,<y>`). Single digits: the
DC2 sky map has 7x7 or 8x8 patches a tract, and the Object files name a patch's group
`coadd_<tract>_<xy>` with the comma dropped, which GCRCatalogs reads back one digit per index."""
ACCOUNT = NamePattern(
    "Unix account or group name",
    r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}",
    "e.g. desc, lsst; not '.' or '-' first",
)
"""Run-file owners and groups, and the users Slurm reports (`squeue %u`, sacct `User`)."""
