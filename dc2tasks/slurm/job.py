"""The Slurm job model and its rendering to an sbatch script.

Why a model and not a template: every field is validated once, here, so that neither the local
emulator, nor sbatch, nor a remote shell ever sees a value that could change the script's meaning.
Options go in `#SBATCH` lines (the script is self-contained: what was submitted is what is in the
file); values there are restricted to characters that need no quoting, and anything else is rejected
with a ValueError naming the field. Environment values and the command body reach a shell and are
`shlex.quote`d (use `command_body` to build the body from an argv).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from dc2tasks.slurm import validate as v

_ARRAY_PART_RE = re.compile(r"(\d+)(?:-(\d+)(?::(\d+))?)?")
MAX_ARRAY_INDEX = 4_000_000


@dataclass(frozen=True)
class ArraySpec:
    """Array indices (sorted, unique) and an optional `%` throttle (max elements running at once).

    Kept as an explicit index list so a retry can resubmit only the failed indices
    (`ArraySpec.of([3, 7, 11], throttle=4)`); rendering compresses runs back into ranges.
    """

    indices: tuple[int, ...]
    throttle: int | None = None

    def __post_init__(self) -> None:
        if not self.indices:
            raise ValueError("array: no indices")
        for i in self.indices:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i <= MAX_ARRAY_INDEX:
                raise ValueError(f"array: index {i!r} is not an integer in 0..{MAX_ARRAY_INDEX}")
        object.__setattr__(self, "indices", tuple(sorted(set(self.indices))))
        if self.throttle is not None:
            v.positive_int("array throttle", self.throttle)

    @classmethod
    def of(cls, indices: Iterable[int], throttle: int | None = None) -> ArraySpec:
        return cls(tuple(indices), throttle)

    @classmethod
    def parse(cls, spec: str) -> ArraySpec:
        """Parse Slurm's `--array` syntax: `0-19%4`, `1,3,5-7`, `0-15:4`."""
        if not isinstance(spec, str):
            raise ValueError(f"array: expected a string like '0-19%4', got {spec!r}")
        body, _, throttle = spec.partition("%")
        indices: list[int] = []
        for part in body.split(","):
            m = _ARRAY_PART_RE.fullmatch(part)
            if not m:
                raise ValueError(f"array: {spec!r} is not a Slurm array spec (e.g. 0-19%4, 1,3,5-7)")
            lo = int(m[1])
            hi = int(m[2]) if m[2] else lo
            step = int(m[3]) if m[3] else 1
            if hi < lo or step < 1 or hi > MAX_ARRAY_INDEX:
                raise ValueError(f"array: bad range {part!r} in {spec!r}")
            indices.extend(range(lo, hi + 1, step))
        if throttle and not throttle.isdigit():
            raise ValueError(f"array: throttle {throttle!r} in {spec!r} is not a number")
        return cls(tuple(indices), int(throttle) if throttle else None)

    def render(self) -> str:
        """Canonical text: consecutive runs as ranges, e.g. `0-2,5,7-9%4`."""
        parts: list[str] = []
        start = prev = self.indices[0]
        for i in (*self.indices[1:], None):
            if i is not None and i == prev + 1:
                prev = i
                continue
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            if i is not None:
                start = prev = i
        text = ",".join(parts)
        return f"{text}%{self.throttle}" if self.throttle else text


def command_body(argv: Sequence[str]) -> str:
    """A script body running one command, every argument shell-quoted."""
    if not argv:
        raise ValueError("script: empty command")
    for a in argv:
        if "\0" in a:
            raise ValueError("script: NUL byte in a command argument")
    return shlex.join(argv) + "\n"


@dataclass(frozen=True)
class SlurmJob:
    """One sbatch submission. Strings for time/memory/array are parsed and normalised on creation."""

    script: str
    name: str
    account: str | None = None
    qos: str | None = None
    partition: str | None = None
    constraint: str | None = None
    time_limit: timedelta | str | int | None = None
    nodes: int | None = None
    ntasks: int | None = None
    cpus_per_task: int | None = None
    memory: int | str | None = None
    array: ArraySpec | str | None = None
    image: str | None = None
    licenses: tuple[str, ...] = ()
    output: str | None = None
    error: str | None = None
    workdir: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    comment: str | None = None
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        s = self._set
        if not isinstance(self.script, str) or "\0" in self.script:
            raise ValueError("script: must be text without NUL bytes")
        v.check("name", self.name, v.NAME_RE, "job name")
        if self.name == "allocation":
            raise ValueError("name: 'allocation' is slurmdbd's placeholder name; choose another")
        for f in ("account", "qos", "partition"):
            if getattr(self, f) is not None:
                v.check(f, getattr(self, f), v.WORD_RE, f)
        if self.constraint is not None:
            v.check("constraint", self.constraint, v.CONSTRAINT_RE, "constraint expression")
        if self.time_limit is not None:
            s("time_limit", v.parse_time_limit("time_limit", self.time_limit))
        for f in ("nodes", "ntasks", "cpus_per_task"):
            if getattr(self, f) is not None:
                v.positive_int(f, getattr(self, f))
        if self.memory is not None:
            s("memory", v.parse_memory_mib("memory", self.memory))
        if isinstance(self.array, str):
            s("array", ArraySpec.parse(self.array))
        elif self.array is not None and not isinstance(self.array, ArraySpec):
            raise ValueError(f"array: expected ArraySpec or a string, got {self.array!r}")
        if self.image is not None:
            v.check("image", self.image, v.IMAGE_RE, "container image")
        s("licenses", _tuple("licenses", self.licenses))
        for lic in self.licenses:
            v.check("licenses", lic, v.LICENSE_RE, "license (name or name:count)")
        for f in ("output", "error", "workdir"):
            if getattr(self, f) is not None:
                v.check(f, getattr(self, f), v.PATH_RE, "path (no whitespace or quotes)")
        env = dict(self.environment)
        for k, val in env.items():
            v.check("environment", k, v.ENV_NAME_RE, "environment variable name")
            if not isinstance(val, str) or "\0" in val:
                raise ValueError(f"environment: value of {k} must be text without NUL bytes")
        s("environment", env)
        s("dependencies", _tuple("dependencies", self.dependencies))
        for d in self.dependencies:
            v.check("dependencies", d, v.DEPENDENCY_RE, "dependency (e.g. afterok:123)")
        if self.comment is not None:
            v.check("comment", self.comment, v.COMMENT_RE, "comment")
        s("exclude", _tuple("exclude", self.exclude))
        for n in self.exclude:
            v.check("exclude", n, v.NODE_RE, "node name or hostlist")

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    @property
    def time_limit_td(self) -> timedelta | None:
        """The time limit, typed (it is always a timedelta after construction)."""
        return self.time_limit  # type: ignore[return-value]

    @property
    def memory_mib(self) -> int | None:
        return self.memory  # type: ignore[return-value]

    @property
    def array_spec(self) -> ArraySpec | None:
        return self.array  # type: ignore[return-value]

    def directives(self) -> list[tuple[str, str | None]]:
        """(option, value) pairs in a fixed order, as they appear in `#SBATCH` lines."""
        d: list[tuple[str, str | None]] = [("job-name", self.name)]
        opt = [
            ("account", self.account),
            ("qos", self.qos),
            ("partition", self.partition),
            ("constraint", self.constraint),
            ("time", v.format_time_limit(self.time_limit_td) if self.time_limit_td else None),
            ("nodes", self.nodes),
            ("ntasks", self.ntasks),
            ("cpus-per-task", self.cpus_per_task),
            ("mem", f"{self.memory_mib}M" if self.memory_mib else None),
            ("array", self.array_spec.render() if self.array_spec else None),
            ("image", self.image),
            ("licenses", ",".join(self.licenses) or None),
            ("output", self.output),
            ("error", self.error),
            ("chdir", self.workdir),
            ("dependency", ",".join(self.dependencies) or None),
            ("comment", self.comment),
            ("exclude", ",".join(self.exclude) or None),
        ]
        d.extend((k, str(val)) for k, val in opt if val is not None)
        return d

    def render(self) -> str:
        """The sbatch script text.

        The first non-comment line is always `export DC2_JOB_NAME=...`: sbatch stops reading
        `#SBATCH` lines there, so a `#SBATCH` line inside the body can never add options.
        """
        lines = ["#!/bin/bash"]
        lines += [f"#SBATCH --{k}={val}" for k, val in self.directives()]
        lines.append(f"export DC2_JOB_NAME={shlex.quote(self.name)}")
        lines += [f"export {k}={shlex.quote(val)}" for k, val in sorted(self.environment.items())]
        body = self.script if self.script.endswith("\n") or not self.script else self.script + "\n"
        return "\n".join(lines) + "\n" + body

    def scaled(self, time_factor: float = 1.0, mem_factor: float = 1.0) -> SlurmJob:
        """The next try's job after TIMEOUT / OUT_OF_MEMORY: limits multiplied, rounded up.

        Time rounds up to whole minutes (Slurm's granularity). A limit that was not set is left to
        the site default, which cannot be scaled from here.
        """
        for fname, f in (("time_factor", time_factor), ("mem_factor", mem_factor)):
            if not isinstance(f, int | float) or isinstance(f, bool) or not math.isfinite(f) or f <= 0:
                raise ValueError(f"{fname}: expected a positive number, got {f!r}")
        time = self.time_limit_td
        if time is not None and time_factor != 1.0:
            time = timedelta(minutes=math.ceil(time.total_seconds() * time_factor / 60))
        mem = self.memory_mib
        if mem is not None and mem_factor != 1.0:
            mem = math.ceil(mem * mem_factor)
        return replace(self, time_limit=time, memory=mem)

    def excluding(self, nodes: Iterable[str]) -> SlurmJob:
        """The next try's job after NODE_FAIL / BOOT_FAIL: the failed nodes added to `--exclude`."""
        merged = list(self.exclude)
        for n in nodes:
            if n and n not in merged:
                merged.append(n)
        return replace(self, exclude=tuple(merged))

    def with_array_indices(self, indices: Iterable[int]) -> SlurmJob:
        """The same array job restricted to `indices` (keeping the throttle): resubmit failures only."""
        throttle = self.array_spec.throttle if self.array_spec else None
        return replace(self, array=ArraySpec.of(indices, throttle))


def _tuple(field_name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValueError(f"{field_name}: expected a list of strings, got a single string {value!r}")
    return tuple(value)  # type: ignore[arg-type]


def expand_log_path(
    pattern: str, *, job_id: str, array_job_id: str | None = None, array_task_id: int | None = None,
    name: str = "", user: str = "",
) -> str:
    """Expand sbatch filename patterns (%j %A %a %x %u %%) the way Slurm does for one element."""
    repl = {
        "j": job_id,
        "A": array_job_id or job_id,
        "a": str(array_task_id) if array_task_id is not None else "4294967294",
        "x": name,
        "u": user,
        "%": "%",
    }
    return re.sub(r"%([jAaxu%])", lambda m: repl[m[1]], pattern)
