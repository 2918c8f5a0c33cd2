"""Params of a run's DAG trigger (UI form or REST conf): JSON schemas and the validator.

Why both: Airflow checks a Param against its JSON schema when a run is triggered, and the task checks
the conf again with `validate_params` (a conf can arrive without the form, and the run's own tract
and product lists are the only values worth accepting). Whatever survives is an int, a bool or one
of the run's product names, so nothing user-typed reaches a path or a shell.

In Airflow 3.3's form an array of strings with `examples` is a multi-select, an array of integers
is a JSON list editor (`[4850, 4851]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from dc2tasks import names
from dc2tasks.install.qa_gate import QA_MODES
from dc2tasks.products.errors import InputError
from dc2tasks.runs.config import RunConfig

MAX_VISIT = 2**31 - 1


class ParamsError(InputError):
    """Trigger params that are not valid for the run: one line per bad param, each named."""


@dataclass(frozen=True)
class TriggerParams:
    """What one DAG run makes: empty tracts/visits mean all of the run's."""

    products: tuple[str, ...]
    tracts: tuple[int, ...]
    visits: tuple[int, ...]
    rerun: str | None
    dry_run: bool
    force: bool
    qa: str = "enforce"  # the quality gate's mode (dc2tasks.install.qa_gate.QA_MODES)


def params_schema(config: RunConfig) -> dict[str, dict[str, Any]]:
    """One JSON schema per param (the keywords of `airflow.sdk.Param(default, **schema)`)."""
    tracts = ", ".join(map(str, config.tracts))
    return {
        "products": {
            "type": "array",
            "title": "Products",
            "description": "Products to make in this run (and install). Default: every product of the run: "
            + ", ".join(config.products),
            "items": {"type": "string", "enum": list(config.products)},
            "examples": list(config.products),
            "uniqueItems": True,
            "minItems": 1,
            "default": list(config.products),
        },
        "tracts": {
            "type": "array",
            "title": "Tracts",
            "description": f"A subset of the run's tracts as a JSON list, e.g. [{config.tracts[0]}]. "
            f"Empty: all of them ({tracts}).",
            "items": {"type": "integer", "enum": list(config.tracts)},
            "uniqueItems": True,
            "default": [],
        },
        "visits": {
            "type": "array",
            "title": "Visits",
            "description": "A subset of the run's visits as a JSON list of visit ids. Empty: all of them.",
            "items": {"type": "integer", "minimum": 0, "maximum": MAX_VISIT},
            "uniqueItems": True,
            "default": [],
        },
        "rerun": _rerun_param(config),
        "dry_run": {
            "type": "boolean",
            "title": "Dry run",
            "description": "Render every sbatch script and config, run sbatch --test-only, check write and "
            "chgrp permission on the central directory; change nothing.",
            "default": False,
        },
        "force": {
            "type": "boolean",
            "title": "Force",
            "description": "Remake products whose outputs already exist, and install a new version even when "
            "it is identical to the installed one.",
            "default": False,
        },
        "qa": {
            "type": "string",
            "title": "QA gate",
            "description": "enforce: a failed quality check stops the run before install; warn: install "
            "anyway (the failures go into the provenance); approve: wait for someone to approve the QA "
            f"reports in the UI (Required actions) before install. Run file default: {config.qa.mode}.",
            "enum": list(QA_MODES),
            "default": config.qa.mode,
        },
    }


def _rerun_param(config: RunConfig) -> dict[str, Any]:
    if config.repository is None:  # an Object archive is the run's only input
        return {
            "type": "null",
            "title": "Rerun",
            "description": f"None: this run reads no repository, only {config.object_source.archive}",
            "default": None,
        }
    return {
        "type": ["null", "string"],
        "title": "Rerun",
        "description": f"Rerun of {config.repository} to read. Empty: the run's own "
        f"({config.rerun or 'none: the repository itself'}). The rerun watcher sets it.",
        "pattern": names.RERUN.json_schema_pattern,
        "default": config.rerun,
    }


def params_json_schema(config: RunConfig) -> dict[str, Any]:
    """The whole conf as one object schema: unknown keys are refused (a misspelt param is not ignored)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": params_schema(config),
        "additionalProperties": False,
    }


_HINTS = {
    "products": "a product is one of the run's: {products}",
    "tracts": "a tract is an integer, one of the run's: {tracts}",
    "visits": "a visit is a non-negative integer",
    "rerun": f"a rerun is {names.RERUN.hint}",
    "dry_run": "true or false",
    "force": "true or false",
    "qa": "the QA gate is one of " + ", ".join(QA_MODES),
}


def _describe(err: jsonschema.ValidationError, config: RunConfig) -> str:
    path = list(err.absolute_path)
    if err.validator == "additionalProperties":
        known = ", ".join(params_schema(config))
        return f"{err.message}; the params are {known}"
    name = str(path[0]) if path else "params"
    where = name + "".join(f"[{p}]" for p in path[1:])
    shown = repr(err.instance)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    if err.validator == "uniqueItems":
        return f"{where}: listed more than once in {shown}"
    if err.validator == "minItems":
        return f"{where}: choose at least one"
    hint = _HINTS.get(name, "").format(
        products=", ".join(config.products), tracts=", ".join(map(str, config.tracts))
    )
    return f"{where}: {shown} is refused; {hint}" if hint else f"{where}: {err.message}"


def validate_params(params: Mapping[str, Any] | None, config: RunConfig) -> TriggerParams:
    """Check a trigger conf against the run; defaults fill what is not given."""
    given = dict(params or {})
    validator = jsonschema.Draft202012Validator(params_json_schema(config))
    errors = sorted(validator.iter_errors(given), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ParamsError("; ".join(dict.fromkeys(_describe(e, config) for e in errors)))
    schema = params_schema(config)
    value = {k: given.get(k, s["default"]) for k, s in schema.items()}
    # a JSON integer may arrive as a float (1.0) or a bool may pass as an int in other validators
    for key in ("tracts", "visits"):
        if any(isinstance(v, bool) or not isinstance(v, int) for v in value[key]):
            raise ParamsError(f"{key}: {value[key]!r} is refused; integers only")
    # the schema's pattern is searched, not full-matched, by whatever validated it before (the UI,
    # the REST API): the value that becomes a path is checked here with fullmatch as well
    if value["rerun"] is not None and not names.RERUN.fullmatch(value["rerun"]):
        raise ParamsError(f"rerun: {value['rerun']!r} is refused; {_HINTS['rerun']}")
    return TriggerParams(
        products=tuple(p for p in config.products if p in value["products"]),
        tracts=tuple(sorted(value["tracts"])),
        visits=tuple(sorted(value["visits"])),
        rerun=value["rerun"] or config.rerun,
        dry_run=bool(value["dry_run"]),
        force=bool(value["force"]),
        qa=str(value["qa"]),
    )
