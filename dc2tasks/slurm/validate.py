"""Validators for values that end up in `#SBATCH` lines or on a remote command line.

Why validate rather than quote: `#SBATCH` lines are parsed by sbatch, not by a shell, and sbatch's
own quoting rules are not POSIX. The safe route is to accept only characters that need no quoting
at all for every field that goes there, and to reject anything else with an error that names the
field. Values that do reach a shell (environment values, the command body) are `shlex.quote`d.
"""

from __future__ import annotations

import re
from datetime import timedelta

from dc2tasks import names

NAME_RE = re.compile(r"[A-Za-z0-9_.:+@=-]{1,200}")
"""Job names: no comma (sacct --name is a list), no `|` (parsable output), no whitespace."""
WORD_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
"""Account, qos, partition names."""
CONSTRAINT_RE = re.compile(r"[A-Za-z0-9_.&|,\[\]*:()-]{1,200}")
IMAGE_RE = re.compile(r"[A-Za-z0-9_.:/@+-]{1,300}")
LICENSE_RE = re.compile(r"[A-Za-z0-9_.@-]{1,100}(:[0-9]{1,6})?")
PATH_RE = re.compile(r"[A-Za-z0-9_.%/+=@:,~-]{1,1000}")
"""Paths in #SBATCH lines: `%` patterns allowed; no whitespace or quotes."""
NODE_RE = re.compile(r"[A-Za-z0-9_.\[\],-]{1,500}")
COMMENT_RE = re.compile(r"[A-Za-z0-9_.:+@=,;/-]{0,255}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
DEPENDENCY_RE = re.compile(
    r"(after|afterany|afterok|afternotok|aftercorr|afterburstbuffer)(:[0-9]+(_[0-9]+)?(\+[0-9]+)?)+"
    r"|singleton"
)
USER_RE = names.ACCOUNT.regex
"""Account names as Slurm reports them (`squeue %u`, sacct `User`); never a leading `-`."""
JOB_ID_RE = re.compile(r"[0-9]{1,12}(_[0-9]{1,7})?")

_TIME_RE = re.compile(
    r"(?:(?P<days>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?)"  # D-H[:M[:S]]
    r"|(?:(?P<h>\d+):(?P<m>\d+):(?P<s>\d+))"  # H:M:S
    r"|(?:(?P<mm>\d+):(?P<ss>\d+))"  # M:S
    r"|(?P<only_m>\d+)"  # M
)
_MEM_RE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?)(?:i?B)?", re.IGNORECASE)
_MEM_UNITS_MIB = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}


def check(field: str, value: str, pattern: re.Pattern[str], what: str) -> str:
    """Return `value` if it fully matches `pattern`, else raise a ValueError naming `field`."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected a string, got {type(value).__name__}")
    if not pattern.fullmatch(value):
        raise ValueError(f"{field}: {value!r} is not a valid {what} (allowed: {pattern.pattern})")
    return value


def positive_int(field: str, value: int) -> int:
    """Counts (nodes, tasks, cpus): a real int >= 1 (bool is rejected: True is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field}: expected an integer >= 1, got {value!r}")
    return value


def parse_time_limit(field: str, value: str | timedelta | int) -> timedelta:
    """Slurm time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S), a timedelta, or int minutes."""
    if isinstance(value, timedelta):
        td = value
    elif isinstance(value, int) and not isinstance(value, bool):
        td = timedelta(minutes=value)
    elif isinstance(value, str):
        m = _TIME_RE.fullmatch(value.strip())
        if not m:
            raise ValueError(f"{field}: {value!r} is not a Slurm time (M, M:S, H:M:S, D-H, D-H:M:S)")
        g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
        if "days" in g:
            td = timedelta(days=g["days"], hours=g["dh"], minutes=g.get("dm", 0), seconds=g.get("ds", 0))
        elif "h" in g:
            td = timedelta(hours=g["h"], minutes=g["m"], seconds=g["s"])
        elif "mm" in g:
            td = timedelta(minutes=g["mm"], seconds=g["ss"])
        else:
            td = timedelta(minutes=g["only_m"])
    else:
        raise ValueError(f"{field}: expected a Slurm time string or timedelta, got {value!r}")
    if td <= timedelta(0):
        raise ValueError(f"{field}: time limit must be positive, got {value!r}")
    return td


def format_time_limit(td: timedelta) -> str:
    """`D-HH:MM:SS` (or `HH:MM:SS` under a day); sub-second parts round up."""
    total = int(-(-td.total_seconds() // 1))
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{days}-{h:02d}:{m:02d}:{s:02d}" if days else f"{h:02d}:{m:02d}:{s:02d}"


def parse_memory_mib(field: str, value: str | int) -> int:
    """Memory as MiB: an int (MiB) or a Slurm size string like `500M`, `4G`, `2GB`."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected MiB or a size like '4G', got {value!r}")
    if isinstance(value, int):
        mib = value
    elif isinstance(value, str):
        m = _MEM_RE.fullmatch(value.strip())
        if not m:
            raise ValueError(f"{field}: {value!r} is not a memory size (e.g. 500M, 4G)")
        mib = int(-(-float(m["n"]) * _MEM_UNITS_MIB[m["unit"].upper()] // 1))
    else:
        raise ValueError(f"{field}: expected MiB or a size like '4G', got {value!r}")
    if mib < 1:
        raise ValueError(f"{field}: memory must be at least 1 MiB, got {value!r}")
    return mib
