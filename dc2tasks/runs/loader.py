"""Read run files: one bad file is reported with its name and field, and never hides the others.

The DAG factory calls `load_run_dir` once per parse; each error becomes that file's import error in
the Airflow UI while every valid run still gets its DAG.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dc2tasks.products.errors import InputError
from dc2tasks.runs.config import RunConfig

RUN_FILE_SUFFIXES = (".yaml", ".yml")
_LEADING_FIELD_RE = re.compile(r"([a-z_][a-z0-9_.\[\]]*): (.+)", re.DOTALL)


class RunConfigError(InputError):
    """A run file that is not a valid run: `problems` are (field path, message) pairs."""

    def __init__(self, path: str | os.PathLike[str], problems: list[tuple[str, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [
            f"{self.path}: {field}: {msg}" if field else f"{self.path}: {msg}" for field, msg in problems
        ]
        super().__init__("\n".join(lines))


def _field_path(loc: tuple[int | str, ...]) -> str:
    """`slurm.time.merge_tract`, `tracts[2]`; pydantic's union branch names are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            "[" in part
            or part.startswith(("function-", "constrained-", "lax-or-strict"))
            or part
            in (
                "str",
                "int",
                "float",
                "bool",
                "none",
            )
        ):
            continue  # the name of a union branch, not a field
        else:
            out += f".{part}" if out else part
    return out


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "value_error":
        return str(err["ctx"]["error"])
    if err["type"] == "extra_forbidden":
        return "unknown key (check its spelling; see dags/runs/README.md for the keys)"
    if err["type"] == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    if "input" in err and err["type"] not in ("model_type", "dict_type"):
        shown = repr(err["input"])
        msg += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return msg


def problems_from(exc: ValidationError) -> list[tuple[str, str]]:
    """One problem per field: a union reports one error per branch, keep the most telling one."""
    by_field: dict[str, list[str]] = {}
    for err in exc.errors():
        by_field.setdefault(_field_path(err["loc"]), []).append(_message(err))
    out = []
    for field, msgs in by_field.items():
        for msg in dict.fromkeys(msgs):
            # a check across fields (a model validator) names its field at the start of the message
            m = _LEADING_FIELD_RE.match(msg) if not field else None
            out.append((m[1], m[2]) if m else (field, msg))
    return out


def parse_run_config(
    data: object, path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None
) -> RunConfig:
    """Validate a run mapping as if it came from `path` (relative paths resolve against its directory)."""
    if not isinstance(data, dict):
        raise RunConfigError(path, [("", f"expected a mapping of run settings, got {type(data).__name__}")])
    if overrides:
        data = _merge(data, overrides)
    base_dir = Path(path).resolve().parent
    try:
        return RunConfig.model_validate(data, context={"base_dir": str(base_dir)})
    except ValidationError as exc:
        raise RunConfigError(path, problems_from(exc)) from None


def load_run_config(path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """One run file; `overrides` (nested keys) are merged in before validation, e.g. for a test."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RunConfigError(path, [("", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RunConfigError(path, [("", f"not valid YAML: {where}{problem}")]) from None
    return parse_run_config(data, path, overrides)


def load_run_dir(directory: str | os.PathLike[str]) -> tuple[dict[str, RunConfig], dict[str, RunConfigError]]:
    """Every `*.yaml` run file of a directory: (configs by run name, errors by file path).

    Files whose name starts with `_` or `.` are not runs (shared snippets, editor files). Two files
    declaring the same run name: the first (in file-name order) wins, the second is an error.
    """
    configs: dict[str, RunConfig] = {}
    sources: dict[str, str] = {}
    errors: dict[str, RunConfigError] = {}
    for path in sorted(Path(directory).iterdir()):
        if path.suffix not in RUN_FILE_SUFFIXES or path.name.startswith(("_", ".")) or not path.is_file():
            continue
        try:
            config = load_run_config(path)
        except RunConfigError as exc:
            errors[str(path)] = exc
            continue
        if config.name in configs:
            errors[str(path)] = RunConfigError(
                path, [("name", f"run {config.name!r} is already defined by {sources[config.name]}")]
            )
            continue
        configs[config.name] = config
        sources[config.name] = str(path)
    return configs, errors


def config_hash(config: RunConfig) -> str:
    """sha256 of the validated settings: same hash for the same run whatever the file's layout,
    comments or key order."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
