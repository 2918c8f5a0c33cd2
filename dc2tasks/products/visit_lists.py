"""Visit lists and the stripe of them one Slurm array element processes.

The old TaskFarmer jobs split a visit list round-robin into 256 files (`visits[i::256]`) and ran one
process per file; here the stripe is computed from the array index and count, so one list file serves
any array size and no task-list files have to be written first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dc2tasks.products.errors import InputError


def read_visit_file(path: str | os.PathLike) -> list[int]:
    """Visit numbers, one per line (blank lines and `#` comments allowed)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the visit list: {exc.strerror}") from None
    visits = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise InputError(f"{path}:{lineno}: {item!r} is not a visit number") from None
        if value < 0:
            raise InputError(f"{path}:{lineno}: visit {value} is negative")
        visits.append(value)
    return visits


def select_visits(
    visits: Iterable[int] = (),
    visit_file: str | os.PathLike | None = None,
    index: int | None = None,
    count: int | None = None,
) -> list[int]:
    """The union of `visits` and the file's, first occurrence kept, then stripe `index` of `count`."""
    merged = list(visits) + (read_visit_file(visit_file) if visit_file is not None else [])
    unique = list(dict.fromkeys(merged))
    if not unique:
        raise InputError("no visits given: name visits or a visit list file")
    if index is None and count is None:
        return unique
    if index is None or count is None:
        raise InputError("an array stripe needs both the array index and the array count")
    if count < 1:
        raise InputError(f"array count must be at least 1, not {count}")
    if not 0 <= index < count:
        raise InputError(f"array index {index} is outside 0..{count - 1}")
    return unique[index::count]
